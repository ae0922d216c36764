package io.microsandbox.spring.actuate;

import io.microsandbox.Accelerator;
import io.microsandbox.Microsandbox;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;
import org.springframework.boot.health.contributor.AbstractHealthIndicator;
import org.springframework.boot.health.contributor.Health;

/**
 * Health of the runtime: DOWN with the reason (and the command that installs it) when QEMU or
 * the guest kernel is missing; UP with the home and the accelerator otherwise. The accelerator
 * in use is found once in the background ({@code resolving} until then): with {@code auto} on
 * a KVM host that is a probe boot, which a health check must not wait for.
 */
public class MicrosandboxHealthIndicator extends AbstractHealthIndicator {

    private final Microsandbox runtime;
    /** The accelerator in use, found once off the health check's thread: with "auto" that can take a probe boot. */
    private final AtomicReference<CompletableFuture<Accelerator>> resolving =
            new AtomicReference<>();

    private final Supplier<Accelerator> resolver;

    public MicrosandboxHealthIndicator(Microsandbox runtime) {
        this(runtime, runtime::resolvedAccelerator);
    }

    MicrosandboxHealthIndicator(Microsandbox runtime, Supplier<Accelerator> resolver) {
        super("microsandbox runtime health check failed");
        this.runtime = runtime;
        this.resolver = resolver;
    }

    @Override
    protected void doHealthCheck(Health.Builder builder) {
        builder.withDetail("home", String.valueOf(runtime.home()));
        builder.withDetail("accelerator", String.valueOf(runtime.accelerator()));
        String problem = runtime.describeInstallProblem();
        if (problem != null) {
            builder.down().withDetail("reason", problem);
            return;
        }
        CompletableFuture<Accelerator> found = resolving.get();
        if (found == null) {
            CompletableFuture<Accelerator> started = new CompletableFuture<>();
            if (resolving.compareAndSet(null, started)) {
                Thread probe = new Thread(() -> {
                    try {
                        started.complete(resolver.get());
                    } catch (Throwable e) {
                        started.completeExceptionally(e);
                        // a later check tries again (an I/O failure may pass)
                        resolving.compareAndSet(started, null);
                    }
                }, "msb-health-accelerator");
                probe.setDaemon(true);
                probe.start();
            }
            found = resolving.get();
        }
        builder.up().withDetail("acceleratorInUse", !found.isDone() ? "resolving"
                : found.isCompletedExceptionally() ? "unknown" : String.valueOf(found.join()));
    }
}

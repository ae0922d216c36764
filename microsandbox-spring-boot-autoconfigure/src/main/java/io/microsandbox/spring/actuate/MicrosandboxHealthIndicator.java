package io.microsandbox.spring.actuate;

import io.microsandbox.Accelerator;
import io.microsandbox.Microsandbox;
import org.springframework.boot.health.contributor.AbstractHealthIndicator;
import org.springframework.boot.health.contributor.Health;

/**
 * Health of the runtime: DOWN with the reason (and the command that installs it) when QEMU or
 * the guest kernel is missing; UP with the home and the accelerator otherwise.
 */
public class MicrosandboxHealthIndicator extends AbstractHealthIndicator {

    private final Microsandbox runtime;
    private volatile Accelerator resolved;

    public MicrosandboxHealthIndicator(Microsandbox runtime) {
        super("microsandbox runtime health check failed");
        this.runtime = runtime;
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
        if (resolved == null) {
            resolved = runtime.resolvedAccelerator();
        }
        builder.up().withDetail("acceleratorInUse", String.valueOf(resolved));
    }
}

package io.microsandbox.spring.pool;

import io.microsandbox.ErrorKind;
import io.microsandbox.Microsandbox;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.SandboxHandle;
import io.microsandbox.spring.SandboxPoolExhaustedException;
import java.time.Duration;
import java.util.UUID;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import org.apache.commons.logging.Log;
import org.apache.commons.logging.LogFactory;

/**
 * Used when {@code microsandbox.pool.enabled=false}: every loan boots a fresh ephemeral sandbox
 * (on the borrowing thread) and every return stops it. At most {@code max-size} run at once, as
 * with the pool: a burst of requests waits up to {@code acquire-timeout} for one to end rather
 * than booting a VM each and running the host out of memory.
 */
public final class OnDemandSandboxSource implements SandboxSource {
    private static final Log log = LogFactory.getLog(OnDemandSandboxSource.class);
    private final Microsandbox runtime;
    private final SandboxConfig config;
    private final String name;
    private final int maxSize;
    private final Duration acquireTimeout;
    /** One permit per sandbox that may run at once, handed out in arrival order. */
    private final Semaphore running;

    public OnDemandSandboxSource(Microsandbox runtime, SandboxConfig config, String name, int maxSize, Duration acquireTimeout) {
        this.runtime = runtime;
        this.config = config.toBuilder().detached(false).ephemeral(true).build();
        this.name = name;
        this.maxSize = maxSize;
        this.acquireTimeout = acquireTimeout;
        this.running = new Semaphore(maxSize, true);
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public Lease borrow() {
        try {
            if (!running.tryAcquire(acquireTimeout.toNanos(), TimeUnit.NANOSECONDS)) {
                throw new SandboxPoolExhaustedException(ErrorKind.RESOURCE_LIMIT, "no sandbox could start for '" + name + "' within "
                        + acquireTimeout.toMillis() + " ms: " + maxSize + " (microsandbox.pool.max-size) are running; raise it or"
                        + " microsandbox.pool.acquire-timeout, or hold each sandbox for less time", null);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting to start a sandbox for '" + name + "'");
        }
        try {
            Sandbox sb = runtime.create(name + "-" + UUID.randomUUID().toString().substring(0, 8), config);
            return new Lease(sb, this);
        } catch (RuntimeException | Error e) {
            running.release();
            throw e;
        }
    }

    /**
     * Stops the loan's sandbox, also for a borrower whose thread was interrupted (its status is
     * kept), and never throws: a failed stop is followed by a kill by name.
     */
    @Override
    public void giveBack(Lease lease) {
        if (!lease.markReturned()) {
            return;
        }
        boolean interrupted = Thread.interrupted(); // else the stop would give up at once, and leave the VM running
        String sandbox = lease.sandbox().name();
        try {
            lease.sandbox().close();
        } catch (RuntimeException e) {
            // close() released the handle whatever happened: the sandbox is ended through another
            try {
                runtime.find(sandbox).ifPresent(SandboxHandle::kill);
            } catch (RuntimeException stillFailing) {
                log.warn("cannot end the on-demand sandbox " + sandbox + " after its loan: " + e.getMessage()
                        + " (then " + stillFailing.getMessage() + ")");
            }
        } finally {
            running.release();
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }
}

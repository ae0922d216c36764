package io.microsandbox.spring.pool;

import io.microsandbox.Microsandbox;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.SandboxHandle;
import java.util.UUID;
import org.apache.commons.logging.Log;
import org.apache.commons.logging.LogFactory;

/**
 * Used when {@code microsandbox.pool.enabled=false}: every loan boots a fresh ephemeral sandbox
 * (on the borrowing thread) and every return stops it.
 */
public final class OnDemandSandboxSource implements SandboxSource {
    private static final Log log = LogFactory.getLog(OnDemandSandboxSource.class);
    private final Microsandbox runtime;
    private final SandboxConfig config;
    private final String name;

    public OnDemandSandboxSource(Microsandbox runtime, SandboxConfig config, String name) {
        this.runtime = runtime;
        this.config = config.toBuilder().detached(false).ephemeral(true).build();
        this.name = name;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public Lease borrow() {
        Sandbox sb = runtime.create(name + "-" + UUID.randomUUID().toString().substring(0, 8), config);
        return new Lease(sb, this);
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
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }
}

package io.microsandbox.spring.pool;

import io.microsandbox.Microsandbox;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import java.util.UUID;

/**
 * Used when {@code microsandbox.pool.enabled=false}: every loan boots a fresh ephemeral sandbox
 * (on the borrowing thread) and every return stops it.
 */
public final class OnDemandSandboxSource implements SandboxSource {
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

    @Override
    public void giveBack(Lease lease) {
        if (lease.markReturned()) {
            try {
                lease.sandbox().close();
            } catch (RuntimeException e) {
                lease.sandbox().kill();
            }
        }
    }
}

package io.microsandbox.spring.actuate;

import io.microsandbox.spring.pool.PoolStats;
import io.microsandbox.spring.pool.SandboxPool;
import io.microsandbox.spring.pool.WarmStartStats;
import org.springframework.boot.health.contributor.AbstractHealthIndicator;
import org.springframework.boot.health.contributor.Health;

/**
 * Health of the pool: idle, active, booting, waiting, failed boots. DOWN, with the last boot
 * error, while sandboxes fail to boot and the pool has none to lend, unless it needs none
 * (min-idle 0 and nobody waiting: no boot is tried until someone borrows). Also how members started
 * ({@code warmStart}, {@code booted}, {@code restored}) and, with warm-start=checkpoint, the
 * checkpoint's state; a dropped checkpoint does not make it DOWN (the pool boots cold meanwhile).
 */
public class SandboxPoolHealthIndicator extends AbstractHealthIndicator {

    private final SandboxPool pool;

    public SandboxPoolHealthIndicator(SandboxPool pool) {
        super("microsandbox pool health check failed");
        this.pool = pool;
    }

    @Override
    protected void doHealthCheck(Health.Builder builder) {
        PoolStats s = pool.stats();
        builder.withDetail("pool", pool.name())
                .withDetail("idle", s.idle())
                .withDetail("active", s.active())
                .withDetail("pending", s.pending())
                .withDetail("stopping", s.stopping())
                .withDetail("waiting", s.waiting())
                .withDetail("minIdle", s.minIdle())
                .withDetail("maxSize", s.maxSize())
                .withDetail("failedBoots", s.totalBootFailures());
        WarmStartStats w = pool.warmStartStats();
        builder.withDetail("warmStart", w.mode())
                .withDetail("booted", w.booted())
                .withDetail("restored", w.restored());
        if (w.mode().equals("checkpoint")) {
            builder.withDetail("checkpoint", w.checkpoint() == null ? "none" : w.checkpoint())
                    .withDetail("checkpointRefreshes", w.checkpointRefreshes());
            if (w.lastCheckpointError() != null) {
                builder.withDetail("lastCheckpointError", w.lastCheckpointError());
            }
        }
        boolean failing = s.consecutiveBootFailures() > 0 && s.idle() + s.active() == 0;
        // with min-idle 0 and nobody waiting no boot is tried: the last failure would hold it DOWN for ever
        if (failing && (s.minIdle() > 0 || s.waiting() > 0)) {
            builder.down().withDetail("reason", "sandboxes fail to boot (" + s.consecutiveBootFailures()
                    + " in a row): " + s.lastBootError());
        } else {
            if (failing) {
                builder.withDetail("lastBootError", s.lastBootError());
            }
            builder.up();
        }
    }
}

package io.microsandbox.spring.actuate;

import io.microsandbox.spring.pool.PoolStats;
import io.microsandbox.spring.pool.SandboxPool;
import org.springframework.boot.health.contributor.AbstractHealthIndicator;
import org.springframework.boot.health.contributor.Health;

/**
 * Health of the pool: idle, active, booting, waiting, failed boots. DOWN, with the last boot
 * error, while sandboxes fail to boot and the pool has none to lend.
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
                .withDetail("waiting", s.waiting())
                .withDetail("minIdle", s.minIdle())
                .withDetail("maxSize", s.maxSize())
                .withDetail("failedBoots", s.totalBootFailures());
        if (s.consecutiveBootFailures() > 0 && s.idle() + s.active() == 0) {
            builder.down().withDetail("reason", "sandboxes fail to boot (" + s.consecutiveBootFailures()
                    + " in a row): " + s.lastBootError());
        } else {
            builder.up();
        }
    }
}

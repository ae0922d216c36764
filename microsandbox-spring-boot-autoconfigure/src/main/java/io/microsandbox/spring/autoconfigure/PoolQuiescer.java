package io.microsandbox.spring.autoconfigure;

import io.microsandbox.spring.pool.SandboxPool;
import org.springframework.beans.factory.ObjectProvider;
import org.springframework.context.SmartLifecycle;

/**
 * Quiesces the application's pools as its context begins to stop: in the last phase to start,
 * so the first to stop, before the web server's graceful shutdown waits for the requests in
 * flight. From then on a pool boots only for a borrower waiting, not for {@code min-idle} or
 * rotation, so the pool's close (when the context destroys it) has no boots to wait for.
 */
final class PoolQuiescer implements SmartLifecycle {
    private final ObjectProvider<SandboxPool> pools;
    private volatile boolean running;

    PoolQuiescer(ObjectProvider<SandboxPool> pools) {
        this.pools = pools;
    }

    @Override
    public void start() {
        running = true;
    }

    @Override
    public void stop() {
        running = false;
        pools.orderedStream().forEach(SandboxPool::quiesce);
    }

    @Override
    public boolean isRunning() {
        return running;
    }
}

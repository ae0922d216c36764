package io.microsandbox.spring.pool;

import io.microsandbox.Checkpoint;
import io.microsandbox.Microsandbox;
import io.microsandbox.Sandbox;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.ReentrantLock;
import org.apache.commons.logging.Log;
import org.apache.commons.logging.LogFactory;

/**
 * The memory checkpoint a pool with {@code warm-start=checkpoint} restores its members from:
 * {@code <home>/checkpoints/spring-pool-<pool>-<instance>-<hash>} (the hash of the pool and
 * instance pair keeps pairs apart that the joined name does not), taken once of the first warmed
 * member, dropped when a restore from it fails (the next member boots cold and is checkpointed
 * again) and when the pool closes. A leftover of an earlier run is removed on start rather than
 * reused: it holds that run's configuration and warm-up, which the application may have changed.
 */
final class PoolCheckpoint {
    private static final Log log = LogFactory.getLog(PoolCheckpoint.class);

    private final Microsandbox runtime;
    private final String poolName;
    private final String name;
    private final AtomicReference<Checkpoint> current = new AtomicReference<>();
    /** Held by the one creator that boots the template while there is no checkpoint. */
    private final ReentrantLock template = new ReentrantLock();
    private final AtomicLong taken = new AtomicLong();
    private final AtomicLong refreshes = new AtomicLong();
    private volatile String lastError;
    /** After a failed checkpoint, cold boots do not try again (nor wait for one another) before this. */
    private volatile long retryAfterNanos = System.nanoTime();

    PoolCheckpoint(Microsandbox runtime, String poolName, String instanceId) {
        this.runtime = runtime;
        this.poolName = poolName;
        String hash = "-" + PoolInstanceLock.idHash(poolName, instanceId);
        String readable = ("spring-pool-" + poolName + "-" + instanceId).replaceAll("[^A-Za-z0-9_.-]", "_");
        // the hash names it alone: the readable part is cut to fit the limit on checkpoint names
        this.name = readable.substring(0, Math.min(readable.length(), Sandbox.MAX_NAME_BYTES - hash.length())) + hash;
    }

    String name() {
        return name;
    }

    /** The usable checkpoint, or null while there is none. */
    Checkpoint current() {
        return current.get();
    }

    /** Whether a cold boot should be checkpointed now (none usable, no recent failure). */
    boolean wanted() {
        return current.get() == null && System.nanoTime() - retryAfterNanos >= 0;
    }

    /**
     * Waits for the template role: one creator at a time boots and checkpoints while there is
     * none, the others then restore from its checkpoint instead of booting too.
     *
     * @return false when the wait timed out (the caller boots cold without the role)
     */
    boolean lockTemplate(Duration timeout) throws InterruptedException {
        return template.tryLock(timeout.toMillis(), TimeUnit.MILLISECONDS);
    }

    void unlockTemplate() {
        template.unlock();
    }

    /**
     * Removes a checkpoint of this pool's name left by an earlier run or an earlier take
     * (finished, or its writer dead), unless a restore still reads it: a new checkpoint at its
     * path would hand that restore the new one's files beside the old one's.
     *
     * @throws io.microsandbox.MicrosandboxException when it is still there (being restored from or written)
     */
    void removeLeftover() {
        Path dir = runtime.checkpoints().directory().resolve(name);
        if (Files.exists(dir, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            log.info("pool '" + poolName + "': removing the checkpoint " + dir + " left by an earlier run");
            try {
                runtime.checkpoints().remove(name);
            } catch (io.microsandbox.MicrosandboxException e) {
                if (Files.exists(dir, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                    throw e;
                }
                // removed meanwhile by another
            }
        }
    }

    /**
     * Checkpoints a freshly booted, warmed member, which runs on. Never throws: a pool whose
     * checkpoint fails keeps booting cold and tries again after {@code retryAfter}.
     *
     * @param closed tells whether the pool closed meanwhile (the checkpoint is then dropped at once)
     */
    void take(Sandbox member, Duration retryAfter, java.util.function.BooleanSupplier closed) {
        try {
            removeLeftover();
            Checkpoint cp = member.checkpoint(name);
            taken.incrementAndGet();
            current.set(cp);
            log.info("pool '" + poolName + "': checkpointed " + member.name() + " as " + cp.path() + " ("
                    + cp.memoryBytes() / (1024 * 1024) + " MiB of memory, paused " + cp.pausedMillis() + " ms)");
            if (closed.getAsBoolean()) {
                drop();
            }
        } catch (RuntimeException e) {
            lastError = "checkpoint of " + member.name() + " failed: " + e.getMessage();
            retryAfterNanos = System.nanoTime() + retryAfter.toNanos();
            log.warn("pool '" + poolName + "': cannot checkpoint " + member.name() + ", members boot cold until the next try in "
                    + retryAfter + ": " + e.getMessage());
        }
    }

    /** Drops a checkpoint a restore failed from, so that the next member boots cold and re-checkpoints. */
    void invalidate(Checkpoint cp, RuntimeException why) {
        if (current.compareAndSet(cp, null)) {
            refreshes.incrementAndGet();
            lastError = "restore from " + cp.name() + " failed: " + why.getMessage();
            log.warn("pool '" + poolName + "': dropping checkpoint " + cp.path() + " (the next member boots cold and is "
                    + "checkpointed again): " + why.getMessage());
            remove(cp);
        }
    }

    /** Removes the checkpoint (the pool closes). */
    void drop() {
        Checkpoint cp = current.getAndSet(null);
        if (cp != null) {
            remove(cp);
        }
    }

    /**
     * Removes {@code cp}, never one a take made at its path meanwhile (another creator's, now
     * current, which stays), and not while a restore still reads it: then the next
     * {@link #take} (or the next start's {@link #removeLeftover}) removes it, before it could
     * make another at its path.
     */
    private void remove(Checkpoint cp) {
        try {
            runtime.checkpoints().remove(cp);
        } catch (io.microsandbox.MicrosandboxException e) {
            log.info("pool '" + poolName + "': checkpoint " + cp.path() + " not removed (gone, taken again, or still read by a restore,"
                    + " which the next take removes): " + e.getMessage());
        }
    }

    WarmStartStats stats(long booted, long restored) {
        Checkpoint cp = current.get();
        return new WarmStartStats("checkpoint", booted, restored, cp == null ? null : cp.path().toString(), taken.get(),
                refreshes.get(), lastError);
    }
}

package io.microsandbox.spring.pool;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxLock;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.time.Instant;

/**
 * A pool's claim on its instance id within one runtime home, held while the pool is open. Two
 * processes with the same pool name and instance id on one home (two replicas of an
 * application on one host) would re-adopt, lend and reap each other's members, and share one
 * warm-start checkpoint; the second therefore runs as {@code <id>#2}, the next as
 * {@code <id>#3} ('#' keeps them apart from ids a user chose, such as {@code worker-2}), and a
 * restarted instance takes the first free id and re-adopts what it left. The lock file's
 * modification time is the last claim or release of its id.
 */
final class PoolInstanceLock implements AutoCloseable {
    /** Instances of one pool and id on one home; past this something is leaking pools. */
    static final int MAX_INSTANCES = 64;

    private final SandboxLock lock;
    private final String instanceId;
    /** Which of the requested id's variants this is: 1 for the id itself, N for {@code id#N}. */
    private final int ordinal;
    /** The lock file, touched on release; null for a claim that cleans an abandoned id up. */
    private final Path touchOnClose;

    private PoolInstanceLock(SandboxLock lock, String instanceId, int ordinal, Path touchOnClose) {
        this.lock = lock;
        this.instanceId = instanceId;
        this.ordinal = ordinal;
        this.touchOnClose = touchOnClose;
        if (touchOnClose != null) {
            touch();
        }
    }

    private void touch() {
        try {
            Files.setLastModifiedTime(touchOnClose, FileTime.from(Instant.now()));
        } catch (IOException e) {
            // the time only delays a clean-up by another instance
        }
    }

    /**
     * Claims {@code instanceId} for pool {@code pool} on {@code home}, or the first free
     * {@code instanceId#N}.
     *
     * @throws MicrosandboxException {@link ErrorKind#IO} when the lock files cannot be made,
     *         {@link ErrorKind#INVALID_CONFIG} when {@value #MAX_INSTANCES} instances hold them all
     */
    static PoolInstanceLock claim(Path home, String pool, String instanceId) {
        Path dir = home.resolve("pools");
        try {
            Files.createDirectories(dir);
            for (int n = 1; n <= MAX_INSTANCES; n++) {
                String id = instanceId(instanceId, n);
                Path file = lockFile(home, pool, id);
                SandboxLock lock = SandboxLock.tryAcquire(file);
                if (lock != null) {
                    return new PoolInstanceLock(lock, id, n, file);
                }
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot claim instance '" + instanceId + "' of pool '" + pool + "' under "
                    + dir + ": " + e.getMessage(), e);
        }
        throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, MAX_INSTANCES + " instances of pool '" + pool + "' with instance id '"
                + instanceId + "' are open on " + home + "; give each application instance its own microsandbox.pool.instance-id");
    }

    /** The {@code n}th id of {@code instanceId}: itself, then {@code instanceId#2}, ... */
    static String instanceId(String instanceId, int n) {
        return n == 1 ? instanceId : instanceId + "#" + n;
    }

    /**
     * Claims {@code instanceId}'s {@code ordinal}th id (see {@link #instanceId(String, int)})
     * exactly when a pool once ran as it on {@code home}, none does now, and
     * none has claimed or released it for {@code quietFor}: its members and checkpoint are then
     * nobody's (a replica that is merely restarting, in a deploy, has released it moments ago).
     *
     * @return the claim, or null when the id was never used, is held or was used lately
     */
    static PoolInstanceLock claimAbandoned(Path home, String pool, String instanceId, int ordinal, Duration quietFor) {
        String id = instanceId(instanceId, ordinal);
        Path file = lockFile(home, pool, id);
        try {
            SandboxLock lock = SandboxLock.tryAcquireExisting(file);
            if (lock == null) {
                return null;
            }
            if (Files.getLastModifiedTime(file).toInstant().isAfter(Instant.now().minus(quietFor))) {
                lock.close();
                return null;
            }
            return new PoolInstanceLock(lock, id, ordinal, null);
        } catch (IOException e) {
            return null; // never used (no lock file), or not readable: nothing to clean up
        }
    }

    /** Hashed: pool names and instance ids are free text, file names are not. */
    private static Path lockFile(Path home, String pool, String id) {
        return home.resolve("pools").resolve(idHash(pool, id) + ".lock");
    }

    /**
     * A short hash of a pool name and an instance id, which tells apart the pairs that joining
     * them in a name would not ({@code default-web} and {@code 1}, {@code default} and {@code web-1}).
     */
    static String idHash(String pool, String id) {
        return SandboxLayout.shortHash(pool + "\n" + id);
    }

    /** The id this pool runs as: the one asked for, or the first free {@code #N} variant. */
    String instanceId() {
        return instanceId;
    }

    /** 1 for the id asked for, N for its {@code #N} variant. */
    int ordinal() {
        return ordinal;
    }

    @Override
    public void close() {
        if (touchOnClose != null) {
            touch();
        }
        lock.close();
    }
}

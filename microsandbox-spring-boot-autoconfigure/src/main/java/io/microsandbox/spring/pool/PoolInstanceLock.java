package io.microsandbox.spring.pool;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxLock;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A pool's claim on its instance id within one runtime home, held while the pool is open. Two
 * processes with the same pool name and instance id on one home (two replicas of an
 * application on one host) would re-adopt, lend and reap each other's members, and share one
 * warm-start checkpoint; the second therefore runs as {@code <id>-2}, the next as
 * {@code <id>-3}, and a restarted instance takes the first free id and re-adopts what it left.
 */
final class PoolInstanceLock implements AutoCloseable {
    /** Instances of one pool and id on one home; past this something is leaking pools. */
    static final int MAX_INSTANCES = 64;

    private final SandboxLock lock;
    private final String instanceId;

    private PoolInstanceLock(SandboxLock lock, String instanceId) {
        this.lock = lock;
        this.instanceId = instanceId;
    }

    /**
     * Claims {@code instanceId} for pool {@code pool} on {@code home}, or the first free
     * {@code instanceId-N}.
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
                SandboxLock lock = SandboxLock.tryAcquire(lockFile(home, pool, id));
                if (lock != null) {
                    return new PoolInstanceLock(lock, id);
                }
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot claim instance '" + instanceId + "' of pool '" + pool + "' under "
                    + dir + ": " + e.getMessage(), e);
        }
        throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, MAX_INSTANCES + " instances of pool '" + pool + "' with instance id '"
                + instanceId + "' are open on " + home + "; give each application instance its own microsandbox.pool.instance-id");
    }

    /** The {@code n}th id of {@code instanceId}: itself, then {@code instanceId-2}, ... */
    static String instanceId(String instanceId, int n) {
        return n == 1 ? instanceId : instanceId + "-" + n;
    }

    /**
     * Claims {@code id} exactly when a pool once ran as it on {@code home} and none does now:
     * its members and checkpoint are then nobody's.
     *
     * @return the claim, or null when the id was never used or is held
     */
    static PoolInstanceLock claimAbandoned(Path home, String pool, String id) {
        try {
            SandboxLock lock = SandboxLock.tryAcquireExisting(lockFile(home, pool, id));
            return lock == null ? null : new PoolInstanceLock(lock, id);
        } catch (IOException e) {
            return null; // never used (no lock file), or not readable: nothing to clean up
        }
    }

    /** Hashed: pool names and instance ids are free text, file names are not. */
    private static Path lockFile(Path home, String pool, String id) {
        return home.resolve("pools").resolve(SandboxLayout.shortHash(pool + "\n" + id) + ".lock");
    }

    /** The id this pool runs as: the one asked for, or the first free {@code -N} variant. */
    String instanceId() {
        return instanceId;
    }

    @Override
    public void close() {
        lock.close();
    }
}

package io.microsandbox.runtime;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Advisory locks that say a sandbox is alive. The creating client holds {@code create.lock}
 * while it prepares and boots the sandbox; the supervisor holds {@code supervisor.lock} for
 * its whole life. The kernel drops a lock when its process dies, however it dies, so a
 * sandbox whose locks can both be taken has no live owner, whatever its files say.
 */
public final class SandboxLock implements AutoCloseable {
    private final FileChannel channel;
    private final FileLock lock;

    private SandboxLock(FileChannel channel, FileLock lock) {
        this.channel = channel;
        this.lock = lock;
    }

    public static Path createLockFile(SandboxLayout layout) {
        return layout.dir().resolve("create.lock");
    }

    public static Path supervisorLockFile(SandboxLayout layout) {
        return layout.dir().resolve("supervisor.lock");
    }

    /** Takes the lock on {@code file}, or returns null when another holder has it. */
    public static SandboxLock tryAcquire(Path file) throws IOException {
        FileChannel channel = OwnerOnly.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        try {
            FileLock lock = channel.tryLock();
            if (lock == null) {
                channel.close();
                return null;
            }
            return new SandboxLock(channel, lock);
        } catch (OverlappingFileLockException e) {
            channel.close();
            return null;
        }
    }

    /** Whether a creator or a supervisor currently owns the sandbox. */
    public static boolean isOwned(SandboxLayout layout) throws IOException {
        if (!java.nio.file.Files.isDirectory(layout.dir())) {
            return false;
        }
        return isHeld(createLockFile(layout)) || isHeld(supervisorLockFile(layout));
    }

    /** Whether someone, this JVM included, holds the lock on {@code file}. */
    public static boolean isHeld(Path file) throws IOException {
        SandboxLock probe = tryAcquire(file);
        if (probe == null) {
            return true;
        }
        probe.close();
        return false;
    }

    @Override
    public void close() throws IOException {
        try {
            lock.release();
        } finally {
            channel.close();
        }
    }
}

package io.microsandbox.runtime;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;

/**
 * Advisory locks that say a sandbox is alive. The creating client holds {@code create.lock}
 * while it prepares and boots the sandbox; the supervisor holds {@code supervisor.lock} for
 * its whole life. The kernel drops a lock when its process dies, however it dies, so a
 * sandbox whose locks can both be taken has no live owner, whatever its files say.
 */
public final class SandboxLock implements AutoCloseable {
    private final int fd;
    private boolean closed;

    private SandboxLock(int fd) {
        this.fd = fd;
    }

    /** The name of the creation lock's file in a sandbox's directory. */
    public static final String CREATE_LOCK = "create.lock";

    public static Path createLockFile(SandboxLayout layout) {
        return layout.dir().resolve(CREATE_LOCK);
    }

    public static Path supervisorLockFile(SandboxLayout layout) {
        return layout.dir().resolve("supervisor.lock");
    }

    /**
     * Takes the lock on {@code file}, or returns null when another holder has it (another
     * process, or another lock of this one). An open file description lock, not a
     * {@code FileChannel} lock: with those, closing any channel on the file in this process
     * would release this process's lock for every other process.
     */
    public static SandboxLock tryAcquire(Path file) throws IOException {
        int fd = Posix.tryLockFile(file, true);
        return fd < 0 ? null : new SandboxLock(fd);
    }

    /**
     * A shared lock on {@code file} (made if missing), or null while someone holds it
     * exclusively: readers of what the file guards hold it together, and keep the exclusive
     * holder (a remover) out.
     */
    public static SandboxLock tryAcquireShared(Path file) throws IOException {
        int fd = Posix.tryLockFileShared(file, true);
        return fd < 0 ? null : new SandboxLock(fd);
    }

    /**
     * {@link #tryAcquire} on a file that must already be there.
     *
     * @throws NoSuchFileException when it is not
     */
    public static SandboxLock tryAcquireExisting(Path file) throws IOException {
        int fd = Posix.tryLockFile(file, false);
        if (fd == Posix.LOCK_FILE_MISSING) {
            throw new NoSuchFileException(file.toString());
        }
        return fd < 0 ? null : new SandboxLock(fd);
    }

    /**
     * Whether {@code file} is, right now, the file this lock is on: not deleted, not replaced
     * by another one under its name, and not moved away with its directory.
     */
    public synchronized boolean isOn(Path file) {
        if (closed) {
            return false; // its descriptor number may be another file's, or this file's again, by now
        }
        try {
            Object locked = Files.readAttributes(Path.of("/proc/self/fd/" + fd), BasicFileAttributes.class).fileKey();
            Object named = Files.readAttributes(file, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS).fileKey();
            return locked != null && locked.equals(named);
        } catch (IOException e) {
            return false;
        }
    }

    /** Whether a creator or a supervisor currently owns the sandbox. */
    public static boolean isOwned(SandboxLayout layout) throws IOException {
        if (!java.nio.file.Files.isDirectory(layout.dir())) {
            return false;
        }
        return isHeld(createLockFile(layout)) || isHeld(supervisorLockFile(layout));
    }

    /**
     * Whether someone, this process included, holds the lock on {@code file}. A test, not a
     * take: a creator trying the lock at the same moment is not turned away, and a missing
     * file is not held (nor created).
     */
    public static boolean isHeld(Path file) throws IOException {
        return Posix.isLockHeld(file);
    }

    /** Releases the lock; a second call does nothing. */
    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            Posix.close(fd);
        }
    }
}

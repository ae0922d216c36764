package io.microsandbox.runtime;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Locks named by a file, held across this JVM's threads and other processes: what several
 * creators building the same cached disk, or pulling the same blob, take in turn.
 */
public final class FileLocks {
    /** In-JVM half of each lock: a file lock is per process, threads must queue first. */
    private static final ConcurrentHashMap<Path, ReentrantLock> THREAD_LOCKS = new ConcurrentHashMap<>();

    private FileLocks() {
    }

    /** A callable that may throw IOException. */
    @FunctionalInterface
    public interface IoAction<T> {
        T run() throws IOException;
    }

    /**
     * Runs {@code action} holding the lock of {@code lockFile} (made {@code 0600} if missing):
     * first among this JVM's threads, then among processes (a file lock, freed by the kernel if
     * the holder dies).
     *
     * @param what the lock, for the message of an interrupted wait
     * @throws MicrosandboxException {@link ErrorKind#CANCELLED} when the waiting thread is interrupted
     */
    public static <T> T withLock(Path lockFile, String what, IoAction<T> action) throws IOException {
        ReentrantLock local = THREAD_LOCKS.computeIfAbsent(lockFile.toAbsolutePath().normalize(), k -> new ReentrantLock());
        try {
            // a creator waiting behind another (a slow registry, a large build) can be cancelled
            local.lockInterruptibly();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for " + what);
        }
        try {
            if (!Files.exists(lockFile)) {
                try {
                    OwnerOnly.createFile(lockFile);
                } catch (java.nio.file.FileAlreadyExistsException e) {
                    // another process made it
                }
            }
            try (FileChannel ch = FileChannel.open(lockFile, StandardOpenOption.WRITE);
                 FileLock ignored = ch.lock()) {
                return action.run();
            } catch (java.nio.channels.FileLockInterruptionException e) {
                throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for " + what);
            }
        } finally {
            local.unlock();
        }
    }
}

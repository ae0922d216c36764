package io.microsandbox;

import io.microsandbox.runtime.SandboxLock;
import io.microsandbox.runtime.SandboxPreparer;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.function.BiFunction;
import java.util.function.Function;
import java.util.stream.Stream;

/**
 * What disk snapshots and memory checkpoints share: a directory with a manifest written last,
 * read back with bounded reads (the manifest is a file anyone with the home can edit), listed,
 * removed, and claimed by one writer at a time. A writer holds {@link #WRITING_LOCK} in the
 * directory until its manifest is in place, so a directory whose writer died (a killed JVM, a
 * host crash) is told apart from one being written: the first can be removed or taken again
 * under its name, the second is left alone.
 */
final class SnapshotDirectories {
    /** Manifests are a few KiB; anything larger is not one of ours. */
    static final int MAX_MANIFEST_BYTES = 1 << 20;
    /** Held by the writer of an unfinished snapshot or checkpoint. */
    static final String WRITING_LOCK = ".writing.lock";

    private SnapshotDirectories() {
    }

    /**
     * The manifest {@code file} of a {@code what}, at most {@link #MAX_MANIFEST_BYTES}.
     *
     * @throws NoSuchFileException when there is none
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_INTEGRITY} when it is not a regular file (a FIFO
     *         would block the reader for ever) or is too large
     */
    static byte[] readManifest(Path file, String what) throws IOException {
        if (!Files.exists(file)) {
            throw new NoSuchFileException(file.toString());
        }
        if (!Files.isRegularFile(file)) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the manifest of " + what + " " + file + " is not a regular file");
        }
        byte[] bytes;
        try (InputStream in = Files.newInputStream(file)) {
            bytes = in.readNBytes(MAX_MANIFEST_BYTES + 1);
        }
        if (bytes.length > MAX_MANIFEST_BYTES) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the manifest of " + what + " " + file
                    + " is larger than " + MAX_MANIFEST_BYTES + " bytes");
        }
        return bytes;
    }

    /** Reads and parses the {@code what} in {@code dir}, asked for as {@code nameOrPath}. */
    static <T> T get(Path dir, String manifestFile, String what, String nameOrPath, BiFunction<Path, byte[], T> parse) {
        Path manifest = dir.resolve(manifestFile);
        try {
            return parse.apply(dir, readManifest(manifest, what));
        } catch (NoSuchFileException e) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_NOT_FOUND, "no " + what + " '" + nameOrPath + "' (looked for " + manifest + ")");
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot read " + what + " " + dir + ": " + e.getMessage(), e);
        }
    }

    /** Every finished {@code what} in {@code directory}, newest first; unreadable and unfinished ones are left out. */
    static <T> List<T> list(Path directory, String manifestFile, String what, BiFunction<Path, byte[], T> parse,
            Function<T, Instant> createdAt) {
        if (!Files.isDirectory(directory)) {
            return List.of();
        }
        List<T> all = new ArrayList<>();
        try (Stream<Path> dirs = Files.list(directory)) {
            for (Path dir : dirs.toList()) {
                if (dir.getFileName().toString().startsWith(".")) {
                    continue; // being deleted (see delete), or not a bare name
                }
                try {
                    all.add(parse.apply(dir, readManifest(dir.resolve(manifestFile), what)));
                } catch (IOException | MicrosandboxException e) {
                    // being written, or not one of ours: get() names the problem
                }
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot list " + directory + ": " + e.getMessage(), e);
        }
        all.sort(Comparator.comparing(createdAt).reversed());
        return all;
    }

    /**
     * Deletes the {@code what} in {@code dir}: a finished one, or one whose writer died before
     * its manifest was written.
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_NOT_FOUND} when there is none, or
     *         when it is still being written
     */
    static void remove(Path dir, String manifestFile, String what, String nameOrPath) {
        if (!Files.isRegularFile(dir.resolve(manifestFile)) && !abandoned(dir)) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_NOT_FOUND, "no " + what + " '" + nameOrPath + "'"
                    + (Files.exists(dir.resolve(WRITING_LOCK)) ? " (one is being written there)" : ""));
        }
        if (!delete(dir)) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_NOT_FOUND, "no " + what + " '" + nameOrPath + "' (removed meanwhile)");
        }
    }

    /**
     * Deletes {@code dir} after renaming it out of the way in one step, so that nobody finds it
     * half deleted and concurrent deleters do not trip over each other's deletions.
     *
     * @return false when it was gone already (another deleter got there first)
     */
    static boolean delete(Path dir) {
        Path doomed = dir.resolveSibling(".removing-" + dir.getFileName() + "-" + java.util.UUID.randomUUID());
        try {
            Files.move(dir, doomed, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        } catch (NoSuchFileException e) {
            return false;
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot remove " + dir + ": " + e.getMessage(), e);
        }
        SandboxPreparer.deleteTree(doomed);
        return true;
    }

    /**
     * Whether {@code dir} is an unfinished snapshot or checkpoint whose writer is gone: it
     * holds the writing lock file, nobody holds the lock, and there is no manifest.
     */
    static boolean abandoned(Path dir) {
        Path lock = dir.resolve(WRITING_LOCK);
        if (!Files.isRegularFile(lock)) {
            return false;
        }
        try {
            return !SandboxLock.isHeld(lock);
        } catch (IOException e) {
            return false;
        }
    }

    /**
     * Takes the writing lock of the new directory {@code dir}; the writer closes it with
     * {@link #finished(Path, SandboxLock)} once the manifest is in place (or the directory deleted).
     */
    static SandboxLock lockForWriting(Path dir) throws IOException {
        SandboxLock lock = SandboxLock.tryAcquire(dir.resolve(WRITING_LOCK));
        if (lock == null) {
            throw new IOException(dir + " is being written by another process");
        }
        return lock;
    }

    /** Releases the writing lock of {@code dir}, and drops its file when the directory is still there. */
    static void finished(Path dir, SandboxLock lock) {
        try {
            Files.deleteIfExists(dir.resolve(WRITING_LOCK));
        } catch (IOException e) {
            // a lock file left in a finished directory is harmless: the manifest marks it finished
        }
        try {
            lock.close();
        } catch (IOException e) {
            // the lock goes with the descriptor
        }
    }
}

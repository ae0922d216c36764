package io.microsandbox;

import io.microsandbox.runtime.CheckpointSaving;
import io.microsandbox.runtime.ClaimedDirectory;
import io.microsandbox.runtime.SandboxLock;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
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
        requireDeleted(deleteUnlessWritten(dir, manifestFile, true, null), dir, what, nameOrPath);
    }

    /**
     * Deletes the finished {@code what} in {@code dir} whose manifest's digest is {@code digest},
     * and nothing else: the digest is compared under the writing lock, so a {@code what} written
     * again under the name since the caller read it stays.
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_NOT_FOUND} when it is gone or was
     *         written again, or when it is being restored from
     */
    static void remove(Path dir, String manifestFile, String what, String name, String digest) {
        requireDeleted(deleteUnlessWritten(dir, manifestFile, true, digest), dir, what, name);
    }

    private static void requireDeleted(Deletion deletion, Path dir, String what, String nameOrPath) {
        if (deletion != Deletion.DELETED) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_NOT_FOUND, "no " + what + " '" + nameOrPath + "'" + switch (deletion) {
                case BEING_WRITTEN -> " (one is being written there, or restored from)";
                case NOT_OURS -> " (" + dir + " holds no " + what + ", so it is left alone: neither a manifest nor a writer's lock;"
                        + " delete it by hand if nothing else uses it)";
                case REPLACED -> " as it was read (it was removed, or taken again under its name since)";
                default -> "";
            });
        }
    }

    /** What {@link #deleteUnlessWritten} found. */
    enum Deletion {
        /** deleted */
        DELETED,
        /** no such directory, or it was replaced or removed meanwhile */
        GONE,
        /** its writer holds the writing lock, or (a checkpoint) its supervisor or a restore holds the saving lock */
        BEING_WRITTEN,
        /** finished, and only an unfinished one was to go */
        FINISHED,
        /** neither a manifest nor a writing lock file: not ours, never deleted */
        NOT_OURS,
        /** finished, but not the one asked for: its manifest is another (or unreadable) */
        REPLACED
    }

    /**
     * Deletes the snapshot or checkpoint in {@code dir} when its writer is gone: an unfinished
     * one whose writer died, and a finished one when {@code finishedToo}. Its writing lock is
     * held from the decision to the deletion, so no writer works inside it meanwhile and no
     * other deleter swaps it for a new one under the same name: a claim can only put a new
     * directory there once this one is gone. With a {@code digest}, only a finished one whose
     * manifest has that digest is deleted; it is compared under the lock, where no claim can
     * have put another manifest in its place.
     */
    static Deletion deleteUnlessWritten(Path dir, String manifestFile, boolean finishedToo, String digest) {
        Path manifest = dir.resolve(manifestFile);
        Path lockFile = dir.resolve(WRITING_LOCK);
        boolean finished = Files.isRegularFile(manifest, LinkOption.NOFOLLOW_LINKS);
        if (finished && !finishedToo) {
            return Deletion.FINISHED;
        }
        SandboxLock lock;
        try {
            // a finished directory has dropped its lock file: the deleter's own stands in for it
            lock = finished ? SandboxLock.tryAcquire(lockFile) : SandboxLock.tryAcquireExisting(lockFile);
        } catch (NoSuchFileException e) {
            // no directory, or (an unfinished one) no lock file: a directory claimed since has both
            return !finished && Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS) && !Files.exists(manifest, LinkOption.NOFOLLOW_LINKS)
                    ? Deletion.NOT_OURS : Deletion.GONE;
        } catch (IOException e) {
            if (!Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) {
                return Deletion.GONE;
            }
            throw new MicrosandboxException(ErrorKind.IO, "cannot lock " + dir + ": " + e.getMessage(), e);
        }
        if (lock == null) {
            return Deletion.BEING_WRITTEN;
        }
        try (lock) {
            if (!lock.isOn(lockFile)) {
                return Deletion.GONE;
            }
            if (Files.isRegularFile(manifest, LinkOption.NOFOLLOW_LINKS) && !finishedToo) {
                return Deletion.FINISHED; // its writer finished between the two looks
            }
            if (digest != null && !digest.equals(manifestDigest(manifest))) {
                return Deletion.REPLACED;
            }
            return deleteUnlessSaving(dir);
        }
    }

    /** The digest of the manifest {@code file} (a snapshot's and a checkpoint's identity), or null when there is none to read. */
    private static String manifestDigest(Path file) {
        try {
            return Snapshot.sha256(readManifest(file, "a snapshot or checkpoint"));
        } catch (IOException | MicrosandboxException e) {
            return null;
        }
    }

    /**
     * Deletes {@code dir} unless a supervisor still writes a checkpoint into it (its client,
     * the writer, may have died meanwhile), holding the saving lock across the deletion so that
     * none begins to.
     */
    static Deletion deleteUnlessSaving(Path dir) {
        try (SandboxLock saving = SandboxLock.tryAcquire(dir.resolve(CheckpointSaving.SAVING_LOCK))) {
            if (saving == null) {
                return Deletion.BEING_WRITTEN;
            }
            return ClaimedDirectory.delete(dir) ? Deletion.DELETED : Deletion.GONE;
        } catch (NoSuchFileException e) {
            return Deletion.GONE;
        } catch (IOException e) {
            if (!Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) {
                return Deletion.GONE;
            }
            throw new MicrosandboxException(ErrorKind.IO, "cannot lock " + dir + ": " + e.getMessage(), e);
        }
    }

    /**
     * Creates the directory {@code dir} holding its writing lock (see {@link ClaimedDirectory#claim}).
     * The writer closes the lock with {@link #finished(Path, SandboxLock)} once the manifest is in
     * place (or the directory deleted).
     *
     * @throws FileAlreadyExistsException when {@code dir} exists
     */
    static SandboxLock claim(Path dir) throws IOException {
        return ClaimedDirectory.claim(dir, WRITING_LOCK);
    }

    /** Releases the writing lock of {@code dir}, and drops its file when the directory is still there. */
    static void finished(Path dir, SandboxLock lock) {
        Path lockFile = dir.resolve(WRITING_LOCK);
        try {
            // only its own: a directory deleted on failure may have a new claimant's under the name by now
            if (lock.isOn(lockFile)) {
                Files.delete(lockFile);
            }
        } catch (IOException e) {
            // a lock file left in a finished directory is harmless: the manifest marks it finished
        }
        lock.close();
    }
}

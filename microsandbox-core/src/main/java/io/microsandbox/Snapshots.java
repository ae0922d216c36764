package io.microsandbox;

import io.microsandbox.image.oci.OciImages;
import io.microsandbox.runtime.ClaimedDirectory;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.Printable;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxLock;
import io.microsandbox.runtime.SparseFiles;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The disk snapshots of a home ({@code <home>/snapshots/<name>/}) and those at explicit paths:
 * get, list, remove, verify. From {@link Microsandbox#snapshots()}; {@link Snapshot}'s static
 * methods use the default runtime's. Snapshots are taken with {@link SandboxHandle#snapshot(String)}.
 */
public final class Snapshots {
    private final Path home;

    Snapshots(Path home) {
        this.home = home;
    }

    /** The directory of snapshots with bare names. */
    public Path directory() {
        return home.resolve("snapshots");
    }

    /**
     * The snapshot with this bare name, or at this path (anything holding a '/').
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_NOT_FOUND} when there is none,
     *         {@link ErrorKind#SNAPSHOT_INTEGRITY} when its manifest is unreadable
     */
    public Snapshot get(String nameOrPath) {
        return SnapshotDirectories.get(locate(nameOrPath), Snapshot.MANIFEST_FILE, "snapshot", nameOrPath, Snapshot::parse);
    }

    /** Every snapshot with a bare name, newest first; directories without a readable manifest are left out. */
    public List<Snapshot> list() {
        return SnapshotDirectories.list(directory(), Snapshot.MANIFEST_FILE, "snapshot", Snapshot::parse, Snapshot::createdAt);
    }

    /**
     * Deletes a snapshot, or an unfinished one whose writer died. Sandboxes booted from it have
     * their own copy and are not affected.
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_NOT_FOUND} when there is none, or
     *         when it is still being written
     */
    public void remove(String nameOrPath) {
        SnapshotDirectories.remove(locate(nameOrPath), Snapshot.MANIFEST_FILE, "snapshot", nameOrPath);
    }

    /**
     * Deletes this snapshot and nothing else: where its directory now holds another one (removed
     * and written again under the name since {@code snapshot} was read), that one stays.
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_NOT_FOUND} when it is gone or was
     *         written again
     */
    public void remove(Snapshot snapshot) {
        SnapshotDirectories.remove(snapshot.path(), Snapshot.MANIFEST_FILE, "snapshot", snapshot.name(), snapshot.digest());
    }

    /**
     * Checks a snapshot's upper copy against its integrity hash (see {@link Snapshot#verify()}).
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_INTEGRITY} on a mismatch
     */
    public void verify(String nameOrPath) {
        get(nameOrPath).verify();
    }

    /** A bare name under {@link #directory()}, or a path. */
    Path locate(String nameOrPath) {
        return locateIn(directory(), nameOrPath, "snapshot");
    }

    /** A bare name under {@code dir}, or a path (anything holding a '/'), of a {@code what}. */
    static Path locateIn(Path dir, String nameOrPath, String what) {
        if (nameOrPath == null || nameOrPath.isBlank()) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "a " + what + " name or path is required");
        }
        if (nameOrPath.indexOf('/') >= 0) {
            try {
                return Path.of(nameOrPath).toAbsolutePath().normalize();
            } catch (java.nio.file.InvalidPathException e) {
                throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "invalid " + what + " path '"
                        + nameOrPath.replaceAll("\\p{Cntrl}", "?") + "': " + e.getReason(), e);
            }
        }
        if (nameOrPath.startsWith(".") || nameOrPath.chars().anyMatch(Character::isISOControl) || nameOrPath.indexOf('\\') >= 0
                || nameOrPath.getBytes(StandardCharsets.UTF_8).length > Sandbox.MAX_NAME_BYTES) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "invalid " + what + " name '"
                    + nameOrPath.replaceAll("\\p{Cntrl}", "?") + "': at most 128 bytes, no leading '.', no '\\' or control characters");
        }
        return dir.resolve(nameOrPath);
    }

    /**
     * Writes a snapshot of a stopped sandbox into the new directory {@code dir}: the upper copy
     * first, the manifest last (a directory without one is an unfinished snapshot). The caller
     * holds the sandbox's creation lock, so it cannot start meanwhile.
     */
    Snapshot take(SandboxLayout source, SandboxConfig config, Path dir, SnapshotOptions options) {
        if (config.imageDisk() != null) {
            throw new MicrosandboxException(ErrorKind.UNSUPPORTED_OPERATION, "sandbox '" + source.name()
                    + "' boots from a disk image (imageDisk): its writes live in that image's overlay, which snapshots do not capture");
        }
        if (!Files.isRegularFile(source.upperDisk())) {
            throw new MicrosandboxException(ErrorKind.IO, "sandbox '" + source.name() + "' has no upper disk at " + source.upperDisk());
        }
        SandboxLock writing = claimDirectory(home, directory(), dir, "snapshot", Snapshot.MANIFEST_FILE);
        try {
            String content = SparseFiles.copy(source.upperDisk(), dir.resolve(Snapshot.UPPER_FILE));
            Map<String, Object> fields = new LinkedHashMap<>();
            fields.put("format", Snapshot.FORMAT);
            fields.put("image", config.image());
            fields.put("imageDigest", pinnedDigest(source));
            fields.put("sourceSandbox", source.name());
            fields.put("upperFile", Snapshot.UPPER_FILE);
            fields.put("sizeBytes", Files.size(source.upperDisk()));
            fields.put("createdAt", Instant.now().truncatedTo(ChronoUnit.MILLIS).toString());
            fields.put("labels", options.labels());
            fields.put("integrity", options.integrity() ? content : null);
            byte[] manifest = Snapshot.canonicalManifest(fields);
            writeManifest(dir.resolve(Snapshot.MANIFEST_FILE), manifest);
            return Snapshot.parse(dir, manifest);
        } catch (IOException | RuntimeException e) {
            // out of the way in one step, its lock still held: nobody finds it half deleted
            try {
                ClaimedDirectory.delete(dir);
            } catch (RuntimeException cleanup) {
                e.addSuppressed(cleanup); // the failure that matters is the take's
            }
            if (e instanceof MicrosandboxException m) {
                throw m;
            }
            throw new MicrosandboxException(ErrorKind.IO, "cannot snapshot sandbox '" + source.name() + "' to " + dir + ": " + e.getMessage(), e);
        } finally {
            SnapshotDirectories.finished(dir, writing);
        }
    }

    /**
     * Creates the new directory {@code dir} of a {@code what}, owner-only (and the home's
     * {@code named} directory on the way when it is there), holding its writing lock, which
     * the caller releases with {@link SnapshotDirectories#finished}. An unfinished one whose
     * writer died is deleted and claimed again.
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_ALREADY_EXISTS} when it exists
     */
    static SandboxLock claimDirectory(Path home, Path named, Path dir, String what, String manifestFile) {
        try {
            Path parent = dir.getParent();
            if (parent.equals(named)) {
                OwnerOnly.directories(home, parent);
                // one whose writer died, or whose removal did, may hold gigabytes (an upper disk, a
                // guest's memory) under a name nobody claims again; only in the home's own directory,
                // never in one the caller named, which is not ours to sweep
                ClaimedDirectory.sweepAllLeftovers(parent, SnapshotDirectories.WRITING_LOCK, ClaimedDirectory.LEFTOVER_AGE);
            } else {
                Files.createDirectories(parent);
            }
            try {
                return SnapshotDirectories.claim(dir);
            } catch (FileAlreadyExistsException e) {
                SnapshotDirectories.Deletion abandoned = SnapshotDirectories.deleteUnlessWritten(dir, manifestFile, false, null);
                if (abandoned != SnapshotDirectories.Deletion.DELETED && abandoned != SnapshotDirectories.Deletion.GONE) {
                    throw e;
                }
                return SnapshotDirectories.claim(dir);
            }
        } catch (FileAlreadyExistsException e) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_ALREADY_EXISTS, what + " " + dir + " already exists");
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot create " + what + " directory " + dir + ": " + e.getMessage(), e);
        }
    }

    /**
     * Writes a snapshot's or checkpoint's manifest, whole or not at all (a directory without one
     * is unfinished) and durably, after the files it describes (which
     * their writers made durable): on disk before it is renamed in, and its directory entry
     * synced after, so a power loss cannot leave a manifest naming files that were lost.
     */
    static void writeManifest(Path file, byte[] manifest) throws IOException {
        OwnerOnly.replace(file, tmp -> {
            try (FileChannel out = FileChannel.open(tmp, StandardOpenOption.WRITE)) {
                ByteBuffer bytes = ByteBuffer.wrap(manifest);
                while (bytes.hasRemaining()) {
                    out.write(bytes);
                }
                out.force(true);
            }
        });
        try (FileChannel dir = FileChannel.open(file.toAbsolutePath().getParent(), StandardOpenOption.READ)) {
            dir.force(true);
        }
    }

    /**
     * Checks that the image a snapshot's upper lies over is still here: its root directory, or
     * its OCI manifest in the cache.
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_IMAGE_MISSING} when it is not
     */
    void checkImage(Snapshot snapshot) {
        checkImage(home, "snapshot '" + snapshot.name() + "'", snapshot.image(), snapshot.imageDigest());
    }

    /** Checks that {@code image} (pinned to {@code imageDigest} when it is an OCI image) is still here, for {@code what}. */
    static void checkImage(Path home, String what, String image, String imageDigest) {
        boolean present = imageDigest != null
                ? new OciImages(home).byManifestDigest(image, imageDigest) != null
                : image != null && Files.isDirectory(imageDirectory(home, what, image));
        if (!present) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_IMAGE_MISSING, what + " lies over image "
                    + image + (imageDigest != null ? " (" + imageDigest + ")" : "")
                    + ", which is no longer " + (imageDigest != null ? "in the image cache; pull it again" : "there"));
        }
    }

    /**
     * Where in a home a directory image may not lie: the runtime's state (other sandboxes' disks
     * and SSH keys, volumes, snapshots, checkpoints, the database). Images of the user's own
     * there (a {@code test-images} directory, say) are fine.
     */
    private static final List<String> HOME_STATE = List.of("sandboxes", "volumes", "snapshots", "checkpoints", "db", "pools");

    /**
     * The directory image a manifest names, refused ({@link ErrorKind#SNAPSHOT_INTEGRITY}) when it
     * is not an absolute path, or is the root, the home, a directory holding the home, or lies in
     * the home's state ({@link #HOME_STATE}): a manifest is a file anyone who could write it may
     * have chosen the guest's root filesystem in.
     */
    private static Path imageDirectory(Path home, String what, String image) {
        Path dir;
        try {
            dir = Path.of(image);
        } catch (java.nio.file.InvalidPathException e) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, what + " names an image that is no path: " + Printable.brief(image, 200));
        }
        if (!dir.isAbsolute()) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, what + " names image " + Printable.brief(image, 200) + ", not an absolute path");
        }
        Path real;
        try {
            real = dir.toRealPath();
        } catch (IOException e) {
            return dir; // missing: reported as a missing image
        }
        Path realHome = RuntimeFiles.realHome(home);
        if (real.getNameCount() == 0 || realHome.startsWith(real) || HOME_STATE.stream().anyMatch(state -> real.startsWith(realHome.resolve(state)))) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, what + " names image " + dir
                    + ", which is the root, holds the microsandbox home " + home + " or lies in its sandboxes, volumes, snapshots,"
                    + " checkpoints or database: no sandbox can have been made over it");
        }
        return dir;
    }

    /**
     * Gives a new sandbox its own copy of the snapshot's upper disk, checked against the
     * integrity hash when one is recorded, and pins it to the snapshot's image.
     */
    void materialize(Snapshot snapshot, SandboxLayout target) {
        materialize(home, "snapshot '" + snapshot.name() + "'", snapshot.upperDisk(), snapshot.integrity(), snapshot.imageDigest(), target);
    }

    /**
     * Copies the upper disk {@code upper} of a {@code what} into a new sandbox, fails with
     * {@link ErrorKind#SNAPSHOT_INTEGRITY} when its content digest is not {@code expectedDigest}
     * (unless that is null), and pins the sandbox to {@code imageDigest} (unless null).
     */
    static void materialize(Path home, String what, Path upper, String expectedDigest, String imageDigest, SandboxLayout target) {
        try {
            if (Files.isSymbolicLink(upper)) {
                // a snapshot's files are its own: a link could stand for another sandbox's disk, or any host file
                throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the upper disk of " + what + " is a symbolic link (" + upper + ")");
            }
            OwnerOnly.directories(home, target.dir());
            if (imageDigest != null) {
                OwnerOnly.write(target.dir().resolve("image.digest"), (imageDigest + "\n").getBytes(StandardCharsets.UTF_8));
            }
            // copied aside, checked, then renamed: a creation cut short leaves no upper a later start would boot
            Path copy = target.dir().resolve(".upper.ext4.part");
            try {
                Files.deleteIfExists(copy);
                String content = SparseFiles.copy(upper, copy, false);
                if (expectedDigest != null && !expectedDigest.equals(content)) {
                    throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the upper disk of " + what
                            + " is corrupt: its content digest is " + content + ", the manifest records " + expectedDigest);
                }
                Files.move(copy, target.upperDisk(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } finally {
                Files.deleteIfExists(copy);
            }
        } catch (NoSuchFileException e) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the upper disk of " + what + " is missing: " + e.getMessage(), e);
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot copy the upper disk of " + what + " into sandbox '"
                    + target.name() + "': " + e.getMessage(), e);
        }
    }

    /** The OCI manifest digest a sandbox is pinned to, or null for a directory image. */
    static String pinnedDigest(SandboxLayout layout) throws IOException {
        Path pin = layout.dir().resolve("image.digest");
        return Files.isRegularFile(pin) ? Files.readString(pin, StandardCharsets.UTF_8).strip() : null;
    }
}

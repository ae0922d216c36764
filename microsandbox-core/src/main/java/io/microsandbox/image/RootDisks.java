package io.microsandbox.image;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.FileLocks;
import io.microsandbox.runtime.HostCommand;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.Posix;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

/**
 * Builds the two disks under a sandbox's overlay root: the shared read-only lower disk made
 * from an image directory (cached by a fingerprint of the tree, so each image is built once),
 * and the per-sandbox writable upper disk (a sparse ext4 file). {@code mke2fs -d} copies
 * owners, modes, symlinks and special files, so the guest sees the image as it is on disk.
 * Both disk files, and the cache directory, are their owner's only ({@code 0600}, {@code 0700}).
 */
public final class RootDisks {
    private static final long MIB = 1024 * 1024;

    private RootDisks() {
    }

    /** The names {@link #lowerDisk} gives the disks it builds: {@link Fingerprint#digest()} + ".ext4". */
    private static final java.util.regex.Pattern CACHED_LOWER_NAME = java.util.regex.Pattern.compile("[0-9a-f]{24}\\.ext4");

    /**
     * The lower disk for {@code imageDir}, built into {@code cacheDir} when not cached yet.
     * Symbolic links on the way to the image are resolved first: the fingerprint walks the
     * tree without following links, and must see the tree mke2fs copies.
     *
     * @throws MicrosandboxException {@link ErrorKind#IMAGE_NOT_FOUND} when the directory does not exist
     */
    public static Path lowerDisk(Path imageDir, Path cacheDir) {
        Path image;
        try {
            image = imageDir.toRealPath();
        } catch (IOException e) {
            image = null;
        }
        if (image == null || !Files.isDirectory(image)) {
            throw new MicrosandboxException(ErrorKind.IMAGE_NOT_FOUND,
                    "image '" + imageDir + "' is not a directory (a local root filesystem directory is expected)");
        }
        try {
            Fingerprint fp = Fingerprint.of(image);
            Path target = cacheDir.resolve(fp.digest() + ".ext4");
            OwnerOnly.directory(cacheDir);
            if (Files.isRegularFile(target)) {
                OwnerOnly.restrictFile(target);
                return target;
            }
            Path treeImage = image;
            // one build per tree at a time, among threads and processes: the others wait and take its disk
            return FileLocks.withLock(cacheDir.resolve("." + fp.digest() + ".lock"), "the root disk build of " + image, () -> {
                if (Files.isRegularFile(target)) {
                    return target;
                }
                // made aside under a name of the tree's, so that what a build killed half-way left is made again
                OwnerOnly.replace(target, cacheDir.resolve("." + fp.digest() + ".ext4.part"), making -> buildLowerExt4(treeImage, fp, making));
                return target;
            });
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot build the root disk of image " + image + ": " + e.getMessage(), e);
        }
    }

    /** Whether {@code fileName} is one {@link #lowerDisk} gives the disks it builds. */
    static boolean isCachedLowerName(String fileName) {
        return CACHED_LOWER_NAME.matcher(fileName).matches();
    }

    /**
     * {@code disk} when it is a lower disk {@link #lowerDisk} built in {@code cacheDir} (a
     * regular file directly in it, named by a fingerprint, followed through any link); null when
     * it is anything else.
     */
    static Path cachedLowerDisk(Path cacheDir, Path disk) {
        try {
            Path real = disk.toRealPath();
            return real.getParent() != null && real.getParent().equals(cacheDir.toRealPath())
                    && isCachedLowerName(real.getFileName().toString())
                    && Files.isRegularFile(real, java.nio.file.LinkOption.NOFOLLOW_LINKS) ? disk : null;
        } catch (IOException e) {
            return null;
        }
    }

    /**
     * Makes {@code disk} (an existing owner-only file) a read-only-to-be ext4 filesystem holding
     * the tree {@code dir} exactly: owners, modes, links, devices, extended attributes.
     */
    public static void buildLowerExt4(Path dir, Path disk) throws IOException {
        buildLowerExt4(dir, Fingerprint.of(dir), disk);
    }

    private static void buildLowerExt4(Path dir, Fingerprint fp, Path disk) throws IOException {
        long inodes = fp.entries() + fp.entries() / 5 + 1024;
        long bytes = fp.bytes() + fp.bytes() / 4 + 64 * MIB + inodes * 256;
        mke2fs(List.of("-t", "ext4", "-O", "^has_journal", "-m", "0", "-b", "4096",
                "-N", Long.toString(inodes), "-L", "msb-lower", "-d", dir.toString(),
                disk.toString(), (bytes / 1024) + "k"));
        OwnerOnly.restrictFile(disk);
    }

    /**
     * Creates the empty writable upper disk, a sparse ext4 file of {@code sizeMib}, readable
     * and writable by its owner only ({@code 0600}).
     */
    public static void createUpperDisk(Path file, int sizeMib) {
        createDataDisk(file, sizeMib, "msb-upper");
    }

    /**
     * Makes {@code file} ({@code 0600}) an empty ext4 data disk of {@code sizeMib} MiB, sparse,
     * with no reserved blocks: made beside it and renamed into place once whole, so that a
     * creation killed or failed half-way leaves no disk a later start would take for a good one.
     */
    public static void createDataDisk(Path file, int sizeMib, String label) {
        try {
            // created 0600 before mke2fs sees it: mke2fs would create it with the umask's mode
            OwnerOnly.replace(file, making -> mke2fsSized(making, sizeMib, List.of("-t", "ext4", "-m", "0", "-L", label,
                    "-E", "lazy_itable_init=1,lazy_journal_init=1")));
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot create the disk " + file + ": " + e.getMessage(), e);
        }
    }

    /** Makes {@code file} an upper disk of {@code sizeMib} holding the tree {@code dir} (overlay {@code root/} and {@code work/}). */
    static void mke2fsUpper(Path file, int sizeMib, Path dir) throws IOException {
        mke2fsSized(file, sizeMib, List.of("-t", "ext4", "-m", "0", "-L", "msb-upper", "-d", dir.toString(),
                "-E", "lazy_itable_init=1,lazy_journal_init=1"));
        OwnerOnly.restrictFile(file);
    }

    /**
     * mke2fs with {@code args} on {@code file} made {@code sizeMib} long first (sparse): mke2fs
     * then discards it, knows that a file's holes read as zeros and marks the inode tables
     * zeroed. Given an empty file it leaves them to be zeroed by the guest's kernel in the
     * background, which wrote 64 MiB (a 4 GiB disk's tables) in every new sandbox's first
     * seconds, under emulation, and allocated them in the file.
     */
    private static void mke2fsSized(Path file, int sizeMib, List<String> args) throws IOException {
        try (java.io.RandomAccessFile sized = new java.io.RandomAccessFile(file.toFile(), "rw")) {
            sized.setLength((long) sizeMib * MIB);
        }
        List<String> all = new ArrayList<>(args);
        all.add(file.toString());
        all.add(sizeMib + "M");
        mke2fs(all);
    }

    /** Makes an upper disk a previous run left {@code 0600}, should an older version have made it wider. */
    public static void restrictUpperDisk(Path file) {
        try {
            OwnerOnly.restrictFile(file);
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot protect the upper disk " + file + ": " + e.getMessage(), e);
        }
    }

    private static void mke2fs(List<String> args) throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(e2fsprogsTool("mke2fs"));
        cmd.add("-q");
        cmd.add("-F");
        cmd.addAll(args);
        HostCommand.Result r = HostCommand.run(cmd, Duration.ofMinutes(10), 1 << 20);
        if (!r.succeeded()) {
            throw new IOException("mke2fs failed: " + r.output().strip());
        }
    }

    /** An e2fsprogs tool ({@code mke2fs}, {@code debugfs}) wherever the distribution puts it. */
    public static String e2fsprogsTool(String name) {
        for (String dir : List.of("/usr/sbin", "/sbin", "/usr/bin", "/bin")) {
            Path p = Path.of(dir, name);
            if (Files.isExecutable(p)) {
                return p.toString();
            }
        }
        throw new MicrosandboxException(ErrorKind.BOOT_FAILED,
                name + " not found (package e2fsprogs); run scripts/setup.sh to install what the runtime needs");
    }

    /**
     * Identity of an image tree: path, type, owner, mode, size, mtime and ctime of every entry
     * (ctime moves on any change of content, owner, mode or link target).
     */
    record Fingerprint(String digest, long entries, long bytes) {
        static Fingerprint of(Path root) throws IOException {
            byte[] records = Posix.statTree(root);
            MessageDigest sha;
            try {
                sha = MessageDigest.getInstance("SHA-256");
            } catch (NoSuchAlgorithmException e) {
                throw new IllegalStateException(e);
            }
            sha.update(root.toString().getBytes(StandardCharsets.UTF_8));
            sha.update(records);
            ByteBuffer buf = ByteBuffer.wrap(records).order(ByteOrder.LITTLE_ENDIAN);
            long entries = 0;
            long bytes = 0;
            int pos = 0;
            while (pos < records.length) {
                while (records[pos] != 0) {
                    pos++;
                }
                long size = buf.getLong(pos + 1 + 24);
                bytes += (size + 4095) / 4096 * 4096;
                entries++;
                pos += 1 + 48;
            }
            return new Fingerprint(HexFormat.of().formatHex(sha.digest(), 0, 12), entries, bytes);
        }
    }
}

package io.microsandbox.runtime;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileAttribute;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;

/**
 * Files and directories that only their owner can use. Everything under the microsandbox
 * home goes through here: the database, {@code supervisor.json} (which holds environment
 * values), the disks, the logs and the socket directories hold secrets or give root in a
 * guest, so they must not follow the process's umask (022 makes files world-readable, 002
 * group-writable). Directories are {@code 0700}, files {@code 0600}, executables
 * {@code 0700}, set explicitly: created with those modes, and set again when the umask took
 * bits away or an older version left wider ones.
 */
public final class OwnerOnly {
    /** {@code rwx------}, for directories. */
    public static final Set<PosixFilePermission> DIRECTORY = PosixFilePermissions.fromString("rwx------");
    /** {@code rw-------}, for files. */
    public static final Set<PosixFilePermission> FILE = PosixFilePermissions.fromString("rw-------");
    /** {@code rwx------}, for programs and libraries. */
    public static final Set<PosixFilePermission> EXECUTABLE = DIRECTORY;

    private static final FileAttribute<Set<PosixFilePermission>> DIRECTORY_ATTRIBUTE = PosixFilePermissions.asFileAttribute(DIRECTORY);
    private static final FileAttribute<Set<PosixFilePermission>> FILE_ATTRIBUTE = PosixFilePermissions.asFileAttribute(FILE);

    private OwnerOnly() {
    }

    /**
     * Creates {@code dir} and its missing parents, each {@code 0700}, and makes {@code dir} and
     * every directory above it up to {@code top} (both included) {@code 0700}.
     *
     * @param top {@code dir} or one of its ancestors, e.g. the home
     * @return {@code dir}
     * @throws IllegalArgumentException if {@code top} is not {@code dir} or above it
     */
    public static Path directories(Path top, Path dir) throws IOException {
        if (!dir.startsWith(top)) {
            throw new IllegalArgumentException(dir + " is not under " + top);
        }
        Files.createDirectories(dir, DIRECTORY_ATTRIBUTE);
        for (Path p = dir; p != null && p.startsWith(top); p = p.getParent()) {
            requireOwnedByUs(p);
            restrict(p, DIRECTORY);
        }
        return dir;
    }

    /** {@link #directories(Path, Path)} of {@code dir} alone: missing parents are created {@code 0700} too. */
    public static Path directory(Path dir) throws IOException {
        return directories(dir, dir);
    }

    /**
     * Opens {@code file} as {@link FileChannel#open(Path, Set, FileAttribute[])} does, creating
     * it {@code 0600} with {@link StandardOpenOption#CREATE}; an existing file is made
     * {@code 0600}.
     */
    public static FileChannel open(Path file, OpenOption... options) throws IOException {
        FileChannel channel = FileChannel.open(file, new HashSet<>(Arrays.asList(options)), FILE_ATTRIBUTE);
        try {
            restrict(file, FILE);
        } catch (IOException | RuntimeException e) {
            channel.close();
            throw e;
        }
        return channel;
    }

    /** An output stream on {@link #open(Path, OpenOption...)}; give {@code CREATE} and {@code APPEND} or {@code TRUNCATE_EXISTING}. */
    public static OutputStream newOutputStream(Path file, OpenOption... options) throws IOException {
        OpenOption[] withWrite = Arrays.copyOf(options, options.length + 1);
        withWrite[options.length] = StandardOpenOption.WRITE;
        return Channels.newOutputStream(open(file, withWrite));
    }

    /**
     * Writes {@code bytes} to {@code file}, {@code 0600}, whole or not at all: into a new file
     * beside it, renamed over it. A file cut short by a killed process is never left under the
     * name, and a descriptor another user opened on an older, wider file does not see the new bytes.
     */
    public static void write(Path file, byte[] bytes) throws IOException {
        replace(file, tmp -> {
            try (OutputStream out = Files.newOutputStream(tmp, StandardOpenOption.WRITE)) {
                out.write(bytes);
            }
        });
    }

    /** What fills a new file, given its path. */
    @FunctionalInterface
    public interface FileMaker {
        void make(Path file) throws IOException;
    }

    /**
     * Replaces {@code file} whole: {@code maker} fills a new, empty {@code 0600} file beside it,
     * which is then renamed over it; on failure nothing changes under the name and the new file
     * goes.
     */
    public static void replace(Path file, FileMaker maker) throws IOException {
        replaceFrom(createTempFile(file.toAbsolutePath().getParent(), "." + file.getFileName() + ".", ".part"), file, maker);
    }

    /**
     * {@link #replace(Path, FileMaker)} made aside under {@code aside}, a name of the caller's
     * beside {@code file}, so that what a run killed half-way left there is made again rather
     * than left for ever: for a file that one maker at a time makes (the caller holds its lock).
     */
    public static void replace(Path file, Path aside, FileMaker maker) throws IOException {
        Files.deleteIfExists(aside);
        replaceFrom(createFile(aside), file, maker);
    }

    private static void replaceFrom(Path tmp, Path file, FileMaker maker) throws IOException {
        try {
            maker.make(tmp);
            restrict(tmp, FILE); // a tool that wrote it may have widened it
            Files.move(tmp, file, java.nio.file.StandardCopyOption.ATOMIC_MOVE, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /**
     * Creates a new empty file {@code 0600}.
     *
     * @throws FileAlreadyExistsException if it exists
     */
    public static Path createFile(Path file) throws IOException {
        Files.createFile(file, FILE_ATTRIBUTE);
        restrict(file, FILE);
        return file;
    }

    /** A new empty file {@code 0600} in {@code dir}, as {@link Files#createTempFile(Path, String, String, FileAttribute[])}. */
    public static Path createTempFile(Path dir, String prefix, String suffix) throws IOException {
        Path file = Files.createTempFile(dir, prefix, suffix, FILE_ATTRIBUTE);
        restrict(file, FILE);
        return file;
    }

    /** Makes an existing file {@code 0600}, e.g. one another program wrote. */
    public static void restrictFile(Path file) throws IOException {
        restrict(file, FILE);
    }

    /** Makes {@code file} {@code 0600} if it exists; for files other programs create on their own. */
    public static void restrictFileIfExists(Path file) throws IOException {
        try {
            restrict(file, FILE);
        } catch (NoSuchFileException e) {
            // not there: nothing to protect
        }
    }

    /**
     * Sets the permissions of {@code path} to exactly {@code wanted} unless they already are
     * (a symbolic link is followed: a home that is a link protects its target).
     */
    public static void restrict(Path path, Set<PosixFilePermission> wanted) throws IOException {
        Set<PosixFilePermission> current = Files.getPosixFilePermissions(path);
        if (current.equals(wanted)) {
            return;
        }
        try {
            Files.setPosixFilePermissions(path, wanted);
        } catch (IOException e) {
            throw new IOException("cannot make " + path + " accessible to its owner only (" + PosixFilePermissions.toString(wanted)
                    + ", it is " + PosixFilePermissions.toString(current) + "): " + e.getMessage(), e);
        }
    }

    /**
     * Refuses a directory another user owns: a home under /tmp that someone else created
     * first would otherwise be theirs to read and to plant files in.
     */
    static void requireOwnedByUs(Path dir) throws IOException {
        // /proc/self belongs to this process's effective user
        int us = (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid");
        // a link is its owner's to point elsewhere later: one of another user (root aside) is refused
        // even when it points to a directory of ours today
        int linkOwner = (Integer) Files.getAttribute(dir, "unix:uid", java.nio.file.LinkOption.NOFOLLOW_LINKS);
        if (Files.isSymbolicLink(dir) && linkOwner != us && linkOwner != 0) {
            throw new IOException(dir + " is a symbolic link of uid " + linkOwner + ", not of this process's uid " + us
                    + "; choose a home of your own (-Dmicrosandbox.home or MSB_HOME)");
        }
        int owner = (Integer) Files.getAttribute(dir, "unix:uid");
        if (owner != us) {
            throw new IOException(dir + " belongs to uid " + owner + ", not to this process's uid " + us
                    + "; choose a home of your own (-Dmicrosandbox.home or MSB_HOME)");
        }
    }

    /** Whether permissions grant nothing to the group or to others. */
    public static boolean isOwnerOnly(Set<PosixFilePermission> permissions) {
        for (PosixFilePermission p : permissions) {
            if (!p.name().startsWith("OWNER_")) {
                return false;
            }
        }
        return true;
    }
}

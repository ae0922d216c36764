package io.microsandbox;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.Printable;
import io.microsandbox.runtime.agent.AgentClient;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.agent.Protocol;
import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.lang.ref.Cleaner;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermission;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * Files in a running sandbox, from {@link Sandbox#fs()}. Paths are guest paths, resolved by
 * the guest inside the sandbox's root (a relative path from the working directory). Every
 * operation runs in the guest as the sandbox's user, or as {@link #user(String)}; a file
 * written as a user belongs to that user.
 *
 * <p>File data moves in chunks of {@value Protocol#FS_CHUNK_BYTES} bytes under the same
 * credit scheme as command output and stdin: {@link #readStream} has at most
 * {@value Protocol#FS_WINDOW_BYTES} bytes in flight, {@link #writeStream} at most
 * {@value Protocol#FS_WRITE_WINDOW_BYTES}, so files of any size pass without their size in heap, and
 * a slow reader slows the guest down. A write is on disk (fsynced) once the call (or the
 * stream's {@code close}) returns.
 *
 * <p>Failures are {@link FilesystemException}s ({@link ErrorKind#PATH_NOT_FOUND},
 * {@link ErrorKind#FILESYSTEM} with the guest errno); a sandbox that is not running gives
 * {@link ErrorKind#SANDBOX_NOT_RUNNING}.
 */
public final class SandboxFs {
    /** How long a one-shot operation (stat, mkdir, a recursive copy or remove) may take. */
    static final Duration OP_TIMEOUT = Duration.ofMinutes(10);
    /** How long a stream waits for the guest to move without any progress before it gives up. */
    static final Duration STALL_TIMEOUT = Duration.ofMinutes(2);
    /** Deepest directory nesting {@link #copyToHost} follows. */
    public static final int MAX_COPY_DEPTH = 256;
    /** Most files, directories and links one {@link #copyToHost} makes. */
    public static final int MAX_COPY_ENTRIES = 1_000_000;
    /** File data one {@link #copyToHost(String, Path)} copies at most: 16 GiB. */
    public static final long DEFAULT_COPY_MAX_BYTES = 16L << 30;
    /** Characters of the listings {@link #copyToHost} holds at once, for the directories it is inside. */
    static final long MAX_COPY_PENDING_CHARS = 32L << 20;
    /** Group and others lose write permission on the host, as a umask of 022 gives. */
    private static final int HOST_COPY_MODE_MASK = 0755;

    /** The agent feature of {@code fs.write}'s {@code exclusive} (see docs/protocol.md). */
    static final String FS_EXCLUSIVE = "fs_exclusive";

    private final String sandbox;
    private final AgentClient client;
    private final String user;
    private final Runnable usable;

    SandboxFs(String sandbox, AgentClient client, String user, Runnable usable) {
        this.sandbox = sandbox;
        this.client = client;
        this.user = user;
        this.usable = usable;
    }

    /** The same filesystem, with every operation run as {@code user} ({@code name}, {@code uid}, {@code name:group}, {@code uid:gid}). */
    public SandboxFs user(String user) {
        return new SandboxFs(sandbox, client, user, usable);
    }

    // ---- whole files ----

    /** The most {@link #read(String)} collects: the guest decides how much a file (or /dev/zero) gives. */
    public static final long DEFAULT_MAX_READ_BYTES = 256L << 20;

    /**
     * The whole file, at most {@link #DEFAULT_MAX_READ_BYTES} ({@link #readStream} or
     * {@link #copyToHost} for bigger ones).
     *
     * @throws MicrosandboxException {@link ErrorKind#FILESYSTEM} when the file gives more
     */
    public byte[] read(String path) {
        return read(path, DEFAULT_MAX_READ_BYTES);
    }

    /**
     * The whole file, at most {@code maxBytes} of it: a guest file that gives more (a device, a
     * file that keeps growing) is abandoned rather than fill the host's heap.
     *
     * @throws MicrosandboxException {@link ErrorKind#FILESYSTEM} when the file gives more than {@code maxBytes}
     */
    public byte[] read(String path, long maxBytes) {
        if (maxBytes < 0 || maxBytes > Integer.MAX_VALUE - 8) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "maxBytes must be between 0 and " + (Integer.MAX_VALUE - 8) + ": " + maxBytes);
        }
        try (InputStream in = readStream(path)) {
            byte[] data = in.readNBytes((int) maxBytes);
            if (in.read() >= 0) {
                throw new MicrosandboxException(ErrorKind.FILESYSTEM, path + " in sandbox '" + sandbox + "' gives more than "
                        + maxBytes + " bytes: use read(path, maxBytes) with a larger limit, readStream or copyToHost");
            }
            return data;
        } catch (IOException e) {
            throw unwrap(e, path);
        }
    }

    /** The whole file as UTF-8 text. */
    public String readString(String path) {
        return new String(read(path), StandardCharsets.UTF_8);
    }

    /**
     * Creates or replaces the file with {@code data} (mode 0644 for a new file; a replaced file
     * keeps its mode, owner and group, and a link is followed to its file); durable on return.
     * Whole or nothing: the guest writes a temporary beside the file and renames it over the
     * file once complete, so a write that fails or is given up leaves the file as it was (a
     * file with a second name, or in a directory the user may not add to, is written in place).
     */
    public void write(String path, byte[] data) {
        write(path, data, null);
    }

    /** Like {@link #write(String, byte[])}, setting the permission bits to {@code mode}. */
    public void write(String path, byte[] data, Integer mode) {
        try (OutputStream out = writeStream(path, mode)) {
            out.write(data);
        } catch (IOException e) {
            throw unwrap(e, path);
        }
    }

    /** {@link #write(String, byte[])} of {@code text} as UTF-8. */
    public void writeString(String path, String text) {
        write(path, text.getBytes(StandardCharsets.UTF_8));
    }

    // ---- streams ----

    /**
     * A stream of the file's bytes. The call returns once the guest has opened the file, so a
     * missing file fails here. Closing it early abandons the rest.
     */
    public InputStream readStream(String path) {
        return new ReadStream(path, request("read", path));
    }

    /**
     * The read window of each of {@code open} concurrent reads of one connection: together they
     * keep about {@link Protocol#FS_WINDOW_BYTES} in flight (the supervisor drops a client that
     * leaves 8 MiB unread), each at least one chunk.
     */
    static long readWindow(int open) {
        return Math.max(Protocol.FS_CHUNK_BYTES, Protocol.FS_WINDOW_BYTES / Math.max(1, open));
    }

    /**
     * A stream that creates or replaces the file, whole or nothing like {@link #write(String, byte[])};
     * {@code close()} returns once it is on disk. A stream closed while a write is under way
     * (from another thread) or after a failed write gives the file up: the file stays as it was.
     * When what feeds the stream fails, call {@link WriteStream#abandon()} rather than
     * {@code close()}, which would store the part written as the whole file.
     */
    public WriteStream writeStream(String path) {
        return writeStream(path, null);
    }

    /** Like {@link #writeStream(String)}, setting the permission bits to {@code mode}. */
    public WriteStream writeStream(String path, Integer mode) {
        return new WriteStream(path, writeRequest(path, mode, false));
    }

    /**
     * A stream that creates the file, never replacing one: like {@link #writeStream(String, Integer)}
     * ({@code mode} null for 0644), but a file, directory or link already at {@code path}, or put
     * there by the guest before the stream is closed, fails the write with a
     * {@link FilesystemException} whose {@link FilesystemException#reason() reason} is
     * {@code exists} (at once, or at {@code close()}), and leaves that file as it is. (On a
     * guest filesystem with neither {@code RENAME_NOREPLACE} nor hard links, a file made in the
     * instant between the agent's last look and its rename would still be replaced.)
     *
     * @throws MicrosandboxException {@link ErrorKind#UNSUPPORTED_OPERATION} when the sandbox's
     *         guest agent predates exclusive creation (a sandbox started by an earlier SDK)
     */
    public WriteStream createStream(String path, Integer mode) {
        requireAgentFeature(FS_EXCLUSIVE, "creating a file exclusively");
        return new WriteStream(path, writeRequest(path, mode, true));
    }

    /**
     * Refuses a request that needs an agent feature the sandbox's agent did not name (one of a
     * sandbox started by an earlier SDK): it would ignore the request's new field, not refuse it.
     */
    private void requireAgentFeature(String feature, String what) {
        if (!agentHas(feature)) {
            throw new MicrosandboxException(ErrorKind.UNSUPPORTED_OPERATION, "sandbox '" + sandbox + "' runs a guest agent without "
                    + what + " (it was started by an earlier microsandbox); stop and start it to use this");
        }
    }

    /**
     * Whether {@link #create}/{@link #createStream} work in this sandbox: false when its guest
     * agent predates exclusive creation (a sandbox started by an earlier SDK).
     */
    public boolean canCreateExclusively() {
        return agentHas(FS_EXCLUSIVE);
    }

    private boolean agentHas(String feature) {
        ObjectNode welcome = client.welcome();
        if (welcome != null) {
            for (JsonNode f : welcome.path("features")) {
                if (feature.equals(f.asText())) {
                    return true;
                }
            }
        }
        return false;
    }

    /** {@link #createStream} of {@code data} in one call: the file is created with it, or the call fails. */
    public void create(String path, byte[] data, Integer mode) {
        try (OutputStream out = createStream(path, mode)) {
            out.write(data);
        } catch (IOException e) {
            throw unwrap(e, path);
        }
    }

    private ObjectNode writeRequest(String path, Integer mode, boolean exclusive) {
        ObjectNode p = request("write", path);
        if (mode != null) {
            p.put("mode", mode & 07777);
        }
        if (exclusive) {
            p.put("exclusive", true);
        }
        return p;
    }

    // ---- metadata and tree operations ----

    /** The entries of a directory, without {@code .} and {@code ..}, in directory order. */
    public List<FsEntry> list(String path) {
        return list(path, null);
    }

    /**
     * {@link #list(String)}, adding to {@code notUtf8} (when not null) the entries whose name or
     * link target is not UTF-8: their {@link FsEntry} holds U+FFFD in its place, a path that does
     * not name them in the guest.
     */
    private List<FsEntry> list(String path, List<FsEntry> notUtf8) {
        JsonNode entries = call(request("list", path)).payload().path("entries");
        List<FsEntry> out = new ArrayList<>();
        String prefix = path.endsWith("/") ? path : path + "/";
        for (JsonNode e : entries) {
            String name = bytesText(e.get("name"));
            if (name.isEmpty()) {
                continue; // removed while the directory was read
            }
            if (name.contains("/") || name.equals(".") || name.equals("..") || name.indexOf('\0') >= 0) {
                // a caller joining it to a path of its own would leave the directory
                throw new MicrosandboxException(ErrorKind.FILESYSTEM, "the guest listed an invalid name in " + path + ": " + Json.brief(Json.tree(name)));
            }
            FsEntry entry = new FsEntry(prefix + name, name, FsEntryKind.fromWire(e.path("kind").asText(null)), e.path("size").asLong(),
                    e.path("mode").asInt(), Instant.ofEpochMilli(e.path("mtime_ms").asLong()),
                    e.has("target") ? bytesText(e.get("target")) : null);
            if (notUtf8 != null && (!isUtf8(e.get("name")) || !isUtf8(e.get("target")))) {
                notUtf8.add(entry);
            }
            out.add(entry);
        }
        return out;
    }

    /** Whether a name the guest sent (bytes: Linux names need not be UTF-8) decodes as UTF-8; true for text and for none. */
    private static boolean isUtf8(JsonNode n) {
        if (n == null || !n.isBinary()) {
            return true;
        }
        try {
            StandardCharsets.UTF_8.newDecoder().onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)
                    .onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT).decode(java.nio.ByteBuffer.wrap(n.binaryValue()));
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    /** Size, mode, times and kind of the file, following symbolic links. */
    public FsStat stat(String path) {
        return toStat(path, call(request("stat", path)).payload());
    }

    /** Like {@link #stat} without following a final symbolic link. */
    public FsStat lstat(String path) {
        ObjectNode p = request("stat", path);
        p.put("follow", false);
        return toStat(path, call(p).payload());
    }

    /** Whether the path exists (a dangling symbolic link exists). */
    public boolean exists(String path) {
        try {
            lstat(path);
            return true;
        } catch (MicrosandboxException e) {
            if (e.kind() == ErrorKind.PATH_NOT_FOUND) {
                return false;
            }
            throw e;
        }
    }

    /** Creates the directory and any missing parents; an existing directory is fine. */
    public void mkdir(String path) {
        mkdir(path, null);
    }

    /** Like {@link #mkdir(String)}, setting the directory's permission bits to {@code mode}. */
    public void mkdir(String path, Integer mode) {
        ObjectNode p = request("mkdir", path);
        p.put("parents", true);
        if (mode != null) {
            p.put("mode", mode & 07777);
        }
        call(p);
    }

    /** Removes a file or symbolic link (a directory fails with {@code is_directory}). */
    public void remove(String path) {
        call(request("remove", path));
    }

    /** Removes an empty directory. */
    public void removeDir(String path) {
        removeDir(path, false);
    }

    /**
     * Removes a directory, with everything in it when {@code recursive}. A recursive removal
     * does not go into what is mounted below the directory (a volume keeps its files): the
     * mount point stays, and the call then fails with {@code not_empty}.
     */
    public void removeDir(String path, boolean recursive) {
        ObjectNode p = request("rmdir", path);
        p.put("recursive", recursive);
        call(p);
    }

    /**
     * Copies a file, symbolic link or directory tree (modes and links kept) inside the guest;
     * a tree's copy holds what lies on its own filesystem (not what is mounted below it).
     */
    public void copy(String from, String to) {
        ObjectNode p = request("copy", from);
        p.put("to", to);
        call(p);
    }

    /** Renames (moves) within the guest, replacing a file at {@code to}. */
    public void rename(String from, String to) {
        ObjectNode p = request("rename", from);
        p.put("to", to);
        call(p);
    }

    /**
     * Creates a symbolic link at {@code path} pointing to {@code target}: the link first, as
     * {@link Files#createSymbolicLink} takes them ({@link Patch#symlink} takes the target first,
     * as the Go SDK's patch does).
     */
    public void symlink(String path, String target) {
        ObjectNode p = request("symlink", path);
        p.put("target", target);
        call(p);
    }

    // ---- host <-> guest ----

    /**
     * Copies a host file, symbolic link or directory tree to {@code guestPath} (the name of the
     * copy), keeping permission bits and symbolic links (not followed).
     */
    public void copyFromHost(Path hostPath, String guestPath) {
        try {
            if (Files.isSymbolicLink(hostPath)) {
                symlink(guestPath, Files.readSymbolicLink(hostPath).toString());
            } else if (Files.isDirectory(hostPath, LinkOption.NOFOLLOW_LINKS)) {
                mkdir(guestPath, mode(hostPath) | 0700);
                try (DirectoryStream<Path> children = Files.newDirectoryStream(hostPath)) {
                    for (Path child : children) {
                        copyFromHost(child, join(guestPath, child.getFileName().toString()));
                    }
                }
                mkdir(guestPath, mode(hostPath));
            } else if (Files.isRegularFile(hostPath, LinkOption.NOFOLLOW_LINKS)) {
                try (InputStream in = Files.newInputStream(hostPath, LinkOption.NOFOLLOW_LINKS)) {
                    WriteStream out = new WriteStream(guestPath, writeRequest(guestPath, mode(hostPath), false));
                    try {
                        in.transferTo(out);
                    } catch (IOException | RuntimeException e) {
                        // the host's file failed mid-way: the guest's copy is abandoned, not stored cut short
                        out.abandon();
                        throw e;
                    }
                    out.close();
                }
            } else if (!Files.exists(hostPath, LinkOption.NOFOLLOW_LINKS)) {
                throw new MicrosandboxException(ErrorKind.PATH_NOT_FOUND, "host path " + hostPath + " does not exist");
            } else {
                throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, hostPath + " is neither a file, a directory nor a symbolic link");
            }
        } catch (IOException e) {
            throw unwrap(e, guestPath);
        }
    }

    /**
     * Copies a guest file, symbolic link or directory tree to {@code hostPath} (the name of the
     * copy), keeping symbolic links and permission bits (less write permission for group and
     * others, as a umask of 022 gives), at most {@link #DEFAULT_COPY_MAX_BYTES} of file data.
     * Names from the guest are checked, and nothing is written through a symbolic link. Each
     * file appears whole or not at all (written to a temporary in the same directory, then renamed
     * over an existing one); a path that exists and is not a regular file (a link, a fifo, a
     * device) is not replaced; a tree that fails part-way keeps the files already copied.
     *
     * @throws MicrosandboxException {@link ErrorKind#FILESYSTEM} when the tree holds more than
     *         {@link #MAX_COPY_ENTRIES} entries or {@link #DEFAULT_COPY_MAX_BYTES}, is deeper than
     *         {@link #MAX_COPY_DEPTH}, or the guest describes it impossibly; the guest's errors
     *         as {@link FilesystemException}s; {@link ErrorKind#IO} naming both paths when the
     *         host's side fails
     */
    public void copyToHost(String guestPath, Path hostPath) {
        copyToHost(guestPath, hostPath, DEFAULT_COPY_MAX_BYTES);
    }

    /** Like {@link #copyToHost(String, Path)}, copying at most {@code maxBytes} of file data. */
    public void copyToHost(String guestPath, Path hostPath, long maxBytes) {
        if (maxBytes < 0) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "maxBytes must not be negative");
        }
        try {
            FsStat st = lstat(guestPath);
            if (st.kind() == FsEntryKind.OTHER) {
                throw new MicrosandboxException(ErrorKind.FILESYSTEM, guestPath + " is neither a file, a directory nor a symbolic link");
            }
            new HostCopy(maxBytes).copy(guestPath, st.kind(), st.mode(), st.target(), hostPath, 0);
        } catch (IOException e) {
            if (e.getCause() instanceof MicrosandboxException || e instanceof InterruptedIOException) {
                throw unwrap(e, guestPath);
            }
            // the host's side failed (a missing directory, a full disk): say so, with both paths
            throw new MicrosandboxException(ErrorKind.IO, "cannot copy " + guestPath + " of sandbox '" + sandbox + "' to " + hostPath + ": " + e.getMessage(), e);
        }
    }

    /** One {@link #copyToHost} under way: what it has used of its limits. */
    private final class HostCopy {
        private final long maxBytes;
        private long bytes;
        private long entries;
        /** Characters of names and targets listed and not yet copied, in the directories open above. */
        private long pendingChars;

        HostCopy(long maxBytes) {
            this.maxBytes = maxBytes;
        }

        void copy(String guestPath, FsEntryKind kind, int mode, String target, Path hostPath, int depth) throws IOException {
            if (depth > MAX_COPY_DEPTH) {
                // a real tree is not this deep; a guest that lies about its directories could make it endless
                throw new MicrosandboxException(ErrorKind.FILESYSTEM, guestPath + " is more than " + MAX_COPY_DEPTH + " directories deep");
            }
            if (++entries > MAX_COPY_ENTRIES) {
                throw new MicrosandboxException(ErrorKind.FILESYSTEM, "cannot copy " + guestPath + ": the tree has more than " + MAX_COPY_ENTRIES + " entries");
            }
            switch (kind) {
                case SYMLINK -> Files.createSymbolicLink(hostPath, linkTarget(guestPath, target));
                case DIRECTORY -> directory(guestPath, mode, hostPath, depth);
                case FILE -> file(guestPath, mode, hostPath);
                default -> {
                    // devices, sockets and fifos within a tree are not copied
                }
            }
        }

        private void directory(String guestPath, int mode, Path hostPath, int depth) throws IOException {
            if (!Files.isDirectory(hostPath, LinkOption.NOFOLLOW_LINKS)) {
                Files.createDirectory(hostPath);
            }
            Files.setPosixFilePermissions(hostPath, permissions(0700));
            List<FsEntry> notUtf8 = new ArrayList<>();
            List<FsEntry> listed = list(guestPath, notUtf8);
            if (!notUtf8.isEmpty()) {
                // decoded, such a name names nothing in the guest (nor would a target on the host): said before any of it is copied
                throw new MicrosandboxException(ErrorKind.FILESYSTEM, "cannot copy " + guestPath + ": the guest name or link target of "
                        + Printable.brief(notUtf8.get(0).path(), 200) + (notUtf8.size() > 1 ? " and " + (notUtf8.size() - 1) + " more" : "")
                        + " is not UTF-8; rename it in the guest");
            }
            long listedChars = 0;
            for (FsEntry e : listed) {
                listedChars += chars(e);
            }
            pendingChars += listedChars;
            if (pendingChars > MAX_COPY_PENDING_CHARS) {
                // what the directories above still hold: a guest listing huge directories at every level would fill the heap
                throw new MicrosandboxException(ErrorKind.FILESYSTEM, "cannot copy " + guestPath + ": the listings of the directories being copied hold more than "
                        + MAX_COPY_PENDING_CHARS + " characters");
            }
            try {
                for (int i = 0; i < listed.size(); i++) {
                    FsEntry e = listed.get(i);
                    listed.set(i, null);
                    long c = chars(e);
                    pendingChars -= c;
                    listedChars -= c;
                    copy(e.path(), e.kind(), e.mode(), e.target(), hostPath.resolve(e.name()), depth + 1);
                }
            } finally {
                pendingChars -= listedChars;
            }
            Files.setPosixFilePermissions(hostPath, permissions(mode & HOST_COPY_MODE_MASK));
        }

        private static long chars(FsEntry e) {
            return e.path().length() + (e.target() == null ? 0 : e.target().length());
        }

        /** The file into a temporary beside it, renamed over {@code hostPath} once whole: a failure leaves no file cut short. */
        private void file(String guestPath, int mode, Path hostPath) throws IOException {
            if (Files.exists(hostPath, LinkOption.NOFOLLOW_LINKS) && !Files.isRegularFile(hostPath, LinkOption.NOFOLLOW_LINKS)) {
                // a link is not written through; a device or fifo is not replaced by a file
                throw new java.nio.file.FileSystemException(hostPath.toString(), null, "exists and is not a regular file");
            }
            Path part = Files.createTempFile(hostPath.toAbsolutePath().getParent(), ".msb-copy-", ".part");
            try {
                try (InputStream in = readStream(guestPath); OutputStream out = Files.newOutputStream(part, StandardOpenOption.WRITE)) {
                    byte[] buf = new byte[Protocol.FS_CHUNK_BYTES];
                    int n;
                    while ((n = in.read(buf)) > 0) {
                        bytes += n;
                        if (bytes > maxBytes) {
                            throw new MicrosandboxException(ErrorKind.FILESYSTEM, "cannot copy " + guestPath + ": more than " + maxBytes
                                    + " bytes of file data (copyToHost(guestPath, hostPath, maxBytes) takes another limit)");
                        }
                        out.write(buf, 0, n);
                    }
                }
                Files.setPosixFilePermissions(part, permissions(mode & HOST_COPY_MODE_MASK));
                Files.move(part, hostPath, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            } finally {
                Files.deleteIfExists(part);
            }
        }
    }

    private static Path linkTarget(String guestPath, String target) {
        try {
            if (target == null || target.isEmpty()) {
                throw new java.nio.file.InvalidPathException(String.valueOf(target), "empty");
            }
            return Path.of(target);
        } catch (java.nio.file.InvalidPathException e) {
            throw new MicrosandboxException(ErrorKind.FILESYSTEM, "the guest gave the symbolic link " + guestPath + " an invalid target");
        }
    }

    private static String join(String dir, String name) {
        return dir.endsWith("/") ? dir + name : dir + "/" + name;
    }

    private static int mode(Path p) throws IOException {
        int m = 0;
        for (PosixFilePermission perm : Files.getPosixFilePermissions(p, LinkOption.NOFOLLOW_LINKS)) {
            m |= 1 << (8 - perm.ordinal());
        }
        return m;
    }

    private static Set<PosixFilePermission> permissions(int mode) {
        Set<PosixFilePermission> set = EnumSet.noneOf(PosixFilePermission.class);
        for (PosixFilePermission perm : PosixFilePermission.values()) {
            if ((mode & (1 << (8 - perm.ordinal()))) != 0) {
                set.add(perm);
            }
        }
        return set;
    }

    // ---- plumbing ----

    private ObjectNode request(String op, String path) {
        if (path == null || path.isEmpty()) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "path must not be empty");
        }
        ObjectNode p = Json.object();
        p.put("op", op);
        p.put("path", path);
        if (user != null) {
            p.put("user", user);
        }
        return p;
    }

    private FsStat toStat(String path, JsonNode p) {
        return new FsStat(path, FsEntryKind.fromWire(p.path("kind").asText(null)), p.path("size").asLong(), p.path("mode").asInt(),
                Instant.ofEpochMilli(p.path("mtime_ms").asLong()), p.path("uid").asInt(), p.path("gid").asInt(),
                p.has("target") ? bytesText(p.get("target")) : null);
    }

    private static String bytesText(JsonNode n) {
        if (n == null) {
            return "";
        }
        if (n.isBinary()) {
            try {
                return new String(n.binaryValue(), StandardCharsets.UTF_8);
            } catch (IOException e) {
                return "";
            }
        }
        return n.asText("");
    }

    /** A one-shot operation: the request, then its fs.result (returned) or fs.error (thrown). */
    private Frame call(ObjectNode payload) {
        try (Session s = new Session(payload.path("path").asText(), payload)) {
            Frame end = s.awaitEnd(OP_TIMEOUT);
            return s.result(end);
        }
    }

    private MicrosandboxException unwrap(IOException e, String path) {
        if (e.getCause() instanceof MicrosandboxException m) {
            return m;
        }
        if (e instanceof InterruptedIOException) {
            return new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while transferring " + path + " in sandbox '" + sandbox + "'", e);
        }
        return new MicrosandboxException(ErrorKind.IO, path + " in sandbox '" + sandbox + "': " + e.getMessage(), e);
    }

    private MicrosandboxException notRunning(String reason) {
        if (client.closedWhileRunning()) {
            return new MicrosandboxException(ErrorKind.INVALID_HANDLE, "the handle of sandbox '" + sandbox + "' was closed or detached");
        }
        return new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "sandbox '" + sandbox + "' is not running" + (reason == null ? "" : " (" + reason + ")"));
    }

    /**
     * One fs session: frames arrive on the client's reader thread into a queue (bounded by the
     * window the session grants); sends only queue, so nothing here blocks on the socket, and
     * no lock is held while a caller waits.
     */
    private final class Session implements AutoCloseable, AgentClient.SessionListener {
        final String path;
        final int id;
        private final Object lock = new Object();
        private final ArrayDeque<Frame> frames = new ArrayDeque<>();
        private String lost;
        private boolean closedByCaller;
        private boolean ended;
        /** Write credit (fs.write_window). */
        long writeCredit = Protocol.FS_WRITE_WINDOW_BYTES;
        boolean writeClosed;

        Session(String path, ObjectNode payload) {
            this.path = path;
            if (client.exited().isDone()) {
                throw notRunning(null);
            }
            usable.run();
            this.id = client.newId();
            client.register(id, this);
            try {
                client.send(new Frame(id, Protocol.FLAG_SESSION_START, Protocol.FS_REQUEST, payload));
            } catch (MicrosandboxException e) {
                client.unregister(id);
                if (e.kind() == ErrorKind.INVALID_HANDLE && client.exited().isDone()) {
                    throw notRunning(null);
                }
                throw e;
            }
        }

        @Override
        public void onFrame(Frame frame) {
            synchronized (lock) {
                if (Protocol.FS_WRITE_WINDOW.equals(frame.type())) {
                    Long bytes = frame.number("bytes");
                    writeCredit = Math.min(Protocol.FS_WRITE_WINDOW_BYTES, writeCredit + (bytes == null ? 0 : Math.max(0, bytes)));
                    writeClosed |= frame.payload().path("closed").asBoolean(false);
                } else {
                    frames.add(frame);
                    if (frame.isTerminal()) {
                        ended = true;
                    }
                }
                lock.notifyAll();
            }
        }

        @Override
        public void onConnectionLost(String reason) {
            synchronized (lock) {
                lost = reason;
                lock.notifyAll();
            }
        }

        /** The next data or terminal frame, waiting at most {@code wait}; null on timeout. */
        Frame next(Duration wait) throws InterruptedException {
            long deadline = System.nanoTime() + wait.toNanos();
            synchronized (lock) {
                while (frames.isEmpty()) {
                    if (lost != null) {
                        throw notRunning("went away: " + lost);
                    }
                    if (closedByCaller) {
                        throw new MicrosandboxException(ErrorKind.CANCELLED, path + " was closed while waiting for the guest");
                    }
                    long left = deadline - System.nanoTime();
                    if (left <= 0) {
                        return null;
                    }
                    TimeUnit.NANOSECONDS.timedWait(lock, left);
                }
                return frames.poll();
            }
        }

        Frame awaitEnd(Duration wait) {
            long deadline = System.nanoTime() + wait.toNanos();
            try {
                while (true) {
                    Frame f = next(Duration.ofNanos(Math.max(1, deadline - System.nanoTime())));
                    if (f == null) {
                        throw new MicrosandboxException(ErrorKind.FILESYSTEM, "no answer from sandbox '" + sandbox + "' about " + path + " within " + wait);
                    }
                    if (f.isTerminal()) {
                        return f;
                    }
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for " + path + " in sandbox '" + sandbox + "'");
            }
        }

        /** The terminal frame as a result, or the exception it stands for. */
        Frame result(Frame end) {
            if (Protocol.FS_RESULT.equals(end.type())) {
                return end;
            }
            throw error(end);
        }

        MicrosandboxException error(Frame end) {
            if (!Protocol.FS_ERROR.equals(end.type())) {
                return new MicrosandboxException(ErrorKind.INTERNAL, "sandbox '" + sandbox + "' answered " + end.type() + " about " + path
                        + (end.text("message") != null ? ": " + end.text("message") : ""));
            }
            String reason = end.text("kind");
            String message = bytesText(end.payload().get("message"));
            String where = bytesText(end.payload().get("path"));
            if (where.isEmpty()) {
                where = path;
            }
            int errno = end.payload().path("errno").asInt();
            if ("sandbox_stopping".equals(reason)) {
                return notRunning(message);
            }
            ErrorKind kind = "not_found".equals(reason) ? ErrorKind.PATH_NOT_FOUND
                    : "bad_args".equals(reason) ? ErrorKind.INVALID_ARGUMENT : ErrorKind.FILESYSTEM;
            if (!message.contains(where)) {
                message = where + ": " + message;
            }
            return new FilesystemException(kind, reason, errno, where, message + " (sandbox '" + sandbox + "', errno " + errno + ")");
        }

        void send(String type, ObjectNode p) {
            client.send(new Frame(id, 0, type, p));
        }

        void trySend(String type, ObjectNode p) {
            try {
                send(type, p);
            } catch (MicrosandboxException ignored) {
                // the connection is gone, and the operation with it
            }
        }

        boolean ended() {
            synchronized (lock) {
                return ended;
            }
        }

        @Override
        public void close() {
            synchronized (lock) {
                // a reader waiting on another thread returns now instead of after its stall timeout
                closedByCaller = true;
                lock.notifyAll();
            }
            if (!ended()) {
                trySend(Protocol.FS_CANCEL, Json.object());
            }
            client.unregister(id);
        }
    }

    /** File bytes as fs.data frames; credit goes back once half the window has been read. */
    private final class ReadStream extends InputStream {
        private final String path;
        private final Session session;
        private byte[] chunk = new byte[0];
        private int pos;
        private long consumed;
        /** File bytes received in all, checked against the size the guest reports at the end. */
        private long received;
        /** Credit granted and not yet consumed plus consumed and not yet returned. */
        private long window;
        /** Whether this read counts among the connection's reads; shared with {@link #abandoned}. */
        private final java.util.concurrent.atomic.AtomicBoolean counted = new java.util.concurrent.atomic.AtomicBoolean(true);
        private final Cleaner.Cleanable abandoned;
        private boolean eof;
        private volatile boolean closed;
        /** What ended the read, thrown again by every later read: a failed read is never a clean end (an interrupt ends none). */
        private IOException failure;

        ReadStream(String path, ObjectNode payload) {
            this.path = path;
            this.window = readWindow(client.fsReads().incrementAndGet());
            payload.put("window", window);
            try {
                this.session = new Session(path, payload);
            } catch (RuntimeException e) {
                uncount();
                throw e;
            }
            this.abandoned = CLEANER.register(this, new Abandon(session, client, counted));
            // wait for the first frame: a file that cannot be opened fails here
            try {
                Frame first = session.next(STALL_TIMEOUT);
                if (first == null) {
                    abandoned.clean();
                    throw new MicrosandboxException(ErrorKind.FILESYSTEM, "sandbox '" + sandbox + "' did not start reading " + path + " within " + STALL_TIMEOUT);
                }
                take(first);
            } catch (InterruptedException e) {
                abandoned.clean();
                Thread.currentThread().interrupt();
                throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while opening " + path);
            } catch (RuntimeException e) {
                abandoned.clean();
                throw e;
            }
        }

        private void uncount() {
            Abandon.uncount(counted, client);
        }

        /**
         * Returns consumed credit once half the window is read, resized to the share this read
         * has of the connection's read budget now (other reads may have started or ended).
         */
        private void grant() {
            if (consumed < window / 2) {
                return;
            }
            long target = readWindow(client.fsReads().get());
            long give = Math.max(0, consumed + (target - window));
            window = window - consumed + give;
            consumed = 0;
            if (give > 0) {
                ObjectNode p = Json.object();
                p.put("bytes", give);
                session.trySend(Protocol.FS_WINDOW, p);
            }
        }

        private void take(Frame f) {
            if (Protocol.FS_DATA.equals(f.type())) {
                chunk = f.bytes("data");
                pos = 0;
                consumed += chunk.length;
                received += chunk.length;
                grant();
            } else if (f.isTerminal()) {
                eof = true;
                uncount();
                long reported = session.result(f).payload().path("size").asLong(-1);
                if (reported >= 0 && reported != received) {
                    // bytes the supervisor dropped (a guest past its window) or a guest that lies:
                    // never a short file passed off as whole
                    throw new MicrosandboxException(ErrorKind.FILESYSTEM, "reading " + path + " in sandbox '" + sandbox + "' ended after "
                            + received + " bytes, but the guest reported " + reported);
                }
            }
        }

        private boolean fill() throws IOException {
            if (failure != null) {
                throw new IOException(failure.getMessage(), failure);
            }
            try {
                return fillOnce();
            } catch (InterruptedIOException e) {
                throw e; // nothing was taken: a later read goes on where this one stopped
            } catch (IOException e) {
                failure = e;
                throw e;
            }
        }

        private boolean fillOnce() throws IOException {
            while (pos >= chunk.length) {
                if (eof) {
                    return false;
                }
                if (closed) {
                    throw new IOException("stream of " + path + " is closed");
                }
                Frame f;
                try {
                    f = session.next(STALL_TIMEOUT);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new InterruptedIOException("interrupted while reading " + path);
                } catch (MicrosandboxException e) {
                    throw new IOException(e.getMessage(), e);
                }
                if (f == null) {
                    throw new IOException("no data of " + path + " from sandbox '" + sandbox + "' for " + STALL_TIMEOUT,
                            new MicrosandboxException(ErrorKind.FILESYSTEM, "reading " + path + " stalled"));
                }
                try {
                    take(f);
                } catch (MicrosandboxException e) {
                    throw new IOException(e.getMessage(), e);
                }
            }
            return true;
        }

        @Override
        public int read() throws IOException {
            return fill() ? chunk[pos++] & 0xff : -1;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            if (len == 0) {
                return 0;
            }
            if (!fill()) {
                return -1;
            }
            int n = Math.min(len, chunk.length - pos);
            System.arraycopy(chunk, pos, b, off, n);
            pos += n;
            return n;
        }

        @Override
        public int available() {
            return chunk.length - pos;
        }

        @Override
        public void close() {
            if (!closed) {
                closed = true;
                chunk = new byte[0];
                abandoned.clean(); // the session's end and the count, once
            }
        }
    }

    /** Cleans up after a stream: closed, or dropped unclosed (then when the collector finds it). */
    private static final Cleaner CLEANER = Cleaner.create(r -> {
        Thread t = new Thread(r, "msb-fs-streams-cleaner");
        t.setDaemon(true);
        return t;
    });

    /**
     * Ends a stream's session (which would otherwise hold the guest's worker and keep the
     * sandbox from idling) and gives its share of the read budget back. Refers to the session,
     * never to the stream.
     */
    private record Abandon(AutoCloseable session, AgentClient client, java.util.concurrent.atomic.AtomicBoolean counted) implements Runnable {
        @Override
        public void run() {
            // the budget first: once the cancel is out, a watcher may take the read for over
            if (counted != null) {
                uncount(counted, client);
            }
            try {
                session.close();
            } catch (Exception e) {
                // a session's close only queues frames
            }
        }

        /** Gives a read's share of the connection's read budget back, once. */
        static void uncount(java.util.concurrent.atomic.AtomicBoolean counted, AgentClient client) {
            if (counted.compareAndSet(true, false)) {
                client.fsReads().decrementAndGet();
            }
        }
    }

    /**
     * Bytes to a guest file, from {@link #writeStream(String)}: writes wait for the guest's
     * credit; {@link #close()} sends the end and waits until the file is on disk;
     * {@link #abandon()} gives the file up, leaving it as it was. One writer at a time; a close
     * from another thread while a write waits for credit gives the file up (ending it then could
     * send its end before the data being written) and wakes the writer at once.
     */
    public final class WriteStream extends OutputStream {
        private final String path;
        private final Session session;
        private volatile boolean closed;
        /** Whether a write is under way: a close seeing it gives the file up. */
        private volatile boolean writing;
        /** Whether a write failed: the file is then abandoned, never ended as if it were whole. */
        private volatile boolean failed;
        /** Ends the session of a stream dropped unclosed (the file is given up). */
        private final Cleaner.Cleanable abandoned;

        WriteStream(String path, ObjectNode payload) {
            this.path = path;
            this.session = new Session(path, payload);
            this.abandoned = CLEANER.register(this, new Abandon(session, client, null));
        }

        @Override
        public void write(int b) throws IOException {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            writing = true; // before looking at closed: a close either sees this or is seen here
            try {
                if (closed) {
                    throw new IOException("stream of " + path + " is closed");
                }
                if (failed) {
                    throw new IOException("an earlier write of " + path + " failed");
                }
                writeChunks(b, off, len);
            } catch (IOException | RuntimeException e) {
                failed = true;
                throw e;
            } finally {
                writing = false;
            }
        }

        private void writeChunks(byte[] b, int off, int len) throws IOException {
            int pos = off;
            while (pos < off + len) {
                int n;
                synchronized (session.lock) {
                    long deadline = System.nanoTime() + STALL_TIMEOUT.toNanos();
                    while (session.writeCredit == 0 && !session.writeClosed && !session.ended && session.lost == null
                            && !session.closedByCaller) {
                        long left = deadline - System.nanoTime();
                        if (left <= 0) {
                            throw new IOException("sandbox '" + sandbox + "' took no data of " + path + " for " + STALL_TIMEOUT,
                                    new MicrosandboxException(ErrorKind.FILESYSTEM, "writing " + path + " stalled"));
                        }
                        try {
                            TimeUnit.NANOSECONDS.timedWait(session.lock, left);
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                            throw new InterruptedIOException("interrupted while writing " + path);
                        }
                    }
                    if (session.lost != null) {
                        throw new IOException("sandbox '" + sandbox + "' went away", notRunning(session.lost));
                    }
                    if (session.closedByCaller) {
                        throw new IOException("stream of " + path + " was closed while it was written; the file was given up");
                    }
                    if (session.writeClosed || session.ended) {
                        n = -1;
                    } else {
                        n = (int) Math.min(Math.min(off + len - pos, Protocol.FS_CHUNK_BYTES), session.writeCredit);
                        session.writeCredit -= n;
                    }
                }
                if (n < 0) {
                    // the guest stopped taking data: its error says why
                    closed = true;
                    throw failure();
                }
                ObjectNode p = Json.object();
                p.put("data", Arrays.copyOfRange(b, pos, pos + n));
                try {
                    session.send(Protocol.FS_DATA, p);
                } catch (MicrosandboxException e) {
                    throw new IOException(e.getMessage(), e);
                }
                pos += n;
            }
        }

        private IOException failure() {
            Frame end = session.awaitEnd(STALL_TIMEOUT);
            session.close();
            try {
                session.result(end);
                return new IOException("sandbox '" + sandbox + "' stopped taking data of " + path);
            } catch (MicrosandboxException e) {
                return new IOException(e.getMessage(), e);
            }
        }

        /**
         * Gives the file up: the guest stops writing it and removes what was written, so the
         * file stays as it was (or absent, if it was new). Closes the stream; after a close,
         * does nothing.
         */
        public void abandon() throws IOException {
            failed = true;
            close();
        }

        @Override
        public void close() throws IOException {
            if (closed) {
                return;
            }
            closed = true;
            if (failed || writing) {
                // its writer was told; ending the file now would store the part written as the whole
                abandoned.clean();
                return;
            }
            try {
                ObjectNode p = Json.object();
                p.put("data", new byte[0]);
                session.trySend(Protocol.FS_DATA, p);
                Frame end = session.awaitEnd(OP_TIMEOUT);
                session.result(end);
            } catch (MicrosandboxException e) {
                throw new IOException(e.getMessage(), e);
            } finally {
                abandoned.clean();
            }
        }
    }
}

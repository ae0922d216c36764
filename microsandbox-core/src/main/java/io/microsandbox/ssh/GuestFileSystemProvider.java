package io.microsandbox.ssh;

import io.microsandbox.ErrorKind;
import io.microsandbox.ExecOptions;
import io.microsandbox.ExecOutput;
import io.microsandbox.FilesystemException;
import io.microsandbox.FsEntry;
import io.microsandbox.FsEntryKind;
import io.microsandbox.FsStat;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxFs;
import java.io.IOException;
import java.net.URI;
import java.nio.channels.SeekableByteChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.AccessMode;
import java.nio.file.CopyOption;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileStore;
import java.nio.file.FileSystem;
import java.nio.file.FileSystemException;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.ProviderMismatchException;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributeView;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileAttribute;
import java.nio.file.attribute.FileAttributeView;
import java.nio.file.attribute.FileOwnerAttributeView;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.UserPrincipal;
import java.nio.file.spi.FileSystemProvider;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The provider of {@link GuestFileSystem}s: NIO file operations mapped onto {@link SandboxFs}
 * (files are streamed: reads may seek, writes go front to back, as SFTP clients send them),
 * and the attribute changes SandboxFs has no call for (mode, owner, times, size) onto
 * {@code chmod}, {@code chown}, {@code touch} and {@code truncate} in the guest, run as the
 * session's user. Guest errors become the matching NIO exceptions, which sshd turns into
 * SFTP status codes.
 */
final class GuestFileSystemProvider extends FileSystemProvider {
    /**
     * Taken from the permissions an SFTP client asks a new file or directory to have, as
     * OpenSSH's sftp-server's usual umask does: a local file that is group- or world-writable
     * does not arrive so.
     */
    private static final int CREATION_UMASK = 022;
    private final Sandbox sandbox;

    GuestFileSystemProvider(Sandbox sandbox) {
        this.sandbox = sandbox;
    }

    /** A file system for {@code user} whose relative paths start at {@code home}. */
    GuestFileSystem newFileSystem(String user, String home) {
        return new GuestFileSystem(this, sandbox.fs().user(user), user, home);
    }

    @Override
    public String getScheme() {
        return "msb-guest";
    }

    @Override
    public FileSystem newFileSystem(URI uri, Map<String, ?> env) {
        throw new UnsupportedOperationException("guest file systems come from SandboxSsh");
    }

    @Override
    public FileSystem getFileSystem(URI uri) {
        throw new UnsupportedOperationException("guest file systems come from SandboxSsh");
    }

    @Override
    public Path getPath(URI uri) {
        throw new UnsupportedOperationException("guest paths come from their GuestFileSystem");
    }

    @Override
    public SeekableByteChannel newByteChannel(Path path, Set<? extends OpenOption> options, FileAttribute<?>... attrs) throws IOException {
        GuestPath p = guest(path);
        SandboxFs fs = p.getFileSystem().fs();
        if (!options.contains(StandardOpenOption.WRITE) && !options.contains(StandardOpenOption.APPEND)) {
            FsStat stat = stat(p, true);
            if (stat.isDir()) {
                throw new FileSystemException(p.guest(), null, "is a directory");
            }
            return new GuestChannels.Reader(fs, p.guest(), stat.size());
        }
        if (options.contains(StandardOpenOption.APPEND)) {
            throw new UnsupportedOperationException("appending to a guest file (SandboxFs writes whole files)");
        }
        boolean exists = exists(p);
        boolean createNew = options.contains(StandardOpenOption.CREATE_NEW);
        if (exists && createNew) {
            throw new FileAlreadyExistsException(p.guest());
        }
        if (createNew && !fs.canCreateExclusively()) {
            // refused at the open: a client using an exclusive open as a lock must not think it got one
            throw new UnsupportedOperationException("the sandbox's guest agent cannot create " + p.guest()
                    + " exclusively (it was started by an earlier microsandbox)");
        }
        if (!exists && !options.contains(StandardOpenOption.CREATE) && !createNew) {
            throw new NoSuchFileException(p.guest());
        }
        // a new file, or a truncated one, exists (empty) even if nothing is written
        boolean replace = !exists || options.contains(StandardOpenOption.TRUNCATE_EXISTING);
        View view = new View(p, true);
        // the permissions an open carries are for a file it creates (as open(2)'s mode): an
        // existing file keeps its own, so an upload cannot widen a private file's
        return new GuestChannels.Writer(fs, p.guest(), exists ? null : mode(attrs), replace, createNew,
                size -> view.guestCommand("truncate", "-s", Long.toString(size)));
    }

    @Override
    public DirectoryStream<Path> newDirectoryStream(Path dir, DirectoryStream.Filter<? super Path> filter) throws IOException {
        GuestPath p = guest(dir);
        List<Path> entries = new ArrayList<>();
        try {
            for (FsEntry e : p.getFileSystem().fs().list(p.guest())) {
                Path child = p.resolve(e.name());
                if (filter == null || filter.accept(child)) {
                    entries.add(child);
                }
            }
        } catch (MicrosandboxException e) {
            throw io(e, p);
        }
        return new DirectoryStream<>() {
            private boolean iterated;

            @Override
            public Iterator<Path> iterator() {
                if (iterated) {
                    throw new IllegalStateException("a directory stream iterates once");
                }
                iterated = true;
                return entries.iterator();
            }

            @Override
            public void close() {
                // the listing was read whole: nothing is held open
            }
        };
    }

    @Override
    public void createDirectory(Path dir, FileAttribute<?>... attrs) throws IOException {
        GuestPath p = guest(dir);
        if (exists(p)) {
            throw new FileAlreadyExistsException(p.guest());
        }
        GuestPath parent = p.toAbsolutePath().normalize().getParent();
        if (parent != null && !exists(parent)) {
            throw new NoSuchFileException(parent.guest());
        }
        try {
            p.getFileSystem().fs().mkdir(p.guest(), mode(attrs));
        } catch (MicrosandboxException e) {
            throw io(e, p);
        }
    }

    @Override
    public void delete(Path path) throws IOException {
        GuestPath p = guest(path);
        SandboxFs fs = p.getFileSystem().fs();
        try {
            if (stat(p, false).isDir()) {
                fs.removeDir(p.guest());
            } else {
                fs.remove(p.guest());
            }
        } catch (MicrosandboxException e) {
            throw io(e, p);
        }
    }

    @Override
    public void copy(Path source, Path target, CopyOption... options) throws IOException {
        GuestPath from = guest(source);
        GuestPath to = guest(target);
        replaceCheck(to, options);
        try {
            from.getFileSystem().fs().copy(from.guest(), to.guest());
        } catch (MicrosandboxException e) {
            throw io(e, from);
        }
    }

    @Override
    public void move(Path source, Path target, CopyOption... options) throws IOException {
        GuestPath from = guest(source);
        GuestPath to = guest(target);
        replaceCheck(to, options);
        try {
            from.getFileSystem().fs().rename(from.guest(), to.guest());
        } catch (MicrosandboxException e) {
            throw io(e, from);
        }
    }

    private void replaceCheck(GuestPath target, CopyOption... options) throws IOException {
        if (!Arrays.asList(options).contains(StandardCopyOption.REPLACE_EXISTING) && exists(target)) {
            throw new FileAlreadyExistsException(target.guest());
        }
    }

    @Override
    public void createSymbolicLink(Path link, Path target, FileAttribute<?>... attrs) throws IOException {
        GuestPath p = guest(link);
        try {
            p.getFileSystem().fs().symlink(p.guest(), target.toString());
        } catch (MicrosandboxException e) {
            throw io(e, p);
        }
    }

    @Override
    public Path readSymbolicLink(Path link) throws IOException {
        GuestPath p = guest(link);
        FsStat stat = stat(p, false);
        if (!stat.isSymlink()) {
            throw new java.nio.file.NotLinkException(p.guest());
        }
        return p.getFileSystem().getPath(stat.target());
    }

    @Override
    public boolean isSameFile(Path a, Path b) {
        return a instanceof GuestPath x && b instanceof GuestPath y && x.getFileSystem() == y.getFileSystem() && x.guest().equals(y.guest());
    }

    @Override
    public boolean isHidden(Path path) {
        Path name = path.getFileName();
        return name != null && name.toString().startsWith(".");
    }

    @Override
    public FileStore getFileStore(Path path) {
        throw new UnsupportedOperationException("guest file stores");
    }

    /** Existence only: the guest checks permissions when the file is used, as the session's user. */
    @Override
    public void checkAccess(Path path, AccessMode... modes) throws IOException {
        stat(guest(path), true);
    }

    @Override
    @SuppressWarnings("unchecked")
    public <V extends FileAttributeView> V getFileAttributeView(Path path, Class<V> type, LinkOption... options) {
        if (type == BasicFileAttributeView.class || type == PosixFileAttributeView.class || type == FileOwnerAttributeView.class) {
            return (V) new View(guest(path), follow(options));
        }
        return null;
    }

    @Override
    @SuppressWarnings("unchecked")
    public <A extends BasicFileAttributes> A readAttributes(Path path, Class<A> type, LinkOption... options) throws IOException {
        if (type != BasicFileAttributes.class && type != PosixFileAttributes.class) {
            throw new UnsupportedOperationException("attributes of type " + type.getName());
        }
        return (A) new GuestAttributes(stat(guest(path), follow(options)));
    }

    /** Every attribute of the {@code basic}, {@code posix}, {@code owner} or {@code unix} view, whatever names are asked for. */
    @Override
    public Map<String, Object> readAttributes(Path path, String attributes, LinkOption... options) throws IOException {
        String view = attributes.contains(":") ? attributes.substring(0, attributes.indexOf(':')) : "basic";
        if (!p(path).getFileSystem().supportedFileAttributeViews().contains(view)) {
            throw new UnsupportedOperationException("attribute view " + view);
        }
        GuestAttributes a = new GuestAttributes(stat(guest(path), follow(options)));
        Map<String, Object> map = new HashMap<>();
        map.put("size", a.size());
        map.put("lastModifiedTime", a.lastModifiedTime());
        map.put("lastAccessTime", a.lastAccessTime());
        map.put("creationTime", a.creationTime());
        map.put("isRegularFile", a.isRegularFile());
        map.put("isDirectory", a.isDirectory());
        map.put("isSymbolicLink", a.isSymbolicLink());
        map.put("isOther", a.isOther());
        map.put("owner", a.owner());
        if (!view.equals("basic") && !view.equals("owner")) {
            map.put("group", a.group());
            map.put("permissions", a.permissions());
        }
        if (view.equals("unix")) {
            map.put("uid", a.stat().uid());
            map.put("gid", a.stat().gid());
            map.put("mode", a.stat().mode());
        }
        return map;
    }

    @Override
    public void setAttribute(Path path, String attribute, Object value, LinkOption... options) throws IOException {
        String name = attribute.contains(":") ? attribute.substring(attribute.indexOf(':') + 1) : attribute;
        View view = new View(guest(path), follow(options));
        switch (name) {
            case "permissions" -> view.setPermissions(permissions(value));
            case "lastModifiedTime" -> view.setTimes((FileTime) value, null, null);
            case "lastAccessTime" -> view.setTimes(null, (FileTime) value, null);
            case "creationTime" -> {
                // Linux keeps no settable creation time (the JDK's own provider ignores it too)
            }
            case "owner", "uid" -> view.guestCommand("chown", value.toString());
            case "group", "gid" -> view.guestCommand("chgrp", value.toString());
            case "size" -> view.guestCommand("truncate", "-s", value.toString());
            default -> throw new UnsupportedOperationException("setting the attribute " + attribute + " of a guest file");
        }
    }

    @SuppressWarnings("unchecked")
    private static Set<PosixFilePermission> permissions(Object value) {
        return (Set<PosixFilePermission>) value;
    }

    /**
     * The permission bits a new file or directory is created with, from a {@code posix:permissions}
     * attribute, less {@link #CREATION_UMASK}; null when none.
     */
    private static Integer mode(FileAttribute<?>... attrs) {
        for (FileAttribute<?> a : attrs) {
            if (a.name().endsWith("permissions") && a.value() instanceof Set<?> perms) {
                return bits(perms) & ~CREATION_UMASK;
            }
        }
        return null;
    }

    /** Permission bits: OWNER_READ (ordinal 0) is 0400 down to OTHERS_EXECUTE (8), 0001. */
    private static int bits(Set<?> perms) {
        int mode = 0;
        for (Object p : perms) {
            if (p instanceof PosixFilePermission perm) {
                mode |= 1 << (8 - perm.ordinal());
            }
        }
        return mode;
    }

    private FsStat stat(GuestPath p, boolean follow) throws IOException {
        try {
            SandboxFs fs = p.getFileSystem().fs();
            return follow ? fs.stat(p.guest()) : fs.lstat(p.guest());
        } catch (MicrosandboxException e) {
            throw io(e, p);
        }
    }

    private boolean exists(GuestPath p) throws IOException {
        try {
            return p.getFileSystem().fs().exists(p.guest());
        } catch (MicrosandboxException e) {
            throw io(e, p);
        }
    }

    private static boolean follow(LinkOption... options) {
        return !Arrays.asList(options).contains(LinkOption.NOFOLLOW_LINKS);
    }

    private static GuestPath guest(Path path) {
        return p(path);
    }

    private static GuestPath p(Path path) {
        if (!(path instanceof GuestPath g)) {
            throw new ProviderMismatchException("not a guest path: " + path);
        }
        return g;
    }

    /** A guest failure as the NIO exception that says the same, so SFTP reports the right status. */
    static IOException io(MicrosandboxException e, GuestPath p) {
        return io(e, p.guest());
    }

    /** {@link #io(MicrosandboxException, GuestPath)} for a guest path given as text. */
    static IOException io(MicrosandboxException e, String path) {
        if (e instanceof FilesystemException f) {
            IOException mapped = switch (f.reason() == null ? "" : f.reason()) {
                case "not_found" -> new NoSuchFileException(path);
                case "permission_denied", "read_only" -> new AccessDeniedException(path, null, f.getMessage());
                case "exists" -> new FileAlreadyExistsException(path);
                case "not_empty" -> new DirectoryNotEmptyException(path);
                case "not_directory" -> new NotDirectoryException(path);
                default -> new FileSystemException(path, null, f.getMessage());
            };
            mapped.initCause(e);
            return mapped;
        }
        if (e.kind() == ErrorKind.PATH_NOT_FOUND) {
            return (IOException) new NoSuchFileException(path).initCause(e);
        }
        return new IOException(e.getMessage(), e);
    }

    /** Attributes of one path, read on demand; changes run guest commands as the session's user. */
    private final class View implements PosixFileAttributeView {
        private final GuestPath path;
        private final boolean follow;

        View(GuestPath path, boolean follow) {
            this.path = path;
            this.follow = follow;
        }

        @Override
        public String name() {
            return "posix";
        }

        @Override
        public PosixFileAttributes readAttributes() throws IOException {
            return new GuestAttributes(stat(path, follow));
        }

        @Override
        public void setTimes(FileTime lastModifiedTime, FileTime lastAccessTime, FileTime createTime) throws IOException {
            if (lastModifiedTime != null) {
                guestCommand("touch", "-m", "-d", "@" + lastModifiedTime.toInstant().getEpochSecond());
            }
            if (lastAccessTime != null) {
                guestCommand("touch", "-a", "-d", "@" + lastAccessTime.toInstant().getEpochSecond());
            }
        }

        @Override
        public void setPermissions(Set<PosixFilePermission> perms) throws IOException {
            guestCommand("chmod", Integer.toOctalString(bits(perms)));
        }

        @Override
        public UserPrincipal getOwner() throws IOException {
            return readAttributes().owner();
        }

        @Override
        public void setOwner(UserPrincipal owner) throws IOException {
            guestCommand("chown", owner.getName());
        }

        @Override
        public void setGroup(GroupPrincipal group) throws IOException {
            guestCommand("chgrp", group.getName());
        }

        /** Runs {@code command args... -- path} in the guest as the session's user; a failure says why. */
        void guestCommand(String command, String... args) throws IOException {
            List<String> argv = new ArrayList<>(Arrays.asList(args));
            if (!follow && (command.equals("chown") || command.equals("chgrp"))) {
                argv.add(0, "-h");
            }
            argv.add("--");
            argv.add(path.guest());
            ExecOutput out;
            try {
                out = sandbox.exec(command, argv, ExecOptions.builder().user(path.getFileSystem().user())
                        .timeout(java.time.Duration.ofSeconds(30)).build());
            } catch (MicrosandboxException e) {
                throw new IOException(command + " " + path.guest() + ": " + e.getMessage(), e);
            }
            if (!out.success()) {
                String why = out.stderr().strip();
                if (why.contains("No such file")) {
                    throw new NoSuchFileException(path.guest());
                }
                if (why.contains("Operation not permitted") || why.contains("Permission denied")) {
                    throw new AccessDeniedException(path.guest(), null, why);
                }
                throw new FileSystemException(path.guest(), null, command + " failed: " + why);
            }
        }
    }

    /** A {@link FsStat} as NIO attributes. The agent reports only the modification time, so it stands in for the other two. */
    record GuestAttributes(FsStat stat) implements PosixFileAttributes {
        @Override
        public FileTime lastModifiedTime() {
            return FileTime.from(stat.modified());
        }

        @Override
        public FileTime lastAccessTime() {
            return lastModifiedTime();
        }

        @Override
        public FileTime creationTime() {
            return lastModifiedTime();
        }

        @Override
        public boolean isRegularFile() {
            return stat.kind() == FsEntryKind.FILE;
        }

        @Override
        public boolean isDirectory() {
            return stat.kind() == FsEntryKind.DIRECTORY;
        }

        @Override
        public boolean isSymbolicLink() {
            return stat.kind() == FsEntryKind.SYMLINK;
        }

        @Override
        public boolean isOther() {
            return stat.kind() == FsEntryKind.OTHER;
        }

        @Override
        public long size() {
            return stat.size();
        }

        @Override
        public Object fileKey() {
            return null;
        }

        @Override
        public UserPrincipal owner() {
            return new GuestFileSystem.GuestPrincipal(Integer.toString(stat.uid()));
        }

        @Override
        public GroupPrincipal group() {
            return new GuestFileSystem.GuestPrincipal(Integer.toString(stat.gid()));
        }

        @Override
        public Set<PosixFilePermission> permissions() {
            Set<PosixFilePermission> perms = java.util.EnumSet.noneOf(PosixFilePermission.class);
            for (PosixFilePermission p : PosixFilePermission.values()) {
                if ((stat.mode() & (1 << (8 - p.ordinal()))) != 0) {
                    perms.add(p);
                }
            }
            return perms;
        }
    }
}

package io.microsandbox.image.oci;

import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.SandboxPreparer;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.zip.GZIPInputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;

/**
 * Applies OCI layer tarballs, in order, onto a staging directory that becomes the image's
 * flattened root: whiteouts ({@code .wh.name}) delete what lower layers made, opaque markers
 * ({@code .wh..wh..opq}) empty a directory of what lower layers put in it, and every entry
 * gets its owner, group, full mode (setuid, setgid, sticky), modification time and extended
 * attributes ({@code SCHILY.xattr.*} PAX records). Hard links, symbolic links, device nodes
 * and FIFOs are made as such.
 *
 * <p>The layer is untrusted: names are normalized inside the root ({@code ..} is refused),
 * and no path is ever written through a symbolic link, whatever earlier entries or layers
 * made (each parent is checked with lstat before use; nothing else writes to the staging
 * tree meanwhile). Runs as root to set owners, devices and {@code trusted.*} attributes.
 */
public final class LayerApplier {
    private static final String WHITEOUT = ".wh.";
    private static final String OPAQUE = ".wh..wh..opq";

    private final Path root;
    /**
     * Root sets owners, devices and every xattr on the staging tree itself; otherwise (or with
     * {@code -Dmicrosandbox.image.unprivileged=true}) the tree gets contents, links and times,
     * with modes that keep it readable, and what it cannot hold is kept as {@link #fixups()}
     * for {@code debugfs -w} to apply to the finished disk.
     */
    private final boolean root0 = runningAsRoot() && !Boolean.getBoolean("microsandbox.image.unprivileged");
    private final int myUid = currentId("unix:uid");
    private final int myGid = currentId("unix:gid");
    private final Map<String, Fixup> fixups = new java.util.LinkedHashMap<>();

    /** What an unprivileged unpack could not put on the staging tree (path relative to the root). */
    public record Fixup(String path, int uid, int gid, int mode, char device, int major, int minor, Map<String, byte[]> xattrs) {
    }

    private static int currentId(String attr) {
        try {
            return (Integer) Files.getAttribute(Path.of("/proc/self"), attr);
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }

    /** Whether this unpack runs privileged (no fixups needed). */
    public boolean privileged() {
        return root0;
    }
    /** Entries made by the layer being applied (relative paths); an opaque marker keeps these. */
    private final Set<String> thisLayer = new HashSet<>();
    private final List<DirTime> dirTimes = new ArrayList<>();

    /** Entries and file bytes this image's layers made so far, against {@link #maxEntries} and {@link #maxBytes}. */
    private long entries;
    private long bytes;
    private final long maxEntries = Long.getLong("microsandbox.image.maxEntries", 4_000_000);
    private final long maxBytes = Long.getLong("microsandbox.image.maxUnpackedBytes", 64L << 30);

    public LayerApplier(Path root) {
        this.root = root;
    }

    static boolean runningAsRoot() {
        try {
            return ((Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid")) == 0;
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    /** Opens a layer blob decompressed, whatever its compression (gzip, zstd or none, told by its first bytes). */
    public static InputStream decompressed(InputStream raw) throws IOException {
        BufferedInputStream in = new BufferedInputStream(raw, 1 << 16);
        in.mark(4);
        byte[] magic = in.readNBytes(4);
        in.reset();
        if (magic.length >= 2 && (magic[0] & 0xff) == 0x1f && (magic[1] & 0xff) == 0x8b) {
            return new GZIPInputStream(in, 1 << 16);
        }
        if (magic.length == 4 && (magic[0] & 0xff) == 0x28 && (magic[1] & 0xff) == 0xb5 && (magic[2] & 0xff) == 0x2f && (magic[3] & 0xff) == 0xfd) {
            return new com.github.luben.zstd.ZstdInputStream(in);
        }
        return in;
    }

    /** Applies one decompressed layer tar; reads it to its end (the caller hashes it for the diff_id). */
    public void apply(InputStream tar) throws IOException {
        thisLayer.clear();
        TarArchiveInputStream in = new TarArchiveInputStream(new PaxXattrs(tar), 10240, 512, StandardCharsets.UTF_8.name(), false);
        TarArchiveEntry e;
        while ((e = in.getNextEntry()) != null) {
            if (++entries > maxEntries) {
                // a layer of a few bytes can hold millions of empty entries
                throw new IOException("the image has more than " + maxEntries + " entries (microsandbox.image.maxEntries)");
            }
            String rel = normalize(e.getName());
            if (rel == null) {
                continue; // the root itself
            }
            String name = rel.substring(rel.lastIndexOf('/') + 1);
            String parentRel = rel.contains("/") ? rel.substring(0, rel.lastIndexOf('/')) : "";
            if (name.equals(OPAQUE)) {
                Path dir = safeParent(rel);
                if (Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
                    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
                        for (Path child : ds) {
                            String childRel = root.relativize(child).toString();
                            if (!thisLayer.contains(childRel)) {
                                SandboxPreparer.deleteTree(child);
                            }
                        }
                    }
                }
                continue;
            }
            if (name.startsWith(WHITEOUT)) {
                String victim = (parentRel.isEmpty() ? "" : parentRel + "/") + name.substring(WHITEOUT.length());
                if (normalize(victim) == null || name.length() == WHITEOUT.length()) {
                    throw new IOException("invalid whiteout " + e.getName());
                }
                Path target = safeParent(victim).resolve(name.substring(WHITEOUT.length()));
                SandboxPreparer.deleteTree(target);
                continue;
            }
            Path target = safeParent(rel).resolve(name);
            markThisLayer(rel);
            if (e.isLink()) {
                String linkRel = normalize(e.getLinkName());
                if (linkRel == null) {
                    throw new IOException("hard link " + e.getName() + " to the root");
                }
                removeExisting(target, false);
                Path existing = safeParent(linkRel).resolve(linkRel.substring(linkRel.lastIndexOf('/') + 1));
                if (!Files.exists(existing, LinkOption.NOFOLLOW_LINKS) || Files.isDirectory(existing, LinkOption.NOFOLLOW_LINKS)) {
                    throw new IOException("hard link " + e.getName() + " to " + e.getLinkName() + ", which is missing or a directory");
                }
                Files.createLink(target, existing);
                continue;
            }
            if (e.isDirectory()) {
                if (!Files.isDirectory(target, LinkOption.NOFOLLOW_LINKS)) {
                    removeExisting(target, false);
                    Files.createDirectory(target);
                }
                metadata(target, e, false, rel);
                dirTimes.add(new DirTime(target, e.getLastModifiedDate().getTime()));
            } else if (e.isSymbolicLink()) {
                removeExisting(target, false);
                Files.createSymbolicLink(target, Path.of(e.getLinkName()));
                metadata(target, e, true, rel);
            } else if (e.isCharacterDevice() || e.isBlockDevice() || e.isFIFO()) {
                removeExisting(target, false);
                int type = e.isCharacterDevice() ? 0020000 : e.isBlockDevice() ? 0060000 : 0010000;
                if (root0) {
                    Posix.mknod(target, type | (e.getMode() & 07777), e.getDevMajor(), e.getDevMinor());
                    metadata(target, e, false);
                } else {
                    // a placeholder the disk build replaces with the node (debugfs mknod)
                    Files.createFile(target);
                    Posix.chmod(target, 0600);
                    fixups.put(rel, new Fixup(rel, (int) e.getLongUserId(), (int) e.getLongGroupId(), type | (e.getMode() & 07777),
                            e.isCharacterDevice() ? 'c' : e.isBlockDevice() ? 'b' : 'p', e.getDevMajor(), e.getDevMinor(), Map.of()));
                }
            } else if (e.isFile()) {
                removeExisting(target, false);
                try (OutputStream out = Files.newOutputStream(target, java.nio.file.StandardOpenOption.CREATE_NEW,
                        java.nio.file.StandardOpenOption.WRITE)) {
                    copyCounted(in, out, e.getName());
                }
                metadata(target, e, false, rel);
            } else {
                throw new IOException("unsupported tar entry type '" + (char) e.getLinkFlag() + "' for " + e.getName());
            }
        }
        // the rest of the stream (end blocks, padding) belongs to the diff_id too
        tar.transferTo(OutputStream.nullOutputStream());
    }

    /** The entry's data, counted against {@link #maxBytes}: a compressed layer of a few megabytes can unpack to terabytes. */
    private void copyCounted(InputStream in, OutputStream out, String name) throws IOException {
        byte[] buf = new byte[1 << 16];
        int n;
        while ((n = in.read(buf)) > 0) {
            bytes += n;
            if (bytes > maxBytes) {
                throw new IOException("the image unpacks to more than " + maxBytes + " bytes (at " + name + "; microsandbox.image.maxUnpackedBytes)");
            }
            out.write(buf, 0, n);
        }
    }

    private record DirTime(Path dir, long millis) {
    }

    /**
     * Directory times last: creating entries inside a directory moves its mtime. A directory
     * that a later entry replaced, itself or one above it (by a symbolic link to anywhere),
     * keeps no time: setting it would write through that link.
     */
    public void finish() throws IOException {
        for (int i = dirTimes.size() - 1; i >= 0; i--) {
            DirTime t = dirTimes.get(i);
            if (isDirectoryWithoutLinks(t.dir())) {
                Posix.lsetmtime(t.dir(), t.millis() / 1000);
            }
        }
    }

    /** Whether {@code dir} and every directory between it and the root are directories, none a symbolic link. */
    private boolean isDirectoryWithoutLinks(Path dir) {
        Path p = root;
        for (Path part : root.relativize(dir)) {
            p = p.resolve(part);
            if (!Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) {
                return false;
            }
        }
        return true;
    }

    private void markThisLayer(String rel) {
        for (int i = rel.indexOf('/'); i >= 0; i = rel.indexOf('/', i + 1)) {
            thisLayer.add(rel.substring(0, i));
        }
        thisLayer.add(rel);
    }

    private void metadata(Path target, TarArchiveEntry e, boolean symlink) throws IOException {
        metadata(target, e, symlink, null);
    }

    private void metadata(Path target, TarArchiveEntry e, boolean symlink, String rel) throws IOException {
        int uid = (int) e.getLongUserId();
        int gid = (int) e.getLongGroupId();
        int mode = e.getMode() & 07777;
        Map<String, byte[]> deferred = new java.util.LinkedHashMap<>();
        if (root0) {
            Files.setAttribute(target, "unix:gid", gid, LinkOption.NOFOLLOW_LINKS);
            Files.setAttribute(target, "unix:uid", uid, LinkOption.NOFOLLOW_LINKS);
            if (!symlink) {
                // after chown, which clears setuid and setgid
                Posix.chmod(target, mode);
            }
        } else if (!symlink) {
            // the staging tree must stay writable and readable by us for later entries and mke2fs
            boolean dir = Files.isDirectory(target, LinkOption.NOFOLLOW_LINKS);
            Posix.chmod(target, (mode | (dir ? 0700 : 0600)) & 0777);
        }
        for (Map.Entry<String, String> h : e.getExtraPaxHeaders().entrySet()) {
            if (h.getKey().startsWith(PaxXattrs.KEY)) {
                // raw bytes, carried through commons-compress as base64 (PaxXattrs)
                String xname = h.getKey().substring(PaxXattrs.KEY.length());
                if (!PaxXattrs.validName(xname)) {
                    throw new IOException("invalid extended attribute name " + Json.brief(Json.tree(xname)) + " on " + e.getName());
                }
                byte[] value = java.util.Base64.getDecoder().decode(h.getValue());
                if (root0) {
                    Posix.lsetxattr(target, xname, value);
                } else {
                    try {
                        Posix.lsetxattr(target, xname, value);
                    } catch (IOException notAllowed) {
                        deferred.put(xname, value); // trusted.*, security.*: set on the disk
                    }
                }
            }
        }
        if (!root0 && rel != null) {
            int type = symlink ? 0120000 : Files.isDirectory(target, LinkOption.NOFOLLOW_LINKS) ? 0040000 : 0100000;
            int staged = symlink ? mode : (mode | (type == 0040000 ? 0700 : 0600)) & 0777;
            if (uid != myUid || gid != myGid || staged != mode || !deferred.isEmpty()) {
                fixups.put(rel, new Fixup(rel, uid, gid, type | mode, '\0', 0, 0, deferred));
            } else {
                fixups.remove(rel);
            }
        }
        if (!Files.isDirectory(target, LinkOption.NOFOLLOW_LINKS)) {
            Posix.lsetmtime(target, e.getLastModifiedDate().getTime() / 1000);
        }
    }

    /**
     * The fixups of an unprivileged unpack for the paths that still exist (later layers may
     * have deleted some), in order.
     */
    public java.util.List<Fixup> fixups() {
        java.util.List<Fixup> out = new java.util.ArrayList<>();
        for (Fixup f : fixups.values()) {
            if (Files.exists(root.resolve(f.path()), LinkOption.NOFOLLOW_LINKS)) {
                out.add(f);
            }
        }
        return out;
    }

    /** Removes what is at {@code target} (a directory with its contents unless keepDirectory). */
    private static void removeExisting(Path target, boolean keepDirectory) throws IOException {
        if (!Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        if (Files.isDirectory(target, LinkOption.NOFOLLOW_LINKS)) {
            if (!keepDirectory) {
                SandboxPreparer.deleteTree(target);
            }
            return;
        }
        Files.delete(target);
    }

    /**
     * The parent directory of {@code rel} inside the root, created (0755, root) where missing;
     * fails when any component on the way is not a real directory (a symbolic link, a file).
     */
    private Path safeParent(String rel) throws IOException {
        Path p = root;
        String[] parts = rel.split("/");
        for (int i = 0; i < parts.length - 1; i++) {
            p = p.resolve(parts[i]);
            if (Files.isSymbolicLink(p)) {
                throw new IOException("layer entry " + rel + " goes through the symbolic link " + root.relativize(p));
            }
            if (!Files.exists(p, LinkOption.NOFOLLOW_LINKS)) {
                Files.createDirectory(p);
                Posix.chmod(p, 0755);
            } else if (!Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) {
                throw new IOException("layer entry " + rel + " is below " + root.relativize(p) + ", which is not a directory");
            }
        }
        return p;
    }

    /** The entry's path relative to the root without "./" or "/" or trailing slashes; null for the root; ".." refused. */
    static String normalize(String name) throws IOException {
        List<String> out = new ArrayList<>();
        for (String part : name.split("/")) {
            if (part.isEmpty() || part.equals(".")) {
                continue;
            }
            if (part.equals("..")) {
                throw new IOException("layer entry " + name + " leaves the root");
            }
            out.add(part);
        }
        return out.isEmpty() ? null : String.join("/", out);
    }
}

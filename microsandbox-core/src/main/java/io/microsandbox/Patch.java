package io.microsandbox;

import java.util.Objects;

/**
 * A change to a sandbox's root filesystem, written into its writable upper layer before the
 * first boot; the shared image stays untouched. Mkdir and remove are idempotent; the others
 * fail with {@link ErrorKind#PATCH_FAILED} on a path the image already has, unless
 * {@link PatchOptions#replace()}. Not for disk-image roots.
 *
 * @param kind    what the patch does
 * @param path    the guest path it changes (for a symlink: the link)
 * @param content text for {@code TEXT} and {@code APPEND}
 * @param source  the symlink's target, or the host path for {@code COPY_FILE} and {@code COPY_DIR}
 */
public record Patch(Kind kind, String path, String content, String source, PatchOptions options) {
    /** The patch kinds, as the reference spells them. */
    public enum Kind { TEXT, APPEND, MKDIR, REMOVE, SYMLINK, COPY_FILE, COPY_DIR }

    public Patch {
        Objects.requireNonNull(kind, "kind");
        Objects.requireNonNull(path, "path");
        options = options == null ? PatchOptions.DEFAULT : options;
    }

    /** Writes {@code content} to a file (mode 0644 unless given). */
    public static Patch text(String path, String content, PatchOptions options) {
        return new Patch(Kind.TEXT, path, Objects.requireNonNull(content, "content"), null, options);
    }

    /** {@link #text(String, String, PatchOptions)} with the default options. */
    public static Patch text(String path, String content) {
        return text(path, content, PatchOptions.DEFAULT);
    }

    /** Appends to a file of the image (copied up first), or creates it. */
    public static Patch append(String path, String content) {
        return new Patch(Kind.APPEND, path, Objects.requireNonNull(content, "content"), null, PatchOptions.DEFAULT);
    }

    /** Creates a directory and its parents (mode 0755 unless given); nothing when it exists. */
    public static Patch mkdir(String path, PatchOptions options) {
        return new Patch(Kind.MKDIR, path, null, null, options);
    }

    /** {@link #mkdir(String, PatchOptions)} with the default options. */
    public static Patch mkdir(String path) {
        return mkdir(path, PatchOptions.DEFAULT);
    }

    /** Removes a path of the image (a whiteout in the upper layer); nothing when it is absent. */
    public static Patch remove(String path) {
        return new Patch(Kind.REMOVE, path, null, null, PatchOptions.DEFAULT);
    }

    /** Creates the symbolic link {@code link} pointing to {@code target}. */
    public static Patch symlink(String target, String link, PatchOptions options) {
        return new Patch(Kind.SYMLINK, link, null, Objects.requireNonNull(target, "target"), options);
    }

    /** {@link #symlink(String, String, PatchOptions)} with the default options. */
    public static Patch symlink(String target, String link) {
        return symlink(target, link, PatchOptions.DEFAULT);
    }

    /** Copies a host file to {@code dst} (its mode unless given). */
    public static Patch copyFile(String src, String dst, PatchOptions options) {
        return new Patch(Kind.COPY_FILE, dst, null, Objects.requireNonNull(src, "src"), options);
    }

    /** {@link #copyFile(String, String, PatchOptions)} with the default options. */
    public static Patch copyFile(String src, String dst) {
        return copyFile(src, dst, PatchOptions.DEFAULT);
    }

    /** Copies a host directory tree to {@code dst}; with replace, what the image had there is hidden. */
    public static Patch copyDir(String src, String dst, PatchOptions options) {
        return new Patch(Kind.COPY_DIR, dst, null, Objects.requireNonNull(src, "src"), options);
    }

    /** {@link #copyDir(String, String, PatchOptions)} with the default options. */
    public static Patch copyDir(String src, String dst) {
        return copyDir(src, dst, PatchOptions.DEFAULT);
    }
}

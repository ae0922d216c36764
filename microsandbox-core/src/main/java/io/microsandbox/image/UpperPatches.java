package io.microsandbox.image;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Patch;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.SandboxPreparer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.stream.Stream;

/**
 * Writes a sandbox's patches into its new upper disk: the patched files are laid out in a
 * staging tree in overlayfs upper form ({@code root/} for the files, {@code work/} empty,
 * a character device 0/0 as a whiteout for a removed lower path, {@code trusted.overlay.opaque}
 * for a replaced directory), and {@code mke2fs -d} makes the upper disk from it. The lower
 * disk is only read (with debugfs): to tell what exists, to follow its symbolic links, to
 * copy up a file for append and to give created parent directories the lower's owner and mode.
 */
public final class UpperPatches {
    private final LowerFs lower;
    private final Path root;

    private UpperPatches(Path lowerDisk, Path root) {
        this.lower = new LowerFs(lowerDisk);
        this.root = root;
    }

    /**
     * Creates {@code upperDisk} ({@code sizeMib}, sparse) holding {@code patches} applied in
     * order over {@code lowerDisk}.
     *
     * @throws MicrosandboxException PATCH_FAILED naming the patch and path that cannot be applied
     */
    public static void createUpperDisk(Path upperDisk, int sizeMib, Path lowerDisk, List<Patch> patches) {
        Path stage = null;
        try {
            stage = Files.createTempDirectory(upperDisk.getParent(), "upper-stage.");
            Posix.chmod(stage, 0755);
            Path root = Files.createDirectory(stage.resolve("root"));
            Posix.chmod(root, 0755);
            Posix.chmod(Files.createDirectory(stage.resolve("work")), 0755);
            // the merged root directory keeps the lower's attributes
            UpperPatches up = new UpperPatches(lowerDisk, root);
            LowerFs.Entry top = up.lower.stat("/");
            if (top != null) {
                up.attributes(root, top);
            }
            for (Patch p : patches) {
                try {
                    up.apply(p);
                } catch (IOException e) {
                    throw new MicrosandboxException(ErrorKind.PATCH_FAILED, "patch " + p.kind().name().toLowerCase(java.util.Locale.ROOT)
                            + " " + p.path() + ": " + e.getMessage(), e);
                }
            }
            // made aside and renamed once whole: a creation cut short leaves no upper a later start would boot
            Path staged = stage;
            OwnerOnly.replace(upperDisk, making -> RootDisks.mke2fsUpper(making, sizeMib, staged));
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot create the upper disk " + upperDisk + ": " + e.getMessage(), e);
        } finally {
            if (stage != null) {
                SandboxPreparer.deleteTree(stage);
            }
        }
    }

    private void apply(Patch p) throws IOException {
        String path = normalize(p.path());
        Integer mode = p.options().mode();
        boolean replace = p.options().replace();
        switch (p.kind()) {
            case TEXT -> {
                String at = target(path, replace, p);
                Path f = prepare(at);
                Files.write(f, p.content().getBytes(StandardCharsets.UTF_8));
                Posix.chmod(f, mode != null ? mode : 0644);
            }
            case APPEND -> {
                String at = unstaged(lower.resolve(path, true));
                Path f = prepare(at);
                if (Files.isSymbolicLink(f)) {
                    // staged on the host: appending through it would write wherever it points there
                    throw new IOException("an earlier patch made " + at + " a symbolic link; append to what it points to instead");
                }
                if (!Files.exists(f, LinkOption.NOFOLLOW_LINKS)) {
                    LowerFs.Entry e = lower.stat(at);
                    if (e != null && e.isDirectory()) {
                        throw new IOException("is a directory in the image");
                    }
                    if (e != null && e.type().equals("regular")) {
                        lower.dump(at, f);
                        attributes(f, e);
                    } else {
                        Files.createFile(f);
                        Posix.chmod(f, mode != null ? mode : 0644);
                    }
                } else if (Files.isDirectory(f, LinkOption.NOFOLLOW_LINKS)) {
                    throw new IOException("is a directory");
                }
                Files.write(f, p.content().getBytes(StandardCharsets.UTF_8), StandardOpenOption.APPEND);
            }
            case MKDIR -> {
                String at = unstaged(lower.resolve(path, true));
                Path d = root.resolve(at.substring(1));
                LowerFs.Entry e = lower.stat(at);
                if (Files.isDirectory(d, LinkOption.NOFOLLOW_LINKS) || (e != null && e.isDirectory() && !Files.exists(d, LinkOption.NOFOLLOW_LINKS))) {
                    return; // idempotent
                }
                if (e != null || Files.exists(d, LinkOption.NOFOLLOW_LINKS)) {
                    throw new IOException("exists and is not a directory");
                }
                Path made = prepare(at);
                Files.createDirectory(made);
                Posix.chmod(made, mode != null ? mode : 0755);
            }
            case REMOVE -> {
                String at = unstaged(lower.resolve(path, false));
                Path f = root.resolve(at.substring(1));
                boolean inUpper = Files.exists(f, LinkOption.NOFOLLOW_LINKS);
                if (inUpper) {
                    SandboxPreparer.deleteTree(f);
                }
                if (lower.stat(at) != null) {
                    Path w = prepare(at);
                    Posix.mknod(w, 0020000, 0, 0); // overlayfs whiteout
                }
            }
            case SYMLINK -> {
                String at = target(path, replace, p);
                Files.createSymbolicLink(prepare(at), Path.of(p.source()));
            }
            case COPY_FILE -> {
                Path src = Path.of(p.source());
                if (!Files.isRegularFile(src)) {
                    throw new IOException("the host file " + src + " does not exist or is not a regular file");
                }
                String at = target(path, replace, p);
                Path f = prepare(at);
                Files.copy(src, f);
                Posix.chmod(f, mode != null ? mode : (Integer) Files.getAttribute(src, "unix:mode") & 07777);
            }
            case COPY_DIR -> {
                Path src = Path.of(p.source());
                if (!Files.isDirectory(src)) {
                    throw new IOException("the host directory " + src + " does not exist");
                }
                String at = unstaged(lower.resolve(path, false));
                LowerFs.Entry e = lower.stat(at);
                Path d = root.resolve(at.substring(1));
                if ((e != null || Files.exists(d, LinkOption.NOFOLLOW_LINKS)) && !replace) {
                    throw new IOException("exists in the image (PatchOptions replace to hide what it has there)");
                }
                Path made = prepare(at);
                if (Files.exists(made, LinkOption.NOFOLLOW_LINKS) && !Files.isDirectory(made, LinkOption.NOFOLLOW_LINKS)) {
                    SandboxPreparer.deleteTree(made); // what an earlier patch staged there gives way (replace was asked)
                }
                copyTree(src, made, at);
                if (mode != null) {
                    Posix.chmod(made, mode);
                }
                if (e != null) {
                    // what the image has below it stays hidden
                    Posix.lsetxattr(made, "trusted.overlay.opaque", "y".getBytes(StandardCharsets.US_ASCII));
                }
            }
            default -> throw new IOException("unknown patch kind");
        }
    }

    /** The resolved path for a patch that creates something: fails on an existing path unless replace. */
    private String target(String path, boolean replace, Patch p) throws IOException {
        String at = unstaged(lower.resolve(path, false));
        Path upper = root.resolve(at.substring(1));
        boolean exists = Files.exists(upper, LinkOption.NOFOLLOW_LINKS) || lower.stat(at) != null;
        if (exists && !replace) {
            throw new IOException("the path exists in the image (PatchOptions replace to overwrite it)");
        }
        if (Files.exists(upper, LinkOption.NOFOLLOW_LINKS)) {
            SandboxPreparer.deleteTree(upper);
        }
        return at;
    }

    /**
     * {@code at}, refused when a directory on its way is a link an earlier patch staged: the
     * staging tree is on the host, where that link leads out of it (a removal would delete, a
     * write would write, wherever it points). Checked before anything under it is touched.
     */
    private String unstaged(String at) throws IOException {
        for (Parent parent : parents(at)) {
            if (Files.isSymbolicLink(parent.staged())) {
                throw new IOException("an earlier patch made " + parent.guest() + " a symbolic link; patch what it points to instead");
            }
        }
        return at;
    }

    /** A directory on the way to a path: its guest path and where it is staged. */
    private record Parent(String guest, Path staged) {
    }

    /** The directories on the way to {@code at}, outermost first. */
    private List<Parent> parents(String at) {
        List<String> parts = LowerFs.split(at);
        List<Parent> parents = new java.util.ArrayList<>();
        Path staged = root;
        StringBuilder guest = new StringBuilder();
        for (int i = 0; i < parts.size() - 1; i++) {
            guest.append('/').append(parts.get(i));
            staged = staged.resolve(parts.get(i));
            parents.add(new Parent(guest.toString(), staged));
        }
        return parents;
    }

    /**
     * The staging path for {@code at} with its parents made: parents the lower has get its
     * owner and mode (an upper directory's attributes are the merged directory's); new ones 0755.
     */
    private Path prepare(String at) throws IOException {
        for (Parent parent : parents(at)) {
            // not a staged link: every path went through unstaged()
            Path p = parent.staged();
            String guest = parent.guest();
            if (!Files.exists(p, LinkOption.NOFOLLOW_LINKS)) {
                Files.createDirectory(p);
                LowerFs.Entry e = lower.stat(guest);
                if (e != null && !e.isDirectory()) {
                    throw new IOException(guest + " is not a directory in the image");
                }
                if (e != null) {
                    attributes(p, e);
                } else {
                    Posix.chmod(p, 0755);
                }
            } else if (!Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) {
                throw new IOException(guest + " is not a directory");
            }
        }
        return root.resolve(at.substring(1));
    }

    private void attributes(Path p, LowerFs.Entry e) throws IOException {
        Files.setAttribute(p, "unix:gid", e.gid(), LinkOption.NOFOLLOW_LINKS);
        Files.setAttribute(p, "unix:uid", e.uid(), LinkOption.NOFOLLOW_LINKS);
        Posix.chmod(p, e.mode() & 07777);
    }

    /**
     * Copies the host tree {@code src} to the staging directory {@code dst} (the guest's
     * {@code guestDst}), merging into what earlier patches staged there, but never through a
     * link one of them staged: that would write to the host.
     */
    private static void copyTree(Path src, Path dst, String guestDst) throws IOException {
        try (Stream<Path> walk = Files.walk(src)) {
            for (Path s : walk.toList()) {
                String relative = src.relativize(s).toString();
                Path d = dst.resolve(relative);
                if (Files.isSymbolicLink(s)) {
                    Files.createSymbolicLink(d, Files.readSymbolicLink(s));
                    continue;
                }
                if (Files.isDirectory(s)) {
                    if (!Files.exists(d, LinkOption.NOFOLLOW_LINKS)) {
                        Files.createDirectory(d);
                    } else if (!Files.isDirectory(d, LinkOption.NOFOLLOW_LINKS)) {
                        throw new IOException("an earlier patch made " + guestDst + (relative.isEmpty() ? "" : "/" + relative)
                                + " something other than a directory");
                    }
                } else if (Files.isRegularFile(s)) {
                    Files.copy(s, d);
                } else {
                    continue; // sockets, devices: not copied
                }
                Posix.chmod(d, (Integer) Files.getAttribute(s, "unix:mode") & 07777);
            }
        }
    }

    /** An absolute guest path without "." components; ".." is refused. */
    static String normalize(String path) throws IOException {
        if (!path.startsWith("/")) {
            throw new IOException("not an absolute guest path");
        }
        List<String> parts = LowerFs.split(path);
        if (parts.contains("..")) {
            throw new IOException("'..' is not allowed");
        }
        if (parts.isEmpty()) {
            throw new IOException("cannot patch the root directory itself");
        }
        return "/" + String.join("/", parts);
    }
}

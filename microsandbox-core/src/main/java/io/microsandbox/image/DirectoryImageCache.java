package io.microsandbox.image;

import com.fasterxml.jackson.databind.JsonNode;
import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.FileLocks;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.vmm.LowerDiskFile;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Supplier;

/**
 * The lower disks of directory images in a home's {@code cache/rootfs}, one per content of a
 * tree ({@link RootDisks#lowerDisk}), and what keeps them there. Each edit of a tree makes a
 * new disk as large as the tree, so the old ones are collected: a sandbox names the disk it
 * last booted on in {@code sandboxes/<name>/}{@value #PIN}, a checkpoint the disk its guest
 * memory was saved over, and {@link #collect} deletes the disks nothing names. Pins are
 * written, and disks deleted, under one lock: a disk found for a sandbox is either pinned
 * before a collection looks, or gone when the pin is written, and then built again.
 */
public final class DirectoryImageCache {
    /** The file in a sandbox's directory naming the cached lower disk it booted on. */
    public static final String PIN = "image.disk";
    /**
     * How old a disk made aside ({@code .<name>.ext4.part}) must be to count as left by a build
     * that died: a build rewrites it until its {@code mke2fs}, which runs 10 minutes at most, ends.
     */
    static final Duration DEAD_BUILD_AGE = Duration.ofMinutes(15);
    private static final int BUILD_ATTEMPTS = 3;

    private DirectoryImageCache() {
    }

    /** The cache of directory images' lower disks under {@code home}. */
    public static Path cacheDir(Path home) {
        return home.resolve("cache").resolve("rootfs");
    }

    /**
     * The lower disk of the tree {@code imageDir}, built into {@code home}'s cache when not
     * there yet, and pinned to the sandbox whose directory is {@code sandboxDir}.
     */
    public static Path lowerDisk(Path home, Path imageDir, Path sandboxDir) {
        for (int attempt = 1; ; attempt++) {
            Path disk = RootDisks.lowerDisk(imageDir, cacheDir(home));
            if (tryPin(home, sandboxDir, disk)) {
                return disk;
            }
            // collected between its build and the pin (a collection without grace period): built again
            if (attempt == BUILD_ATTEMPTS) {
                throw new MicrosandboxException(ErrorKind.IO, "the root disk of image " + imageDir + " was deleted "
                        + BUILD_ATTEMPTS + " times as soon as it was built; is a prune of " + home + " running in a loop?");
            }
        }
    }

    /**
     * Pins the cached lower disk {@code disk} to the sandbox whose directory is
     * {@code sandboxDir}, as {@link #lowerDisk} does for the disk it finds.
     *
     * @throws MicrosandboxException {@link ErrorKind#IMAGE_NOT_FOUND} when the disk is gone
     */
    public static void pin(Path home, Path sandboxDir, Path disk) {
        if (!tryPin(home, sandboxDir, disk)) {
            throw new MicrosandboxException(ErrorKind.IMAGE_NOT_FOUND, "the root disk " + disk + " was deleted from the image cache");
        }
    }

    private static boolean tryPin(Path home, Path sandboxDir, Path disk) {
        try {
            return withCollectionLock(home, () -> {
                if (!Files.isRegularFile(disk)) {
                    return false;
                }
                OwnerOnly.write(sandboxDir.resolve(PIN), (disk.getFileName() + "\n").getBytes(StandardCharsets.UTF_8));
                return true;
            });
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot pin the root disk " + disk + " to " + sandboxDir + ": " + e.getMessage(), e);
        }
    }

    /**
     * Deletes the lower disks in {@code home}'s cache that no sandbox of the home pins and that
     * are not in {@code keptDisks} (read under the lock: the disks of the home's checkpoints),
     * except those built within {@code minAge}; and disks a build that died left aside. Returns
     * the bytes freed.
     */
    public static long collect(Path home, Supplier<Set<Path>> keptDisks, Duration minAge) throws IOException {
        Path cache = cacheDir(home);
        if (!Files.isDirectory(cache)) {
            return 0;
        }
        long now = System.currentTimeMillis();
        long cutoff = now - minAge.toMillis();
        long deadBuildCutoff = now - DEAD_BUILD_AGE.toMillis();
        return withCollectionLock(home, () -> {
            Set<String> kept = pinnedNames(home); // null: every disk is kept
            if (kept != null) {
                for (Path disk : keptDisks.get()) {
                    if (disk != null && disk.getFileName() != null) {
                        kept.add(disk.getFileName().toString());
                    }
                }
            }
            long freed = 0;
            try (var s = Files.list(cache)) {
                for (Path p : s.toList()) {
                    String name = p.getFileName().toString();
                    boolean unused = kept != null && RootDisks.isCachedLowerName(name) && !kept.contains(name) && modifiedBefore(p, cutoff);
                    boolean deadBuild = name.startsWith(".") && name.endsWith(".ext4.part") && modifiedBefore(p, deadBuildCutoff);
                    if ((unused || deadBuild) && Files.isRegularFile(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                        long size = Files.size(p);
                        if (Files.deleteIfExists(p)) {
                            freed += size;
                        }
                    }
                }
            }
            return freed;
        });
    }

    private static boolean modifiedBefore(Path p, long cutoffMillis) throws IOException {
        return Files.getLastModifiedTime(p, java.nio.file.LinkOption.NOFOLLOW_LINKS).toMillis() <= cutoffMillis;
    }

    /**
     * The disk names the home's sandboxes pin (those being claimed or deleted, hidden, have none
     * yet or any more). A sandbox made before there were pins has the disk it booted on in its
     * supervisor's spec: QEMU's command line. Null when such a spec cannot be read: that
     * sandbox may run on any of them.
     */
    private static Set<String> pinnedNames(Path home) throws IOException {
        Set<String> names = new HashSet<>();
        Path sandboxes = home.resolve("sandboxes");
        if (!Files.isDirectory(sandboxes)) {
            return names;
        }
        try (var s = Files.list(sandboxes)) {
            for (Path sb : s.toList()) {
                Path pin = sb.resolve(PIN);
                if (sb.getFileName().toString().startsWith(".")) {
                    continue;
                }
                Path spec = SandboxLayout.of(home, sb.getFileName().toString()).specFile();
                try {
                    if (Files.isRegularFile(pin)) {
                        names.add(Files.readString(pin, StandardCharsets.UTF_8).strip());
                    } else if (Files.isRegularFile(spec)) {
                        Path booted;
                        try {
                            booted = diskInSpec(spec);
                        } catch (java.nio.file.NoSuchFileException e) {
                            throw e;
                        } catch (IOException | RuntimeException unreadable) {
                            return null;
                        }
                        if (booted != null && booted.getFileName() != null) {
                            names.add(booted.getFileName().toString());
                        }
                    }
                } catch (java.nio.file.NoSuchFileException e) {
                    // its sandbox was removed meanwhile
                }
            }
        }
        return names;
    }

    /**
     * The lower disk QEMU's command line in a supervisor's spec opens; null when it names none
     * (a disk image's sandbox).
     *
     * @throws IOException when the spec cannot be read or holds no command line
     */
    private static Path diskInSpec(Path spec) throws IOException {
        JsonNode vmmArgv = Json.parse(spec).path("vmmArgv");
        if (!vmmArgv.isArray()) {
            throw new IOException(spec + " holds no vmmArgv");
        }
        List<String> argv = new java.util.ArrayList<>();
        vmmArgv.forEach(a -> argv.add(a.asText()));
        return LowerDiskFile.pathIn(argv);
    }

    private static <T> T withCollectionLock(Path home, FileLocks.IoAction<T> action) throws IOException {
        Path cache = OwnerOnly.directory(cacheDir(home));
        return FileLocks.withLock(cache.resolve(".collect.lock"), "the image cache of " + home, action);
    }
}

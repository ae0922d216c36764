package io.microsandbox.image;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Builds small disks with mke2fs (e2fsprogs, installed by scripts/setup.sh). */
class RootDisksTest {
    @TempDir
    Path tmp;

    private static String mode(Path p) throws IOException {
        return PosixFilePermissions.toString(Files.getPosixFilePermissions(p));
    }

    private Path smallImage(Path dir) throws IOException {
        Files.createDirectories(dir.resolve("etc"));
        Files.writeString(dir.resolve("etc/hostname"), "small\n");
        return dir;
    }

    @Test
    void disksAndTheCacheAreOwnerOnly() throws IOException {
        Path upper = tmp.resolve("upper.ext4");
        Files.writeString(upper, "an old upper disk, world-readable");
        Files.setPosixFilePermissions(upper, PosixFilePermissions.fromString("rw-r--r--"));
        RootDisks.createUpperDisk(upper, 64);
        assertThat(mode(upper)).isEqualTo("rw-------");
        assertThat(Files.size(upper)).isEqualTo(64L * 1024 * 1024);

        Path cache = tmp.resolve("cache/rootfs");
        Path lower = RootDisks.lowerDisk(smallImage(tmp.resolve("image")), cache);
        assertThat(lower.getParent()).isEqualTo(cache);
        assertThat(mode(lower)).isEqualTo("rw-------");
        assertThat(mode(cache)).isEqualTo("rwx------");
        assertThat(mode(tmp.resolve("cache"))).isEqualTo("rwx------");

        Files.setPosixFilePermissions(lower, PosixFilePermissions.fromString("rw-r--r--"));
        assertThat(RootDisks.lowerDisk(tmp.resolve("image"), cache)).isEqualTo(lower);
        assertThat(mode(lower)).as("a cached disk an older version left readable").isEqualTo("rw-------");
    }

    /** A disk whose making fails leaves nothing under its name (a later start would take an empty file for the sandbox's disk). */
    @Test
    void aDiskThatCannotBeMadeLeavesNothingBehind() throws IOException {
        Path upper = tmp.resolve("upper.ext4");
        assertThatThrownBy(() -> RootDisks.createUpperDisk(upper, 0)).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.IO));
        try (var left = Files.list(tmp)) {
            assertThat(left).isEmpty();
        }
    }

    @Test
    void writableDisksHaveTheirInodeTablesMarkedZeroed() throws Exception {
        // else the guest's kernel zeroes them in the background after mounting: 64 MiB of
        // writes in a new 4 GiB upper disk's first seconds
        Path upper = tmp.resolve("upper.ext4");
        RootDisks.createUpperDisk(upper, 512);
        Path volume = tmp.resolve("volume.ext4");
        RootDisks.createDataDisk(volume, 512, "msb-vol");
        Path patched = tmp.resolve("patched.ext4");
        io.microsandbox.runtime.OwnerOnly.createFile(patched);
        RootDisks.mke2fsUpper(patched, 512, smallImage(tmp.resolve("tree")));
        for (Path disk : java.util.List.of(upper, volume, patched)) {
            java.util.List<String> groups = groupDescriptors(disk);
            assertThat(groups).as("block groups of %s", disk.getFileName()).hasSizeGreaterThan(1)
                    .allMatch(g -> g.contains("ITABLE_ZEROED"));
            assertThat(Files.size(disk)).isEqualTo(512L * 1024 * 1024);
        }
    }

    /** The "Group N:" lines of dumpe2fs, which carry each group's flags. */
    private static java.util.List<String> groupDescriptors(Path disk) throws Exception {
        Process p = new ProcessBuilder("/usr/sbin/dumpe2fs", disk.toString()).redirectError(ProcessBuilder.Redirect.DISCARD).start();
        String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        assertThat(p.waitFor()).isZero();
        return out.lines().filter(l -> l.matches("Group \\d+: .*")).toList();
    }

    @Test
    void anImageBehindASymbolicLinkIsFingerprintedThroughIt() throws Exception {
        Path real = smallImage(tmp.resolve("real"));
        Path link = Files.createSymbolicLink(tmp.resolve("link"), real);
        Path cache = tmp.resolve("cache");

        Path first = RootDisks.lowerDisk(link, cache);
        assertThat(RootDisks.lowerDisk(real, cache)).as("the link and its target are one image").isEqualTo(first);

        Thread.sleep(10);
        Files.writeString(real.resolve("etc/hostname"), "changed behind the link\n");
        Path second = RootDisks.lowerDisk(link, cache);
        assertThat(second).as("a change behind the link makes a new lower disk").isNotEqualTo(first);
        assertThat(second).isRegularFile();

        Path dangling = Files.createSymbolicLink(tmp.resolve("dangling"), tmp.resolve("nowhere"));
        assertThatThrownBy(() -> RootDisks.lowerDisk(dangling, cache))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_NOT_FOUND));
    }

    @Test
    void aCheckpointsLowerDiskIsTakenOnlyFromTheCache() throws Exception {
        Path cache = Files.createDirectories(tmp.resolve("cache"));
        Path disk = Files.writeString(cache.resolve("0123456789abcdef01234567.ext4"), "lower");
        assertThat(RootDisks.cachedLowerDisk(cache, disk)).isEqualTo(disk);
        // a manifest naming any other file the user can read must not make it the guest's disk
        Path elsewhere = Files.writeString(tmp.resolve("0123456789abcdef01234567.ext4"), "secret");
        assertThat(RootDisks.cachedLowerDisk(cache, elsewhere)).isNull();
        assertThat(RootDisks.cachedLowerDisk(cache, Files.writeString(cache.resolve("upper.ext4"), "x"))).isNull();
        Path link = Files.createSymbolicLink(cache.resolve("fedcba9876543210fedcba98.ext4"), elsewhere);
        assertThat(RootDisks.cachedLowerDisk(cache, link)).as("a link out of the cache").isNull();
        assertThat(RootDisks.cachedLowerDisk(cache, cache.resolve("0123456789abcdef01234567.ext4/../../" + elsewhere.getFileName()))).isNull();
        assertThat(RootDisks.cachedLowerDisk(cache, cache.resolve("ffffffffffffffffffffffff.ext4"))).as("missing").isNull();
    }

    /** Creators of one new tree at once build its disk once: the others take that disk, not one of their own renamed over it. */
    @Test
    void aTreeIsBuiltOnceWhenSeveralCreatorsWantItAtOnce() throws Exception {
        Path image = smallImage(tmp.resolve("image"));
        Path cache = tmp.resolve("cache/rootfs");
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(4);
        try {
            java.util.concurrent.CountDownLatch start = new java.util.concurrent.CountDownLatch(1);
            java.util.List<java.util.concurrent.Future<Object>> builds = new java.util.ArrayList<>();
            for (int i = 0; i < 4; i++) {
                builds.add(pool.submit(() -> {
                    start.await();
                    Path disk = RootDisks.lowerDisk(image, cache);
                    return Files.readAttributes(disk, java.nio.file.attribute.BasicFileAttributes.class).fileKey();
                }));
            }
            start.countDown();
            java.util.Set<Object> disks = new java.util.HashSet<>();
            for (var build : builds) {
                disks.add(build.get(60, java.util.concurrent.TimeUnit.SECONDS));
            }
            assertThat(disks).hasSize(1);
        } finally {
            pool.shutdownNow();
        }
        try (var left = Files.list(cache)) {
            assertThat(left.map(p -> p.getFileName().toString()).filter(n -> !n.endsWith(".lock")).toList()).hasSize(1).allMatch(n -> n.endsWith(".ext4"));
        }
    }
}

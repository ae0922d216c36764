package io.microsandbox;

import io.microsandbox.image.DirectoryImageCache;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxPreparer;
import io.microsandbox.runtime.vmm.KernelBundle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * {@link Images#prune} collects a directory image's cached disk once nothing needs it, and
 * keeps it while a sandbox (running or stopped) or a checkpoint does. A home of its own: the
 * other tests' cached disk stays out of reach.
 */
class DirectoryImagePruneIT {
    @Test
    @Timeout(600)
    void aDirectoryImagesDiskIsKeptWhileASandboxOrCheckpointNeedsItAndPrunedAfter() throws Exception {
        Path home = Files.createTempDirectory("msb-prune-home");
        Microsandbox runtime = runtimeIn(home);
        Images images = Images.at(home);
        String source = "prune-src";
        String restored = "prune-restored";
        try {
            try (Sandbox sb = runtime.create(source, TestSandboxes.config().build())) {
                assertThat(sb.shell("echo booted").stdout()).isEqualTo("booted\n");
            }
            Path disk = onlyCachedDisk(home);
            assertThat(images.prune(Duration.ZERO)).as("a stopped sandbox booted on it").isZero();
            assertThat(disk).exists();

            try (Sandbox sb = runtime.start(source)) {
                assertThat(sb.shell("echo again").stdout()).isEqualTo("again\n");
                sb.checkpoint("prune-cp");
            }
            runtime.remove(source);
            assertThat(images.prune(Duration.ZERO)).as("a checkpoint was taken over it").isZero();
            assertThat(disk).exists();

            try (Sandbox sb = runtime.restore(restored, "prune-cp")) {
                runtime.checkpoints().remove("prune-cp");
                assertThat(images.prune(Duration.ZERO)).as("a running sandbox restored over it").isZero();
                assertThat(sb.shell("echo restored").stdout()).isEqualTo("restored\n");
            }
            runtime.remove(restored);
            long size = Files.size(disk);
            assertThat(images.prune(Duration.ZERO)).isEqualTo(size);
            assertThat(disk).doesNotExist();
        } finally {
            removeAll(runtime, source, restored);
        }
    }

    /**
     * A running sandbox's guest has read the disk it booted on: one put at its path since (a
     * prune, then a build) is another, and a checkpoint recording it would restore the saved
     * guest over a disk it never read. Refused until the sandbox boots again.
     */
    @Test
    @Timeout(600)
    void aCheckpointOverADiskBuiltAgainUnderTheRunningSandboxIsRefused() throws Exception {
        Path home = Files.createTempDirectory("msb-rebuilt-home");
        Microsandbox runtime = runtimeIn(home);
        String name = "rebuilt-under";
        try {
            try (Sandbox sb = runtime.create(name, TestSandboxes.config().build())) {
                assertThat(sb.shell("echo booted").stdout()).isEqualTo("booted\n");
                Path disk = onlyCachedDisk(home);
                // the same bytes and times in another file, as a build at the same path makes
                Path copy = disk.resolveSibling("rebuilt.tmp");
                Files.copy(disk, copy, java.nio.file.StandardCopyOption.COPY_ATTRIBUTES);
                Files.move(copy, disk, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
                assertThatThrownBy(() -> sb.checkpoint("rebuilt-cp"))
                        .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                            assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INCOMPATIBLE);
                            assertThat(e.getMessage()).contains(disk.toString()).contains("stop and start the sandbox");
                        });
                assertThat(runtime.checkpoints().list()).isEmpty();
                assertThat(sb.shell("echo still serving").stdout()).isEqualTo("still serving\n");
            }
            try (Sandbox sb = runtime.start(name)) {
                sb.checkpoint("rebuilt-cp");
            }
            assertThat(runtime.checkpoints().list()).hasSize(1);
        } finally {
            removeAll(runtime, name);
        }
    }

    /** A runtime whose home is {@code home}, with the kernel the suite set up. */
    private static Microsandbox runtimeIn(Path home) {
        return Microsandbox.builder().home(home).kernelDir(KernelBundle.locate(RuntimeFiles.defaultHome()).dir()).build();
    }

    /** Kills and removes {@code names}, then deletes the runtime's home. */
    private static void removeAll(Microsandbox runtime, String... names) {
        for (String name : names) {
            runtime.find(name).ifPresent(h -> {
                h.kill();
                h.remove();
            });
        }
        // a spare supervisor started for this home would write into it while it is deleted
        io.microsandbox.runtime.supervisor.SpareSupervisors.release(runtime.home());
        SandboxPreparer.deleteTree(runtime.home());
    }

    private static Path onlyCachedDisk(Path home) throws Exception {
        try (Stream<Path> s = Files.list(DirectoryImageCache.cacheDir(home))) {
            List<Path> disks = s.filter(p -> p.getFileName().toString().endsWith(".ext4")).toList();
            assertThat(disks).hasSize(1);
            return disks.get(0);
        }
    }
}

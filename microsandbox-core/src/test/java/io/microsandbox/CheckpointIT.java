package io.microsandbox;

import io.microsandbox.runtime.SandboxPreparer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Memory checkpoints, restores and forks, against real VMs. */
class CheckpointIT {
    /** Keeps state in memory (a token drawn at start, a counter) and publishes it twice a second. */
    private static final String LOOP = String.join("\n",
            "import os, random, time",
            "token = random.getrandbits(64)",
            "count = 0",
            "while True:",
            "    count += 1",
            "    with open('/tmp/state.tmp', 'w') as f:",
            "        f.write(f'{os.getpid()} {token} {count}')",
            "    os.replace('/tmp/state.tmp', '/tmp/state')",
            "    time.sleep(0.2)",
            "");

    @Test
    void restoredForksKeepTheRunningProcessAndGetTheirOwnEntropyClockAndDisk() throws Exception {
        Microsandbox runtime = Microsandbox.defaultRuntime();
        String source = TestSandboxes.uniqueName("cp-src");
        String cpName = TestSandboxes.uniqueName("cp");
        String prefix = TestSandboxes.uniqueName("cp-fork");
        String named = TestSandboxes.uniqueName("cp-named");
        Path tmp = Files.createTempDirectory("msb-checkpoint-it");
        List<String> sandboxes = new ArrayList<>(List.of(source, prefix + "-1", prefix + "-2", prefix + "-3", named));
        try {
            String[] before;
            long sourceRss;
            try (Sandbox sb = Sandbox.create(source, TestSandboxes.config().build())) {
                sb.fs().writeString("/root/loop.py", LOOP);
                sb.shell("nohup python3 /root/loop.py >/dev/null 2>&1 </dev/null &");
                before = awaitState(sb, 2);

                // an open exec session would be cut by the pause: refused, and the sandbox runs on
                try (ExecHandle sleeping = sb.execStream("sleep", List.of("30"), ExecOptions.defaults())) {
                    assertThatThrownBy(() -> sb.checkpoint(cpName)).isInstanceOfSatisfying(MicrosandboxException.class,
                            e -> assertThat(e.kind()).isEqualTo(ErrorKind.UNSUPPORTED_OPERATION));
                    sleeping.kill();
                    sleeping.waitFor();
                }
                // the source's clock an hour behind: a fork whose clock the restore did not set shows it
                sb.shell("date -s @$(( $(date +%s) - 3600 )) > /dev/null");
                sourceRss = sb.metrics().memoryHostResidentBytes();
                Checkpoint cp = sb.checkpoint(cpName);
                assertThat(cp.sourceSandbox()).isEqualTo(source);
                assertThat(cp.memoryBytes()).isPositive().isEqualTo(Files.size(cp.memoryFile()));
                // the guest's memory beside the stream: as large as the guest's, holding only what had data
                assertThat(cp.ramBytes()).isEqualTo((long) sb.config().memoryMib() << 20).isEqualTo(Files.size(cp.ramFile()));
                assertThat(cp.ramDataBytes()).isPositive().isLessThan(cp.ramBytes() / 2);
                // saving it read only the pages that hold data: the source's memory did not grow to the guest's size
                assertThat(sb.metrics().memoryHostResidentBytes()).as("the source's QEMU RSS after the checkpoint")
                        .isLessThan(sourceRss + (100L << 20));
                assertThat(cp.vm()).containsKeys("qemuVersion", "machine", "kernel", "initramfs", "lowerDisk");
                assertThat(cp.digest()).isEqualTo(Snapshot.sha256(Files.readAllBytes(cp.path().resolve("checkpoint.json"))));
                assertThat(Checkpoint.list()).extracting(Checkpoint::digest).contains(cp.digest());
                assertThatThrownBy(() -> sb.checkpoint(cpName)).isInstanceOfSatisfying(MicrosandboxException.class,
                        e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_ALREADY_EXISTS));
                // resumed: the source runs on, its loop too, and its disk takes writes again (restores do not see them)
                assertThat(awaitState(sb, Integer.parseInt(before[2]) + 2)[1]).isEqualTo(before[1]);
                assertThat(sb.shell("echo after > /root/after.txt && sync && cat /root/after.txt").stdout()).isEqualTo("after\n");
                Checkpoint stopped = sb.checkpoint(tmp.resolve("at-stop").toString(), AfterCheckpoint.STOP);
                assertThat(stopped.path()).isEqualTo(tmp.resolve("at-stop"));
                assertThat(Sandbox.get(source).status()).isEqualTo(SandboxStatus.STOPPED);
            }

            Checkpoint cp = Checkpoint.get(cpName);
            long forkStart = System.currentTimeMillis();
            List<Sandbox> forks = runtime.fork(cp, prefix, 3, RestoreOptions.defaults());
            long forkMillis = System.currentTimeMillis() - forkStart;
            try {
                Set<String> randomness = new HashSet<>();
                for (Sandbox fork : forks) {
                    // a restore allocates only the memory the checkpoint holds data for
                    assertThat(fork.metrics().memoryHostResidentBytes()).as("a fork's QEMU RSS").isLessThan(sourceRss + (100L << 20));
                    // the same process, with the token it drew before the checkpoint, still counting
                    String[] state = awaitState(fork, Integer.parseInt(before[2]) + 2);
                    assertThat(state[0]).isEqualTo(before[0]);
                    assertThat(state[1]).isEqualTo(before[1]);
                    randomness.add(fork.shell("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'").stdout());
                    long hostBefore = System.currentTimeMillis();
                    double guest = Double.parseDouble(fork.shell("date +%s.%N").stdout().strip());
                    long hostAfter = System.currentTimeMillis();
                    // each restore sends the host's time as it resumes the guest, which applies it once
                    // it runs again: on a loaded host up to the whole fork call later (over a second
                    // with three guests on two cores), so the guest may lag by that much, never lead
                    assertThat((long) (guest * 1000)).isBetween(hostBefore - forkMillis - 1000, hostAfter + 1000);
                    fork.shell("echo mine > /root/" + fork.name() + ".txt && sync");
                    // a restored guest sends no hello; its answer to the restore names the agent and kernel
                    assertThat(fork.runtimeVersion().kernel()).isEqualTo(fork.shell("uname -r").stdout().strip());
                    assertThat(fork.runtimeVersion().agent()).isNotBlank();
                }
                assertThat(randomness).hasSize(3);
                for (Sandbox fork : forks) {
                    assertThat(fork.shell("ls /root").stdout().lines()).containsExactlyInAnyOrder("loop.py", fork.name() + ".txt");
                }
            } finally {
                for (Sandbox fork : forks) {
                    fork.kill();
                }
            }

            try (Sandbox renamed = runtime.restore(named, cp, RestoreOptions.builder().hostname("restored-box").build())) {
                assertThat(renamed.shell("hostname").stdout()).isEqualTo("restored-box\n");
            }

            // a checkpoint from another kernel is refused before QEMU starts, and leaves nothing behind
            Path other = tmp.resolve("other-kernel");
            Files.createDirectory(other);
            for (String file : List.of("memory.bin", "ram.bin", "upper.ext4")) {
                sameFile(cp.path().resolve(file), other.resolve(file));
            }
            String manifest = Files.readString(cp.path().resolve("checkpoint.json"), StandardCharsets.UTF_8);
            String kernel = cp.vm().get("kernel");
            Files.writeString(other.resolve("checkpoint.json"), manifest.replace(kernel, "sha256:" + "0".repeat(64)));
            String refused = TestSandboxes.uniqueName("cp-refused");
            long start = System.nanoTime();
            assertThatThrownBy(() -> runtime.restore(refused, Checkpoint.get(other.toString()), RestoreOptions.defaults()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INCOMPATIBLE);
                        assertThat(e.getMessage()).contains("kernel");
                    });
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(30));
            assertThat(runtime.find(refused)).isEmpty();
            // so is one of the earlier format, which carried guest memory in the migration stream
            assertThat(manifest).contains("\"format\":2");
            Files.writeString(other.resolve("checkpoint.json"), manifest.replace("\"format\":2", "\"format\":1"));
            assertThatThrownBy(() -> runtime.restore(refused, Checkpoint.get(other.toString()), RestoreOptions.defaults()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INCOMPATIBLE);
                        assertThat(e.getMessage()).contains("earlier microsandbox");
                    });

            // a checkpoint's files are its own: one that is a link (to any host file) is refused
            Path linked = tmp.resolve("linked");
            Files.createDirectory(linked);
            Files.copy(cp.path().resolve("checkpoint.json"), linked.resolve("checkpoint.json"));
            sameFile(cp.memoryFile(), linked.resolve("memory.bin"));
            sameFile(cp.path().resolve("upper.ext4"), linked.resolve("upper.ext4"));
            Files.createSymbolicLink(linked.resolve("ram.bin"), cp.ramFile());
            assertThatThrownBy(() -> runtime.restore(refused, Checkpoint.get(linked.toString()), RestoreOptions.defaults()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY);
                        assertThat(e.getMessage()).contains("guest memory file").contains("symbolic link");
                    });

            // a truncated memory file is refused before QEMU starts; one that does not parse fails the boot, never hangs it
            Path truncated = tmp.resolve("truncated");
            Files.createDirectory(truncated);
            sameFile(cp.path().resolve("upper.ext4"), truncated.resolve("upper.ext4"));
            Files.copy(cp.path().resolve("checkpoint.json"), truncated.resolve("checkpoint.json"));
            byte[] memory = Files.readAllBytes(cp.memoryFile());
            Files.write(truncated.resolve("memory.bin"), java.util.Arrays.copyOf(memory, memory.length / 2));
            sameFile(cp.ramFile(), truncated.resolve("ram.bin"));
            assertThatThrownBy(() -> runtime.restore(refused, Checkpoint.get(truncated.toString()), RestoreOptions.defaults()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY));
            // the same for a guest memory file cut short
            Files.write(truncated.resolve("memory.bin"), memory);
            Files.delete(truncated.resolve("ram.bin"));
            try (var ram = new java.io.RandomAccessFile(truncated.resolve("ram.bin").toFile(), "rw")) {
                ram.setLength(cp.ramBytes() / 2);
            }
            assertThatThrownBy(() -> runtime.restore(refused, Checkpoint.get(truncated.toString()), RestoreOptions.defaults()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY);
                        assertThat(e.getMessage()).contains("guest memory file");
                    });
            Files.delete(truncated.resolve("ram.bin"));
            sameFile(cp.ramFile(), truncated.resolve("ram.bin"));
            byte[] garbled = memory.clone();
            java.util.Arrays.fill(garbled, 0, 4096, (byte) 0x5a);
            Files.write(truncated.resolve("memory.bin"), garbled);
            long garbledStart = System.nanoTime();
            assertThatThrownBy(() -> runtime.restore(refused, Checkpoint.get(truncated.toString()), RestoreOptions.defaults()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED));
            assertThat(Duration.ofNanos(System.nanoTime() - garbledStart)).isLessThan(Duration.ofSeconds(30));
            assertThat(runtime.find(refused)).isEmpty();

            Checkpoint.remove(cpName);
            assertThat(Files.exists(cp.path())).isFalse();
        } finally {
            for (String name : sandboxes) {
                runtime.find(name).ifPresent(h -> {
                    h.kill();
                    h.remove();
                });
            }
            if (Files.isDirectory(runtime.checkpoints().directory().resolve(cpName))) {
                Checkpoint.remove(cpName);
            }
            SandboxPreparer.deleteTree(tmp);
        }
    }

    /** The loop's "pid token count" once its count has reached {@code atLeast}; 30 s at most. */
    private static String[] awaitState(Sandbox sb, int atLeast) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        String last = "";
        while (System.nanoTime() < deadline) {
            last = sb.shell("cat /tmp/state 2>/dev/null || true").stdout().strip();
            String[] parts = last.split(" ");
            if (parts.length == 3 && Integer.parseInt(parts[2]) >= atLeast) {
                return parts;
            }
            Thread.sleep(200);
        }
        throw new AssertionError("the loop's state did not reach " + atLeast + " in 30 s: '" + last + "'");
    }

    /** {@code source} under another checkpoint's name: a hard link, or a sparse copy across filesystems (links are refused). */
    private static void sameFile(Path source, Path target) throws java.io.IOException {
        try {
            Files.createLink(target, source);
        } catch (java.io.IOException crossDevice) {
            io.microsandbox.runtime.SparseFiles.copy(source, target);
        }
    }
}

package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.runtime.SandboxLock;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** What decides whether a creation takes a pre-booted VM, with stand-ins for QEMU (real VMs: SpareSupervisorsIT). */
class PreBootTest {
    @TempDir
    Path home;

    private static final String SHAPE_RUN = "/h/run/0123456789abcdef";
    private static final String SHAPE_UPPER = "/h/sandboxes/before/upper.ext4";

    private PreBoot start(String script) {
        return start(script, PreBoot.IDLE_MS);
    }

    private PreBoot start(String script, long idleMillis) {
        PrebootShape shape = new PrebootShape(List.of("/bin/sh", "-c", script, "sh", SHAPE_RUN + "/qmp.sock", SHAPE_UPPER), SHAPE_RUN, SHAPE_UPPER, 16);
        PreBoot preboot = PreBoot.start(home, shape, PreBoot.HELLO_TIMEOUT_MS, idleMillis);
        assertThat(preboot).isNotNull();
        return preboot;
    }

    /** The spec of a creation whose command line is the shape's but for its own paths (or another argument). */
    private SupervisorSpec spec(String name, String script) throws Exception {
        return spec(name, script, 16);
    }

    /** Like {@link #spec(String, String)}, with an empty upper disk of {@code upperMib} made as the creator would. */
    private SupervisorSpec spec(String name, String script, int upperMib) throws Exception {
        Path sandboxDir = Files.createDirectories(home.resolve("sandboxes").resolve(name));
        try (java.io.RandomAccessFile upper = new java.io.RandomAccessFile(sandboxDir.resolve("upper.ext4").toFile(), "rw")) {
            upper.setLength((long) upperMib << 20);
        }
        String runDir = home.resolve("run").resolve("fedcba9876543210").toString();
        List<String> argv = List.of("/bin/sh", "-c", script, "sh", runDir + "/qmp.sock", sandboxDir.resolve("upper.ext4").toString());
        return new SupervisorSpec(name, argv, sandboxDir.toString(), runDir, Map.of(), 1000, false, home.toString(), true, 0, 0, 0, null);
    }

    private List<Path> prebootDirs() throws Exception {
        try (var entries = Files.list(home.resolve("run"))) {
            return entries.filter(p -> p.getFileName().toString().startsWith("spare-")).toList();
        }
    }

    @Test
    @Timeout(30)
    void onlyAFreshCreationOfTheSameShapeClaimsARunningVm() throws Exception {
        PreBoot preboot = start("exec sleep 30");
        assertThat(prebootDirs()).hasSize(1);
        assertThat(preboot.claim(spec("other", "exec sleep 31"), true)).as("another command line").isFalse();
        assertThat(preboot.claim(spec("restart", "exec sleep 30"), false)).as("an upper disk that is not new").isFalse();
        assertThat(preboot.claim(spec("bigger", "exec sleep 30", 32), true)).as("an upper disk of another size").isFalse();
        assertThat(preboot.claim(spec("next", "exec sleep 30"), true)).isTrue();
        assertThat(preboot.claim(spec("again", "exec sleep 30"), true)).as("claimed once").isFalse();
        long pid = preboot.vmm().pid();
        preboot.discard();
        assertThat(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)).isFalse();
        assertThat(prebootDirs()).isEmpty();
    }

    @Test
    @Timeout(30)
    void aVmWhoseQemuHasExitedIsNotClaimed() throws Exception {
        PreBoot preboot = start("exit 1");
        long deadline = System.nanoTime() + 10_000_000_000L;
        boolean claimed = true;
        while (System.nanoTime() < deadline) {
            // a zombie until someone reaps it
            if (io.microsandbox.runtime.vmm.VmmSampler.statFields(preboot.vmm().pid())[0].equals("Z")) {
                claimed = preboot.claim(spec("next", "exit 1"), true);
                break;
            }
            Thread.sleep(10);
        }
        assertThat(claimed).isFalse();
        preboot.discard();
        assertThat(prebootDirs()).isEmpty();
    }

    @Test
    @Timeout(30)
    void aDiscardedVmLeavesNoDescriptorOfItsProcessOrMemoryBehind() throws Exception {
        List<String> before = vmDescriptors();
        PreBoot preboot = start("exec sleep 30");
        assertThat(vmDescriptors()).hasSize(before.size() + 2);
        preboot.discard();
        assertThat(vmDescriptors()).isEqualTo(before);
    }

    @Test
    @Timeout(30)
    void aVmNobodyClaimsIsShutDownAfterItsIdleTimeWithItsTimerThread() throws Exception {
        List<String> before = vmDescriptors();
        PreBoot preboot = start("exec sleep 30", 300);
        long pid = preboot.vmm().pid();
        long deadline = System.nanoTime() + 10_000_000_000L;
        while ((!prebootDirs().isEmpty() || deadlineThreads() > 0) && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertThat(prebootDirs()).isEmpty();
        assertThat(deadlineThreads()).as("the pre-boot's timer thread").isZero();
        assertThat(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)).isFalse();
        assertThat(vmDescriptors()).isEqualTo(before);
        assertThat(preboot.claim(spec("late", "exec sleep 30"), true)).as("shut down, not claimable").isFalse();
    }

    private static long deadlineThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals("msb-preboot-deadlines") && t.isAlive()).count();
    }

    @Test
    @Timeout(30)
    void aRestoresVmIsStartedWithItsCheckpointsMemoryAndUpperCopyAndClaimedOnlyByARestoreOfTheSameFiles() throws Exception {
        Path checkpoint = Files.createDirectories(home.resolve("checkpoints").resolve("c"));
        byte[] ram = new byte[1 << 20];
        new java.util.Random(7).nextBytes(ram);
        Files.write(checkpoint.resolve("ram.bin"), ram);
        Files.write(checkpoint.resolve("upper.ext4"), "the checkpoint's upper".getBytes());
        String digest = io.microsandbox.runtime.SparseFiles.copy(checkpoint.resolve("upper.ext4"), home.resolve("digest-probe"));
        PrebootShape.Restore source = restoreOf(checkpoint, digest);
        PreBoot preboot = PreBoot.start(home, restoreShape(source));
        assertThat(preboot).isNotNull();
        Path spareUpper = prebootDirs().get(0).resolve("upper.ext4");
        assertThat(spareUpper).hasContent("the checkpoint's upper");
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (!java.util.Arrays.equals(Files.readAllBytes(preboot.memory().file()), ram) && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertThat(Files.readAllBytes(preboot.memory().file())).as("guest memory filled from ram.bin").isEqualTo(ram);

        assertThat(preboot.claim(spec("boot", "exec sleep 30", 0), true)).as("a boot").isFalse();
        assertThat(preboot.claim(restoreSpec("other", source.memoryUri(), home.resolve("other-ram.bin").toString()), false))
                .as("another checkpoint").isFalse();
        // the checkpoint replaced by another of the same name since the VM was started
        Path replaced = Files.write(checkpoint.resolve("ram.bin.new"), ram);
        Files.move(replaced, checkpoint.resolve("ram.bin"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        assertThat(preboot.claim(restoreSpec("stale", source.memoryUri(), source.ramFile()), false)).as("a replaced checkpoint").isFalse();
        preboot.discard();
        assertThat(prebootDirs()).isEmpty();

        PreBoot fresh = PreBoot.start(home, restoreShape(source));
        assertThat(fresh.claim(restoreSpec("next", source.memoryUri(), source.ramFile()), false)).isTrue();
        fresh.discard();

        Files.write(checkpoint.resolve("upper.ext4"), "corrupt".getBytes());
        assertThat(PreBoot.start(home, restoreShape(source))).as("an upper copy that does not match the checkpoint's digest").isNull();
        assertThat(prebootDirs()).isEmpty();
    }

    /** Long enough for the stand-in (python3) to start and connect on a loaded machine: 300 ms was not, under CI. */
    private static final long HELLO_DEADLINE_MS = 4000;

    @Test
    @Timeout(30)
    void aVmThatSaidHelloKeepsItsLinkPastTheHelloDeadlineForTheSandboxThatAdoptsIt() throws Exception {
        Path checkpoint = Files.createDirectories(home.resolve("checkpoints").resolve("c"));
        Files.write(checkpoint.resolve("ram.bin"), new byte[4096]);
        Files.write(checkpoint.resolve("upper.ext4"), "the checkpoint's upper".getBytes());
        PrebootShape.Restore source = restoreOf(checkpoint, null);
        // a restore's VM says hello by connecting to the agent port: this stand-in connects and waits
        String connect = "import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(30)";
        PreBoot preboot = PreBoot.start(home, new PrebootShape(List.of("python3", "-c", connect, SHAPE_RUN + "/vm.sock", SHAPE_UPPER),
                SHAPE_RUN, SHAPE_UPPER, 0, source), HELLO_DEADLINE_MS, PreBoot.IDLE_MS);
        assertThat(preboot).isNotNull();
        PreBoot.Hello hello = preboot.awaitHello(System.nanoTime() + 10_000_000_000L);
        Thread.sleep(HELLO_DEADLINE_MS + 300);
        SupervisorSpec restore = restoreSpec("late", source.memoryUri(), source.ramFile());
        restore = new SupervisorSpec(restore.name(), List.of("python3", "-c", connect, restore.runDir() + "/vm.sock", restore.layout().upperDisk().toString()),
                restore.sandboxDir(), restore.runDir(), Map.of(), 1000, false, home.toString(), true, 0, 0, 0, restore.restore());
        assertThat(preboot.claim(restore, false)).as("claimed after the hello deadline").isTrue();
        // still open: a write reaches the stand-in's socket
        hello.link().write(new io.microsandbox.runtime.agent.Frame(0, 0, io.microsandbox.runtime.agent.Protocol.CORE_RESTORE,
                com.fasterxml.jackson.databind.node.JsonNodeFactory.instance.objectNode()));
        preboot.discard();
        assertThat(prebootDirs()).isEmpty();
    }

    @Test
    @Timeout(60)
    void aDiscardWhileTheMemoryIsStillFillingEndsTheFillAndLeavesNoDescriptor() throws Exception {
        List<String> before = vmDescriptors();
        Path checkpoint = Files.createDirectories(home.resolve("checkpoints").resolve("big"));
        byte[] chunk = new byte[1 << 20];
        new java.util.Random(3).nextBytes(chunk);
        try (var out = Files.newOutputStream(checkpoint.resolve("ram.bin"))) {
            for (int i = 0; i < 256; i++) {
                out.write(chunk);
            }
        }
        Files.write(checkpoint.resolve("upper.ext4"), "upper".getBytes());
        PrebootShape.Restore source = restoreOf(checkpoint, null);
        PreBoot preboot = PreBoot.start(home, restoreShape(source));
        assertThat(preboot).isNotNull();
        preboot.discard();
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (!vmDescriptors().equals(before) && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertThat(vmDescriptors()).as("no memfd or pidfd left, the fill's own included").isEqualTo(before);
        assertThat(prebootDirs()).isEmpty();
    }

    @Test
    @Timeout(30)
    void aVmThatCannotSayHelloIsShutDownAtOnceRatherThanAtItsIdleTime() throws Exception {
        // a stand-in that connects to the agent port and sends what is not a frame
        String junk = "import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'\\xff' * 64); s.close(); time.sleep(30)";
        PrebootShape shape = new PrebootShape(List.of("python3", "-c", junk, SHAPE_RUN + "/vm.sock", SHAPE_UPPER), SHAPE_RUN, SHAPE_UPPER, 16);
        PreBoot preboot = PreBoot.start(home, shape);
        assertThat(preboot).isNotNull();
        long pid = preboot.vmm().pid();
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (!prebootDirs().isEmpty() && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertThat(prebootDirs()).isEmpty();
        assertThat(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)).isFalse();
    }

    @Test
    @Timeout(30)
    void aCheckpointWhoseUpperIsTooLargeToCopyAheadGetsNoVm() throws Exception {
        Path checkpoint = Files.createDirectories(home.resolve("checkpoints").resolve("wide"));
        Files.write(checkpoint.resolve("ram.bin"), new byte[4096]);
        byte[] chunk = new byte[1 << 20];
        java.util.Arrays.fill(chunk, (byte) 1);
        try (var out = Files.newOutputStream(checkpoint.resolve("upper.ext4"))) {
            for (long written = 0; written <= PreBoot.MAX_UPPER_COPY_BYTES; written += chunk.length) {
                out.write(chunk);
            }
        }
        PrebootShape.Restore source = restoreOf(checkpoint, null);
        assertThat(PreBoot.start(home, restoreShape(source))).isNull();
        assertThat(prebootDirs()).isEmpty();
    }

    /** A restore shape of the checkpoint files {@code source} names, with a stand-in QEMU that waits. */
    private static PrebootShape restoreShape(PrebootShape.Restore source) {
        return new PrebootShape(List.of("/bin/sh", "-c", "exec sleep 30", "sh", SHAPE_RUN + "/qmp.sock", SHAPE_UPPER), SHAPE_RUN, SHAPE_UPPER, 0, source);
    }

    /** The checkpoint in {@code dir}: its ram.bin and upper.ext4, with {@code upperDigest} (null: not recorded). */
    private static PrebootShape.Restore restoreOf(Path dir, String upperDigest) {
        return new PrebootShape.Restore(dir.resolve("ram.bin").toString(), "file:" + dir.resolve("memory.bin"), dir.resolve("upper.ext4").toString(), upperDigest);
    }

    /** The spec of a restore whose command line is the shape's but for its own paths, with an upper copy like the checkpoint's. */
    private SupervisorSpec restoreSpec(String name, String memoryUri, String ramFile) throws Exception {
        SupervisorSpec boot = spec(name, "exec sleep 30", 0);
        Files.write(boot.layout().upperDisk(), "the checkpoint's upper".getBytes());
        return new SupervisorSpec(boot.name(), boot.vmmArgv(), boot.sandboxDir(), boot.runDir(), Map.of(), 1000, false, home.toString(), true, 0, 0, 0,
                Map.of("ram_file", ramFile, "memory_uri", memoryUri));
    }

    /** This JVM's descriptors of processes (pidfds) and of guest memory (memfds). */
    private static List<String> vmDescriptors() throws Exception {
        List<String> found = new java.util.ArrayList<>();
        try (var fds = Files.list(Path.of("/proc/self/fd"))) {
            for (Path fd : fds.toList()) {
                try {
                    String target = Files.readSymbolicLink(fd).toString();
                    if (target.equals("anon_inode:[pidfd]") || target.startsWith("/memfd:")) {
                        found.add(target);
                    }
                } catch (java.io.IOException closedMeanwhile) {
                    // the listing's own descriptor
                }
            }
        }
        java.util.Collections.sort(found);
        return found;
    }

    @Test
    void aPreBootDirectoryIsRemovedOnlyOnceNoProcessHoldsItsLockWhateverItsPidSays() throws Exception {
        Path run = Files.createDirectories(home.resolve("run"));
        long dead = 999_999_999L;
        Path heldDead = Files.createDirectories(run.resolve("spare-" + dead));
        Path freeLive = Files.createDirectories(run.resolve("spare-1"));
        Files.createFile(run.resolve(".spare-1.lock"));
        Path legacyDead = Files.createDirectories(run.resolve("spare-" + (dead - 1)));
        Path legacyLive = Files.createDirectories(run.resolve("spare-" + ProcessHandle.current().pid()));
        Path orphanFree = Files.createFile(run.resolve(".spare-" + (dead - 2) + ".lock"));
        Path orphanHeld = run.resolve(".spare-" + (dead - 3) + ".lock");
        try (SandboxLock held = SandboxLock.tryAcquire(run.resolve(".spare-" + dead + ".lock"));
             SandboxLock heldOrphan = SandboxLock.tryAcquire(orphanHeld)) {
            assertThat(held).isNotNull();
            assertThat(heldOrphan).isNotNull();
            PreBoot.removeAbandoned(run);
            // a held lock keeps a directory whose pid is no process here (another pid namespace's supervisor)
            assertThat(heldDead).isDirectory();
            assertThat(orphanHeld).exists();
            // a free lock lets one go whose pid is a live process here (another namespace's, or a reused pid)
            assertThat(freeLive).doesNotExist();
            assertThat(run.resolve(".spare-1.lock")).doesNotExist();
            // directories made before there were lock files go by their pid
            assertThat(legacyDead).doesNotExist();
            assertThat(legacyLive).isDirectory();
            assertThat(run.resolve(".spare-" + (dead - 1) + ".lock")).doesNotExist();
            assertThat(run.resolve(".spare-" + ProcessHandle.current().pid() + ".lock")).doesNotExist();
            assertThat(orphanFree).doesNotExist();
        }
        PreBoot.removeAbandoned(run);
        assertThat(heldDead).doesNotExist();
        assertThat(run.resolve(".spare-" + dead + ".lock")).doesNotExist();
        assertThat(orphanHeld).doesNotExist();
    }

    @Test
    @Timeout(30)
    void aSpareWaitsOutARemoverThatHoldsItsLockForAMoment() throws Exception {
        Path run = Files.createDirectories(home.resolve("run"));
        SandboxLock remover = SandboxLock.tryAcquire(run.resolve(".spare-" + ProcessHandle.current().pid() + ".lock"));
        assertThat(remover).isNotNull();
        Thread release = new Thread(() -> {
            try {
                Thread.sleep(60);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            remover.close();
        });
        release.start();
        PreBoot preboot = start("exec sleep 30");
        release.join();
        assertThat(prebootDirs()).hasSize(1);
        preboot.discard();
        // given up with its directory: nothing of it is left under run/
        assertThat(prebootDirs()).isEmpty();
        assertThat(run.resolve(".spare-" + ProcessHandle.current().pid() + ".lock")).doesNotExist();
    }

    @Test
    void aSpareLeavesTheDirectoryOfItsPidAloneWhileAnotherProcessHoldsItsLock() throws Exception {
        Path run = Files.createDirectories(home.resolve("run"));
        Path theirs = Files.createDirectories(run.resolve("spare-" + ProcessHandle.current().pid()));
        Files.writeString(theirs.resolve("upper.ext4"), "another namespace's sandbox disk");
        try (SandboxLock other = SandboxLock.tryAcquire(run.resolve(".spare-" + ProcessHandle.current().pid() + ".lock"))) {
            assertThat(other).isNotNull();
            PrebootShape shape = new PrebootShape(List.of("/bin/sh", "-c", "exec sleep 30", "sh", SHAPE_RUN + "/qmp.sock", SHAPE_UPPER),
                    SHAPE_RUN, SHAPE_UPPER, 16);
            assertThat(PreBoot.start(home, shape)).isNull();
            assertThat(Files.readString(theirs.resolve("upper.ext4"))).isEqualTo("another namespace's sandbox disk");
        }
    }
}

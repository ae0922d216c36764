package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.ErrorKind;
import io.microsandbox.Microsandbox;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.TestSandboxes;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.vmm.KernelBundle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * When a home's spare supervisor starts, on real VMs: not while the sandbox just created has
 * not been used yet, once its first command is done or the deferral has passed, at once in a
 * burst of creations or after a failed boot, and never after the home's spare was released; a
 * creation that fails before its boot leaves the spare it took in place. Spares that boot a VM
 * while they wait ({@link SpareSupervisors#PREBOOT_PROPERTY}): a creation like the last adopts
 * it, with the spare's upper disk in place of its own; a restart of a stopped sandbox or a
 * creation of another shape never takes it; nothing of it is left once the spare is released.
 */
class SpareSupervisorsIT {
    @TempDir
    Path dir;
    private Path home;
    private Microsandbox runtime;

    @BeforeEach
    void runtimeOnItsOwnHome() {
        home = dir.resolve("home");
        Path kernelDir = KernelBundle.locate(RuntimeFiles.defaultHome()).dir();
        runtime = Microsandbox.builder().home(home).kernelDir(kernelDir).build();
    }

    @AfterEach
    void noSupervisorLeft() throws Exception {
        System.clearProperty(SpareSupervisors.DEFERRAL_PROPERTY);
        System.clearProperty(SpareSupervisors.PREBOOT_PROPERTY);
        SpareSupervisors.release(home);
        // a closed sandbox's supervisor exits a moment after its VM
        long deadline = System.nanoTime() + 20_000_000_000L;
        while ((!supervisorsOf(home).isEmpty() || !vmmsOf(home).isEmpty() || !prebootDirs().isEmpty()) && System.nanoTime() < deadline) {
            Thread.sleep(50);
        }
        assertThat(supervisorsOf(home)).isEmpty();
        assertThat(vmmsOf(home)).as("QEMU processes of this home").isEmpty();
        assertThat(prebootDirs()).as("pre-boot directories").isEmpty();
    }

    @Test
    void theSpareStartsOnceTheNewSandboxsFirstCommandIsDoneAndServesTheNextCreation() throws Exception {
        System.setProperty(SpareSupervisors.DEFERRAL_PROPERTY, "600000");
        try (Sandbox first = runtime.create(TestSandboxes.uniqueName("spare-a"), TestSandboxes.config().ephemeral(true).build())) {
            Thread.sleep(1500);
            assertThat(sparesOf(first)).as("no spare before the sandbox's first command").isEmpty();
            assertThat(first.exec("true", List.of()).exitCode()).isZero();
            long spare = awaitOneSpare(first);
            try (Sandbox second = runtime.create(TestSandboxes.uniqueName("spare-b"), TestSandboxes.config().ephemeral(true).build())) {
                assertThat(supervisorPid(second)).as("the second sandbox runs on the spare").isEqualTo(spare);
                assertThat(second.exec("true", List.of()).exitCode()).isZero();
            }
        }
    }

    @Test
    void creationsInABurstGetTheirSpareWithoutWaitingForACommand() throws Exception {
        System.setProperty(SpareSupervisors.DEFERRAL_PROPERTY, "600000");
        java.util.concurrent.ExecutorService two = java.util.concurrent.Executors.newFixedThreadPool(2);
        try {
            var a = two.submit(() -> runtime.create(TestSandboxes.uniqueName("spare-burst"), TestSandboxes.config().ephemeral(true).build()));
            var b = two.submit(() -> runtime.create(TestSandboxes.uniqueName("spare-burst"), TestSandboxes.config().ephemeral(true).build()));
            try {
                awaitOneSpare(a.get(), b.get());
            } finally {
                for (var created : List.of(a, b)) {
                    try {
                        created.get().close();
                    } catch (java.util.concurrent.ExecutionException notCreated) {
                        // nothing to close
                    }
                }
            }
        } finally {
            two.shutdown();
        }
    }

    @Test
    void anUnusedSandboxGetsItsSpareAfterTheDeferral() throws Exception {
        System.setProperty(SpareSupervisors.DEFERRAL_PROPERTY, "300");
        try (Sandbox idle = runtime.create(TestSandboxes.uniqueName("spare-idle"), TestSandboxes.config().ephemeral(true).build())) {
            awaitOneSpare(idle);
        }
    }

    @Test
    void aReleasedHomeGetsNoSpareFromASandboxCreatedBefore() throws Exception {
        System.setProperty(SpareSupervisors.DEFERRAL_PROPERTY, "300");
        try (Sandbox sb = runtime.create(TestSandboxes.uniqueName("spare-rel"), TestSandboxes.config().ephemeral(true).build())) {
            SpareSupervisors.release(home);
            Thread.sleep(1500);
            assertThat(sb.exec("true", List.of()).exitCode()).isZero();
            Thread.sleep(500);
            assertThat(sparesOf(sb)).isEmpty();
        }
    }

    @Test
    void aCreationThatFailsBeforeItsBootLeavesTheSpareInPlace() throws Exception {
        System.setProperty(SpareSupervisors.DEFERRAL_PROPERTY, "300");
        try (Sandbox first = runtime.create(TestSandboxes.uniqueName("spare-keep"), TestSandboxes.config().ephemeral(true).build())) {
            long spare = awaitOneSpare(first);
            SandboxConfig missingImage = SandboxConfig.builder().image(dir.resolve("no-such-image").toString()).ephemeral(true).build();
            assertThatThrownBy(() -> runtime.create(TestSandboxes.uniqueName("spare-noimage"), missingImage))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_NOT_FOUND));
            assertThat(sparesOf(first)).as("the spare it took, back in place").containsExactly(spare);
            try (Sandbox second = runtime.create(TestSandboxes.uniqueName("spare-next"), TestSandboxes.config().ephemeral(true).build())) {
                assertThat(supervisorPid(second)).isEqualTo(spare);
            }
        }
    }

    @Test
    void aBootThatFailsLeavesASpareForTheNextCreation() throws Exception {
        System.setProperty(SpareSupervisors.DEFERRAL_PROPERTY, "600000");
        SandboxConfig tooShort = TestSandboxes.config().ephemeral(true).bootTimeout(java.time.Duration.ofMillis(1)).build();
        assertThatThrownBy(() -> runtime.create(TestSandboxes.uniqueName("spare-fail"), tooShort))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED));
        awaitOneSpare();
    }

    @Test
    @Timeout(240)
    void aCreationLikeTheLastAdoptsTheVmItsSparePreBootedAndARestartDoesNot() throws Exception {
        awaitAVmBootedAheadOfACreationLike("pre-a");
        String name = TestSandboxes.uniqueName("pre-b");
        SandboxLayout layout = SandboxLayout.of(home, name);
        try (Sandbox second = runtime.create(name, TestSandboxes.config().build())) {
            assertThat(Files.readString(layout.supervisorLog())).contains("adopted the VM this supervisor booted")
                    .containsPattern("boot timeline: .*adopted \\d+ ms after QEMU's start");
            assertThat(second.shell("echo kept > /root/kept && sync && cat /root/kept").stdout()).isEqualTo("kept\n");
            assertThat(Files.size(layout.upperDisk())).isEqualTo((long) TestSandboxes.config().build().upperSizeMib() << 20);
            assertThat(Files.readString(layout.consoleLog())).as("the pre-boot's console, moved in").isNotEmpty();
            assertThat(Files.exists(layout.vmmLog())).isTrue();
            // the end of a migration reopens the disks by the names QEMU was started with
            second.checkpoint("adopted");
            runtime.checkpoints().remove("adopted");
            assertThat(second.exec("cat", List.of("/root/kept")).stdout()).isEqualTo("kept\n");
            second.stop();
            awaitPrebootDir();
            // a restart boots the sandbox's own upper disk: the spare's VM must not replace it
            try (Sandbox again = runtime.start(name)) {
                assertThat(again.exec("cat", List.of("/root/kept")).stdout()).isEqualTo("kept\n");
                assertThat(Files.readString(layout.supervisorLog())).contains("not adopting the pre-booted VM");
            }
        } finally {
            runtime.remove(name);
        }
    }

    @Test
    @Timeout(240)
    void aKilledSupervisorOfAnAdoptedVmLeavesNoSecondNameOfItsDiskOnceTheSandboxIsRemoved() throws Exception {
        awaitAVmBootedAheadOfACreationLike("pre-k");
        String name = TestSandboxes.uniqueName("pre-l");
        SandboxLayout layout = SandboxLayout.of(home, name);
        Sandbox adopting = runtime.create(name, TestSandboxes.config().build());
        Path adoptedDir;
        try {
            assertThat(Files.readString(layout.supervisorLog())).contains("adopted the VM this supervisor booted");
            long supervisor = Long.parseLong(Files.readString(layout.pidFile()).strip());
            adoptedDir = home.resolve("run").resolve("spare-" + supervisor);
            assertThat(adoptedDir.resolve("upper.ext4")).exists();
            ProcessHandle killed = ProcessHandle.of(supervisor).orElseThrow();
            killed.destroyForcibly();
            killed.onExit().get(20, java.util.concurrent.TimeUnit.SECONDS);
        } finally {
            try {
                adopting.close();
            } catch (MicrosandboxException supervisorGone) {
                // the close cannot reach a killed supervisor
            }
        }
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (!runtime.get(name).status().isTerminal() && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        runtime.remove(name);
        assertThat(adoptedDir).as("the killed supervisor's pre-boot directory").doesNotExist();
    }

    @Test
    @Timeout(300)
    void aRestoreOfTheLastRestoredCheckpointAdoptsQemuStartedAheadAndAReplacedCheckpointIsNotTaken() throws Exception {
        sparesPreBootingSoon();
        io.microsandbox.RestoreOptions ephemeral = io.microsandbox.RestoreOptions.builder().ephemeral(true).build();
        // checkpointed later under the same name, without a creation that would take the spare
        try (Sandbox later = runtime.create(TestSandboxes.uniqueName("pre-later"), TestSandboxes.config().ephemeral(true).build())) {
            later.shell("echo newer > /root/f && sync");
            try (Sandbox source = runtime.create(TestSandboxes.uniqueName("pre-src"), TestSandboxes.config().ephemeral(true).build())) {
                source.shell("echo saved > /root/f && sync");
                source.checkpoint("pre-cp");
            }
            try (Sandbox first = runtime.restore(TestSandboxes.uniqueName("pre-r1"), runtime.checkpoints().get("pre-cp"), ephemeral)) {
                first.shell("echo changed > /root/f && sync");
                awaitPrebootDir();
            }
            String second = TestSandboxes.uniqueName("pre-r2");
            try (Sandbox adopted = runtime.restore(second, runtime.checkpoints().get("pre-cp"), ephemeral)) {
                assertThat(Files.readString(SandboxLayout.of(home, second).supervisorLog())).contains("adopted the VM this supervisor booted")
                        .containsPattern("restored from a checkpoint: .*QEMU started ahead by this spare");
                assertThat(adopted.exec("cat", List.of("/root/f")).stdout()).as("the checkpoint's upper, not the last restore's").isEqualTo("saved\n");
                assertThat(adopted.shell("echo mine > /root/g && cat /root/g").stdout()).isEqualTo("mine\n");
                // the adopted VM's directory stays while it runs; the next spare's comes beside it
                awaitPrebootDirs(2);
            }
            // another checkpoint at the same paths: the QEMU started for the old one must not serve it
            runtime.checkpoints().remove("pre-cp");
            later.checkpoint("pre-cp");
            String third = TestSandboxes.uniqueName("pre-r3");
            try (Sandbox restored = runtime.restore(third, runtime.checkpoints().get("pre-cp"), ephemeral)) {
                assertThat(restored.exec("cat", List.of("/root/f")).stdout()).isEqualTo("newer\n");
                assertThat(Files.readString(SandboxLayout.of(home, third).supervisorLog())).contains("not adopting the pre-booted VM")
                        .doesNotContain("adopted the VM");
            }
        } finally {
            runtime.checkpoints().remove("pre-cp");
        }
    }

    @Test
    @Timeout(240)
    void aCreationOfAnotherShapeBootsItsOwnVmBesideAPreBootedOne() throws Exception {
        sparesPreBootingSoon();
        try (Sandbox first = runtime.create(TestSandboxes.uniqueName("pre-c"), TestSandboxes.config().ephemeral(true).build())) {
            assertThat(first.exec("true", List.of()).exitCode()).isZero();
            awaitPrebootDir();
            String name = TestSandboxes.uniqueName("pre-d");
            try (Sandbox other = runtime.create(name, TestSandboxes.config().ephemeral(true).memoryMib(384).build())) {
                assertThat(other.exec("sh", List.of("-c", "grep MemTotal /proc/meminfo")).stdout()).isNotBlank();
                assertThat(Files.readString(SandboxLayout.of(home, name).supervisorLog())).contains("not adopting the pre-booted VM")
                        .doesNotContain("adopted the VM");
            }
        }
    }

    /**
     * A pre-booted VM has read the lower disk it started over: a prune may delete that disk (no
     * sandbox pins it), and the next creation builds it again at the same path. Adopted, the VM
     * would run over a disk its sandbox does not name, and a checkpoint would record the new one.
     */
    @Test
    @Timeout(240)
    void aVmBootedAheadOverADiskPrunedAndBuiltAgainIsNotAdopted() throws Exception {
        awaitAVmBootedAheadOfACreationLike("pre-p");
        assertThat(io.microsandbox.Images.at(home).prune(java.time.Duration.ZERO)).as("the disk only the pre-booted VM holds").isPositive();
        String name = TestSandboxes.uniqueName("pre-q");
        try (Sandbox second = runtime.create(name, TestSandboxes.config().ephemeral(true).build())) {
            assertThat(Files.readString(SandboxLayout.of(home, name).supervisorLog())).contains("not adopting the pre-booted VM")
                    .doesNotContain("adopted the VM");
            assertThat(second.shell("echo own").stdout()).isEqualTo("own\n");
            second.checkpoint("over-the-rebuilt-disk");
            runtime.checkpoints().remove("over-the-rebuilt-disk");
        }
    }

    /**
     * With spares booting VMs ahead: creates a sandbox of {@link TestSandboxes#config()}, uses and
     * closes it, and waits for the VM its spare boots for the next creation like it.
     */
    private void awaitAVmBootedAheadOfACreationLike(String namePrefix) throws Exception {
        sparesPreBootingSoon();
        try (Sandbox first = runtime.create(TestSandboxes.uniqueName(namePrefix), TestSandboxes.config().ephemeral(true).build())) {
            assertThat(first.exec("true", List.of()).exitCode()).isZero();
            awaitPrebootDir();
        }
    }

    /** Spares that boot a VM ahead, and start soon after a creation's client connected. */
    private static void sparesPreBootingSoon() {
        System.setProperty(SpareSupervisors.PREBOOT_PROPERTY, "true");
        System.setProperty(SpareSupervisors.DEFERRAL_PROPERTY, "200");
    }

    private void awaitPrebootDir() throws Exception {
        awaitPrebootDirs(1);
    }

    private void awaitPrebootDirs(int count) throws Exception {
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (prebootDirs().size() < count && System.nanoTime() < deadline) {
            Thread.sleep(50);
        }
        assertThat(prebootDirs()).as("pre-boot directories").hasSize(count);
    }

    @Test
    @Timeout(240)
    void aCreationWithMountsHasNoVmBootedAfterIt() throws Exception {
        // a VM booted ahead would hold the mounts' host files as they were, and their locks
        sparesPreBootingSoon();
        SandboxConfig withMount = TestSandboxes.config().ephemeral(true)
                .mount("/scratch", io.microsandbox.Mount.tmpfs(16, io.microsandbox.MountOptions.defaults())).build();
        try (Sandbox mounted = runtime.create(TestSandboxes.uniqueName("pre-m"), withMount)) {
            assertThat(mounted.exec("true", List.of()).exitCode()).isZero();
            awaitOneSpare(mounted);
            Thread.sleep(1500);
            assertThat(prebootDirs()).as("no VM booted ahead of a creation like this one").isEmpty();
        }
    }

    /** The directories of VMs booted by spares (see PreBoot). */
    private List<Path> prebootDirs() throws Exception {
        Path run = home.resolve("run");
        if (!Files.isDirectory(run)) {
            return List.of();
        }
        try (var entries = Files.list(run)) {
            return entries.filter(p -> p.getFileName().toString().startsWith("spare-")).toList();
        }
    }

    private static List<Long> vmmsOf(Path home) {
        return ProcessHandle.current().descendants()
                .filter(p -> p.info().commandLine().map(cmd -> cmd.contains("qemu-system") && cmd.contains(home.toString())).orElse(false))
                .map(ProcessHandle::pid)
                .toList();
    }

    /** Waits for the home's one spare and returns its pid. */
    private long awaitOneSpare(Sandbox... running) throws Exception {
        long deadline = System.nanoTime() + 30_000_000_000L;
        List<Long> spares = sparesOf(running);
        while (spares.isEmpty() && System.nanoTime() < deadline) {
            Thread.sleep(50);
            spares = sparesOf(running);
        }
        assertThat(spares).as("the home's spare supervisor").hasSize(1);
        return spares.get(0);
    }

    /** Supervisors of this home other than those running {@code running}. */
    private List<Long> sparesOf(Sandbox... running) throws Exception {
        java.util.Set<Long> own = new java.util.HashSet<>();
        for (Sandbox sandbox : running) {
            own.add(supervisorPid(sandbox));
        }
        return supervisorsOf(home).stream().filter(pid -> !own.contains(pid)).toList();
    }

    private long supervisorPid(Sandbox sandbox) throws Exception {
        return Long.parseLong(Files.readString(SandboxLayout.of(home, sandbox.name()).pidFile()).strip());
    }

    private static List<Long> supervisorsOf(Path home) {
        return ProcessHandle.current().children()
                .filter(p -> p.info().commandLine().map(cmd -> cmd.contains(Supervisor.class.getName())
                        && cmd.contains("-D" + RuntimeFiles.HOME_PROPERTY + "=" + home.toAbsolutePath())).orElse(false))
                .map(ProcessHandle::pid)
                .toList();
    }
}

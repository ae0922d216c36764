package io.microsandbox;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.store.SandboxStore;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Map;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The runtime object without VMs: builder defaults, install checks, and separate homes at the database level. */
class MicrosandboxTest {

    @Test
    void builderDefaults(@TempDir Path home) {
        Microsandbox runtime = Microsandbox.builder().home(home).build();

        assertThat(runtime.home()).isEqualTo(home.toAbsolutePath().normalize());
        assertThat(runtime.accelerator()).isEqualTo(Accelerator.AUTO);
        assertThat(runtime.configuredQemu()).isNull();
        assertThat(runtime.configuredKernelDir()).isNull();
        // nothing is created by building
        assertThat(home).isEmptyDirectory();
    }

    @Test
    void builderKeepsWhatItIsGiven(@TempDir Path dir) {
        Microsandbox runtime = Microsandbox.builder().home(Path.of("relative-home"))
                .qemu(dir.resolve("qemu")).kernelDir(dir.resolve("kernel")).accelerator(Accelerator.TCG).build();

        assertThat(runtime.home()).isAbsolute().isEqualTo(Path.of("relative-home").toAbsolutePath().normalize());
        assertThat(runtime.configuredQemu()).isEqualTo(dir.resolve("qemu"));
        assertThat(runtime.configuredKernelDir()).isEqualTo(dir.resolve("kernel"));
        assertThat(runtime.accelerator()).isEqualTo(Accelerator.TCG);
        // an explicit accelerator needs no probe, nor QEMU or a kernel
        assertThat(runtime.resolvedAccelerator()).isEqualTo(Accelerator.TCG);
        assertThat(runtime.toString()).contains("relative-home").contains("tcg");
    }

    @Test
    void aRuntimeNeedsAHome() {
        assertThatThrownBy(() -> Microsandbox.builder().build())
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_ARGUMENT);
                    assertThat(e.getMessage()).contains("home").contains("defaultRuntime");
                });
        assertThatThrownBy(() -> Microsandbox.builder().home(null)).isInstanceOf(NullPointerException.class);
        assertThatThrownBy(() -> Microsandbox.builder().accelerator(null)).isInstanceOf(NullPointerException.class);
    }

    @Test
    void theDefaultRuntimeIsSharedAndFollowsTheDefaultHome(@TempDir Path other) {
        Microsandbox runtime = Microsandbox.defaultRuntime();
        assertThat(Microsandbox.defaultRuntime()).isSameAs(runtime);
        assertThat(runtime.home()).isEqualTo(RuntimeFiles.defaultHome());
        assertThat(runtime.accelerator()).isEqualTo(Accelerator.AUTO);
        assertThat(runtime.configuredQemu()).isNull();
        assertThat(runtime.configuredKernelDir()).isNull();
        withProperty(RuntimeFiles.HOME_PROPERTY, other.toString(), () -> {
            assertThat(Microsandbox.defaultRuntime().home()).isEqualTo(other.toAbsolutePath());
            assertThat(Microsandbox.defaultRuntime()).isSameAs(Microsandbox.defaultRuntime()).isNotSameAs(runtime);
            return null;
        });
        assertThat(Microsandbox.defaultRuntime()).isSameAs(runtime);
    }

    @Test
    void installProblemsAreDescribedWithoutSideEffects(@TempDir Path dir) throws IOException {
        Path home = dir.resolve("home");
        Path emptyKernel = Files.createDirectories(dir.resolve("no-kernel"));
        Microsandbox missing = Microsandbox.builder().home(home).qemu(dir.resolve("no/such/qemu")).kernelDir(emptyKernel).build();

        assertThat(missing.isInstalled()).isFalse();
        assertThat(missing.describeInstallProblem())
                .contains(dir.resolve("no/such/qemu").toString())
                .contains("no guest kernel at " + emptyKernel)
                .contains("scripts/setup.sh")
                .contains("ensureInstalled()");
        assertThatThrownBy(missing::ensureInstalled)
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED));

        Path qemu = dir.resolve("bin/qemu-system-x86_64");
        Files.createDirectories(qemu.getParent());
        Files.writeString(qemu, "#!/bin/sh\nexit 0\n");
        Files.setPosixFilePermissions(qemu, PosixFilePermissions.fromString("rwx------"));
        Microsandbox noKernel = Microsandbox.builder().home(home).qemu(qemu).kernelDir(emptyKernel).build();
        assertThat(noKernel.describeInstallProblem()).startsWith("no guest kernel at " + emptyKernel);
        // a kernel directory of one's own is checked, never installed into
        assertThatThrownBy(noKernel::ensureInstalled)
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.getMessage()).contains("no guest kernel"));
        assertThat(emptyKernel).isEmptyDirectory();

        Path kernel = Files.createDirectories(dir.resolve("kernel"));
        Files.writeString(kernel.resolve("vmlinux"), "");
        Files.writeString(kernel.resolve("modules.order"), "");
        Microsandbox installed = Microsandbox.builder().home(home).qemu(qemu).kernelDir(kernel).build();
        assertThat(installed.isInstalled()).isTrue();
        assertThat(installed.describeInstallProblem()).isNull();
        installed.ensureInstalled();
        assertThat(home).doesNotExist();
    }

    @Test
    void runtimesOnDifferentHomesSeeOnlyTheirOwnSandboxes(@TempDir Path dir) {
        Microsandbox a = Microsandbox.builder().home(dir.resolve("a")).build();
        Microsandbox b = Microsandbox.builder().home(dir.resolve("b")).build();
        String config = SandboxConfig.builder().image("/nowhere").labels(Map.of("pool", "p")).build().toJson();
        SandboxStore.open(a.home()).insert("only-in-a", config, Map.of("pool", "p"), false, "stopped");

        assertThat(a.list()).extracting(SandboxHandle::name).containsExactly("only-in-a");
        assertThat(a.list(SandboxFilter.labels(Map.of("pool", "p")))).hasSize(1);
        assertThat(a.find("only-in-a")).hasValueSatisfying(h -> assertThat(h.runtime()).isSameAs(a));
        assertThat(b.list()).isEmpty();
        assertThat(b.find("only-in-a")).isEmpty();
        assertThatThrownBy(() -> b.get("only-in-a"))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_FOUND));
        assertThatThrownBy(() -> b.remove("only-in-a"))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_FOUND));
        assertThat(b.allMetrics()).isEmpty();

        // the handle acts on its own runtime
        a.get("only-in-a").remove();
        assertThat(a.list()).isEmpty();
        assertThat(a.find("only-in-a")).isEmpty();
    }

    @Test
    void findChecksTheName(@TempDir Path dir) {
        Microsandbox runtime = Microsandbox.builder().home(dir).build();
        assertThatThrownBy(() -> runtime.find("../etc"))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_ARGUMENT));
    }

    private static <T> T withProperty(String key, String value, Supplier<T> body) {
        String old = System.getProperty(key);
        if (value == null) {
            System.clearProperty(key);
        } else {
            System.setProperty(key, value);
        }
        try {
            return body.get();
        } finally {
            if (old == null) {
                System.clearProperty(key);
            } else {
                System.setProperty(key, old);
            }
        }
    }
    /**
     * Creators racing for one name: exactly one claims its directory, and keeps it (its lock on
     * the file under the name) while the others, finding it, neither share nor delete it.
     */
    @Test
    void creatorsRacingForANameNeverBothClaimIt(@TempDir Path home) throws Exception {
        int creators = 6;
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(creators);
        try {
            for (int round = 0; round < 150; round++) {
                io.microsandbox.runtime.SandboxLayout layout = io.microsandbox.runtime.SandboxLayout.of(home, "race-" + round);
                java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(creators);
                java.util.List<java.util.concurrent.Future<io.microsandbox.runtime.SandboxLock>> claims = new java.util.ArrayList<>();
                for (int i = 0; i < creators; i++) {
                    claims.add(pool.submit(() -> {
                        start.await();
                        try {
                            return Microsandbox.claim(layout);
                        } catch (MicrosandboxException e) {
                            assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_ALREADY_EXISTS);
                            return null;
                        }
                    }));
                }
                java.util.List<io.microsandbox.runtime.SandboxLock> won = new java.util.ArrayList<>();
                for (var f : claims) {
                    io.microsandbox.runtime.SandboxLock lock = f.get(30, java.util.concurrent.TimeUnit.SECONDS);
                    if (lock != null) {
                        won.add(lock);
                    }
                }
                assertThat(won).as("round " + round).hasSize(1);
                assertThat(won.get(0).isOn(io.microsandbox.runtime.SandboxLock.createLockFile(layout))).as("the winner's directory is still there").isTrue();
                won.get(0).close();
            }
        } finally {
            pool.shutdownNow();
        }
    }

    /** A directory a crashed creation left (nobody holds its lock) is cleared by the next claim; hidden leftovers never count. */
    @Test
    void aClaimClearsWhatACrashedCreationLeft(@TempDir Path home) throws Exception {
        io.microsandbox.runtime.SandboxLayout layout = io.microsandbox.runtime.SandboxLayout.of(home, "crashed");
        Files.createDirectories(layout.dir());
        Files.writeString(layout.dir().resolve("upper.ext4"), "half");
        Files.createDirectories(layout.runDir());
        try (io.microsandbox.runtime.SandboxLock lock = Microsandbox.claim(layout)) {
            assertThat(layout.dir().resolve("upper.ext4")).doesNotExist();
            assertThat(layout.runDir()).doesNotExist();
            assertThat(lock.isOn(io.microsandbox.runtime.SandboxLock.createLockFile(layout))).isTrue();
            // owned now: a second creator is told so, and takes nothing away
            assertThatThrownBy(() -> Microsandbox.claim(layout)).isInstanceOfSatisfying(MicrosandboxException.class,
                    e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_ALREADY_EXISTS));
            assertThat(lock.isOn(io.microsandbox.runtime.SandboxLock.createLockFile(layout))).isTrue();
        }
        try (var entries = Files.list(layout.dir().getParent())) {
            assertThat(entries.map(p -> p.getFileName().toString())).containsExactly("crashed");
        }
    }

    /** A start of a sandbox whose directory a remove took away fails as not found, and makes no directory of its own. */
    @Test
    void aStartAfterItsDirectoryWasRemovedIsNotFoundAndLeavesNothing(@TempDir Path home) {
        Microsandbox runtime = Microsandbox.builder().home(home).accelerator(Accelerator.TCG).build();
        String config = SandboxConfig.builder().image("/nonexistent").build().toJson();
        SandboxStore.open(home).insert("half-removed", config, Map.of(), false, "stopped");
        assertThatThrownBy(() -> runtime.start("half-removed")).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_FOUND));
        assertThat(home.resolve("sandboxes").resolve("half-removed")).doesNotExist();
    }

    /** A sandbox whose files an earlier remove took, and not its row, is removed by its row alone. */
    @Test
    void aRemoveOfARowWithoutItsDirectoryRemovesTheRow(@TempDir Path home) {
        Microsandbox runtime = Microsandbox.builder().home(home).accelerator(Accelerator.TCG).build();
        SandboxStore.open(home).insert("rows-only", SandboxConfig.builder().image("/nonexistent").build().toJson(), Map.of(), false, "stopped");
        runtime.remove("rows-only");
        assertThat(runtime.find("rows-only")).isEmpty();
        assertThat(home.resolve("sandboxes").resolve("rows-only")).doesNotExist();
    }

    @Test
    void labelsAreFewShortAndNeverNull() {
        for (java.util.function.Consumer<SandboxConfig.Builder> bad : java.util.List.<java.util.function.Consumer<SandboxConfig.Builder>>of(
                b -> b.label("k", null), b -> b.label(null, "v"), b -> b.label("", "v"), b -> b.label("a\nb", "v"),
                b -> b.label("k", "x".repeat(SandboxConfig.MAX_LABEL_VALUE_LENGTH + 1)),
                b -> { for (int i = 0; i <= SandboxConfig.MAX_LABELS; i++) { b.label("k" + i, "v"); } })) {
            SandboxConfig.Builder b = SandboxConfig.builder().image("python:3.12");
            bad.accept(b);
            assertThatThrownBy(b::build).isInstanceOfSatisfying(MicrosandboxException.class,
                    e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
        }
        assertThat(SandboxConfig.builder().image("python:3.12").label("team", "").build().labels()).containsEntry("team", "");
        // a configuration an older version recorded, with a label it did not check, still reads and starts
        SandboxConfig recorded = SandboxConfig.fromJson("{\"image\":\"python:3.12\",\"labels\":{\"k\":\"a\\tb\"}}");
        assertThat(recorded.labels()).containsEntry("k", "a\tb");
        assertThat(recorded.toBuilder().detached(true).build().labels()).containsEntry("k", "a\tb");
        assertThatThrownBy(() -> recorded.toBuilder().label("new", "x\u0001").build()).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
    }

    /**
     * A volume mounted by a recorded sandbox (named or as a disk) stays, data and all; once
     * removed, a sandbox recorded to mount it is refused rather than booted without it.
     */
    @Test
    void aVolumeAndTheSandboxesMountingItAreDecidedTogether(@TempDir Path home) throws Exception {
        Volumes volumes = Volumes.at(home);
        volumes.create("shared");
        Files.writeString(volumes.get("shared").path().resolve("kept"), "data");
        SandboxConfig mounting = SandboxConfig.builder().image("/nonexistent")
                .mount("/data", Mount.disk("shared", null, MountOptions.defaults())).build();
        assertThat(Volumes.mountedBy(mounting)).containsExactly("shared");
        SandboxStore store = SandboxStore.open(home);
        store.insert("user", mounting.toJson(), Map.of(), false, "stopped", Volumes.mountedBy(mounting));
        assertThatThrownBy(() -> volumes.remove("shared")).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.VOLUME_IN_USE));
        assertThat(Files.readString(volumes.get("shared").path().resolve("kept"))).isEqualTo("data");
        store.delete("user");
        volumes.remove("shared");
        try (var left = Files.list(home.resolve("volumes"))) {
            assertThat(left).as("nothing left aside").isEmpty();
        }
        assertThatThrownBy(() -> store.insert("late", mounting.toJson(), Map.of(), false, "stopped", Volumes.mountedBy(mounting)))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.VOLUME_NOT_FOUND));
    }
}

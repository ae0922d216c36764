package io.microsandbox.runtime.vmm;

import io.microsandbox.Accelerator;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

/** The KVM probe with stand-in VMMs: it must answer, and never hang, whatever QEMU does. */
class AcceleratorsTest {
    @TempDir
    Path dir;

    @Test
    void probeSucceedsWhenTheGuestReachesItsInit() throws Exception {
        // writes the marker into the file named by "-chardev file,id=console,path=..."
        Path qemu = script("ok", "for a; do case $a in file,id=console,path=*) echo " + QemuCommand.PROBE_MARKER
                + " > \"${a#file,id=console,path=}\";; esac; done; exit 0");
        assertThat(Accelerators.probeKvm(qemu.toString(), kernel(), dir.resolve("initrd"), dir, Duration.ofSeconds(10))).isTrue();
    }

    @Test
    void probeFailsWhenQemuFails() throws Exception {
        Path qemu = script("fails", "echo 'kvm: emulation failure' >&2; exit 1");
        assertThat(Accelerators.probeKvm(qemu.toString(), kernel(), dir.resolve("initrd"), dir, Duration.ofSeconds(10))).isFalse();
    }

    @Test
    void probeOfAHangingGuestTimesOutAndKillsIt() throws Exception {
        Path pidFile = dir.resolve("pid");
        Path qemu = script("hangs", "echo $$ > " + pidFile + "; exec sleep 60");
        long start = System.nanoTime();
        assertThat(Accelerators.probeKvm(qemu.toString(), kernel(), dir.resolve("initrd"), dir, Duration.ofSeconds(1))).isFalse();
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(10));
        long pid = Long.parseLong(Files.readString(pidFile).strip());
        assertThat(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)).isFalse();
    }

    /** An interrupted probe kills its QEMU and gives no verdict (one would be remembered for good). */
    @Test
    void anInterruptedProbeKillsItsGuestAndGivesNoVerdict() throws Exception {
        Path pidFile = dir.resolve("pid");
        Path qemu = script("hangs", "echo $$ > " + pidFile + "; exec sleep 60");
        java.util.concurrent.CompletableFuture<Object> probe = new java.util.concurrent.CompletableFuture<>();
        Thread prober = new Thread(() -> {
            try {
                probe.complete(Accelerators.probeKvm(qemu.toString(), kernel(), dir.resolve("initrd"), dir, Duration.ofSeconds(30)));
            } catch (Throwable t) {
                probe.complete(t);
            }
        });
        prober.start();
        while (!Files.exists(pidFile) || Files.readString(pidFile).isBlank()) {
            Thread.sleep(20);
        }
        prober.interrupt();
        assertThat(probe.get(10, java.util.concurrent.TimeUnit.SECONDS)).isInstanceOf(java.io.IOException.class);
        long pid = Long.parseLong(Files.readString(pidFile).strip());
        long deadline = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        while (ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false) && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertThat(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)).isFalse();
    }

    /** A guest that fills its console with bytes that are no text is judged by its first MiB, not refused. */
    @Test
    void aConsoleOfBytesThatAreNoTextIsSearchedAllTheSame() throws Exception {
        Path qemu = script("binary", "for a; do case $a in file,id=console,path=*) f=\"${a#file,id=console,path=}\";"
                + " printf '\\377\\376' > \"$f\"; echo " + QemuCommand.PROBE_MARKER + " >> \"$f\";; esac; done; exit 0");
        assertThat(Accelerators.probeKvm(qemu.toString(), kernel(), dir.resolve("initrd"), dir, Duration.ofSeconds(10))).isTrue();
    }

    @Test
    void forcedAcceleratorsNeedNoProbe() {
        assertThat(Accelerators.resolve(Accelerator.TCG, "/no/qemu", kernel(), dir.resolve("initrd"), dir)).isEqualTo(Accelerator.TCG);
        assertThat(Accelerators.resolve(Accelerator.KVM, "/no/qemu", kernel(), dir.resolve("initrd"), dir)).isEqualTo(Accelerator.KVM);
    }

    private KernelBundle kernel() {
        return new KernelBundle(dir);
    }

    private Path script(String name, String body) throws Exception {
        Path file = dir.resolve(name);
        Files.writeString(file, "#!/bin/sh\n" + body + "\n");
        Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rwxr-xr-x"));
        return file;
    }
}

package io.microsandbox.runtime.vmm;

import io.microsandbox.runtime.SandboxPreparer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

class VmIdentityTest {

    @Test
    void namesTheFirstDifferenceOfTheVmACheckpointIsTiedTo(@TempDir Path dir) throws Exception {
        Path kernel = Files.writeString(dir.resolve("vmlinux"), "kernel one");
        Path initrd = Files.writeString(dir.resolve("initramfs.cpio"), "agent");
        Path lower = Files.writeString(dir.resolve("lower,x.ext4"), "lower");
        Files.setLastModifiedTime(lower, FileTime.from(java.time.Instant.parse("2026-11-28T12:00:00.123Z")));
        List<String> argv = List.of(SandboxPreparer.findQemu(), "-M", "microvm", "-accel", "tcg", "-cpu", "qemu64",
                "-m", "512", "-smp", "1", "-kernel", kernel.toString(), "-initrd", initrd.toString(),
                "-drive", "id=lower,file=" + lower.toString().replace(",", ",,") + ",format=raw,if=none,readonly=on",
                "-device", "virtio-blk-device,drive=lower", "-device", "virtio-serial-device,max_ports=2");
        Map<String, String> recorded = VmIdentity.of(argv);
        assertThat(recorded).containsEntry("machine", "microvm").containsEntry("memoryMib", "512")
                .containsEntry("lowerDisk", lower + " (5 bytes, built 2026-11-28T12:00:00.123Z)");
        assertThat(recorded.get("qemuVersion")).startsWith("QEMU emulator version");
        assertThat(VmIdentity.lowerDisk(recorded)).as("a restore finds the disk again by it").isEqualTo(lower);
        assertThat(VmIdentity.lowerDisk(Map.of())).isNull();
        assertThat(VmIdentity.mismatch(recorded, VmIdentity.of(argv))).isNull();

        Files.writeString(kernel, "kernel two");
        Files.setLastModifiedTime(kernel, FileTime.fromMillis(Files.getLastModifiedTime(kernel).toMillis() + 2000));
        assertThat(VmIdentity.mismatch(recorded, VmIdentity.of(argv))).startsWith("kernel was sha256:");

        Files.writeString(kernel, "kernel one");
        // the agent the VM was booted with: another initramfs (an SDK upgrade since) runs another
        Path newer = Files.writeString(dir.resolve("initramfs-newer.cpio"), "agent two");
        List<String> upgraded = argv.stream().map(a -> a.equals(initrd.toString()) ? newer.toString() : a).toList();
        assertThat(VmIdentity.mismatch(recorded, VmIdentity.of(upgraded))).startsWith("initramfs was sha256:");

        List<String> bigger = argv.stream().map(a -> a.equals("512") ? "1024" : a).toList();
        assertThat(VmIdentity.mismatch(recorded, VmIdentity.of(bigger))).startsWith("memoryMib was 512");

        // the disk built again (a pruned cache): same path and size, laid out anew under the saved guest's page cache
        Files.writeString(lower, "LOWER");
        assertThat(VmIdentity.mismatch(recorded, VmIdentity.of(argv))).startsWith("lowerDisk was " + lower + " (5 bytes, built 2026-11-28T12:00:00.123Z)");
        Files.setLastModifiedTime(lower, FileTime.from(java.time.Instant.parse("2026-11-28T12:00:00.123Z")));
        Map<String, String> beforeBuildTimesWereRecorded = new java.util.LinkedHashMap<>(recorded);
        beforeBuildTimesWereRecorded.put("lowerDisk", lower + " (5 bytes)");
        assertThat(VmIdentity.mismatch(beforeBuildTimesWereRecorded, VmIdentity.of(argv))).startsWith("lowerDisk was " + lower + " (5 bytes) when")
                .endsWith("take it again)");

        // the saved device state describes these devices: other ones could not load it
        List<String> morePorts = argv.stream().map(a -> a.equals("virtio-serial-device,max_ports=2") ? "virtio-serial-device" : a).toList();
        assertThat(VmIdentity.mismatch(recorded, VmIdentity.of(morePorts)))
                .isEqualTo("devices was virtio-blk-device,drive=lower virtio-serial-device,max_ports=2 when the checkpoint was taken"
                        + " and is virtio-blk-device,drive=lower virtio-serial-device now");
        Map<String, String> beforeDevicesWereRecorded = new java.util.LinkedHashMap<>(recorded);
        beforeDevicesWereRecorded.remove("devices");
        assertThat(VmIdentity.mismatch(beforeDevicesWereRecorded, VmIdentity.of(argv))).startsWith("devices is ").endsWith("take it again)");
    }

    @Test
    void aQemuThatHangsOnVersionIsKilledAfterTheTimeout(@TempDir Path dir) throws Exception {
        Path qemu = script(dir, "printf 'QEMU emulator version 7.2.0\\n'\nexec sleep 30\n");
        long start = System.nanoTime();
        org.junit.jupiter.api.Assertions.assertTimeoutPreemptively(java.time.Duration.ofSeconds(10), () ->
                org.assertj.core.api.Assertions.assertThatThrownBy(() -> VmIdentity.askVersion(qemu, java.time.Duration.ofSeconds(1)))
                        .isInstanceOf(java.io.IOException.class).hasMessageContaining("did not finish within"));
        assertThat(java.time.Duration.ofNanos(System.nanoTime() - start)).isLessThan(java.time.Duration.ofSeconds(10));
    }

    @Test
    void aWrapperWhoseChildKeepsItsOutputOpenIsNotWaitedFor(@TempDir Path dir) throws Exception {
        // the wrapper answers and exits; a child it left behind holds the output open for a while
        Path qemu = script(dir, "printf 'QEMU emulator version 7.2.0\\n'\nsleep 4 &\nexit 0\n");
        org.junit.jupiter.api.Assertions.assertTimeoutPreemptively(java.time.Duration.ofSeconds(3), () ->
                assertThat(VmIdentity.qemuVersion(qemu)).isEqualTo("QEMU emulator version 7.2.0"));
    }

    private static Path script(Path dir, String body) throws Exception {
        Path qemu = Files.writeString(dir.resolve("qemu-system-x86_64"), "#!/bin/sh\n" + body);
        Files.setPosixFilePermissions(qemu, java.nio.file.attribute.PosixFilePermissions.fromString("rwx------"));
        return qemu;
    }
}

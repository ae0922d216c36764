package io.microsandbox;

import io.microsandbox.image.oci.Digests;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Raw, qcow2 and vmdk disk images as roots: they boot, the guest writes, the user's file stays byte for byte the same. */
class DiskImageIT {
    @TempDir
    Path tmp;

    private static void run(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertThat(p.waitFor()).as(out).isZero();
    }

    @Test
    @Timeout(400)
    void rawAndQcow2RootsBootAndStayUnmodified() throws Exception {
        Path raw = tmp.resolve("root.raw");
        run("/usr/sbin/mke2fs", "-q", "-F", "-t", "ext4", "-d", TestSandboxes.rootfs(), raw.toString(), "400M");
        Path qcow2 = tmp.resolve("root.qcow2");
        run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw.toString(), qcow2.toString());
        Path vmdk = tmp.resolve("root.vmdk");
        run("qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw.toString(), vmdk.toString());
        for (Path disk : List.of(raw, qcow2, vmdk)) {
            String before = Digests.of(disk);
            long mtime = Files.getLastModifiedTime(disk).toMillis();
            String name = TestSandboxes.uniqueName("disk");
            try (Sandbox sb = Sandbox.create(name, SandboxConfig.builder().imageDisk(disk.toString(), "ext4").memoryMib(256).build())) {
                ExecOutput out = sb.exec("sh", List.of("-c", "echo written > /root/new.txt; rm -f /etc/motd; python3 -c 'print(6*7)'; cat /root/new.txt"));
                assertThat(out.stdout()).isEqualTo("42\nwritten\n");
                sb.stop();
            }
            try (Sandbox again = Sandbox.start(name)) {
                assertThat(again.exec("sh", List.of("-c", "cat /root/new.txt; test -e /etc/motd || echo gone")).stdout()).isEqualTo("written\ngone\n");
                again.stop();
            } finally {
                Sandbox.remove(name);
            }
            assertThat(Digests.of(disk)).as(disk + " unchanged").isEqualTo(before);
            assertThat(Files.getLastModifiedTime(disk).toMillis()).isEqualTo(mtime);
        }
    }

    @Test
    void patchesAndOtherFilesystemsOnDiskImagesAreRefused() {
        assertThatThrownBy(() -> SandboxConfig.builder().imageDisk("/x/root.qcow2", null).patch(Patch.text("/a", "b")).build())
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                    assertThat(e.getMessage()).contains("patches").contains("disk-image");
                });
        assertThatThrownBy(() -> SandboxConfig.builder().imageDisk("/x/root.qcow2", "xfs").build())
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
        assertThatThrownBy(() -> SandboxConfig.builder().imageDisk("/x/root.iso", null).build())
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
        assertThatThrownBy(() -> Sandbox.create(TestSandboxes.uniqueName("nodisk"), SandboxConfig.builder().imageDisk("/no/such/root.raw", null).build()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_NOT_FOUND);
                    assertThat(e.getMessage()).contains("/no/such/root.raw");
                });
    }
}

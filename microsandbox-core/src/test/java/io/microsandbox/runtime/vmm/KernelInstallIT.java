package io.microsandbox.runtime.vmm;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

/** The kernel install the jar can do by itself (Sandbox.ensureInstalled), from Debian's mirror. */
class KernelInstallIT {

    @Test
    void installsDebiansKernelIntoAnEmptyHomeAndThenReusesIt(@TempDir Path home) throws Exception {
        KernelBundle kernel = KernelBundle.install(home);

        assertThat(kernel.vmlinux()).isRegularFile();
        assertThat(Files.readAllBytes(kernel.vmlinux())).startsWith(0x7f, 'E', 'L', 'F');
        assertThat(kernel.modules()).startsWith("virtio_ring.ko", "virtio.ko").contains("ext4.ko", "overlay.ko");
        for (String module : kernel.modules()) {
            byte[] bytes = Files.readAllBytes(kernel.dir().resolve("modules").resolve(module));
            assertThat(new String(bytes, bytes.length - 28, 28, java.nio.charset.StandardCharsets.US_ASCII))
                    .as("%s keeps no signature", module).doesNotContain("Module signature appended");
        }
        long mtime = Files.getLastModifiedTime(kernel.vmlinux()).toMillis();
        assertThat(KernelBundle.install(home).vmlinux()).isEqualTo(kernel.vmlinux());
        assertThat(Files.getLastModifiedTime(kernel.vmlinux()).toMillis()).isEqualTo(mtime);
    }
}

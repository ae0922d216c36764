package io.microsandbox.runtime.vmm;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.commons.compress.archivers.cpio.CpioArchiveEntry;
import org.apache.commons.compress.archivers.cpio.CpioArchiveInputStream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class KernelBundleTest {
    @TempDir
    Path home;

    @AfterEach
    void clear() {
        System.clearProperty(KernelBundle.KERNEL_PROPERTY);
        System.clearProperty("microsandbox.kernel.dir");
    }

    @Test
    void theBundledKernelIsTheDefaultAndIsUnpackedOnce() throws IOException {
        KernelBundle kernel = KernelBundle.locate(home);
        assertThat(kernel.dir().getParent()).isEqualTo(home.resolve("kernel"));
        assertThat(kernel.dir().getFileName().toString()).startsWith("microsandbox-");
        byte[] elf = new byte[4];
        try (InputStream in = Files.newInputStream(kernel.vmlinux())) {
            assertThat(in.read(elf)).isEqualTo(4);
        }
        assertThat(elf).containsExactly(0x7f, 'E', 'L', 'F');
        assertThat(kernel.modules()).isEmpty();
        assertThat(Files.readString(kernel.dir().resolve("config"))).contains("CONFIG_VIRTIO_MMIO=y");
        // its patches' parameters: on every boot, and under TCG
        assertThat(kernel.bootParams()).containsExactly("virtio_mmio.max_queue_size=256");
        assertThat(kernel.emulationParams()).contains("noreplace-smp", "noinitpoison").anyMatch(p -> p.startsWith("lapic_timer_period="));
        var modified = Files.getLastModifiedTime(kernel.vmlinux());
        assertThat(KernelBundle.locate(home)).isEqualTo(kernel);
        assertThat(Files.getLastModifiedTime(kernel.vmlinux())).isEqualTo(modified);
    }

    @Test
    void debianSelectsTheFetchedKernelUnderTheHome() {
        System.setProperty(KernelBundle.KERNEL_PROPERTY, "debian");
        assertThat(KernelBundle.debianSelected()).isTrue();
        assertThatThrownBy(() -> KernelBundle.locate(home))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
                    assertThat(e.getMessage()).contains(home.resolve("kernel").resolve("current").toString()).contains("setup.sh");
                });
    }

    @Test
    void aDirectoryCanBeSelectedAndAnUnknownNameIsRefused() throws IOException {
        Path dir = Files.createDirectories(home.resolve("mykernel"));
        Files.write(dir.resolve("vmlinux"), new byte[] {0x7f, 'E', 'L', 'F'});
        System.setProperty(KernelBundle.KERNEL_PROPERTY, dir.toString());
        assertThat(KernelBundle.locate(home).dir()).isEqualTo(dir);
        assertThat(KernelBundle.debianSelected()).isFalse();
        System.setProperty(KernelBundle.KERNEL_PROPERTY, "fedora");
        assertThatThrownBy(() -> KernelBundle.locate(home))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
    }

    @Test
    void withoutModulesTheInitramfsHoldsTheAgentAlone() throws IOException {
        Path dir = Files.createDirectories(home.resolve("k"));
        Files.write(dir.resolve("vmlinux"), new byte[] {1});
        Path agent = Files.write(home.resolve("msb-agent"), new byte[] {1, 2, 3});
        Path cpio = new KernelBundle(dir).initramfs(agent, Files.createDirectories(home.resolve("cache")));
        List<String> names = new ArrayList<>();
        try (CpioArchiveInputStream in = new CpioArchiveInputStream(Files.newInputStream(cpio))) {
            for (CpioArchiveEntry e; (e = in.getNextCPIOEntry()) != null; ) {
                names.add(e.getName());
            }
        }
        assertThat(names).contains("init", "dev/console").doesNotContain("modules.order", "lib/modules");
    }
}

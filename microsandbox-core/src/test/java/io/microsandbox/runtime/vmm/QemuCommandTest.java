package io.microsandbox.runtime.vmm;

import io.microsandbox.Accelerator;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

class QemuCommandTest {
    @TempDir
    Path home;

    @AfterEach
    void clear() {
        System.clearProperty(QemuCommand.TCG_GUEST_ASLR_PROPERTY);
    }

    @Test
    void underTcgTheGuestRunsWithoutAddressRandomisationUnlessAsked() throws IOException {
        assertThat(kernelParams(Accelerator.TCG)).contains("norandmaps", "noreplace-smp");
        assertThat(kernelParams(new QemuCommand().guestAslr(true), Accelerator.TCG)).doesNotContain("norandmaps").contains("noreplace-smp");
        System.setProperty(QemuCommand.TCG_GUEST_ASLR_PROPERTY, "true");
        assertThat(kernelParams(Accelerator.TCG)).doesNotContain("norandmaps").contains("noreplace-smp");
    }

    @Test
    void underKvmTheGuestKeepsAddressRandomisationAndGetsNoEmulationParameters() throws IOException {
        assertThat(kernelParams(Accelerator.KVM)).doesNotContain("norandmaps", "noreplace-smp").contains("console=ttyS0");
    }

    private List<String> kernelParams(Accelerator accelerator) throws IOException {
        return kernelParams(new QemuCommand(), accelerator);
    }

    private List<String> kernelParams(QemuCommand command, Accelerator accelerator) throws IOException {
        List<String> argv = command.accelerator(accelerator).kernel(KernelBundle.locate(home), home.resolve("initramfs"))
                .consoleLog(home.resolve("console.log")).argv();
        return Arrays.asList(argv.get(argv.indexOf("-append") + 1).split(" "));
    }
}

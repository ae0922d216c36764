package io.microsandbox;

import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxPreparer;
import io.microsandbox.runtime.vmm.KernelBundle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Instant;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * QEMU upgraded on disk while a sandbox runs (a package update): a checkpoint would record the
 * new version over the old one's saved state, and restores would run the new one. It is
 * refused, saying what to do, and nothing is left under the name; with the same QEMU again it
 * is taken.
 */
class CheckpointQemuUpgradeIT {
    @Test
    @Timeout(300)
    void aCheckpointOfASandboxWhoseQemuWasUpgradedSinceItStartedIsRefused() throws Exception {
        Path base = Files.createTempDirectory("msb-cp-qemu");
        Path qemu = base.resolve("qemu-system-x86_64");
        writeWrapper(qemu, "");
        Microsandbox runtime = Microsandbox.builder().home(base.resolve("home")).qemu(qemu)
                .kernelDir(KernelBundle.locate(RuntimeFiles.defaultHome()).dir()).build();
        try (Sandbox sb = runtime.create("upgraded", TestSandboxes.config().build())) {
            assertThat(sb.shell("echo up").stdout()).isEqualTo("up\n");
            writeWrapper(qemu, "[ \"$1\" = --version ] && { echo 'QEMU emulator version 99.0.0'; exit 0; }\n");
            assertThatThrownBy(() -> sb.checkpoint("after-upgrade")).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INCOMPATIBLE);
                assertThat(e.getMessage()).contains("99.0.0", "stop and start the sandbox");
            });
            assertThat(runtime.checkpoints().directory().resolve("after-upgrade")).doesNotExist();
            assertThat(sb.shell("echo still").stdout()).as("the sandbox runs on").isEqualTo("still\n");

            writeWrapper(qemu, "# the same QEMU again\n");
            assertThat(sb.checkpoint("same-qemu").vm().get("qemuVersion")).endsWith(sb.runtimeVersion().qemu());
        } finally {
            runtime.find("upgraded").ifPresent(h -> {
                h.kill();
                h.remove();
            });
            io.microsandbox.runtime.supervisor.SpareSupervisors.release(runtime.home());
            SandboxPreparer.deleteTree(base);
        }
    }

    /** A QEMU that runs the installed one, after {@code before}; each version a new file time, as a package update leaves. */
    private static void writeWrapper(Path wrapper, String before) throws Exception {
        Files.writeString(wrapper, "#!/bin/sh\n" + before + "exec " + SandboxPreparer.findQemu() + " \"$@\"\n");
        Files.setPosixFilePermissions(wrapper, PosixFilePermissions.fromString("rwx------"));
        Files.setLastModifiedTime(wrapper, FileTime.from(Instant.now().plusSeconds(before.length())));
    }
}

package io.microsandbox;

import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;

class CheckpointsTest {
    /** The running QEMU's version (QMP's) against the installed one's {@code --version} line. */
    @Test
    void aQemuUpgradedUnderARunningSandboxIsTold() {
        String installed = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)";
        assertThat(Checkpoints.upgradedSince("7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)", installed)).isNull();
        assertThat(Checkpoints.upgradedSince("7.2.0", "QEMU emulator version 7.2.0")).isNull();
        assertThat(Checkpoints.upgradedSince(null, installed)).as("unknown: not refused").isNull();
        assertThat(Checkpoints.upgradedSince("7.2.19 (Debian 1:7.2+dfsg-7+deb12u16)", installed))
                .contains("runs 7.2.19", "7.2.22", "stop and start the sandbox");
        // a build whose version ends like the running one's is still another
        assertThat(Checkpoints.upgradedSince("2.0", "QEMU emulator version 7.2.0")).isNotNull();
    }
}

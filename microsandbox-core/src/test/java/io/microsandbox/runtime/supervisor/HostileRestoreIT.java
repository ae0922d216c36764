package io.microsandbox.runtime.supervisor;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * A guest resumed from a checkpoint is as hostile as a booted one: a real supervisor runs the
 * restore handshake against a {@link HostileAgent} that answers {@code core.restore} wrongly or
 * never. The restore fails with BOOT_FAILED naming the problem, within the boot timeout, and
 * leaves no sandbox behind.
 */
class HostileRestoreIT {
    @Test
    void aGuestThatNeverAnswersTheRestoreFailsItWithinTheBootTimeout() {
        expectBootFailure("restore-silent", "did not become ready within 3000 ms (waiting for the restored guest's agent to answer core.restore)");
    }

    @Test
    void aGuestThatAnswersTheRestoreWithAnotherFrameFailsIt() {
        expectBootFailure("restore-wrong", "expected core.restored from the agent, got");
    }

    @Test
    void aGuestThatRefusesTheRestoreFailsItWithItsReason() {
        expectBootFailure("restore-error", "the restore failed in the guest at stage restore: hostile says no");
    }

    private static void expectBootFailure(String scenario, String reason) {
        long start = System.nanoTime();
        assertThatThrownBy(() -> HostileSandboxes.bootRestored(scenario, 3000)).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
            assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
            assertThat(e.getMessage()).contains(reason);
        });
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(20));
        assertThat(Sandbox.list()).noneSatisfy(h -> assertThat(h.name()).startsWith("hostile-" + scenario + "-" + ProcessHandle.current().pid()));
    }
}

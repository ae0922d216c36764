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

    @Test
    void guestMemoryThatCannotBeReadFailsTheRestoreNamingIt(@org.junit.jupiter.api.io.TempDir java.nio.file.Path tmp) {
        // read while QEMU starts, on a thread of its own: its failure must still reach the creator
        expectBootFailure("restore-silent", () -> HostileSandboxes.bootRestored("restore-silent", 3000, tmp),
                "cannot load the checkpoint's guest memory: " + tmp + " is not a regular file");
    }

    private static void expectBootFailure(String scenario, String reason) {
        expectBootFailure(scenario, () -> HostileSandboxes.bootRestored(scenario, 3000), reason);
    }

    private static void expectBootFailure(String scenario, org.assertj.core.api.ThrowableAssert.ThrowingCallable restore, String reason) {
        long start = System.nanoTime();
        assertThatThrownBy(restore).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
            assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
            assertThat(e.getMessage()).contains(reason);
        });
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(20));
        assertThat(Sandbox.list()).noneSatisfy(h -> assertThat(h.name()).startsWith("hostile-" + scenario + "-" + ProcessHandle.current().pid()));
    }
}

package io.microsandbox;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SparseFiles;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A snapshot's upper disk copied into a new sandbox. */
class SnapshotsTest {
    @TempDir
    Path dir;

    /** Only a whole, checked copy is put under the sandbox's upper disk's name, which a later start would boot. */
    @Test
    void aCopyThatFailsItsCheckLeavesNoUpperDisk() throws Exception {
        Path home = Files.createDirectories(dir.resolve("home"));
        Path upper = Files.write(dir.resolve("upper.ext4"), "snapshot upper".repeat(1000).getBytes());
        SandboxLayout target = SandboxLayout.of(home, "restored");
        assertThatThrownBy(() -> Snapshots.materialize(home, "snapshot 's'", upper, "sha256:" + "0".repeat(64), null, target))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY));
        assertThat(target.upperDisk()).doesNotExist();
        try (var left = Files.list(target.dir())) {
            assertThat(left).isEmpty();
        }

        Snapshots.materialize(home, "snapshot 's'", upper, SparseFiles.digest(upper), null, target);
        assertThat(target.upperDisk()).hasSameBinaryContentAs(upper);
        try (var left = Files.list(target.dir())) {
            assertThat(left).containsExactly(target.upperDisk());
        }
    }

    /** A snapshot's upper disk is its own: a link could stand for another sandbox's disk, or any host file. */
    @Test
    void anUpperDiskThatIsALinkIsRefused() throws Exception {
        Path home = Files.createDirectories(dir.resolve("home"));
        Path other = Files.write(dir.resolve("other-sandbox-upper.ext4"), new byte[8192]);
        Path link = Files.createSymbolicLink(dir.resolve("upper.ext4"), other);
        SandboxLayout target = SandboxLayout.of(home, "restored");
        assertThatThrownBy(() -> Snapshots.materialize(home, "snapshot 's'", link, null, null, target))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY);
                    assertThat(e.getMessage()).contains("symbolic link");
                });
        assertThat(target.upperDisk()).doesNotExist();
    }
}

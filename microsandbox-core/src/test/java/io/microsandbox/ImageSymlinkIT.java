package io.microsandbox;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

/** An image given as a symbolic link to the image directory boots like the directory itself. */
class ImageSymlinkIT {
    @TempDir
    Path tmp;

    @Test
    @Timeout(180)
    void bootsFromAnImagePathThatIsASymbolicLink() throws Exception {
        Path link = Files.createSymbolicLink(tmp.resolve("image-link"), Path.of(TestSandboxes.rootfs()));
        SandboxConfig config = TestSandboxes.config().image(link.toString()).ephemeral(true).build();
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("symlink"), config)) {
            ExecOutput out = sb.exec("python3", List.of("-c", "print(6 * 7)"));
            assertThat(out.exitCode()).isZero();
            assertThat(out.stdout().strip()).isEqualTo("42");
        }
    }
}

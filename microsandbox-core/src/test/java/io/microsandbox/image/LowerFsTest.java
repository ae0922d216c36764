package io.microsandbox.image;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.runtime.HostCommand;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The lower disk read through debugfs, whose requests must never take an image's names as more than one word. */
class LowerFsTest {
    @TempDir
    Path dir;

    private LowerFs disk(Path root) throws IOException {
        Path disk = dir.resolve("lower.ext4");
        HostCommand.run(List.of("/usr/sbin/mke2fs", "-q", "-F", "-t", "ext4", "-d", root.toString(), disk.toString(), "8M"),
                Duration.ofSeconds(60), 1 << 20);
        return new LowerFs(disk);
    }

    @Test
    void followsTheImagesLinksInsideItsRoot() throws Exception {
        Path root = Files.createDirectories(dir.resolve("root"));
        Files.createDirectories(root.resolve("usr/lib"));
        Files.createSymbolicLink(root.resolve("lib"), Path.of("usr/lib"));
        Files.createSymbolicLink(root.resolve("escape"), Path.of("../../../../etc"));
        LowerFs lower = disk(root);
        assertThat(lower.resolve("/lib/x.so", true)).isEqualTo("/usr/lib/x.so");
        assertThat(lower.resolve("/escape/passwd", true)).isEqualTo("/etc/passwd");
        assertThat(lower.stat("/lib").isSymlink()).isTrue();
        assertThat(lower.stat("/missing")).isNull();
    }

    /** A link target (or name) with a quote would add words to a debugfs request: refused, not followed as something else. */
    @Test
    void anImagePathThatWouldAddWordsToADebugfsRequestIsRefused() throws Exception {
        Path root = Files.createDirectories(dir.resolve("root"));
        Files.createSymbolicLink(root.resolve("trap"), Path.of("x\" \"/tmp/elsewhere"));
        LowerFs lower = disk(root);
        assertThatThrownBy(() -> lower.resolve("/trap/file", true)).isInstanceOf(IOException.class)
                .hasMessageContaining("debugfs cannot be given a path with a quote");
        assertThatThrownBy(() -> lower.dump("/a\\b", dir.resolve("out"))).isInstanceOf(IOException.class);
        assertThat(dir.resolve("out")).doesNotExist();
    }

    /** debugfs exits 0 whatever fails: a disk it cannot open must not read as an empty image. */
    @Test
    void aDiskDebugfsCannotOpenOrACopyThatFailsIsAnError() throws Exception {
        LowerFs notADisk = new LowerFs(Files.write(dir.resolve("zeros.ext4"), new byte[100_000]));
        assertThatThrownBy(() -> notADisk.stat("/etc/passwd")).isInstanceOf(IOException.class)
                .hasMessageContaining("cannot open the image's disk").hasMessageContaining("Bad magic number");

        Path root = Files.createDirectories(dir.resolve("root"));
        Files.writeString(root.resolve("file"), "data");
        LowerFs lower = disk(root);
        assertThat(lower.stat("/missing")).isNull();
        assertThatThrownBy(() -> lower.dump("/file", dir.resolve("no-such-dir/out"))).isInstanceOf(IOException.class)
                .hasMessageContaining("cannot copy /file");
        lower.dump("/file", dir.resolve("out"));
        assertThat(dir.resolve("out")).hasContent("data");
    }
}

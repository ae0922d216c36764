package io.microsandbox.runtime.vmm;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

class LowerDiskFileTest {
    @TempDir
    Path tmp;

    private static List<String> argv(Path disk, String options) {
        return List.of("qemu-system-x86_64", "-drive", "id=upper,file=/elsewhere,format=raw,if=none",
                "-drive", "id=lower,file=" + QemuCommand.optionValue(disk.toString()) + ",format=raw,if=none" + options);
    }

    @Test
    void readsThePathOfTheLowerDriveWithItsCommasUndone() {
        Path odd = tmp.resolve("a,format=b,,c.ext4");
        assertThat(LowerDiskFile.pathIn(argv(odd, ",readonly=on"))).isEqualTo(odd);
        assertThat(LowerDiskFile.pathIn(List.of("qemu-system-x86_64", "-drive", "id=upper,file=/x,format=raw"))).isNull();
    }

    /** A disk deleted and built again at its path is another file, even with the same content and time. */
    @Test
    void aDiskBuiltAgainAtItsPathIsAnotherOne() throws IOException {
        Path disk = Files.writeString(tmp.resolve("lower.ext4"), "the tree");
        FileTime built = Files.getLastModifiedTime(disk);
        LowerDiskFile opened = LowerDiskFile.of(argv(disk, ",readonly=on"));
        assertThat(opened.path()).isEqualTo(disk);
        assertThat(opened.isStillAtItsPath()).isTrue();

        Path kept = Files.move(disk, tmp.resolve("kept-open")); // the old inode stays allocated, as QEMU's open file would keep it
        Files.writeString(disk, "the tree");
        Files.setLastModifiedTime(disk, built);
        assertThat(opened.isStillAtItsPath()).isFalse();
        Files.delete(disk);
        assertThat(opened.isStillAtItsPath()).as("gone").isFalse();
        assertThat(kept).exists();
    }

    @Test
    void aWritableLowerDiskIsTheSandboxsOwnAndNotTracked() throws IOException {
        Path overlay = Files.writeString(tmp.resolve("root-overlay.qcow2"), "qcow2");
        assertThat(LowerDiskFile.of(argv(overlay, ""))).isNull();
    }
}

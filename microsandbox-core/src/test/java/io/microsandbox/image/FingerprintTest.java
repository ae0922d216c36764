package io.microsandbox.image;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

class FingerprintTest {
    @TempDir
    Path image;

    @Test
    void isStableAndCountsEntriesAndBlocks() throws Exception {
        Files.createDirectories(image.resolve("etc"));
        Files.writeString(image.resolve("etc/hostname"), "x");
        Files.write(image.resolve("big"), new byte[5000]);
        Files.createSymbolicLink(image.resolve("link"), Path.of("etc/hostname"));

        RootDisks.Fingerprint first = RootDisks.Fingerprint.of(image);
        assertThat(RootDisks.Fingerprint.of(image)).isEqualTo(first);
        assertThat(first.entries()).isEqualTo(5); // root, etc, etc/hostname, big, link
        assertThat(first.bytes()).isGreaterThanOrEqualTo(4096 + 8192);
    }

    @Test
    void changesWithContentModeAndNewFiles() throws Exception {
        Path file = Files.writeString(image.resolve("file"), "a");
        String base = RootDisks.Fingerprint.of(image).digest();

        Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rwx------"));
        String afterChmod = RootDisks.Fingerprint.of(image).digest();
        assertThat(afterChmod).isNotEqualTo(base);

        Thread.sleep(10);
        Files.writeString(file, "b");
        String afterWrite = RootDisks.Fingerprint.of(image).digest();
        assertThat(afterWrite).isNotEqualTo(afterChmod);

        Files.createDirectories(image.resolve("deep/er"));
        Files.writeString(image.resolve("deep/er/new"), "n");
        assertThat(RootDisks.Fingerprint.of(image).digest()).isNotEqualTo(afterWrite);
    }
}

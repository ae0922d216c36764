package io.microsandbox.runtime;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RuntimeFilesTest {
    /** A resource every test run has: this class's own bytes. */
    private static final String RESOURCE = "/io/microsandbox/runtime/RuntimeFilesTest.class";
    private static final String PROPERTY = RuntimeFiles.HANDED_DOWN_PREFIX + "RuntimeFilesTest.class";

    @TempDir
    Path tmp;

    @AfterEach
    void clearProperty() {
        System.clearProperty(PROPERTY);
    }

    private static byte[] resourceBytes() throws IOException {
        try (InputStream in = RuntimeFilesTest.class.getResourceAsStream(RESOURCE)) {
            return in.readAllBytes();
        }
    }

    @Test
    void anExtractedFileIsHandedDownToChildJvmsByName() throws IOException {
        Path file = RuntimeFiles.extractResource(tmp.resolve("home"), RESOURCE);
        assertThat(file).startsWith(tmp.resolve("home").resolve("runtime")).hasBinaryContent(resourceBytes());
        // by name: one copy per file, whichever home it went to
        assertThat(RuntimeFiles.handDownOptions(java.util.List.of("other.so"))).noneMatch(o -> o.startsWith("-D" + PROPERTY));
        String option = RuntimeFiles.handDownOptions(java.util.List.of("RuntimeFilesTest.class")).stream().filter(o -> o.startsWith("-D" + PROPERTY + "=")).findFirst().orElseThrow();
        assertThat(Path.of(option.substring(option.indexOf('=') + 1))).hasBinaryContent(resourceBytes());
    }

    @Test
    void aHandedDownFileIsUsedAsItIsWithoutExtracting() throws IOException {
        // owner-only, as extraction leaves a file
        Path parentCopy = handDown("parent-copy", "rwx------");
        Path home = tmp.resolve("child-home");
        assertThat(RuntimeFiles.extractResource(home, RESOURCE)).isEqualTo(parentCopy);
        assertThat(home.resolve("runtime")).doesNotExist();
    }

    @Test
    void aHandedDownFileOthersMayWriteIsIgnored() throws IOException {
        handDown("writable-copy", "rw-rw-rw-");
        Path home = tmp.resolve("home-w");
        assertThat(RuntimeFiles.extractResource(home, RESOURCE)).startsWith(home).hasBinaryContent(resourceBytes());
    }

    @Test
    void aHandedDownPathThatIsRelativeOrMissingIsIgnored() throws IOException {
        System.setProperty(PROPERTY, "relative/copy");
        Path first = RuntimeFiles.extractResource(tmp.resolve("home-a"), RESOURCE);
        assertThat(first).startsWith(tmp.resolve("home-a")).hasBinaryContent(resourceBytes());
        System.setProperty(PROPERTY, tmp.resolve("no-such-file").toString());
        Path second = RuntimeFiles.extractResource(tmp.resolve("home-b"), RESOURCE);
        assertThat(second).startsWith(tmp.resolve("home-b")).hasBinaryContent(resourceBytes());
    }

    /** A copy of the resource named {@code name} with {@code permissions}, handed down as a parent JVM would. */
    private Path handDown(String name, String permissions) throws IOException {
        Path copy = Files.write(tmp.resolve(name), resourceBytes());
        Files.setPosixFilePermissions(copy, java.nio.file.attribute.PosixFilePermissions.fromString(permissions));
        System.setProperty(PROPERTY, copy.toString());
        return copy;
    }
}

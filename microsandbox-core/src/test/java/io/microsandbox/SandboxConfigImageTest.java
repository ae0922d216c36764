package io.microsandbox;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class SandboxConfigImageTest {
    @TempDir
    Path dir;

    @Test
    void aMalformedReferenceIsAnInvalidConfigNotAMissingDirectory() {
        assertThatThrownBy(() -> SandboxConfig.builder().image("Python:3.12").build())
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                    assertThat(e.getMessage()).contains("invalid image reference 'Python:3.12'").contains("no local directory");
                });
    }

    /** A relative path is persisted absolute: a later process elsewhere must find the same files; references stay as given. */
    @Test
    void aRelativeImagePathIsMadeAbsoluteForTheRecord() throws Exception {
        Path cwd = Path.of("").toAbsolutePath();
        Path tree = Files.createDirectories(cwd.resolve("target/relative-image-" + ProcessHandle.current().pid()));
        Path disk = Files.write(tree.resolve("root.raw"), new byte[4096]);
        try {
            String relative = cwd.relativize(tree).toString();
            assertThat(SandboxConfig.builder().image(relative).build().withAbsolutePaths().image()).isEqualTo(tree.toString());
            assertThat(SandboxConfig.builder().imageDisk(cwd.relativize(disk).toString(), "ext4").build().withAbsolutePaths().imageDisk())
                    .isEqualTo(disk.toString());
            assertThat(SandboxConfig.builder().image("python:3.12").build().withAbsolutePaths().image()).isEqualTo("python:3.12");
            SandboxConfig absolute = SandboxConfig.builder().image(tree.toString()).build();
            assertThat(absolute.withAbsolutePaths()).isSameAs(absolute);
        } finally {
            Files.delete(disk);
            Files.delete(tree);
        }
    }

    /** A sandbox recorded by a version that did not check references (or from a directory since removed) still reads back. */
    @Test
    void aRecordedConfigurationIsReadBackWhateverItsImage() {
        String recorded = SandboxConfig.builder().image("python:3.12").build().toJson().replace("python:3.12", "Python:3.12");
        SandboxConfig read = SandboxConfig.fromJson(recorded);
        assertThat(read.image()).isEqualTo("Python:3.12");
        assertThat(read.toBuilder().build().image()).isEqualTo("Python:3.12");
        // only what the record holds is spared: an image set since is checked
        assertThatThrownBy(() -> read.toBuilder().image("Python:3.13").build()).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
    }

    /** A snapshot brings its own upper disk, so patches (written into a new one) would be dropped without a word. */
    @Test
    void patchesWithASnapshotAreRefused() {
        assertThatThrownBy(() -> SandboxConfig.builder().snapshot("base").patch(Patch.text("/p", "x")).build())
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                    assertThat(e.getMessage()).contains("patches are not supported with a snapshot");
                });
    }

    /** A snapshot's upper disk has the snapshot's size: a size asked for would be ignored without a word (the Go SDK refuses it). */
    @Test
    void anUpperSizeWithASnapshotIsRefused() {
        assertThatThrownBy(() -> SandboxConfig.builder().snapshot("base").upperSizeMib(8192).build())
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                    assertThat(e.getMessage()).contains("upperSizeMib does not apply to a snapshot");
                });
    }

    /** A disk image given as image would be opened as an OCI archive and fail with an archive error. */
    @Test
    void aDiskImageGivenAsImageSaysToUseImageDisk() throws Exception {
        Path disk = Files.write(dir.resolve("root.qcow2"), new byte[512]);
        assertThatThrownBy(() -> SandboxConfig.builder().image(disk.toString()).build())
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                    assertThat(e.getMessage()).contains("is a disk image file: boot it with imageDisk(");
                });
    }

    @Test
    void referencesAndPathsAreAccepted() throws Exception {
        assertThat(SandboxConfig.builder().image("python:3.12").build().image()).isEqualTo("python:3.12");
        assertThat(SandboxConfig.builder().image("127.0.0.1:5000/team/app@sha256:" + "a".repeat(64)).build()).isNotNull();
        // a path is resolved when the sandbox is created, where a missing one is IMAGE_NOT_FOUND
        assertThat(SandboxConfig.builder().image("/no/such/rootfs").build()).isNotNull();
        Path relative = Files.createDirectories(dir.resolve("Rootfs"));
        assertThat(SandboxConfig.builder().image(relative.toString()).build()).isNotNull();
    }
}

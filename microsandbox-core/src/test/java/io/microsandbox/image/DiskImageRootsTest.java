package io.microsandbox.image;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.HostCommand;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A root disk image is the backing file of the sandbox's overlay: it may name no other host file. */
class DiskImageRootsTest {
    @TempDir
    Path dir;
    private Path home;
    private Path sandboxDir;
    private Path secret;

    @BeforeEach
    void dirs() throws Exception {
        home = Files.createDirectories(dir.resolve("home"));
        sandboxDir = Files.createDirectories(home.resolve("sandboxes/s"));
        secret = Files.writeString(dir.resolve("secret"), "host secret".repeat(1000));
    }

    private static void qemuImg(String... args) throws Exception {
        List<String> cmd = new java.util.ArrayList<>(List.of(DiskImageRoots.qemuImg()));
        cmd.addAll(List.of(args));
        HostCommand.Result r = HostCommand.run(cmd, Duration.ofSeconds(60), 1 << 20);
        assertThat(r.succeeded()).as(r.output()).isTrue();
    }

    @Test
    void selfContainedImagesGetAnOverlay() throws Exception {
        Path raw = Files.write(dir.resolve("root.raw"), new byte[1 << 20]);
        Path qcow2 = dir.resolve("root.qcow2");
        qemuImg("create", "-q", "-f", "qcow2", qcow2.toString(), "1M");
        Path vmdk = dir.resolve("root.vmdk");
        qemuImg("create", "-q", "-f", "vmdk", vmdk.toString(), "1M");
        for (Path image : List.of(raw, qcow2, vmdk)) {
            ImageRoots.Root root = DiskImageRoots.overlay(home, image.toString(), sandboxDir, true);
            assertThat(root.lowerDisk()).isEqualTo(sandboxDir.resolve("root-overlay.qcow2")).isRegularFile();
            assertThat(sandboxDir.resolve("root-overlay.qcow2.part")).doesNotExist();
        }
    }

    @Test
    void anImageThatNamesAnotherHostFileIsRefused() throws Exception {
        Path backed = dir.resolve("backed.qcow2");
        qemuImg("create", "-q", "-f", "qcow2", "-F", "raw", "-b", secret.toString(), backed.toString());
        Path flat = dir.resolve("flat.vmdk");
        qemuImg("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", flat.toString(), "1M");
        // a descriptor whose extent is any host file
        Path elsewhere = Files.writeString(dir.resolve("elsewhere.vmdk"), Files.readString(flat).replace("\"flat-flat.vmdk\"", "\"" + secret + "\""));
        for (Path image : List.of(backed, flat, elsewhere)) {
            assertThatThrownBy(() -> DiskImageRoots.overlay(home, image.toString(), sandboxDir, true)).as(image.toString())
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                        assertThat(e.getMessage()).contains(image.toString()).contains("host file").contains("qemu-img convert");
                    });
        }
        assertThat(sandboxDir.resolve("root-overlay.qcow2")).doesNotExist();
    }

    /** A start checks the file the name leads to now, and the overlay is made over that file: never over one unchecked. */
    @Test
    void anOverlayFollowsTheFileItsImageNameLeadsTo() throws Exception {
        Path first = Files.write(dir.resolve("first.raw"), new byte[1 << 20]);
        Path second = Files.write(dir.resolve("second.raw"), new byte[1 << 20]);
        Path name = Files.createSymbolicLink(dir.resolve("root.raw"), first);
        Path overlay = DiskImageRoots.overlay(home, name.toString(), sandboxDir, true).lowerDisk();
        assertThat(DiskImageRoots.backingFileOf(overlay)).isEqualTo(first.toRealPath().toString());
        Object made = Files.readAttributes(overlay, java.nio.file.attribute.BasicFileAttributes.class).fileKey();
        DiskImageRoots.overlay(home, name.toString(), sandboxDir, false);
        assertThat(Files.readAttributes(overlay, java.nio.file.attribute.BasicFileAttributes.class).fileKey())
                .as("kept while the name leads to the same file").isEqualTo(made);
        Files.delete(name);
        Files.createSymbolicLink(name, second);
        DiskImageRoots.overlay(home, name.toString(), sandboxDir, false);
        assertThat(DiskImageRoots.backingFileOf(overlay)).isEqualTo(second.toRealPath().toString());
    }

    @Test
    void anImageInsideTheHomeIsRefused() throws Exception {
        Path other = home.resolve("sandboxes/other/upper.raw");
        Files.createDirectories(other.getParent());
        Files.write(other, new byte[4096]);
        assertThatThrownBy(() -> DiskImageRoots.overlay(home, other.toString(), sandboxDir, true))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                    assertThat(e.getMessage()).contains("inside the microsandbox home");
                });
    }
}

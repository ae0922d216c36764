package io.microsandbox.image.oci;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The unprivileged build (staging tree without chown/mknod/trusted xattrs, then debugfs -w on
 * the disk) gives the same inodes as the privileged one. Forced with
 * -Dmicrosandbox.image.unprivileged=true, since the tests run as root.
 */
class UnprivilegedUnpackTest {
    @TempDir
    Path tmp;

    @Test
    void debugfsFixupsGiveTheSameDiskAsRoot() throws Exception {
        OciWriter w = new OciWriter(tmp.resolve("w"));
        OciWriter.Blob l1 = w.layer()
                .dir("data", 0755, 0, 0)
                .file("data/secret", "top secret\n", 0640, 1000, 1000)
                .file("data/suid", "x".getBytes(StandardCharsets.UTF_8), 04755, 0, 0, Map.of())
                .file("data/none", "no access", 0000, 0, 0)
                .dir("data/locked", 0500, 1000, 1000)
                .file("data/locked/inside", "in", 0400, 1000, 1000)
                .hardlink("data/hard", "data/secret")
                .symlink("data/link", "secret")
                .charDevice("data/null", 1, 3, 0666)
                .file("data/xattrs", "x".getBytes(StandardCharsets.UTF_8), 0644, 0, 0, Map.of("trusted.msb", "t-value", "user.msb", "u-value"))
                .file("data/gone", "g", 0600, 4242, 4242)
                .build(OciWriter.Compression.GZIP);
        OciWriter.Blob l2 = w.layer().whiteout("data/gone").build(OciWriter.Compression.GZIP);
        OciWriter.Blob cfg = w.config("amd64", List.of(l1, l2), TestImages.ENV, null, null, null, null, false);
        OciArchiveIT.Built b = new OciArchiveIT.Built(cfg, List.of(l1, l2), w.manifest(cfg, List.of(l1, l2), false));
        Path layout = tmp.resolve("layout");
        OciArchiveIT.writeLayout(layout, b, true);

        OciImages rootful = new OciImages(tmp.resolve("home-root"));
        Path rootDisk = rootful.lowerDisk(OciArchives.load(rootful, layout), null, null);
        Path plainDisk;
        System.setProperty("microsandbox.image.unprivileged", "true");
        try {
            OciImages plain = new OciImages(tmp.resolve("home-plain"));
            plainDisk = plain.lowerDisk(OciArchives.load(plain, layout), null, null);
        } finally {
            System.clearProperty("microsandbox.image.unprivileged");
        }
        for (String p : List.of("/data", "/data/secret", "/data/suid", "/data/none", "/data/locked", "/data/locked/inside",
                "/data/hard", "/data/link", "/data/null", "/data/xattrs")) {
            assertThat(inode(plainDisk, p)).as(p).isEqualTo(inode(rootDisk, p));
        }
        assertThat(inode(plainDisk, "/data/secret")).contains("User:  1000").contains("Mode:  0640").contains("Links: 2");
        assertThat(inode(plainDisk, "/data/suid")).contains("Mode:  04755");
        assertThat(inode(plainDisk, "/data/null")).contains("character special").contains("Device major/minor number: 01:03");
        assertThat(OciPullIT.debugfs(plainDisk, "ea_list /data/xattrs")).contains("trusted.msb").contains("t-value").contains("u-value");
        assertThat(OciPullIT.debugfs(plainDisk, "ls /data")).doesNotContain("gone");
    }

    /**
     * An image's extended attribute name becomes a word of the debugfs script when the build
     * runs without root (a name the kernel refuses, here longer than 255 bytes, is deferred
     * to it): a newline in it must not start a command of the image's choosing, such as
     * copying a host file into the disk the guest reads.
     */
    @Test
    void anXattrNameCannotRunDebugfsCommands() throws Exception {
        Path secret = tmp.resolve("host-secret");
        java.nio.file.Files.writeString(secret, "host only\n");
        String injected = "trusted.x\nwrite " + secret + " stolen\n#" + "#".repeat(300);
        OciWriter w = new OciWriter(tmp.resolve("w"));
        OciWriter.Blob layer = w.layer()
                .file("f", "x".getBytes(StandardCharsets.UTF_8), 0644, 0, 0, Map.of(injected, "v"))
                .build(OciWriter.Compression.GZIP);
        OciWriter.Blob cfg = w.config("amd64", List.of(layer), TestImages.ENV, null, null, null, null, false);
        OciArchiveIT.Built b = new OciArchiveIT.Built(cfg, List.of(layer), w.manifest(cfg, List.of(layer), false));
        Path layout = tmp.resolve("layout");
        OciArchiveIT.writeLayout(layout, b, true);

        for (boolean unprivileged : List.of(true, false)) {
            if (unprivileged) {
                System.setProperty("microsandbox.image.unprivileged", "true");
            }
            try {
                OciImages images = new OciImages(tmp.resolve("home-" + unprivileged));
                assertThatThrownBy(() -> images.lowerDisk(OciArchives.load(images, layout), null, null))
                        .as("unprivileged=" + unprivileged)
                        .hasMessageContaining("invalid extended attribute name");
            } finally {
                System.clearProperty("microsandbox.image.unprivileged");
            }
        }
    }

    /** The lines of debugfs stat that describe the inode's identity (not times or its number). */
    private static String inode(Path disk, String path) throws Exception {
        StringBuilder sb = new StringBuilder();
        for (String line : OciPullIT.debugfs(disk, "stat " + path).split("\n")) {
            if (line.startsWith("Inode:") || line.startsWith("User:") || line.startsWith("Links:") || line.contains("major")
                    || line.startsWith("Fast link") || line.contains("Extended attributes") || line.startsWith("  ")) {
                sb.append(line.replaceAll("Inode: \\d+", "").replaceAll("Flags: \\S+", "").replaceAll("Blockcount: \\d+", "")
                        .replaceAll("Generation: \\S+", "").replaceAll("Size: \\d+", "").replaceAll("Project:\\s+\\d+", "")).append('\n');
            }
        }
        return sb.toString();
    }
}

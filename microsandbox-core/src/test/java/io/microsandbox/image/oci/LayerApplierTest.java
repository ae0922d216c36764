package io.microsandbox.image.oci;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Untrusted layers cannot write outside the staging root. */
class LayerApplierTest {
    @TempDir
    Path tmp;

    private void apply(Path root, OciWriter.Blob... layers) throws IOException {
        LayerApplier a = new LayerApplier(root);
        for (OciWriter.Blob b : layers) {
            a.apply(LayerApplier.decompressed(new ByteArrayInputStream(b.bytes())));
        }
        a.finish();
    }

    @Test
    void aSymlinkInALowerLayerIsNeverWrittenThrough() throws Exception {
        Path outside = Files.createDirectories(tmp.resolve("outside"));
        Path root = Files.createDirectories(tmp.resolve("root"));
        OciWriter w = new OciWriter(tmp.resolve("w"));
        OciWriter.Blob l1 = w.layer().symlink("etc", outside.toString()).build(OciWriter.Compression.GZIP);
        OciWriter.Blob l2 = w.layer().file("etc/passwd", "pwned", 0644, 0, 0).build(OciWriter.Compression.ZSTD);
        assertThatThrownBy(() -> apply(root, l1, l2)).hasMessageContaining("symbolic link");
        assertThat(outside.resolve("passwd")).doesNotExist();
        // a whiteout through the link cannot delete outside either
        Files.writeString(outside.resolve("keep"), "x");
        OciWriter.Blob l3 = w.layer().whiteout("etc/keep").build(OciWriter.Compression.NONE);
        Path root2 = Files.createDirectories(tmp.resolve("root2"));
        assertThatThrownBy(() -> apply(root2, l1, l3)).hasMessageContaining("symbolic link");
        assertThat(outside.resolve("keep")).exists();
        // nor a hard link to a file outside
        OciWriter.Blob l4 = w.layer().hardlink("stolen", "etc/keep").build(OciWriter.Compression.NONE);
        Path root3 = Files.createDirectories(tmp.resolve("root3"));
        assertThatThrownBy(() -> apply(root3, l1, l4)).hasMessageContaining("symbolic link");
    }

    /** A directory replaced by a link after its entry must not get its time set through that link. */
    @Test
    void directoryTimesAreNotSetThroughALinkThatReplacedAParent() throws Exception {
        Path victim = Files.createDirectories(tmp.resolve("outside/victim"));
        Files.setLastModifiedTime(victim, java.nio.file.attribute.FileTime.fromMillis(1_600_000_000_000L));
        Path root = Files.createDirectories(tmp.resolve("root"));
        OciWriter w = new OciWriter(tmp.resolve("w"));
        OciWriter.Blob l1 = w.layer().dir("a", 0755, 0, 0).dir("a/victim", 0755, 0, 0).build(OciWriter.Compression.NONE);
        OciWriter.Blob l2 = w.layer().symlink("a", tmp.resolve("outside").toString()).build(OciWriter.Compression.NONE);
        apply(root, l1, l2);
        assertThat(Files.isSymbolicLink(root.resolve("a"))).isTrue();
        assertThat(Files.getLastModifiedTime(victim).toMillis()).isEqualTo(1_600_000_000_000L);
    }

    /** A layer of a few compressed bytes cannot fill the disk, the inode table or the heap. */
    @Test
    void whatALayerUnpacksToIsBounded() throws Exception {
        OciWriter w = new OciWriter(tmp.resolve("w"));
        OciWriter.Blob zeros = w.layer().file("zeros", new byte[2 << 20], 0644, 0, 0, java.util.Map.of()).build(OciWriter.Compression.GZIP);
        assertThat(zeros.bytes().length).isLessThan(64 << 10);
        OciWriter.LayerBuilder many = w.layer();
        for (int i = 0; i < 200; i++) {
            many.file("f" + i, "", 0644, 0, 0);
        }
        OciWriter.Blob manyEntries = many.build(OciWriter.Compression.GZIP);
        System.setProperty("microsandbox.image.maxUnpackedBytes", String.valueOf(1 << 20));
        System.setProperty("microsandbox.image.maxEntries", "100");
        try {
            assertThatThrownBy(() -> apply(Files.createDirectories(tmp.resolve("r1")), zeros)).hasMessageContaining("unpacks to more than 1048576 bytes");
            assertThatThrownBy(() -> apply(Files.createDirectories(tmp.resolve("r2")), manyEntries)).hasMessageContaining("more than 100 entries");
        } finally {
            System.clearProperty("microsandbox.image.maxUnpackedBytes");
            System.clearProperty("microsandbox.image.maxEntries");
        }
        apply(Files.createDirectories(tmp.resolve("r3")), zeros, manyEntries);
        assertThat(Files.size(tmp.resolve("r3/zeros"))).isEqualTo(2 << 20);

        // a GNU long name the tar reader would take into memory whole
        java.io.ByteArrayOutputStream raw = new java.io.ByteArrayOutputStream();
        try (var tar = new org.apache.commons.compress.archivers.tar.TarArchiveOutputStream(raw)) {
            tar.setLongFileMode(org.apache.commons.compress.archivers.tar.TarArchiveOutputStream.LONGFILE_GNU);
            var entry = new org.apache.commons.compress.archivers.tar.TarArchiveEntry("d/" + "n".repeat(100_000));
            tar.putArchiveEntry(entry);
            tar.closeArchiveEntry();
        }
        LayerApplier a = new LayerApplier(Files.createDirectories(tmp.resolve("r4")));
        assertThatThrownBy(() -> a.apply(new ByteArrayInputStream(raw.toByteArray()))).hasMessageContaining("tar header entry (type 'L')");

        // an extended header of the Solaris kind ('X'), which the tar reader takes into memory like 'x'
        byte[] header = new byte[512];
        System.arraycopy("PaxHeader/f".getBytes(java.nio.charset.StandardCharsets.US_ASCII), 0, header, 0, 11);
        PaxXattrs.writeOctal(header, 100, 8, 0644);
        PaxXattrs.writeOctal(header, 124, 12, 17L << 20);
        header[156] = 'X';
        PaxXattrs.checksum(header);
        LayerApplier b = new LayerApplier(Files.createDirectories(tmp.resolve("r5")));
        assertThatThrownBy(() -> b.apply(new ByteArrayInputStream(header))).hasMessageContaining("tar header entry (type 'X')");
    }

    @Test
    void dotDotIsRefused() throws Exception {
        Path root = Files.createDirectories(tmp.resolve("root"));
        OciWriter w = new OciWriter(tmp.resolve("w"));
        OciWriter.Blob l = w.layer().file("a/../../escape", "x", 0644, 0, 0).build(OciWriter.Compression.NONE);
        assertThatThrownBy(() -> apply(root, l)).hasMessageContaining("leaves the root");
        assertThat(tmp.resolve("escape")).doesNotExist();
    }

    @Test
    void whiteoutsAndOpaqueDirectories() throws Exception {
        Path root = Files.createDirectories(tmp.resolve("root"));
        OciWriter w = new OciWriter(tmp.resolve("w"));
        OciWriter.Blob l1 = w.layer().dir("d", 0755, 0, 0).file("d/old", "1", 0644, 0, 0).dir("d/sub", 0755, 0, 0)
                .file("d/sub/x", "x", 0644, 0, 0).file("gone", "g", 0644, 0, 0).build(OciWriter.Compression.GZIP);
        OciWriter.Blob l2 = w.layer().file("d/new", "2", 0644, 0, 0).opaque("d").whiteout("gone")
                .file("gone2", "h", 0644, 0, 0).build(OciWriter.Compression.GZIP);
        apply(root, l1, l2);
        try (var s = Files.list(root.resolve("d"))) {
            assertThat(s.map(p -> p.getFileName().toString()).toList()).containsExactly("new");
        }
        assertThat(Files.exists(root.resolve("gone"), LinkOption.NOFOLLOW_LINKS)).isFalse();
        assertThat(root.resolve("gone2")).hasContent("h");
    }

    @Test
    void somethingThatIsNotATarIsRefused() {
        Path root = tmp.resolve("root");
        assertThatThrownBy(() -> new LayerApplier(Files.createDirectories(root))
                .apply(LayerApplier.decompressed(new ByteArrayInputStream("this is not a tar archive, just some text that goes on long enough to fill a header block of five hundred and twelve bytes ".repeat(8).getBytes()))))
                .isInstanceOf(IOException.class);
    }

    @Test
    void binaryXattrValuesSurviveByteForByte() throws Exception {
        Path src = Files.createDirectories(tmp.resolve("src"));
        Path f = Files.writeString(src.resolve("capable"), "x");
        byte[] value = {0x01, 0x00, (byte) 0xff, (byte) 0xfe, (byte) 0x80, 0x7f, 0x0a, 0x3d};
        io.microsandbox.runtime.Posix.lsetxattr(f, "trusted.bin", value);
        io.microsandbox.runtime.Posix.lsetxattr(f, "user.text", "plain=text".getBytes());
        Path tar = tmp.resolve("layer.tar");
        Process p = new ProcessBuilder("tar", "--xattrs", "--xattrs-include=*", "-C", src.toString(), "-cf", tar.toString(), ".")
                .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertThat(p.waitFor()).as(out).isZero();
        Path root = Files.createDirectories(tmp.resolve("root"));
        LayerApplier a = new LayerApplier(root);
        try (var in = Files.newInputStream(tar)) {
            a.apply(LayerApplier.decompressed(in));
        }
        Process g = new ProcessBuilder("python3", "-c", "import os,sys; print(os.getxattr(sys.argv[1], 'trusted.bin').hex(), os.getxattr(sys.argv[1], 'user.text').decode())",
                root.resolve("capable").toString()).redirectErrorStream(true).start();
        String got = new String(g.getInputStream().readAllBytes()).strip();
        assertThat(g.waitFor()).as(got).isZero();
        assertThat(got).isEqualTo(java.util.HexFormat.of().formatHex(value) + " plain=text");
    }
}

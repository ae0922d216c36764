package io.microsandbox.image.oci;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.ErrorKind;
import io.microsandbox.ExecOutput;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Images from an OCI layout directory, an OCI archive and a docker save tarball; the user's files stay as they are. */
class OciArchiveIT {
    @TempDir
    Path tmp;

    record Built(OciWriter.Blob config, List<OciWriter.Blob> layers, OciWriter.Blob manifest) {
    }

    private Built smallImage(OciWriter w) throws Exception {
        OciWriter.Blob l1 = w.layer().dir("data", 0755, 0, 0).file("data/secret", "top secret\n", 0640, 1000, 1000)
                .file("data/gone", "x", 0644, 0, 0).symlink("data/link", "secret").build(OciWriter.Compression.GZIP);
        OciWriter.Blob l2 = w.layer().whiteout("data/gone").file("data/added", "2\n", 0644, 0, 0).build(OciWriter.Compression.ZSTD);
        OciWriter.Blob cfg = w.config("amd64", List.of(l1, l2), TestImages.ENV, "/data", null, null, null, false);
        return new Built(cfg, List.of(l1, l2), w.manifest(cfg, List.of(l1, l2), false));
    }

    static void writeLayout(Path dir, Built b, boolean withPlatform) throws Exception {
        Files.createDirectories(dir.resolve("blobs/sha256"));
        Files.writeString(dir.resolve("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
        for (OciWriter.Blob blob : concat(b)) {
            Files.copy(blob.file(), dir.resolve("blobs/sha256").resolve(Digests.hex(blob.digest())), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        }
        ObjectNode index = OciWriter.JSON.createObjectNode();
        index.put("schemaVersion", 2);
        ArrayNode m = index.putArray("manifests");
        ObjectNode d = OciWriter.descriptor(b.manifest());
        if (withPlatform) {
            d.putObject("platform").put("os", "linux").put("architecture", "amd64");
        }
        d.putObject("annotations").put("org.opencontainers.image.ref.name", "v1");
        m.add(d);
        Files.write(dir.resolve("index.json"), OciWriter.JSON.writeValueAsBytes(index));
    }

    static List<OciWriter.Blob> concat(Built b) {
        List<OciWriter.Blob> all = new java.util.ArrayList<>(b.layers());
        all.add(b.config());
        all.add(b.manifest());
        return all;
    }

    /** A tarball of {@code dir}'s files. */
    static Path tar(Path dir, Path out) throws Exception {
        try (OutputStream os = Files.newOutputStream(out); TarArchiveOutputStream t = new TarArchiveOutputStream(os)) {
            t.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
            try (var walk = Files.walk(dir)) {
                for (Path p : walk.sorted().toList()) {
                    if (p.equals(dir)) {
                        continue;
                    }
                    TarArchiveEntry e = new TarArchiveEntry(p.toFile(), dir.relativize(p).toString());
                    t.putArchiveEntry(e);
                    if (Files.isRegularFile(p)) {
                        Files.copy(p, t);
                    }
                    t.closeArchiveEntry();
                }
            }
        }
        return out;
    }

    private static String treeDigest(Path dir) throws Exception {
        StringBuilder sb = new StringBuilder();
        try (var walk = Files.walk(dir)) {
            for (Path p : walk.sorted().toList()) {
                sb.append(dir.relativize(p)).append(Files.isRegularFile(p) ? Digests.of(p) : "d")
                        .append(Files.getLastModifiedTime(p)).append(Files.getPosixFilePermissions(p)).append('\n');
            }
        }
        return sb.toString();
    }

    private void assertSmallDisk(OciImages oci, OciImages.Image img) throws Exception {
        Path disk = oci.lowerDisk(img, null, null);
        assertThat(OciPullIT.debugfs(disk, "ls /data")).contains("secret").contains("added").contains("link").doesNotContain("gone");
        assertThat(OciPullIT.debugfs(disk, "stat /data/secret")).contains("User:  1000").contains("Mode:  0640");
        assertThat(img.defaults().workingDir()).isEqualTo("/data");
    }

    @Test
    @Timeout(120)
    void layoutDirectoryAndOciArchive() throws Exception {
        Built b = smallImage(new OciWriter(tmp.resolve("w")));
        Path layout = tmp.resolve("layout");
        writeLayout(layout, b, true);
        String before = treeDigest(layout);
        Path home = tmp.resolve("home");
        OciImages oci = new OciImages(home);
        OciImages.Image img = OciArchives.load(oci, layout);
        assertThat(img.manifestDigest()).isEqualTo(b.manifest().digest());
        assertSmallDisk(oci, img);
        assertThat(treeDigest(layout)).isEqualTo(before);

        Path archive = tar(layout, tmp.resolve("image.tar"));
        String archiveDigest = Digests.of(archive);
        OciImages oci2 = new OciImages(tmp.resolve("home2"));
        OciImages.Image fromTar = OciArchives.load(oci2, archive);
        assertThat(fromTar.manifestDigest()).isEqualTo(b.manifest().digest());
        assertSmallDisk(oci2, fromTar);
        assertThat(Digests.of(archive)).isEqualTo(archiveDigest);
        OciPullIT.assertNothingHalfWritten(home);
        OciPullIT.assertNothingHalfWritten(tmp.resolve("home2"));
    }

    @Test
    @Timeout(120)
    void dockerSaveTarball() throws Exception {
        OciWriter w = new OciWriter(tmp.resolve("w"));
        OciWriter.Blob l1 = w.layer().dir("data", 0755, 0, 0).file("data/secret", "top secret\n", 0640, 1000, 1000)
                .file("data/gone", "x", 0644, 0, 0).symlink("data/link", "secret").build(OciWriter.Compression.NONE);
        OciWriter.Blob l2 = w.layer().whiteout("data/gone").file("data/added", "2\n", 0644, 0, 0).build(OciWriter.Compression.NONE);
        OciWriter.Blob cfg = w.config("amd64", List.of(l1, l2), TestImages.ENV, "/data", null, null, null, true);
        Path save = Files.createDirectories(tmp.resolve("save"));
        String cfgName = Digests.hex(cfg.digest()) + ".json";
        Files.copy(cfg.file(), save.resolve(cfgName));
        Files.createDirectories(save.resolve("aaa"));
        Files.createDirectories(save.resolve("bbb"));
        Files.copy(l1.file(), save.resolve("aaa/layer.tar"));
        Files.copy(l2.file(), save.resolve("bbb/layer.tar"));
        Files.writeString(save.resolve("manifest.json"), "[{\"Config\":\"" + cfgName + "\",\"RepoTags\":[\"small:v1\"],\"Layers\":[\"aaa/layer.tar\",\"bbb/layer.tar\"]}]");
        Files.writeString(save.resolve("repositories"), "{\"small\":{\"v1\":\"bbb\"}}");
        Path tarball = tar(save, tmp.resolve("save.tar"));
        OciImages oci = new OciImages(tmp.resolve("home"));
        OciImages.Image img = OciArchives.load(oci, tarball);
        assertThat(img.layers()).extracting(OciImages.Layer::diffId).containsExactly(l1.diffId(), l2.diffId());
        assertSmallDisk(oci, img);
        OciPullIT.assertNothingHalfWritten(tmp.resolve("home"));
    }

    @Test
    @Timeout(60)
    void aTarballThatIsNotAnImageIsRefused() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("notimage"));
        Files.writeString(dir.resolve("hello.txt"), "hello");
        Path tarball = tar(dir, tmp.resolve("notimage.tar"));
        Path home = tmp.resolve("home");
        OciImages oci = new OciImages(home);
        assertThatThrownBy(() -> OciArchives.load(oci, tarball))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_NOT_FOUND);
                    assertThat(e.getMessage()).contains("no image in").contains("notimage.tar").contains("manifest.json");
                });
        Path text = Files.writeString(tmp.resolve("text.tar"), "just text, no tar header here ".repeat(40));
        assertThatThrownBy(() -> OciArchives.load(oci, text))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_NOT_FOUND);
                    assertThat(e.getMessage()).contains("text.tar");
                });
        // a layout whose layer does not match its digest
        Built b = smallImage(new OciWriter(tmp.resolve("w")));
        Path layout = tmp.resolve("layout");
        writeLayout(layout, b, false);
        Path layer = layout.resolve("blobs/sha256").resolve(Digests.hex(b.layers().get(1).digest()));
        byte[] bytes = Files.readAllBytes(layer);
        bytes[bytes.length / 2] ^= 1;
        Files.write(layer, bytes);
        assertThatThrownBy(() -> OciArchives.load(oci, layout))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_PULL_FAILED);
                    assertThat(e.getMessage()).contains("digest mismatch").contains(b.layers().get(1).digest());
                });
        OciPullIT.assertNothingHalfWritten(home);
        assertThat(oci.store().hasBlob(b.layers().get(1).digest())).isFalse();
    }

    @Test
    @Timeout(600)
    void bootsAnOciArchiveTarball() throws Exception {
        OciWriter w = new OciWriter(tmp.resolve("w"));
        OciWriter.Blob base = w.layerFromDirectory(OciBootIT.rootfs());
        OciWriter.Blob l1 = w.layer().dir("data", 0755, 0, 0).file("data/secret", "top secret\n", 0640, 1000, 1000).build(OciWriter.Compression.GZIP);
        OciWriter.Blob cfg = w.config("amd64", List.of(base, l1), List.of("PATH=/usr/bin:/bin", "FROM_ARCHIVE=yes"), "/data", null, null, null, false);
        Built b = new Built(cfg, List.of(base, l1), w.manifest(cfg, List.of(base, l1), false));
        Path layout = tmp.resolve("layout");
        writeLayout(layout, b, true);
        Path archive = tar(layout, tmp.resolve("python.oci.tar"));
        try (Sandbox sb = Sandbox.create("it-oci-archive-" + ProcessHandle.current().pid(),
                SandboxConfig.builder().image(archive.toString()).memoryMib(256).ephemeral(true).build())) {
            ExecOutput out = sb.exec("sh", List.of("-c", "echo $FROM_ARCHIVE; pwd; stat -c '%u %a' secret; python3 -c 'print(6*7)'"));
            assertThat(out.stdout()).isEqualTo("yes\n/data\n1000 640\n42\n");
        }
    }
}

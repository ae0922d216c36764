package io.microsandbox.image.oci;

import io.microsandbox.image.oci.OciWriter.Blob;
import io.microsandbox.image.oci.OciWriter.Compression;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * The images the OCI tests push, built with {@link OciWriter}:
 * <ul>
 * <li>{@code msb/small:v1}: a gzip layer with owners, modes, setuid, a symlink, a hard link, an
 *   xattr, a file and a directory for the next layer to remove; a zstd layer with a whiteout and
 *   an opaque directory; OCI media types</li>
 * <li>{@code msb/multi:v1}: an index of linux/arm64 (first) and linux/amd64 (= small)</li>
 * <li>{@code msb/armonly:v1}: a linux/arm64 manifest only</li>
 * <li>{@code msb/fs:v1} (with {@code withBase}): the test image's root filesystem as a base
 *   layer under small's two layers, so that it boots</li>
 * </ul>
 */
final class TestImages {
    static final List<String> ENV = List.of("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "MSB_IMAGE_VAR=from-image");

    final String small;
    final String smallDigest;
    final String multi;
    final String armOnly;
    final String fs;
    final String fsDigest;
    final List<Blob> smallBlobs;
    final Blob baseLayer;

    TestImages(TestRegistry reg, OciWriter w, Path rootfs) throws Exception {
        Blob l1 = w.layer()
                .dir("data", 0755, 0, 0)
                .file("data/secret", "top secret\n", 0640, 1000, 1000)
                .file("data/suid", "#!/bin/sh\necho suid\n".getBytes(StandardCharsets.UTF_8), 04755, 0, 0, Map.of())
                .file("data/sgid-dir-file", "x", 02711, 0, 50)
                .symlink("data/link", "secret")
                .symlink("data/abs-link", "/etc/hostname-in-image")
                .hardlink("data/hard", "data/secret")
                .file("data/gone.txt", "delete me\n", 0644, 0, 0)
                .dir("data/opq", 0750, 1000, 1000)
                .file("data/opq/a", "a", 0644, 0, 0)
                .file("data/opq/b", "b", 0644, 0, 0)
                .dir("data/sticky", 01777, 0, 0)
                .file("data/xattr", "x".getBytes(StandardCharsets.UTF_8), 0644, 0, 0, Map.of("user.msb", "hello-xattr", "trusted.msb", "trusted-xattr"))
                .charDevice("data/null", 1, 3, 0666)
                .build(Compression.GZIP);
        Blob l2 = w.layer()
                .whiteout("data/gone.txt")
                .file("data/opq/c", "c", 0600, 0, 0)
                .opaque("data/opq")
                .file("data/added", "from layer 2\n", 0644, 0, 0)
                .build(Compression.ZSTD);
        Blob cfg = w.config("amd64", List.of(l1, l2), ENV, "/data", List.of("/bin/sh", "-c"), List.of("echo hi"), null, false);
        Blob man = w.manifest(cfg, List.of(l1, l2), false);
        small = reg.host() + "/msb/small:v1";
        smallDigest = OciWriter.pushImage(reg, "msb/small", "v1", cfg, List.of(l1, l2), man);
        smallBlobs = List.of(l1, l2, cfg);

        Blob armLayer = w.layer().file("arm", "arm64\n", 0644, 0, 0).build(Compression.GZIP);
        Blob armCfg = w.config("arm64", List.of(armLayer), ENV, null, null, null, null, false);
        Blob armMan = w.manifest(armCfg, List.of(armLayer), false);
        OciWriter.pushImage(reg, "msb/multi", armMan.digest(), armCfg, List.of(armLayer), armMan);
        OciWriter.pushImage(reg, "msb/multi", man.digest(), cfg, List.of(l1, l2), man);
        Blob index = w.index(OciWriter.platforms("linux/arm64", armMan, "linux/amd64", man));
        OciWriter.pushManifest(reg, "msb/multi", "v1", index);
        multi = reg.host() + "/msb/multi:v1";
        OciWriter.pushImage(reg, "msb/armonly", "v1", armCfg, List.of(armLayer), armMan);
        armOnly = reg.host() + "/msb/armonly:v1";

        if (rootfs != null) {
            baseLayer = w.layerFromDirectory(rootfs);
            // a real setuid-root program: id, which prints the effective uid
            Blob l3 = w.layer().file("data/suid-id", java.nio.file.Files.readAllBytes(rootfs.resolve("usr/bin/id")), 04755, 0, 0, Map.of())
                    .build(Compression.GZIP);
            List<Blob> fsLayers = List.of(baseLayer, l1, l2, l3);
            Blob fsCfg = w.config("amd64", fsLayers, ENV, "/data",
                    List.of("/bin/sh", "-c"), List.of("echo from-cmd $MSB_IMAGE_VAR"), null, false);
            Blob fsMan = w.manifest(fsCfg, fsLayers, false);
            fs = reg.host() + "/msb/fs:v1";
            fsDigest = OciWriter.pushImage(reg, "msb/fs", "v1", fsCfg, fsLayers, fsMan);
        } else {
            baseLayer = null;
            fs = null;
            fsDigest = null;
        }
    }
}

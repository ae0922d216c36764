package io.microsandbox.image.oci;

import io.microsandbox.PullPolicy;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.image.RootDisks;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxPreparer;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The numbers of the README's image table: an image of the test rootfs (about 120 MB as tar,
 * gzip) pushed to a local registry, then pulled and booted cold, booted warm, and the parts
 * of the lower-disk build timed apart. Run alone: {@code -Dit.test=OciBenchIT -Dmsb.bench=true}.
 */
class OciBenchIT {
    @TempDir
    Path tmp;

    @Test
    @Timeout(900)
    void pullAndBootTimes() throws Exception {
        Assumptions.assumeTrue(Boolean.getBoolean("msb.bench"), "benchmark: run with -Dmsb.bench=true");
        try (TestRegistry reg = TestRegistry.start(tmp.resolve("registry"), null, null)) {
            OciWriter w = new OciWriter(tmp.resolve("w"));
            OciWriter.Blob tar = w.layerFromDirectory(OciBootIT.rootfs());
            OciWriter.Blob base = w.layer(tar.file(), OciWriter.Compression.GZIP);
            OciWriter.Blob l1 = w.layer().file("bench.txt", "bench " + System.nanoTime() + "\n", 0644, 0, 0).build(OciWriter.Compression.GZIP);
            OciWriter.Blob cfg = w.config("amd64", List.of(base, l1), TestImages.ENV, null, null, null, null, false);
            OciWriter.Blob man = w.manifest(cfg, List.of(base, l1), false);
            OciWriter.pushImage(reg, "bench/py", "v1", cfg, List.of(base, l1), man);
            String image = reg.host() + "/bench/py:v1";
            double tarMb = tar.size() / 1e6;
            System.out.printf("BENCH image: %.1f MB tar, %.1f MB gzip%n", tarMb, base.size() / 1e6);

            // the parts, in a scratch home
            Path home = tmp.resolve("home");
            OciImages oci = new OciImages(home);
            long t = System.nanoTime();
            OciImages.Image img = oci.pull(image, PullPolicy.IF_MISSING, null, null);
            double pull = secs(t);
            Path stage = Files.createDirectories(home.resolve("stage"));
            Posix.chmod(stage, 0755);
            t = System.nanoTime();
            LayerApplier a = new LayerApplier(stage);
            for (OciImages.Layer l : img.layers()) {
                try (InputStream in = LayerApplier.decompressed(Files.newInputStream(oci.store().blob(l.digest())))) {
                    a.apply(in);
                }
            }
            a.finish();
            double extract = secs(t);
            Path disk = OwnerOnly.createTempFile(home, "disk", ".ext4");
            t = System.nanoTime();
            RootDisks.buildLowerExt4(stage, disk);
            double mkfs = secs(t);
            SandboxPreparer.deleteTree(stage);
            t = System.nanoTime();
            oci.lowerDisk(img, null, null);
            double lower = secs(t);
            System.out.printf("BENCH pull (download + verify): %.2f s%n", pull);
            System.out.printf("BENCH unpack layers (gunzip + tar + diff_id): %.2f s = %.2f s per 100 MB of tar%n", extract, extract * 100 / tarMb);
            System.out.printf("BENCH mke2fs -d: %.2f s = %.2f s per 100 MB%n", mkfs, mkfs * 100 / tarMb);
            System.out.printf("BENCH lower disk build (both, as used): %.2f s = %.2f s per 100 MB%n", lower, lower * 100 / tarMb);

            // end to end, in the test home: cold (nothing cached) then warm
            OciStore store = new OciStore(RuntimeFiles.defaultHome());
            Files.deleteIfExists(store.lowerDisk(man.digest()));
            for (OciWriter.Blob b : List.of(base, l1, cfg, man)) {
                Files.deleteIfExists(store.blob(b.digest()));
            }
            t = System.nanoTime();
            try (Sandbox sb = Sandbox.create("bench-cold-" + ProcessHandle.current().pid(), SandboxConfig.builder().image(image).memoryMib(256).ephemeral(true).build())) {
                double cold = secs(t);
                sb.exec("true", List.of());
                System.out.printf("BENCH create, cold cache (pull + lower disk + boot): %.2f s%n", cold);
            }
            t = System.nanoTime();
            try (Sandbox sb = Sandbox.create("bench-warm-" + ProcessHandle.current().pid(), SandboxConfig.builder().image(image).memoryMib(256).ephemeral(true).build())) {
                System.out.printf("BENCH create, warm cache: %.2f s%n", secs(t));
            }
            t = System.nanoTime();
            try (Sandbox sb = Sandbox.create("bench-dir-" + ProcessHandle.current().pid(), SandboxConfig.builder().image(OciBootIT.rootfs().toString()).memoryMib(256).ephemeral(true).build())) {
                System.out.printf("BENCH create from the rootfs directory (cached disk), for comparison: %.2f s%n", secs(t));
            }
        }
    }

    private static double secs(long t0) {
        return (System.nanoTime() - t0) / 1e9;
    }
}

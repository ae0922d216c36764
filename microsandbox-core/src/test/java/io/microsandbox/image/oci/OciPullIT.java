package io.microsandbox.image.oci;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.PullPolicy;
import io.microsandbox.PullProgressListener;
import io.microsandbox.RegistryAuth;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Pulls from a real registry (Debian's docker-registry on 127.0.0.1) into a fresh cache per
 * test: cache hits, policies, concurrency from threads and JVMs, corruption, bad input. No VM.
 */
class OciPullIT {
    static Path work;
    static TestRegistry reg;
    static TestRegistry privateReg;
    static TestImages images;
    static String privateImage;

    @TempDir
    Path home;

    @BeforeAll
    static void start() throws Exception {
        Assumptions.assumeTrue(TestRegistry.available(), "docker-registry is not installed (scripts/setup.sh)");
        work = Files.createTempDirectory("oci-pull-it");
        reg = TestRegistry.start(work.resolve("registry"), null, null);
        OciWriter w = new OciWriter(work.resolve("blobs"));
        images = new TestImages(reg, w, null);
        privateReg = TestRegistry.start(work.resolve("private"), "alice", "s3cret-pass");
        OciWriter.Blob layer = w.layer().file("private.txt", "private\n", 0600, 0, 0).build(OciWriter.Compression.GZIP);
        OciWriter.Blob cfg = w.config("amd64", List.of(layer), TestImages.ENV, null, null, null, null, true);
        OciWriter.pushImage(privateReg, "team/app", "1.0", cfg, List.of(layer), w.manifest(cfg, List.of(layer), true));
        privateImage = privateReg.host() + "/team/app:1.0";
    }

    @AfterAll
    static void stop() throws Exception {
        if (reg != null) {
            reg.close();
        }
        if (privateReg != null) {
            privateReg.close();
        }
    }

    @Test
    @Timeout(120)
    void pullsVerifiesAndHitsTheCacheTheSecondTime() throws Exception {
        OciImages oci = new OciImages(home);
        List<String> events = new CopyOnWriteArrayList<>();
        OciImages.Image img = oci.pull(images.small, PullPolicy.IF_MISSING, null, (image, digest, phase, done, total) -> events.add(phase + " " + digest));
        assertThat(img.manifestDigest()).isEqualTo(images.smallDigest);
        assertThat(img.layers()).hasSize(2);
        assertThat(img.defaults().env()).contains("MSB_IMAGE_VAR=from-image");
        assertThat(img.defaults().workingDir()).isEqualTo("/data");
        assertThat(img.defaults().entrypoint()).containsExactly("/bin/sh", "-c");
        assertThat(oci.blobsDownloaded()).isEqualTo(3); // config + two layers
        assertThat(events).contains("RESOLVING null").anyMatch(e -> e.startsWith("DOWNLOADING sha256:"));
        for (OciWriter.Blob b : images.smallBlobs) {
            assertThat(Files.readAllBytes(oci.store().blob(b.digest()))).isEqualTo(b.bytes());
        }

        long gets = reg.blobGets();
        OciImages again = new OciImages(home);
        OciImages.Image img2 = again.pull(images.small, PullPolicy.IF_MISSING, null, null);
        assertThat(img2).isEqualTo(img);
        assertThat(again.blobsDownloaded()).isZero();
        // ALWAYS asks the registry for the manifest, but downloads no blob it has intact
        OciImages always = new OciImages(home);
        always.pull(images.small, PullPolicy.ALWAYS, null, null);
        assertThat(always.blobsDownloaded()).isZero();
        assertThat(reg.blobGets()).isEqualTo(gets);
        assertNothingHalfWritten(home);
    }

    @Test
    @Timeout(120)
    void buildsTheLowerDiskOncePerDigest() throws Exception {
        OciImages oci = new OciImages(home);
        OciImages.Image img = oci.pull(images.small, PullPolicy.IF_MISSING, null, null);
        long t0 = System.nanoTime();
        Path disk = oci.lowerDisk(img, null, null);
        System.out.printf("lower disk of small: %.1f ms%n", (System.nanoTime() - t0) / 1e6);
        assertThat(disk).isRegularFile();
        assertThat(disk.getFileName().toString()).isEqualTo(Digests.hex(images.smallDigest) + ".ext4");
        long mtime = Files.getLastModifiedTime(disk).toMillis();
        assertThat(oci.lowerDisk(img, null, null)).isEqualTo(disk);
        assertThat(Files.getLastModifiedTime(disk).toMillis()).isEqualTo(mtime);
        // the disk's contents, read back with debugfs (the guest check is in OciBootIT)
        String listing = debugfs(disk, "ls -l /data");
        assertThat(listing).contains("secret").contains("suid").contains("opq").doesNotContain("gone.txt");
        assertThat(debugfs(disk, "ls /data/opq")).contains("c").doesNotContain(" a ").doesNotContain(" b ");
        assertThat(debugfs(disk, "stat /data/suid")).contains("Mode:  04755");
        assertThat(debugfs(disk, "stat /data/secret")).contains("User:  1000").contains("Group:  1000").contains("Mode:  0640").contains("Links: 2");
        assertNothingHalfWritten(home);
    }

    @Test
    @Timeout(60)
    void indexResolvesLinuxAmd64() {
        OciImages oci = new OciImages(home);
        OciImages.Image img = oci.pull(images.multi, PullPolicy.IF_MISSING, null, null);
        assertThat(img.manifestDigest()).isEqualTo(images.smallDigest);
        assertThat(img.indexDigest()).isNotNull();
    }

    @Test
    @Timeout(60)
    void pullsByDigestAndShortNamesNormalize() {
        OciImages oci = new OciImages(home);
        String byDigest = reg.host() + "/msb/small@" + images.smallDigest;
        assertThat(oci.pull(byDigest, PullPolicy.IF_MISSING, null, null).manifestDigest()).isEqualTo(images.smallDigest);
        assertThat(ImageReference.parse("python").toString()).isEqualTo("docker.io/library/python:latest");
        assertThat(ImageReference.parse("python:3.12").toString()).isEqualTo("docker.io/library/python:3.12");
        assertThat(ImageReference.parse("user/app").toString()).isEqualTo("docker.io/user/app:latest");
        assertThat(ImageReference.parse("localhost:5000/a/b@" + images.smallDigest).registry()).isEqualTo("localhost:5000");
    }

    @Test
    @Timeout(60)
    void policyNeverOnAnEmptyCacheFails() {
        OciImages oci = new OciImages(home);
        assertThatThrownBy(() -> oci.pull(images.small, PullPolicy.NEVER, null, null))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_NOT_FOUND);
                    assertThat(e.getMessage()).contains("msb/small:v1").contains("never");
                });
        assertThat(reg.host()).isNotNull();
        oci.pull(images.small, PullPolicy.IF_MISSING, null, null);
        assertThat(new OciImages(home).pull(images.small, PullPolicy.NEVER, null, null).manifestDigest()).isEqualTo(images.smallDigest);
    }

    @Test
    @Timeout(60)
    void privateRepositoryWithBasicAuth() throws Exception {
        OciImages oci = new OciImages(home);
        assertThatThrownBy(() -> oci.pull(privateImage, PullPolicy.IF_MISSING, null, null))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_PULL_FAILED);
                    assertThat(e.getMessage()).contains("requires credentials");
                });
        assertThatThrownBy(() -> oci.pull(privateImage, PullPolicy.IF_MISSING, new RegistryAuth("alice", "wrong"), null))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_PULL_FAILED);
                    assertThat(e.getMessage()).contains("authentication failed").contains("alice");
                });
        assertNothingHalfWritten(home);
        OciImages.Image img = oci.pull(privateImage, PullPolicy.IF_MISSING, new RegistryAuth("alice", "s3cret-pass"), null);
        assertThat(img.layers()).hasSize(1);
        assertThat(debugfs(oci.lowerDisk(img, null, null), "cat /private.txt")).contains("private");
    }

    @Test
    @Timeout(60)
    void badInputFailsWithTypedErrorsAndLeavesNothing() throws Exception {
        OciImages oci = new OciImages(home);
        assertThatThrownBy(() -> oci.pull(reg.host() + "/msb/nonexistent:v1", PullPolicy.IF_MISSING, null, null))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_NOT_FOUND);
                    assertThat(e.getMessage()).contains("msb/nonexistent");
                });
        assertThatThrownBy(() -> oci.pull(reg.host() + "/msb/small:nope", PullPolicy.IF_MISSING, null, null))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_NOT_FOUND));
        int closed;
        try (ServerSocket s = new ServerSocket(0)) {
            closed = s.getLocalPort();
        }
        assertThatThrownBy(() -> oci.pull("127.0.0.1:" + closed + "/msb/small:v1", PullPolicy.IF_MISSING, null, null))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_PULL_FAILED);
                    assertThat(e.getMessage()).contains("cannot reach the registry 127.0.0.1:" + closed);
                });
        assertThatThrownBy(() -> oci.pull(images.armOnly, PullPolicy.IF_MISSING, null, null))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_PULL_FAILED);
                    assertThat(e.getMessage()).contains("linux/arm64").contains("linux/amd64");
                });
        assertThatThrownBy(() -> oci.pull("Not A/Valid::ref", PullPolicy.IF_MISSING, null, null))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
        assertNothingHalfWritten(home);
        assertThat(oci.store().refs()).isEmpty();
    }

    @Test
    @Timeout(60)
    void aBlobTheRegistryServesWrongIsRefused() throws Exception {
        // a separate repository whose layer is damaged in the registry's own storage
        OciWriter w = new OciWriter(work.resolve("bad-" + System.nanoTime()));
        OciWriter.Blob layer = w.layer().file("bad.txt", "bad " + System.nanoTime() + "\n", 0644, 0, 0).build(OciWriter.Compression.GZIP);
        OciWriter.Blob cfg = w.config("amd64", List.of(layer), TestImages.ENV, null, null, null, null, false);
        OciWriter.pushImage(reg, "msb/bad", "v1", cfg, List.of(layer), w.manifest(cfg, List.of(layer), false));
        String hex = Digests.hex(layer.digest());
        Path stored = work.resolve("registry/data/docker/registry/v2/blobs/sha256").resolve(hex.substring(0, 2)).resolve(hex).resolve("data");
        byte[] b = Files.readAllBytes(stored);
        b[b.length / 2] ^= 0x55;
        Files.write(stored, b);
        OciImages oci = new OciImages(home);
        assertThatThrownBy(() -> oci.pull(reg.host() + "/msb/bad:v1", PullPolicy.IF_MISSING, null, null))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_PULL_FAILED);
                    assertThat(e.getMessage()).contains("digest mismatch").contains(layer.digest());
                });
        assertThat(oci.store().hasBlob(layer.digest())).isFalse();
        assertThat(oci.store().refs()).isEmpty();
        assertNothingHalfWritten(home);
    }

    @Test
    @Timeout(120)
    void aCorruptCachedLayerIsDetectedAndFetchedAgain() throws Exception {
        OciImages oci = new OciImages(home);
        OciImages.Image img = oci.pull(images.small, PullPolicy.IF_MISSING, null, null);
        Path blob = oci.store().blob(img.layers().get(0).digest());
        byte[] b = Files.readAllBytes(blob);
        b[b.length - 10] ^= 0x01;
        Files.write(blob, b);
        OciImages again = new OciImages(home);
        Path disk = again.lowerDisk(again.pull(images.small, PullPolicy.IF_MISSING, null, null), null, null);
        assertThat(disk).isRegularFile();
        assertThat(again.blobsDownloaded()).isEqualTo(1);
        assertThat(Digests.of(blob)).isEqualTo(img.layers().get(0).digest());
        // and under ALWAYS, a damaged blob is found by its hash before the disk is needed
        Files.write(blob, b);
        OciImages always = new OciImages(home);
        always.pull(images.small, PullPolicy.ALWAYS, null, null);
        assertThat(always.blobsDownloaded()).isEqualTo(1);
        assertThat(Digests.of(blob)).isEqualTo(img.layers().get(0).digest());
        assertNothingHalfWritten(home);
    }

    @Test
    @Timeout(120)
    void concurrentPullsFromThreadsFetchEachBlobOnce() throws Exception {
        long gets = reg.blobGets();
        ExecutorService pool = Executors.newFixedThreadPool(6);
        List<OciImages> pullers = new ArrayList<>();
        List<Future<OciImages.Image>> results = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            OciImages oci = new OciImages(home);
            pullers.add(oci);
            // half by tag, half through the index: they share every blob
            String ref = i % 2 == 0 ? images.small : images.multi;
            results.add(pool.submit(() -> {
                OciImages.Image img = oci.pull(ref, PullPolicy.IF_MISSING, null, null);
                oci.lowerDisk(img, null, null);
                return img;
            }));
        }
        for (Future<OciImages.Image> f : results) {
            assertThat(f.get().manifestDigest()).isEqualTo(images.smallDigest);
        }
        pool.shutdown();
        assertThat(pullers.stream().mapToInt(OciImages::blobsDownloaded).sum()).isEqualTo(3);
        assertThat(reg.blobGets() - gets).isEqualTo(3);
        assertNothingHalfWritten(home);
    }

    @Test
    @Timeout(180)
    void concurrentPullsFromTwoJvmsFetchEachBlobOnce() throws Exception {
        long gets = reg.blobGets();
        List<Process> children = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            children.add(PullChild.start(home, images.small, "disk"));
        }
        int total = 0;
        for (Process p : children) {
            String out = new String(p.getInputStream().readAllBytes());
            assertThat(p.waitFor()).as(out).isZero();
            assertThat(out).contains("PULLED " + images.smallDigest);
            total += Integer.parseInt(out.replaceAll("(?s).*DOWNLOADED (\\d+).*", "$1"));
        }
        assertThat(total).isEqualTo(3);
        assertThat(reg.blobGets() - gets).isEqualTo(3);
        try (Stream<Path> s = Files.list(home.resolve("cache/oci/lower"))) {
            assertThat(s.toList()).hasSize(1); // one shared disk, built by whichever JVM came first
        }
        assertNothingHalfWritten(home);
    }

    /** Pushes {@code repo:v1}, one uncompressed layer holding a file of {@code size} random bytes; returns that layer. */
    private OciWriter.Blob pushRandomLayerImage(String repo, int size) throws Exception {
        OciWriter w = new OciWriter(work.resolve("random-" + System.nanoTime()));
        byte[] random = new byte[size];
        new java.util.Random(42).nextBytes(random);
        OciWriter.Blob layer = w.layer().file("big.bin", random, 0644, 0, 0, java.util.Map.of()).build(OciWriter.Compression.NONE);
        OciWriter.Blob cfg = w.config("amd64", List.of(layer), TestImages.ENV, null, null, null, null, false);
        OciWriter.pushImage(reg, repo, "v1", cfg, List.of(layer), w.manifest(cfg, List.of(layer), false));
        return layer;
    }

    @Test
    @Timeout(180)
    void aPullKilledMidDownloadLeavesNothingTrustedAndTheNextPullCompletes() throws Exception {
        // a layer of 32 MiB of random bytes, served by a proxy that stalls after 4 MiB
        OciWriter.Blob layer = pushRandomLayerImage("msb/big", 32 << 20);
        try (StallingProxy proxy = new StallingProxy(reg, 4 << 20)) {
            String image = proxy.host() + "/msb/big:v1";
            Process child = PullChild.start(home, image, "disk");
            Path tmp = home.resolve("cache/oci/tmp");
            long deadline = System.nanoTime() + 60_000_000_000L;
            Path part = null;
            while (part == null && System.nanoTime() < deadline && child.isAlive()) {
                if (Files.isDirectory(tmp)) {
                    try (Stream<Path> s = Files.list(tmp)) {
                        part = s.filter(p -> p.getFileName().toString().startsWith(Digests.hex(layer.digest())))
                                .filter(p -> {
                                    try {
                                        return Files.size(p) >= (4 << 20);
                                    } catch (IOException e) {
                                        return false;
                                    }
                                }).findFirst().orElse(null);
                    }
                }
                Thread.sleep(20);
            }
            assertThat(part).as("the child's partial download").isNotNull();
            child.destroyForcibly().waitFor();
            // what it left is a temporary, not a blob, and no reference names the image
            OciImages oci = new OciImages(home);
            assertThat(oci.store().hasBlob(layer.digest())).isFalse();
            assertThat(oci.cached(ImageReference.parse(image).toString())).isNull();
            assertThatThrownBy(() -> oci.pull(image, PullPolicy.NEVER, null, null))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_NOT_FOUND));
            proxy.stall = false;
            OciImages.Image img = oci.pull(image, PullPolicy.IF_MISSING, null, null);
            assertThat(oci.lowerDisk(img, null, null)).isRegularFile();
            assertThat(Digests.of(oci.store().blob(layer.digest()))).isEqualTo(layer.digest());
            assertNothingHalfWritten(home);
        }
    }

    /**
     * A registry that sends a blob's headers and first bytes, then nothing, fails the pull after
     * a window without data (2 s here, 30 s by default) instead of holding it, and the image's
     * locks, for ever; the next pull completes.
     */
    @Test
    @Timeout(120)
    void aRegistryThatStallsMidBlobFailsThePull() throws Exception {
        OciWriter.Blob layer = pushRandomLayerImage("msb/stall", 16 << 20);
        try (StallingProxy proxy = new StallingProxy(reg, 4 << 20)) {
            String image = proxy.host() + "/msb/stall:v1";
            OciImages oci = new OciImages(home);
            System.setProperty("microsandbox.registry.stallSeconds", "2");
            try {
                long start = System.nanoTime();
                assertThatThrownBy(() -> oci.pull(image, PullPolicy.IF_MISSING, null, null))
                        .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                            assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_PULL_FAILED);
                            assertThat(e.getMessage()).contains("a stalled connection");
                        });
                assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(30));
            } finally {
                System.clearProperty("microsandbox.registry.stallSeconds");
            }
            assertThat(oci.store().hasBlob(layer.digest())).isFalse();
            proxy.stall = false;
            OciImages.Image img = oci.pull(image, PullPolicy.IF_MISSING, null, null);
            assertThat(oci.lowerDisk(img, null, null)).isRegularFile();
            assertNothingHalfWritten(home);
        }
    }

    @Test
    @Timeout(120)
    void imageApiListsInspectsRemovesAndPrunes() throws Exception {
        io.microsandbox.Images api = io.microsandbox.Images.at(home);
        assertThat(api.list()).isEmpty();
        io.microsandbox.ImageInfo small = api.pull(images.small, null, null);
        api.pull(images.multi, null, null);
        assertThat(small.digest()).isEqualTo(images.smallDigest);
        assertThat(small.layers()).isEqualTo(2);
        assertThat(small.diskBytes()).isPositive();
        assertThat(small.workingDir()).isEqualTo("/data");
        assertThat(api.list()).extracting(io.microsandbox.ImageInfo::reference).containsExactlyInAnyOrder(images.small, images.multi);
        assertThat(api.inspect(images.small).env()).contains("MSB_IMAGE_VAR=from-image");
        assertThatThrownBy(() -> api.inspect(reg.host() + "/msb/never-pulled:v1"))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_NOT_FOUND));

        // a sandbox booted from it (its pin) keeps it: IMAGE_IN_USE
        Path sandbox = Files.createDirectories(home.resolve("sandboxes/user-of-small"));
        Files.writeString(sandbox.resolve("image.digest"), images.smallDigest + "\n");
        assertThat(api.inspect(images.small).inUseBy()).containsExactly("user-of-small");
        assertThatThrownBy(() -> api.remove(images.small))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_IN_USE);
                    assertThat(e.getMessage()).contains("user-of-small");
                });
        Files.delete(sandbox.resolve("image.digest"));
        // so does a snapshot of the home: booting from it needs that exact image
        Path snapshot = Files.createDirectories(home.resolve("snapshots/kept"));
        Files.writeString(snapshot.resolve("snapshot.json"), "{\"format\":1,\"createdAt\":\"2026-11-28T12:00:00Z\",\"image\":\""
                + images.small + "\",\"imageDigest\":\"" + images.smallDigest + "\"}");
        assertThatThrownBy(() -> api.remove(images.small))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_IN_USE);
                    assertThat(e.getMessage()).contains("snapshot 'kept'");
                });
        Files.delete(snapshot.resolve("snapshot.json"));
        // removing one reference keeps what the other (the index, same manifest) still needs
        api.remove(images.small);
        assertThat(api.list()).extracting(io.microsandbox.ImageInfo::reference).containsExactly(images.multi);
        OciStore store = new OciStore(home);
        assertThat(store.lowerDisk(images.smallDigest)).isRegularFile();
        assertThat(api.prune(java.time.Duration.ZERO)).isZero();
        api.remove(images.multi);
        assertThat(api.list()).isEmpty();
        assertThat(store.lowerDisk(images.smallDigest)).doesNotExist();
        try (Stream<Path> s = Files.list(store.root().resolve("blobs/sha256"))) {
            assertThat(s.toList()).isEmpty();
        }
        // prune removes what nothing records (here: blobs of a pull whose reference was lost)
        OciImages oci = new OciImages(home);
        oci.pull(images.small, PullPolicy.IF_MISSING, null, null);
        store.deleteRef(images.small);
        assertThat(api.prune()).isZero(); // fresh files: a pull may be in progress
        assertThat(api.prune(java.time.Duration.ZERO)).isPositive();
        try (Stream<Path> s = Files.list(store.root().resolve("blobs/sha256"))) {
            assertThat(s.toList()).isEmpty();
        }
    }

    @Test
    @Timeout(60)
    void bearerTokenFlowAnonymousAndWithCredentials() throws Exception {
        try (BearerFront anonymous = new BearerFront(reg, null, null)) {
            OciImages oci = new OciImages(home);
            OciImages.Image img = oci.pull(anonymous.host() + "/msb/small:v1", PullPolicy.IF_MISSING, null, null);
            assertThat(img.manifestDigest()).isEqualTo(images.smallDigest);
            assertThat(anonymous.tokensIssued.get()).isEqualTo(1); // one token for the whole pull
            assertThat(anonymous.lastScope).contains("scope=repository:msb/small:pull").contains("service=msb-test");
        }
        try (BearerFront withUser = new BearerFront(reg, "bob", "hunter2")) {
            String image = withUser.host() + "/msb/small:v1";
            OciImages oci = new OciImages(home.resolve("other"));
            assertThatThrownBy(() -> oci.pull(image, PullPolicy.IF_MISSING, new RegistryAuth("bob", "wrong"), null))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_PULL_FAILED);
                        assertThat(e.getMessage()).contains("authentication failed").contains("bob");
                    });
            assertThatThrownBy(() -> oci.pull(image, PullPolicy.IF_MISSING, null, null))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_PULL_FAILED));
            assertThat(oci.pull(image, PullPolicy.IF_MISSING, new RegistryAuth("bob", "hunter2"), null).manifestDigest()).isEqualTo(images.smallDigest);
            assertNothingHalfWritten(home.resolve("other"));
        }
    }

    /** No temporary file or staging tree left, every blob matches its name, and all of it is owner-only. */
    static void assertNothingHalfWritten(Path home) throws IOException {
        Path oci = home.resolve("cache/oci");
        if (Files.isDirectory(oci)) {
            try (Stream<Path> s = Files.walk(oci)) {
                for (Path p : s.toList()) {
                    String perms = java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(p, java.nio.file.LinkOption.NOFOLLOW_LINKS));
                    assertThat(perms).as(p.toString()).isEqualTo(Files.isDirectory(p) ? "rwx------" : "rw-------");
                }
            }
        }
        if (Files.isDirectory(oci.resolve("tmp"))) {
            try (Stream<Path> s = Files.list(oci.resolve("tmp"))) {
                assertThat(s.toList()).as("temporaries left in the cache").isEmpty();
            }
        }
        Path blobs = oci.resolve("blobs/sha256");
        if (Files.isDirectory(blobs)) {
            try (Stream<Path> s = Files.list(blobs)) {
                for (Path p : s.toList()) {
                    assertThat(Digests.of(p)).isEqualTo("sha256:" + p.getFileName());
                }
            }
        }
    }

    static String debugfs(Path disk, String request) throws Exception {
        Process p = new ProcessBuilder("/usr/sbin/debugfs", "-R", request, disk.toString()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        p.waitFor();
        return out;
    }
}

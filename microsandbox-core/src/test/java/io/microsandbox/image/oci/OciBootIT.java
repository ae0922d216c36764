package io.microsandbox.image.oci;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.microsandbox.ExecOutput;
import io.microsandbox.PullProgressListener;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.runtime.RuntimeFiles;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Boots an image pulled from a real registry (Debian's docker-registry on 127.0.0.1) and
 * checks inside the guest that the root filesystem is exactly what the layers define, and
 * that the image config's env and working dir are the sandbox's defaults.
 */
class OciBootIT {
    static Path work;
    static TestRegistry reg;
    static TestImages images;

    @BeforeAll
    static void start() throws Exception {
        Assumptions.assumeTrue(TestRegistry.available(), "docker-registry is not installed (scripts/setup.sh)");
        work = Files.createTempDirectory("oci-boot-it");
        reg = TestRegistry.start(work.resolve("registry"), null, null);
        images = new TestImages(reg, new OciWriter(work.resolve("blobs")), rootfs());
    }

    @AfterAll
    static void stop() throws Exception {
        if (reg != null) {
            reg.close();
        }
        if (work != null) {
            io.microsandbox.runtime.SandboxPreparer.deleteTree(work);
        }
    }

    static Path rootfs() {
        String configured = System.getProperty("msb.test.rootfs");
        return configured != null && !configured.isBlank() ? Path.of(configured)
                : RuntimeFiles.defaultHome().resolve("test-images").resolve("debian-python");
    }

    static final String CHECK = String.join("\n",
            "import os, json",
            "r = {}",
            "for p in ['/data/secret', '/data/hard', '/data/suid', '/data/sgid-dir-file', '/data/opq', '/data/sticky', '/data/link', '/data']:",
            "    st = os.lstat(p)",
            "    r[p] = [st.st_uid, st.st_gid, oct(st.st_mode), st.st_ino, st.st_nlink]",
            "r['link'] = os.readlink('/data/link')",
            "r['abs-link'] = os.readlink('/data/abs-link')",
            "r['gone'] = os.path.lexists('/data/gone.txt')",
            "r['opq'] = sorted(os.listdir('/data/opq'))",
            "r['xattr'] = os.getxattr('/data/xattr', 'user.msb').decode()",
            "r['trusted'] = os.getxattr('/data/xattr', 'trusted.msb').decode()",
            "st = os.lstat('/data/null')",
            "r['null'] = [oct(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev)]",
            "r['secret'] = open('/data/secret').read()",
            "r['added'] = open('/data/added').read()",
            "r['env'] = os.environ.get('MSB_IMAGE_VAR')",
            "r['cwd'] = os.getcwd()",
            "print(json.dumps(r))");

    @Test
    @Timeout(600)
    void bootsAPulledImageWithItsFilesystemExactly() throws Exception {
        List<String> phases = new CopyOnWriteArrayList<>();
        String name = "it-oci-" + ProcessHandle.current().pid();
        // a cold cache for this image: an earlier run of the same build left its blobs and disk
        OciStore store = new OciStore(RuntimeFiles.defaultHome());
        Files.deleteIfExists(store.lowerDisk(images.fsDigest));
        for (String digest : List.of(images.fsDigest, images.baseLayer.digest())) {
            Files.deleteIfExists(store.blob(digest));
        }
        long t0 = System.nanoTime();
        SandboxConfig config = SandboxConfig.builder().image(images.fs).memoryMib(256).ociUpperSizeMib(512)
                .pullProgress((image, digest, phase, done, total) -> phases.add(phase.name()))
                .build();
        try (Sandbox sb = Sandbox.create(name, config)) {
            System.out.printf("pull + lower disk + first boot of %s (%d MB base layer): %.1f s%n", images.fs,
                    images.baseLayer.size() >> 20, (System.nanoTime() - t0) / 1e9);
            assertThat(phases).contains("RESOLVING", "DOWNLOADING", "UNPACKING", "DONE");
            ExecOutput out = sb.exec("python3", List.of("-c", CHECK));
            assertThat(out.exitCode()).as(out.stderr()).isZero();
            JsonNode r = new ObjectMapper().readTree(out.stdout());
            assertThat(r.get("/data/secret").get(0).asInt()).isEqualTo(1000);
            assertThat(r.get("/data/secret").get(1).asInt()).isEqualTo(1000);
            assertThat(r.get("/data/secret").get(2).asText()).isEqualTo("0o100640");
            assertThat(r.get("/data/secret").get(4).asInt()).isEqualTo(2);
            assertThat(r.get("/data/hard").get(3).asLong()).isEqualTo(r.get("/data/secret").get(3).asLong());
            assertThat(r.get("/data/suid").get(2).asText()).isEqualTo("0o104755");
            assertThat(r.get("/data/sgid-dir-file").get(2).asText()).isEqualTo("0o102711");
            assertThat(r.get("/data/sgid-dir-file").get(1).asInt()).isEqualTo(50);
            assertThat(r.get("/data/opq").get(2).asText()).isEqualTo("0o40750");
            assertThat(r.get("/data/opq").get(0).asInt()).isEqualTo(1000);
            assertThat(r.get("/data/sticky").get(2).asText()).isEqualTo("0o41777");
            assertThat(r.get("/data/link").get(2).asText()).isEqualTo("0o120777");
            assertThat(r.get("link").asText()).isEqualTo("secret");
            assertThat(r.get("abs-link").asText()).isEqualTo("/etc/hostname-in-image");
            assertThat(r.get("gone").asBoolean()).isFalse();
            assertThat(r.get("opq")).extracting(JsonNode::asText).containsExactly("c");
            assertThat(r.get("xattr").asText()).isEqualTo("hello-xattr");
            assertThat(r.get("trusted").asText()).isEqualTo("trusted-xattr");
            assertThat(r.get("null").get(0).asText()).isEqualTo("0o20666");
            assertThat(r.get("null").get(1).asInt()).isEqualTo(1);
            assertThat(r.get("null").get(2).asInt()).isEqualTo(3);
            // the setuid bit works: run by nobody, the setuid-root id reports effective uid 0
            ExecOutput suid = sb.exec("/data/suid-id", List.of("-u"), io.microsandbox.ExecOptions.builder().user("nobody").build());
            assertThat(suid.stdout()).isEqualTo("0\n");
            assertThat(sb.exec("id", List.of("-u"), io.microsandbox.ExecOptions.builder().user("nobody").build()).stdout()).isEqualTo("65534\n");
            assertThat(r.get("secret").asText()).isEqualTo("top secret\n");
            assertThat(r.get("added").asText()).isEqualTo("from layer 2\n");
            assertThat(r.get("env").asText()).isEqualTo("from-image");
            assertThat(r.get("cwd").asText()).isEqualTo("/data");
            // the image's entrypoint and cmd, as docker run forms them
            assertThat(sb.run(List.of()).stdout()).isEqualTo("from-cmd from-image\n");
            assertThat(sb.run(List.of("echo args-replace-cmd")).stdout()).isEqualTo("args-replace-cmd\n");
            // the config overrides the image's defaults
            ExecOutput whoami = sb.exec("sh", List.of("-c", "id -u; stat -c %s /data/secret"));
            assertThat(whoami.stdout()).startsWith("0\n");
            // writes go to the upper disk (sized by ociUpperSizeMib), the lower stays as it is
            ExecOutput df = sb.exec("sh", List.of("-c", "echo changed > /data/secret && cat /data/secret && df -m /run/msb/upper | tail -1"));
            assertThat(df.stdout()).startsWith("changed\n");
            assertThat(df.stdout().lines().skip(1).findFirst().orElseThrow().split("\\s+")[1]).satisfies(total ->
                    assertThat(Integer.parseInt(total)).isBetween(400, 512));
            // the image is in use while the sandbox exists
            assertThat(io.microsandbox.Images.local().inspect(images.fs).inUseBy()).contains(name);
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> io.microsandbox.Images.local().remove(images.fs))
                    .isInstanceOfSatisfying(io.microsandbox.MicrosandboxException.class,
                            e -> assertThat(e.kind()).isEqualTo(io.microsandbox.ErrorKind.IMAGE_IN_USE));
            sb.stop();
        }
        // a restart boots the pinned digest from the cache, with the upper's changes
        long t1 = System.nanoTime();
        try (Sandbox again = Sandbox.start(name)) {
            System.out.printf("restart from the warm cache: %.1f s%n", (System.nanoTime() - t1) / 1e9);
            assertThat(again.exec("cat", List.of("/data/secret")).stdout()).isEqualTo("changed\n");
            again.stop();
        } finally {
            Sandbox.remove(name);
        }
        // a second sandbox of the same image: no pull, the lower disk is shared
        long t2 = System.nanoTime();
        try (Sandbox sb = Sandbox.create(name + "-b", SandboxConfig.builder().image(images.fs).memoryMib(256)
                .env("MSB_IMAGE_VAR", "from-config").workdir("/tmp").entrypoint("python3", "-c").ephemeral(true).build())) {
            System.out.printf("create from the warm cache: %.1f s%n", (System.nanoTime() - t2) / 1e9);
            ExecOutput out = sb.exec("sh", List.of("-c", "echo $MSB_IMAGE_VAR; pwd; cat /data/secret"));
            assertThat(sb.run(List.of("print(6 * 7)")).stdout()).isEqualTo("42\n");
            assertThat(out.stdout()).isEqualTo("from-config\n/tmp\ntop secret\n");
        }
    }
}

package io.microsandbox;

import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.SandboxPreparer;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Disk snapshots of stopped sandboxes, against real VMs. */
class SnapshotIT {

    @Test
    void sandboxesBootFromASnapshotWithItsFilesIsolatedFromEachOtherAndWithoutTheSource() throws Exception {
        String source = TestSandboxes.uniqueName("snap-src");
        String snapName = TestSandboxes.uniqueName("snap");
        String a = TestSandboxes.uniqueName("snap-a");
        String b = TestSandboxes.uniqueName("snap-b");
        Path tmp = Files.createTempDirectory("msb-snapshot-it");
        List<String> sandboxes = new ArrayList<>(List.of(source, a, b));
        try {
            try (Sandbox sb = Sandbox.create(source, TestSandboxes.config().build())) {
                sb.shell("mkdir -p /srv/app && echo prepared > /srv/app/state.txt && sync");
                assertThatThrownBy(() -> Sandbox.get(source).snapshot(snapName)).isInstanceOfSatisfying(MicrosandboxException.class,
                        e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_SANDBOX_RUNNING));
            }
            Snapshot snap = Sandbox.get(source).snapshot(snapName, SnapshotOptions.builder().labels(Map.of("stage", "deps")).build());
            assertThat(snap.digest()).isEqualTo(Snapshot.sha256(Files.readAllBytes(snap.path().resolve("snapshot.json"))));
            assertThat(snap.sourceSandbox()).isEqualTo(source);
            assertThat(snap.image()).isEqualTo(TestSandboxes.rootfs());
            assertThat(snap.labels()).containsEntry("stage", "deps");
            assertThat(snap.integrity()).startsWith("sha256:");
            assertThat(snap.sizeBytes()).isEqualTo(Files.size(io.microsandbox.runtime.SandboxLayout.of(
                    Microsandbox.defaultRuntime().home(), source).upperDisk()));
            // sparse: far less allocated than its 4 GiB
            assertThat(Posix.allocatedBytes(snap.upperDisk())).isLessThan(snap.sizeBytes() / 8);
            assertThat(Snapshot.list()).extracting(Snapshot::digest).contains(snap.digest());
            assertThat(Snapshot.get(snapName).digest()).isEqualTo(snap.digest());
            snap.verify();
            assertThatThrownBy(() -> Sandbox.get(source).snapshot(snapName)).isInstanceOfSatisfying(MicrosandboxException.class,
                    e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_ALREADY_EXISTS));

            Sandbox.remove(source);
            sandboxes.remove(source);
            try (Sandbox first = Sandbox.create(a, SandboxConfig.builder().snapshot(snapName).memoryMib(256).build());
                 Sandbox second = Sandbox.create(b, SandboxConfig.builder().snapshot(snapName).memoryMib(256).build())) {
                assertThat(first.shell("cat /srv/app/state.txt").stdout()).isEqualTo("prepared\n");
                assertThat(second.shell("cat /srv/app/state.txt").stdout()).isEqualTo("prepared\n");
                first.shell("echo from-a > /srv/app/a.txt && echo changed-by-a > /srv/app/state.txt && sync");
                second.shell("echo from-b > /srv/app/b.txt && sync");
                assertThat(first.shell("ls /srv/app; cat /srv/app/state.txt").stdout()).isEqualTo("a.txt\nstate.txt\nchanged-by-a\n");
                assertThat(second.shell("ls /srv/app; cat /srv/app/state.txt").stdout()).isEqualTo("b.txt\nstate.txt\nprepared\n");
            }
            assertThat(Sandbox.get(a).config().image()).isEqualTo(TestSandboxes.rootfs());
            snap.verify();

            // a flipped byte in a path snapshot's upper copy: verify and the boot both refuse it
            Snapshot atPath = Sandbox.get(a).snapshotTo(tmp.resolve("from-a"));
            assertThat(atPath.path()).isEqualTo(tmp.resolve("from-a"));
            flipDataByte(atPath.upperDisk());
            assertThatThrownBy(atPath::verify).isInstanceOfSatisfying(MicrosandboxException.class,
                    e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY));
            String corrupt = TestSandboxes.uniqueName("snap-corrupt");
            assertThatThrownBy(() -> Sandbox.create(corrupt, SandboxConfig.builder().snapshot(atPath.path().toString()).build()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY));
            assertThat(Microsandbox.defaultRuntime().find(corrupt)).isEmpty();

            // a snapshot over an image that is gone is refused before anything is copied
            Path orphan = tmp.resolve("orphan");
            Files.createDirectory(orphan);
            String manifest = Files.readString(snap.path().resolve("snapshot.json"), StandardCharsets.UTF_8)
                    .replace("\"image\":\"" + TestSandboxes.rootfs() + "\"", "\"image\":\"" + tmp.resolve("no-such-image") + "\"");
            Files.writeString(orphan.resolve("snapshot.json"), manifest);
            assertThatThrownBy(() -> Sandbox.create(corrupt, SandboxConfig.builder().snapshot(orphan.toString()).build()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_IMAGE_MISSING));
            assertThatThrownBy(() -> Snapshot.get(TestSandboxes.uniqueName("missing"))).isInstanceOfSatisfying(MicrosandboxException.class,
                    e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND));
            assertThatThrownBy(() -> SandboxConfig.builder().snapshot(snapName).image(TestSandboxes.rootfs()).build())
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));

            Snapshot.remove(snapName);
            assertThat(Files.exists(snap.path())).isFalse();
        } finally {
            for (String name : sandboxes) {
                Microsandbox.defaultRuntime().find(name).ifPresent(h -> {
                    h.kill();
                    h.remove();
                });
            }
            if (Files.isDirectory(Microsandbox.defaultRuntime().snapshots().directory().resolve(snapName))) {
                Snapshot.remove(snapName);
            }
            SandboxPreparer.deleteTree(tmp);
        }
    }

    /** Inverts one byte inside the first data extent past the first block. */
    static void flipDataByte(Path file) throws Exception {
        long[] extents = Posix.dataExtents(file);
        long at = -1;
        for (int i = 0; i < extents.length && at < 0; i += 2) {
            if (extents[i + 1] > 8192) {
                at = Math.max(extents[i], 4096) + 100;
            }
        }
        assertThat(at).isPositive();
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
            raf.seek(at);
            int old = raf.read();
            raf.seek(at);
            raf.write(old ^ 0xff);
        }
    }
}

package io.microsandbox;

import io.microsandbox.runtime.SandboxLock;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

/** Snapshot and checkpoint directories someone edited or a dead writer left: typed errors, never a hang. */
class SnapshotDirectoriesTest {
    @TempDir
    Path home;

    @Test
    void aManifestThatIsAFifoIsRefusedInsteadOfBlockingTheReader() throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        Path dir = Files.createDirectories(checkpoints.directory().resolve("fifo"));
        mkfifo(dir.resolve(Checkpoint.MANIFEST_FILE));
        Path snapDir = Files.createDirectories(new Snapshots(home).directory().resolve("fifo"));
        mkfifo(snapDir.resolve(Snapshot.MANIFEST_FILE));
        assertTimeoutPreemptively(Duration.ofSeconds(10), () -> {
            assertThatThrownBy(() -> checkpoints.get("fifo")).isInstanceOfSatisfying(MicrosandboxException.class,
                    e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY));
            assertThat(checkpoints.list()).isEmpty();
            assertThatThrownBy(() -> new Snapshots(home).get("fifo")).isInstanceOfSatisfying(MicrosandboxException.class,
                    e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY));
            assertThat(new Snapshots(home).list()).isEmpty();
        });
    }

    @Test
    void aHugeManifestIsRefusedWithoutReadingItWhole() throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        Path dir = Files.createDirectories(checkpoints.directory().resolve("huge"));
        try (RandomAccessFile f = new RandomAccessFile(dir.resolve(Checkpoint.MANIFEST_FILE).toFile(), "rw")) {
            f.setLength(16L << 30); // sparse: reading it whole would exhaust the heap
        }
        assertThatThrownBy(() -> checkpoints.get("huge")).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY));
    }

    @Test
    void aCheckpointWithAnUnparsableDateIsTypedAndDoesNotBreakTheList() throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        writeCheckpoint(checkpoints.directory().resolve("good"), Instant.now().toString());
        writeCheckpoint(checkpoints.directory().resolve("edited"), "yesterday");
        assertThat(checkpoints.list()).extracting(Checkpoint::name).containsExactly("good");
        assertThatThrownBy(() -> checkpoints.get("edited")).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY));
    }

    @Test
    void aPathWithANulIsAnInvalidArgument() {
        assertThatThrownBy(() -> new Checkpoints(home).get(home + "/a\0b")).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_ARGUMENT));
        assertThatThrownBy(() -> new Snapshots(home).remove("x/\0")).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_ARGUMENT));
        assertThatThrownBy(() -> new Checkpoints(home).get("..")).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_ARGUMENT));
    }

    @Test
    void anUnfinishedCheckpointWhoseWriterDiedCanBeRemovedAndItsNameTakenAgain() throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        Path dir = checkpoints.directory().resolve("crashed");
        // what a writer killed during the migration leaves: the claim, a partial memory file, no manifest
        Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint").close();
        Files.write(dir.resolve(Checkpoint.MEMORY_FILE + ".part"), new byte[4096]);
        assertThat(checkpoints.list()).isEmpty();
        checkpoints.remove("crashed");
        assertThat(dir).doesNotExist();

        Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint").close();
        SandboxLock claimed = Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint");
        try {
            assertThat(dir.resolve(SnapshotDirectories.WRITING_LOCK)).exists();
        } finally {
            SnapshotDirectories.finished(dir, claimed);
        }
    }

    @Test
    void aCheckpointBeingWrittenIsNeitherRemovedNorClaimedTwice() throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        Path dir = checkpoints.directory().resolve("busy");
        SandboxLock writing = Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint");
        try {
            assertThatThrownBy(() -> checkpoints.remove("busy")).isInstanceOfSatisfying(MicrosandboxException.class,
                    e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND));
            assertThatThrownBy(() -> Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint"))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_ALREADY_EXISTS));
            assertThat(dir).isDirectory();
        } finally {
            SnapshotDirectories.finished(dir, writing);
        }
        // a directory that is not ours (no writing lock, no manifest) is never deleted
        Path foreign = Files.createDirectories(checkpoints.directory().resolve("foreign"));
        Files.writeString(foreign.resolve("keep"), "mine");
        assertThatThrownBy(() -> checkpoints.remove(foreign.toString())).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND));
        assertThat(foreign.resolve("keep")).exists();
    }

    @Test
    void concurrentRemovesOfOneCheckpointRemoveItOnceAndTheOthersFindNone() throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        for (int round = 0; round < 5; round++) {
            Path dir = checkpoints.directory().resolve("shared");
            writeCheckpoint(dir, Instant.now().toString());
            for (int i = 0; i < 300; i++) {
                Files.write(dir.resolve("file-" + i), new byte[16]);
            }
            int threads = 6;
            java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(threads);
            java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(threads);
            try {
                java.util.List<java.util.concurrent.Future<String>> outcomes = new java.util.ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    outcomes.add(pool.submit(() -> {
                        start.await();
                        try {
                            checkpoints.remove("shared");
                            return "removed";
                        } catch (MicrosandboxException e) {
                            return e.kind().name();
                        } catch (RuntimeException e) {
                            return e.toString();
                        }
                    }));
                }
                java.util.List<String> results = new java.util.ArrayList<>();
                for (var f : outcomes) {
                    results.add(f.get(30, java.util.concurrent.TimeUnit.SECONDS));
                }
                assertThat(results).containsOnly("removed", "SNAPSHOT_NOT_FOUND").containsOnlyOnce("removed");
                assertThat(dir).doesNotExist();
            } finally {
                pool.shutdownNow();
            }
        }
        try (var left = Files.list(checkpoints.directory())) {
            assertThat(left.toList()).isEmpty();
        }
    }

    private static void writeCheckpoint(Path dir, String createdAt) throws Exception {
        Files.createDirectories(dir);
        Map<String, Object> fields = new LinkedHashMap<>();
        fields.put("format", Checkpoint.FORMAT);
        fields.put("config", SandboxConfig.builder().image("alpine").build().toJson());
        fields.put("vm", Map.of());
        fields.put("createdAt", createdAt);
        Files.write(dir.resolve(Checkpoint.MANIFEST_FILE), Snapshot.canonicalManifest(fields));
    }

    private static void mkfifo(Path path) throws Exception {
        Process p = new ProcessBuilder("mkfifo", path.toString()).inheritIO().start();
        assertThat(p.waitFor()).isZero();
        assertThat(Files.readAttributes(path, "unix:mode").get("mode")).isNotNull();
        assertThat(path.toString().getBytes(StandardCharsets.UTF_8)).isNotEmpty();
    }
}

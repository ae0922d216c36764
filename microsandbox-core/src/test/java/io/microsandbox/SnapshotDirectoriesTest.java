package io.microsandbox;

import io.microsandbox.runtime.CheckpointSaving;
import io.microsandbox.runtime.ClaimedDirectory;
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

    /** A writer whose directory went on failure must not take the lock file of the next claimant of the name. */
    @Test
    void aWriterFinishingAfterItsDirectoryWentLeavesTheNextClaimantsLock() throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        Path dir = checkpoints.directory().resolve("again");
        SandboxLock first = Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE);
        ClaimedDirectory.delete(dir); // as a failed take deletes it, its lock still held
        SandboxLock second = Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE);
        try {
            SnapshotDirectories.finished(dir, first);
            assertThat(second.isOn(dir.resolve(SnapshotDirectories.WRITING_LOCK))).as("the second claimant's lock is still its file").isTrue();
        } finally {
            SnapshotDirectories.finished(dir, second);
        }
    }

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

    /** A manifest is a file: whoever could write it must not choose host storage for the restored guest. */
    @Test
    void aCheckpointRecordingHostStorageIsRefusedBeforeAnythingIsPrepared(@TempDir Path shared) throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        Path dir = Files.createDirectories(checkpoints.directory().resolve("altered"));
        Map<String, Object> fields = new LinkedHashMap<>();
        fields.put("format", Checkpoint.FORMAT);
        fields.put("config", SandboxConfig.builder().image("alpine").mount("/host", Mount.bind(shared, MountOptions.defaults())).build().toJson());
        fields.put("vm", Map.of());
        fields.put("createdAt", Instant.now().toString());
        Files.write(dir.resolve(Checkpoint.MANIFEST_FILE), Snapshot.canonicalManifest(fields));
        Microsandbox runtime = Microsandbox.builder().home(home).build();
        assertThatThrownBy(() -> runtime.restore("restored", checkpoints.get("altered"), RestoreOptions.defaults()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY))
                .hasMessageContaining("mounts host storage at [/host]");
        assertThat(runtime.list()).isEmpty();
    }

    @Test
    void aManifestsDirectoryImageMustBeAnAbsolutePathAwayFromTheRootAndTheHomesState(@TempDir Path image) throws Exception {
        Path inside = Files.createDirectories(home.resolve("sandboxes").resolve("other"));
        for (String named : new String[] {"/", home.toString(), inside.toString(), home.getParent().toString(), "rootfs", "a\0b"}) {
            assertThatThrownBy(() -> Snapshots.checkImage(home, "snapshot 'x'", named, null)).as(named)
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_INTEGRITY));
        }
        Snapshots.checkImage(home, "snapshot 'x'", image.toString(), null);
        // an image of the user's own kept in the home is not the runtime's state
        Snapshots.checkImage(home, "snapshot 'x'", Files.createDirectories(home.resolve("test-images").resolve("rootfs")).toString(), null);
        assertThatThrownBy(() -> Snapshots.checkImage(home, "snapshot 'x'", image.resolve("gone").toString(), null))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_IMAGE_MISSING));
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
        Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE).close();
        Files.write(dir.resolve(Checkpoint.MEMORY_FILE + ".part"), new byte[4096]);
        assertThat(checkpoints.list()).isEmpty();
        checkpoints.remove("crashed");
        assertThat(dir).doesNotExist();

        Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE).close();
        SandboxLock claimed = Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE);
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
        SandboxLock writing = Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE);
        try {
            assertThatThrownBy(() -> checkpoints.remove("busy")).isInstanceOfSatisfying(MicrosandboxException.class,
                    e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND));
            assertThatThrownBy(() -> Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE))
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

    /**
     * A client killed while its supervisor saves the checkpoint frees the writing lock: the
     * directory is neither removed nor claimed again under the supervisor, which holds the
     * saving lock until its files are written, and a supervisor sent to a directory claimed
     * again since writes nothing there.
     */
    @Test
    void aCheckpointItsSupervisorStillWritesOutlivesItsDeadClientAndIsNotClaimedAgain() throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        Path dir = checkpoints.directory().resolve("orphan");
        SandboxLock writing = Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE);
        String token = CheckpointSaving.leaveToken(dir);
        SandboxLock saving = CheckpointSaving.lockForSaving(dir, token);
        try {
            writing.close(); // the client dies
            assertThatThrownBy(() -> checkpoints.remove("orphan")).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND);
                assertThat(e.getMessage()).contains("being written");
            });
            assertThatThrownBy(() -> Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_ALREADY_EXISTS));
            assertThatThrownBy(() -> CheckpointSaving.lockForSaving(dir, token)).as("a second supervisor")
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_ALREADY_EXISTS));
            assertThat(dir.resolve(Checkpoint.MEMORY_FILE)).doesNotExist();
        } finally {
            saving.close();
        }
        // saved, with no client to finish it: the next claim takes the name
        SandboxLock next = Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE);
        try {
            String nextToken = CheckpointSaving.leaveToken(dir);
            assertThat(nextToken).isNotEqualTo(token);
            // the dead client's supervisor, had it begun only now, finds another claimant's directory
            assertThatThrownBy(() -> CheckpointSaving.lockForSaving(dir, token))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.getMessage()).contains("claimed again"));
            CheckpointSaving.lockForSaving(dir, nextToken).close();
        } finally {
            SnapshotDirectories.finished(dir, next);
        }
    }

    /** Restores pin a checkpoint's files (shared, any number at once): a remove is refused until they end. */
    @Test
    void aCheckpointBeingRestoredFromIsNotRemoved() throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        Path dir = checkpoints.directory().resolve("in-use");
        SandboxLock writing = Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE);
        Files.writeString(dir.resolve(Checkpoint.MANIFEST_FILE), "{}");
        SnapshotDirectories.finished(dir, writing);
        Path pinFile = dir.resolve(CheckpointSaving.SAVING_LOCK);
        try (SandboxLock one = SandboxLock.tryAcquireShared(pinFile); SandboxLock two = SandboxLock.tryAcquireShared(pinFile)) {
            assertThat(one).isNotNull();
            assertThat(two).as("restores of one checkpoint run together").isNotNull();
            assertThatThrownBy(() -> checkpoints.remove("in-use")).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND);
                assertThat(e.getMessage()).contains("restored from");
            });
            assertThat(dir.resolve(Checkpoint.MANIFEST_FILE)).exists();
        }
        try (SandboxLock removing = SandboxLock.tryAcquire(pinFile)) {
            assertThat(SandboxLock.tryAcquireShared(pinFile)).as("no restore begins during a remove").isNull();
        }
        checkpoints.remove("in-use");
        assertThat(dir).doesNotExist();
    }

    /** A pool drops the checkpoint it read; another creator may have taken one of the name since. */
    @Test
    void aRemoveOfTheCheckpointAsReadLeavesOneTakenAgainUnderItsName() throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        Path dir = checkpoints.directory().resolve("retaken");
        writeCheckpoint(dir, "2026-11-29T01:00:00Z");
        Checkpoint first = checkpoints.get("retaken");
        checkpoints.remove("retaken");
        writeCheckpoint(dir, "2026-11-29T02:00:00Z");
        Checkpoint second = checkpoints.get("retaken");
        assertThat(second.digest()).isNotEqualTo(first.digest());

        assertThatThrownBy(() -> checkpoints.remove(first)).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
            assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND);
            assertThat(e.getMessage()).contains("'retaken'", "taken again");
        });
        assertThat(checkpoints.get("retaken").digest()).isEqualTo(second.digest());

        checkpoints.remove(second);
        assertThat(dir).doesNotExist();
        assertThatThrownBy(() -> checkpoints.remove(second)).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND));
    }

    /** A directory of the name that no writer made (or an older version's cut-short delete left) is never deleted. */
    @Test
    void aDirectoryWithNeitherManifestNorLockIsLeftAndTheErrorSaysWhatToDo() throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        Path dir = Files.createDirectories(checkpoints.directory().resolve("foreign"));
        Files.writeString(dir.resolve("data"), "someone's");
        assertThatThrownBy(() -> checkpoints.remove("foreign")).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
            assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND);
            assertThat(e.getMessage()).contains(dir.toString(), "holds no checkpoint", "delete it by hand");
        });
        assertThat(dir.resolve("data")).hasContent("someone's");
    }

    @Test
    void aSnapshotIsRemovedAsReadAndNotOnceWrittenAgain() throws Exception {
        Snapshots snapshots = new Snapshots(home);
        Path dir = snapshots.directory().resolve("rewritten");
        Files.createDirectories(dir);
        Files.write(dir.resolve(Snapshot.MANIFEST_FILE), snapshotManifest("2026-11-29T01:00:00Z"));
        Snapshot first = snapshots.get("rewritten");
        Files.write(dir.resolve(Snapshot.MANIFEST_FILE), snapshotManifest("2026-11-29T02:00:00Z"));

        assertThatThrownBy(() -> snapshots.remove(first)).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND));
        assertThat(dir.resolve(Snapshot.MANIFEST_FILE)).exists();
        snapshots.remove(snapshots.get("rewritten"));
        assertThat(dir).doesNotExist();
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

    @Test
    void concurrentTakesAndRemovesOfOneNameNeverFailUntypedNorLeaveHalfAClaim() throws Exception {
        Checkpoints checkpoints = new Checkpoints(home);
        Path dir = checkpoints.directory().resolve("raced");
        int writers = 3;
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(writers + 2);
        try {
            for (int round = 0; round < 100; round++) {
                java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(writers + 2);
                java.util.concurrent.atomic.AtomicBoolean writing = new java.util.concurrent.atomic.AtomicBoolean(true);
                java.util.List<java.util.concurrent.Future<String>> takes = new java.util.ArrayList<>();
                for (int t = 0; t < writers; t++) {
                    // what Checkpoints.take does around the supervisor's save: claim, write into the directory, manifest, release
                    takes.add(pool.submit(() -> {
                        start.await();
                        SandboxLock lock;
                        try {
                            lock = Snapshots.claimDirectory(home, checkpoints.directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE);
                        } catch (MicrosandboxException e) {
                            return e.kind() == ErrorKind.IO ? e.getMessage() : e.kind().name();
                        }
                        try {
                            Files.write(dir.resolve(Checkpoint.MEMORY_FILE), new byte[4096]);
                            Snapshots.writeManifest(dir.resolve(Checkpoint.MANIFEST_FILE), manifest(Instant.now().toString()));
                            return "taken";
                        } finally {
                            SnapshotDirectories.finished(dir, lock);
                        }
                    }));
                }
                java.util.List<java.util.concurrent.Future<java.util.List<String>>> removers = new java.util.ArrayList<>();
                for (int r = 0; r < 2; r++) {
                    removers.add(pool.submit(() -> {
                        start.await();
                        java.util.List<String> outcomes = new java.util.ArrayList<>();
                        while (writing.get()) {
                            try {
                                checkpoints.remove("raced");
                                outcomes.add("removed");
                            } catch (MicrosandboxException e) {
                                outcomes.add(e.kind() == ErrorKind.IO ? e.getMessage() : e.kind().name());
                            }
                        }
                        return outcomes;
                    }));
                }
                java.util.List<String> taken = new java.util.ArrayList<>();
                for (var take : takes) {
                    taken.add(take.get(30, java.util.concurrent.TimeUnit.SECONDS)); // a writer whose directory vanished throws here
                }
                writing.set(false);
                java.util.List<String> removed = new java.util.ArrayList<>();
                for (var remover : removers) {
                    removed.addAll(remover.get(30, java.util.concurrent.TimeUnit.SECONDS));
                }
                assertThat(taken).containsAnyOf("taken").allMatch(r -> r.equals("taken") || r.equals("SNAPSHOT_ALREADY_EXISTS"));
                assertThat(removed).allMatch(r -> r.equals("removed") || r.equals("SNAPSHOT_NOT_FOUND"));
                // each take after the first needed a remove of the one before it
                assertThat(taken.stream().filter("taken"::equals).count()).isLessThanOrEqualTo(1 + removed.stream().filter("removed"::equals).count());
                if (Files.exists(dir)) {
                    assertThat(checkpoints.get("raced").name()).isEqualTo("raced");
                    assertThat(dir.resolve(SnapshotDirectories.WRITING_LOCK)).doesNotExist();
                    checkpoints.remove("raced");
                }
                try (var left = Files.list(checkpoints.directory())) {
                    assertThat(left.toList()).as("nothing half claimed or half removed").isEmpty();
                }
            }
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void probingALockFromTheProcessThatHoldsItLeavesItHeldForOthers() throws Exception {
        Path file = home.resolve("probe.lock");
        try (SandboxLock held = SandboxLock.tryAcquire(file)) {
            assertThat(held).isNotNull();
            assertThat(SandboxLock.isHeld(file)).isTrue();
            assertThat(SandboxLock.tryAcquire(file)).as("a second lock in the same process").isNull();
            // another process, whose POSIX lock conflicts with ours: with FileChannel locks the probes above would have released it
            Process other = new ProcessBuilder("python3", "-c", "import fcntl, sys\n"
                    + "f = open(sys.argv[1], 'r+')\n"
                    + "try:\n    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
                    + "except OSError:\n    print('held')", file.toString()).redirectErrorStream(true).start();
            assertThat(new String(other.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip()).isEqualTo("held");
            assertThat(other.waitFor()).isZero();
        }
        assertThat(SandboxLock.isHeld(file)).isFalse();
        assertThat(SandboxLock.isHeld(home.resolve("absent.lock"))).isFalse();
        assertThat(home.resolve("absent.lock")).as("a probe creates nothing").doesNotExist();
    }

    @Test
    void probingALockNeverTurnsAwaySomeoneTakingIt() throws Exception {
        Path file = home.resolve("contended.lock");
        java.util.concurrent.atomic.AtomicBoolean probing = new java.util.concurrent.atomic.AtomicBoolean(true);
        Thread prober = new Thread(() -> {
            try {
                while (probing.get()) {
                    SandboxLock.isHeld(file);
                }
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        prober.start();
        try {
            for (int i = 0; i < 20_000; i++) {
                try (SandboxLock taken = SandboxLock.tryAcquire(file)) {
                    assertThat(taken).as("take " + i + " while another thread probes").isNotNull();
                }
            }
        } finally {
            probing.set(false);
            prober.join();
        }
    }

    @Test
    void aClaimSweepsOnlyOldUnlockedLeftoversOfItsNameThatDeadProcessesLeft() throws Exception {
        Path named = Files.createDirectories(new Checkpoints(home).directory());
        Path deadClaim = Files.createDirectories(named.resolve(".claiming-cp-" + java.util.UUID.randomUUID()));
        Files.createFile(deadClaim.resolve(SnapshotDirectories.WRITING_LOCK));
        Path deadRemoval = Files.createDirectories(named.resolve(".removing-cp-" + java.util.UUID.randomUUID()));
        Files.write(deadRemoval.resolve(Checkpoint.MEMORY_FILE), new byte[4096]);
        Path otherName = Files.createDirectories(named.resolve(".removing-other-" + java.util.UUID.randomUUID()));
        Path liveClaim = Files.createDirectories(named.resolve(".claiming-cp-" + java.util.UUID.randomUUID()));
        try (SandboxLock live = SandboxLock.tryAcquire(liveClaim.resolve(SnapshotDirectories.WRITING_LOCK))) {
            ClaimedDirectory.sweepLeftovers(named.resolve("cp"), SnapshotDirectories.WRITING_LOCK, ClaimedDirectory.LEFTOVER_AGE);
            assertThat(deadClaim).as("too young").exists();
            assertThat(deadRemoval).as("too young").exists();
            Thread.sleep(20); // inode change times cannot be set back: sweep with no minimum age instead
            ClaimedDirectory.sweepLeftovers(named.resolve("cp"), SnapshotDirectories.WRITING_LOCK, Duration.ZERO);
            assertThat(deadClaim).doesNotExist();
            assertThat(deadRemoval).doesNotExist();
            assertThat(otherName).as("another name's").exists();
            assertThat(liveClaim).as("its lock is held").exists();
        }
    }

    /** What died under a name nobody claims again is swept by a claim of any other name in the home's directory. */
    @Test
    void leftoversOfEveryNameAreSweptButLiveOnesAndOtherEntriesStay() throws Exception {
        Path named = Files.createDirectories(new Checkpoints(home).directory());
        Path deadRemoval = Files.createDirectories(named.resolve(".removing-once-a-b-" + java.util.UUID.randomUUID()));
        Files.write(deadRemoval.resolve(Checkpoint.MEMORY_FILE), new byte[4096]);
        Path deadClaim = Files.createDirectories(named.resolve(".claiming-other-" + java.util.UUID.randomUUID()));
        Path notALeftover = Files.createDirectories(named.resolve(".removing-no-uuid"));
        Path finished = Files.createDirectories(named.resolve("kept"));
        Path liveClaim = Files.createDirectories(named.resolve(".claiming-busy-" + java.util.UUID.randomUUID()));
        try (SandboxLock live = SandboxLock.tryAcquire(liveClaim.resolve(SnapshotDirectories.WRITING_LOCK))) {
            Thread.sleep(20); // inode change times cannot be set back: swept with no minimum age
            ClaimedDirectory.sweepAllLeftovers(named, SnapshotDirectories.WRITING_LOCK, Duration.ZERO);
            assertThat(deadRemoval).doesNotExist();
            assertThat(deadClaim).doesNotExist();
            assertThat(notALeftover).exists();
            assertThat(finished).exists();
            assertThat(liveClaim).as("its lock is held").exists();
        }
    }

    private static void writeCheckpoint(Path dir, String createdAt) throws Exception {
        Files.createDirectories(dir);
        Files.write(dir.resolve(Checkpoint.MANIFEST_FILE), manifest(createdAt));
    }

    private static byte[] manifest(String createdAt) {
        Map<String, Object> fields = new LinkedHashMap<>();
        fields.put("format", Checkpoint.FORMAT);
        fields.put("config", SandboxConfig.builder().image("alpine").build().toJson());
        fields.put("vm", Map.of());
        fields.put("createdAt", createdAt);
        return Snapshot.canonicalManifest(fields);
    }

    private static byte[] snapshotManifest(String createdAt) {
        return Snapshot.canonicalManifest(Map.of("format", Snapshot.FORMAT, "image", "alpine", "createdAt", createdAt));
    }

    private static void mkfifo(Path path) throws Exception {
        Process p = new ProcessBuilder("mkfifo", path.toString()).inheritIO().start();
        assertThat(p.waitFor()).isZero();
        assertThat(Files.readAttributes(path, "unix:mode").get("mode")).isNotNull();
        assertThat(path.toString().getBytes(StandardCharsets.UTF_8)).isNotEmpty();
    }
}

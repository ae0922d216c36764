package io.microsandbox.store;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class SandboxStoreTest {
    @TempDir
    Path home;

    @Test
    void migratesOnceAndReopens() {
        SandboxStore.open(home).insert("a", "{}", Map.of(), false, "running");
        SandboxStore reopened = SandboxStore.open(home);
        assertThat(reopened.find("a")).isPresent();
        assertThat(SandboxStore.schemaVersion()).isEqualTo(2);
    }

    /** A database another process keeps locked past the busy timeout is a limit to try again, and nothing is half done. */
    @Test
    void aWriteThatWaitsTooLongForTheLockIsAResourceLimit() throws Exception {
        SandboxStore store = SandboxStore.open(home);
        try (java.sql.Connection c = java.sql.DriverManager.getConnection("jdbc:sqlite:" + home.resolve("db/msb.db"));
             java.sql.Statement s = c.createStatement()) {
            s.execute("BEGIN IMMEDIATE");
            assertThatThrownBy(() -> store.insert("a", "{}", Map.of(), false, "running"))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.RESOURCE_LIMIT);
                        assertThat(e.getMessage()).contains("locked by another process").contains("try again");
                    });
            s.execute("ROLLBACK");
        }
        assertThat(store.find("a")).isEmpty();
        store.insert("a", "{}", Map.of(), false, "running");
        assertThat(store.find("a")).isPresent();
    }

    @Test
    void homeDatabaseAndItsWalFilesAreOwnerOnly() throws Exception {
        Files.setPosixFilePermissions(home, PosixFilePermissions.fromString("rwxr-xr-x"));
        SandboxStore store = SandboxStore.open(home);
        store.insert("a", "{\"env\":{\"SECRET\":\"s3cret\"}}", Map.of(), false, "running");
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(home))).isEqualTo("rwx------");
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(home.resolve("db")))).isEqualTo("rwx------");
        // the -wal and -shm files live while a connection is open (each store call has its own)
        try (java.sql.Connection c = java.sql.DriverManager.getConnection("jdbc:sqlite:" + home.resolve("db/msb.db"));
             java.sql.Statement s = c.createStatement()) {
            s.execute("PRAGMA journal_mode=WAL");
            s.execute("UPDATE sandbox SET status = 'stopped'");
            List<String> names = new ArrayList<>();
            try (var files = Files.list(home.resolve("db"))) {
                for (Path f : files.toList()) {
                    names.add(f.getFileName().toString());
                    assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(f))).as(f.toString()).isEqualTo("rw-------");
                }
            }
            assertThat(names).contains("msb.db", "msb.db-wal", "msb.db-shm");
        }
    }

    @Test
    void narrowsADatabaseAnOlderVersionLeftReadable() throws Exception {
        SandboxStore.open(home);
        Path db = home.resolve("db").resolve("msb.db");
        Files.setPosixFilePermissions(db, PosixFilePermissions.fromString("rw-r--r--"));
        SandboxStore.open(home).find("x");
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(db))).isEqualTo("rw-------");
    }

    @Test
    void refusesDuplicateNames() {
        SandboxStore store = SandboxStore.open(home);
        store.insert("a", "{}", Map.of(), false, "running");
        assertThatThrownBy(() -> store.insert("a", "{}", Map.of(), false, "running"))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_ALREADY_EXISTS));
    }

    @Test
    void listsNewestFirstWithAndMatchedLabels() throws Exception {
        SandboxStore store = SandboxStore.open(home);
        store.insert("old", "{}", Map.of("team", "x", "role", "w"), false, "stopped");
        Thread.sleep(5);
        store.insert("new", "{}", Map.of("team", "x"), false, "stopped");
        store.insert("other", "{}", Map.of("team", "y"), false, "stopped");

        assertThat(store.list(Map.of("team", "x"))).extracting(SandboxRecord::name).containsExactly("new", "old");
        assertThat(store.list(Map.of("team", "x", "role", "w"))).extracting(SandboxRecord::name).containsExactly("old");
        assertThat(store.list(Map.of())).extracting(SandboxRecord::name).containsExactly("other", "new", "old");
        assertThat(store.find("old").orElseThrow().labels()).containsEntry("role", "w");
    }

    @Test
    void recordsRunsAndTheFirstObserverOfAnEndWins() {
        SandboxStore store = SandboxStore.open(home);
        store.insert("a", "{}", Map.of(), false, "running");
        store.startRun("a", 10, 11);
        assertThat(store.find("a").orElseThrow().lastRun().terminatedAt()).isNull();

        store.finishRun("a", "stopped", 0, null, "shutdown-requested", "supervisor");
        store.finishRun("a", "crashed", null, null, "internal", "client");

        SandboxRecord record = store.find("a").orElseThrow();
        assertThat(record.status()).isEqualTo("stopped");
        assertThat(record.lastRun().reason()).isEqualTo("shutdown-requested");
        assertThat(record.lastRun().exitCode()).isZero();
        assertThat(record.lastRun().signal()).isNull();
        assertThat(record.lastRun().supervisorPid()).isEqualTo(10L);
    }

    @Test
    void endsACreationWhoseCreatorDiedBeforeAnyRun() {
        SandboxStore store = SandboxStore.open(home);
        store.insert("a", "{}", Map.of(), false, "running");
        store.finishRun("a", "crashed", null, null, "internal", "client");
        assertThat(store.find("a").orElseThrow().status()).isEqualTo("crashed");
    }

    @Test
    void deleteForgetsLabelsAndRuns() {
        SandboxStore store = SandboxStore.open(home);
        store.insert("a", "{}", Map.of("k", "v"), false, "running");
        store.startRun("a", 1, 2);
        store.delete("a");
        assertThat(store.find("a")).isEmpty();
        store.insert("a", "{}", Map.of(), false, "running");
        assertThat(store.find("a").orElseThrow().labels()).isEmpty();
        assertThat(store.find("a").orElseThrow().lastRun()).isNull();
    }

    @Test
    void concurrentWritersFromManyThreadsAllLand() throws Exception {
        SandboxStore store = SandboxStore.open(home);
        ExecutorService pool = Executors.newFixedThreadPool(8);
        try {
            List<Future<?>> done = new ArrayList<>();
            for (int i = 0; i < 40; i++) {
                int n = i;
                done.add(pool.submit(() -> {
                    SandboxStore own = SandboxStore.open(home);
                    own.insert("s" + n, "{}", Map.of("batch", "1"), false, "running");
                    own.startRun("s" + n, n, n);
                    own.finishRun("s" + n, "stopped", 0, null, "completed", "supervisor");
                }));
            }
            for (Future<?> f : done) {
                f.get();
            }
        } finally {
            pool.shutdownNow();
        }
        assertThat(store.list(Map.of("batch", "1"))).hasSize(40).allMatch(r -> r.status().equals("stopped"));
    }
    /**
     * Creations in a burst on a new home open its database together: the first to switch it to
     * WAL holds a lock that SQLite reports to the others at once, without waiting the busy
     * timeout, and each must wait for it (a race: 300 rounds of 8 hit it about once on the old code).
     */
    @Test
    void aNewDatabaseOpenedByManyAtOnceOpensForEach() throws Exception {
        int openers = 8;
        ExecutorService pool = Executors.newFixedThreadPool(openers);
        try {
            for (int round = 0; round < 300; round++) {
                Path fresh = home.resolve("round-" + round);
                java.util.concurrent.CyclicBarrier together = new java.util.concurrent.CyclicBarrier(openers);
                List<Future<?>> done = new ArrayList<>();
                for (int i = 0; i < openers; i++) {
                    int n = i;
                    done.add(pool.submit(() -> {
                        together.await();
                        SandboxStore.open(fresh).insert("s" + n, "{}", Map.of(), false, "running");
                        return null;
                    }));
                }
                for (Future<?> f : done) {
                    f.get();
                }
                assertThat(SandboxStore.open(fresh).list(Map.of())).hasSize(openers);
            }
        } finally {
            pool.shutdownNow();
        }
    }

    /** SQLite reports a lock under several extended codes: each is one to wait out, nothing else is. */
    @Test
    void everyKindOfBusyIsALockToWaitOut() {
        for (var code : java.util.List.of(org.sqlite.SQLiteErrorCode.SQLITE_BUSY, org.sqlite.SQLiteErrorCode.SQLITE_BUSY_RECOVERY,
                org.sqlite.SQLiteErrorCode.SQLITE_BUSY_SNAPSHOT, org.sqlite.SQLiteErrorCode.SQLITE_BUSY_TIMEOUT)) {
            assertThat(SandboxStore.busy(new org.sqlite.SQLiteException("locked", code))).as(code.name()).isTrue();
        }
        for (var code : java.util.List.of(org.sqlite.SQLiteErrorCode.SQLITE_LOCKED, org.sqlite.SQLiteErrorCode.SQLITE_CORRUPT,
                org.sqlite.SQLiteErrorCode.SQLITE_IOERR)) {
            assertThat(SandboxStore.busy(new org.sqlite.SQLiteException("not busy", code))).as(code.name()).isFalse();
        }
        assertThat(SandboxStore.busy(new java.sql.SQLException("other driver"))).isFalse();
    }

    /** A full disk is the disk's trouble (IO, check the disk), not an internal error. */
    @Test
    void aFullDiskOrAnIoErrorIsTheDisksTrouble() {
        for (var code : java.util.List.of(org.sqlite.SQLiteErrorCode.SQLITE_FULL, org.sqlite.SQLiteErrorCode.SQLITE_IOERR,
                org.sqlite.SQLiteErrorCode.SQLITE_IOERR_WRITE, org.sqlite.SQLiteErrorCode.SQLITE_IOERR_FSYNC)) {
            assertThat(SandboxStore.diskFailure(new org.sqlite.SQLiteException("disk", code))).as(code.name()).isTrue();
        }
        assertThat(SandboxStore.diskFailure(new org.sqlite.SQLiteException("busy", org.sqlite.SQLiteErrorCode.SQLITE_BUSY))).isFalse();
        assertThat(SandboxStore.diskFailure(new org.sqlite.SQLiteException("corrupt", org.sqlite.SQLiteErrorCode.SQLITE_CORRUPT))).isFalse();
    }

    /** Reads neither wait for a writer nor make one wait: a long write elsewhere does not hold up a lookup or a listing. */
    @Test
    void readsDoNotWaitForAWriter() throws Exception {
        SandboxStore store = SandboxStore.open(home);
        store.insert("a", "{}", Map.of(), false, "running");
        try (java.sql.Connection writer = java.sql.DriverManager.getConnection("jdbc:sqlite:" + home.resolve("db").resolve("msb.db"));
             java.sql.Statement s = writer.createStatement()) {
            s.execute("BEGIN IMMEDIATE");
            s.execute("UPDATE sandbox SET status = 'stopped' WHERE name = 'a'");
            long start = System.nanoTime();
            assertThat(SandboxStore.open(home).find("a")).get().extracting(SandboxRecord::status).isEqualTo("running");
            assertThat(store.list(Map.of())).hasSize(1);
            assertThat(java.time.Duration.ofNanos(System.nanoTime() - start)).isLessThan(java.time.Duration.ofSeconds(5));
            s.execute("ROLLBACK");
        }
    }

    /** Newest first by the instant, not by its text (whose fraction has 0 to 9 digits). */
    @Test
    void listsNewestFirstWhateverTheTimestampsLength() throws Exception {
        SandboxStore store = SandboxStore.open(home);
        store.insert("half", "{}", Map.of(), false, "stopped");
        store.insert("whole", "{}", Map.of(), false, "stopped");
        try (java.sql.Connection c = java.sql.DriverManager.getConnection("jdbc:sqlite:" + home.resolve("db").resolve("msb.db"));
             java.sql.Statement s = c.createStatement()) {
            s.execute("UPDATE sandbox SET created_at = '2026-01-01T00:00:00Z' WHERE name = 'whole'");
            s.execute("UPDATE sandbox SET created_at = '2026-01-01T00:00:00.500Z' WHERE name = 'half'");
        }
        assertThat(store.list(Map.of())).extracting(SandboxRecord::name).containsExactly("half", "whole");
    }

    /** A volume's removal and the recording of a sandbox that mounts it see each other: never both. */
    @Test
    void aVolumeIsNeverRemovedUnderASandboxRecordedToMountIt() {
        SandboxStore store = SandboxStore.open(home);
        VolumeStore volumes = VolumeStore.open(home);
        volumes.insert("v", "directory", null);
        store.insert("user", "{\"v\":1}", Map.of(), false, "running", List.of("v"));
        assertThat(volumes.deleteUnlessMounted("v", json -> json.contains("\"v\""))).containsExactly("user");
        assertThat(volumes.find("v")).isPresent();
        store.delete("user");
        assertThat(volumes.deleteUnlessMounted("v", json -> json.contains("\"v\""))).isEmpty();
        assertThat(volumes.find("v")).isEmpty();
        assertThatThrownBy(() -> store.insert("late", "{\"v\":1}", Map.of(), false, "running", List.of("v")))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.VOLUME_NOT_FOUND));
        assertThat(store.find("late")).isEmpty();
    }

    /** A delete of a sandbox read earlier never takes a newer one recorded since under its name. */
    @Test
    void aDeleteByCreationTakesOnlyThatSandbox() {
        SandboxStore store = SandboxStore.open(home);
        store.insert("a", "{}", Map.of(), true, "stopped");
        SandboxRecord read = store.find("a").orElseThrow();
        store.delete("a", read.createdAt().minusSeconds(1));
        assertThat(store.find("a")).isPresent();
        store.delete("a", read.createdAt());
        assertThat(store.find("a")).isEmpty();
    }
}

package io.microsandbox.store;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.RuntimeFiles;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.sqlite.SQLiteConfig;

/**
 * The sandbox database, {@code <home>/db/msb.db}: an SQLite file in WAL mode shared by every
 * JVM and supervisor that uses the same home. Each call opens a short transaction on its own
 * connection, so concurrent processes only ever wait for the busy timeout, never for each other's
 * long-lived handles. The schema is migrated forward on open, one numbered step at a time.
 */
public final class SandboxStore {
    /** How long one statement waits for another process's write lock. */
    public static final int BUSY_TIMEOUT_MS = 10_000;
    /** Schema steps, applied in order; the index + 1 is the schema version. Never edit a shipped step. */
    private static final List<String> MIGRATIONS = List.of(
            """
            CREATE TABLE sandbox (
                name        TEXT PRIMARY KEY,
                config      TEXT NOT NULL,
                status      TEXT NOT NULL,
                ephemeral   INTEGER NOT NULL DEFAULT 0,
                created_at  TEXT NOT NULL,
                updated_at  TEXT NOT NULL
            );
            CREATE TABLE label (
                sandbox  TEXT NOT NULL REFERENCES sandbox(name) ON DELETE CASCADE,
                key      TEXT NOT NULL,
                value    TEXT NOT NULL,
                PRIMARY KEY (sandbox, key)
            );
            CREATE TABLE run (
                id              INTEGER PRIMARY KEY AUTOINCREMENT,
                sandbox         TEXT NOT NULL REFERENCES sandbox(name) ON DELETE CASCADE,
                supervisor_pid  INTEGER,
                vmm_pid         INTEGER,
                started_at      TEXT NOT NULL,
                terminated_at   TEXT,
                status          TEXT,
                exit_code       INTEGER,
                signal          INTEGER,
                reason          TEXT,
                source          TEXT
            );
            CREATE INDEX run_by_sandbox ON run(sandbox, id);
            """,
            // named volumes (VolumeStore); their data lives under <home>/volumes/<name>
            """
            CREATE TABLE volume (
                name        TEXT PRIMARY KEY,
                kind        TEXT NOT NULL,
                size_mib    INTEGER,
                created_at  TEXT NOT NULL
            );
            """);

    /** sqlite-jdbc's own native library, for Linux x86-64 (other platforms: its default loading). */
    private static final String SQLITE_NATIVE = "/org/sqlite/native/Linux/x86_64/libsqlitejdbc.so";

    /** The file name of SQLite's native library, as extracted (and handed down to supervisors). */
    public static final String NATIVE_LIBRARY = SQLITE_NATIVE.substring(SQLITE_NATIVE.lastIndexOf('/') + 1);

    static {
        useExtractedNativeLibrary();
    }

    /**
     * The driver itself rather than {@code DriverManager}, whose first use in a JVM looks for
     * drivers in every jar on the class path (about 12 ms in a supervisor, more in a large application).
     */
    private static final java.sql.Driver SQLITE = new org.sqlite.JDBC();

    private final String url;

    private SandboxStore(String url) {
        this.url = url;
    }

    /**
     * Points sqlite-jdbc at one copy of its native library in the versioned runtime directory.
     * Left alone, it extracts a copy into the temp directory in every JVM (every supervisor
     * too), which costs start-up time and leaves files behind when a JVM is killed.
     */
    private static void useExtractedNativeLibrary() {
        if (System.getProperty("org.sqlite.lib.path") != null || SandboxStore.class.getResource(SQLITE_NATIVE) == null) {
            return;
        }
        try {
            Path lib = RuntimeFiles.extractResource(RuntimeFiles.nativeHome(), SQLITE_NATIVE);
            System.setProperty("org.sqlite.lib.path", lib.getParent().toString());
            System.setProperty("org.sqlite.lib.name", lib.getFileName().toString());
        } catch (RuntimeException e) {
            // sqlite-jdbc then extracts its own copy, as it would without us
        }
    }

    /** Loads SQLite's native library now, so that a later {@link #open(Path)} does not wait for it. */
    public static void preload() {
        try (Connection c = SQLITE.connect("jdbc:sqlite::memory:", new java.util.Properties())) {
            c.isValid(1);
        } catch (SQLException e) {
            throw new MicrosandboxException(ErrorKind.INTERNAL, "SQLite does not load: " + e.getMessage(), e);
        }
    }

    /**
     * Opens (creating and migrating as needed) the database under {@code home}. The home, the
     * database directory and its files are made their owner's only first (see {@link OwnerOnly}).
     */
    public static SandboxStore open(Path home) {
        try {
            Path dir = OwnerOnly.directories(home, home.resolve("db"));
            Path db = dir.resolve("msb.db");
            secureDatabaseFiles(db);
            SandboxStore store = new SandboxStore("jdbc:sqlite:" + db);
            store.migrate();
            return store;
        } catch (java.io.IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot create the database directory under " + home + ": " + e.getMessage(), e);
        }
    }

    /**
     * SQLite creates the database with the umask's mode, but its journal, {@code -wal} and
     * {@code -shm} files with the database's own mode: creating the database {@code 0600}
     * covers them all. Files an older version left are narrowed.
     */
    private static void secureDatabaseFiles(Path db) throws java.io.IOException {
        try {
            OwnerOnly.createFile(db);
        } catch (java.nio.file.FileAlreadyExistsException e) {
            OwnerOnly.restrictFile(db);
        }
        for (String suffix : List.of("-wal", "-shm", "-journal")) {
            OwnerOnly.restrictFileIfExists(db.resolveSibling(db.getFileName() + suffix));
        }
    }

    private Connection connect() throws SQLException {
        SQLiteConfig config = new SQLiteConfig();
        config.setBusyTimeout(BUSY_TIMEOUT_MS);
        config.enforceForeignKeys(true);
        config.setJournalMode(SQLiteConfig.JournalMode.WAL);
        config.setSynchronous(SQLiteConfig.SynchronousMode.NORMAL);
        return SQLITE.connect(url, config.toProperties());
    }

    /** Brings the schema up to this library's version; a read alone when it is there already (every open). */
    private void migrate() {
        int found = inReadTransaction(c -> {
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT max(version) FROM schema_version")) {
                return rs.next() ? rs.getInt(1) : 0;
            } catch (SQLException e) {
                if (String.valueOf(e.getMessage()).contains("no such table")) {
                    return 0; // no schema yet
                }
                throw e; // a busy or damaged database is not an empty one
            }
        });
        if (found == MIGRATIONS.size()) {
            return;
        }
        inTransaction(c -> {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
                int version;
                try (ResultSet rs = s.executeQuery("SELECT max(version) FROM schema_version")) {
                    version = rs.next() ? rs.getInt(1) : 0;
                }
                if (version > MIGRATIONS.size()) {
                    throw new MicrosandboxException(ErrorKind.INTERNAL, "database " + url + " has schema version " + version
                            + ", newer than this library (" + MIGRATIONS.size() + "); upgrade microsandbox");
                }
                for (int v = version; v < MIGRATIONS.size(); v++) {
                    for (String statement : MIGRATIONS.get(v).split(";")) {
                        if (!statement.isBlank()) {
                            s.execute(statement);
                        }
                    }
                    s.execute("INSERT INTO schema_version (version) VALUES (" + (v + 1) + ")");
                }
            }
            return null;
        });
    }

    /** The schema version this library writes. */
    public static int schemaVersion() {
        return MIGRATIONS.size();
    }

    /**
     * Records a new sandbox.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_ALREADY_EXISTS} when the name is taken
     */
    public void insert(String name, String configJson, Map<String, String> labels, boolean ephemeral, String status) {
        insert(name, configJson, labels, ephemeral, status, List.of());
    }

    /**
     * Records a new sandbox that mounts the named {@code volumes}, which must be recorded: in the
     * transaction that records it, so that a volume's removal either sees the sandbox or is seen
     * by it (see {@link VolumeStore#deleteUnlessMounted}).
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_ALREADY_EXISTS} when the name is taken,
     *         {@link ErrorKind#VOLUME_NOT_FOUND} when a volume is not (or no longer) there
     */
    public void insert(String name, String configJson, Map<String, String> labels, boolean ephemeral, String status,
            java.util.Collection<String> volumes) {
        inTransaction(c -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT 1 FROM volume WHERE name = ?")) {
                for (String volume : volumes) {
                    ps.setString(1, volume);
                    try (ResultSet rs = ps.executeQuery()) {
                        if (!rs.next()) {
                            throw new MicrosandboxException(ErrorKind.VOLUME_NOT_FOUND, "no volume named '" + volume
                                    + "' for sandbox '" + name + "' (removed meanwhile?); create it with Volumes.create");
                        }
                    }
                }
            }
            String now = Instant.now().toString();
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO sandbox (name, config, status, ephemeral, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)")) {
                ps.setString(1, name);
                ps.setString(2, configJson);
                ps.setString(3, status);
                ps.setInt(4, ephemeral ? 1 : 0);
                ps.setString(5, now);
                ps.setString(6, now);
                ps.executeUpdate();
            } catch (SQLException e) {
                if (e.getMessage() != null && e.getMessage().contains("UNIQUE")) {
                    throw new MicrosandboxException(ErrorKind.SANDBOX_ALREADY_EXISTS, "a sandbox named '" + name + "' already exists");
                }
                throw e;
            }
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO label (sandbox, key, value) VALUES (?, ?, ?)")) {
                for (Map.Entry<String, String> e : labels.entrySet()) {
                    ps.setString(1, name);
                    ps.setString(2, e.getKey());
                    ps.setString(3, e.getValue());
                    ps.executeUpdate();
                }
            }
            return null;
        });
    }

    /** The sandbox named {@code name}, if recorded. */
    public Optional<SandboxRecord> find(String name) {
        List<SandboxRecord> found = query("WHERE s.name = ?", List.of(name));
        return found.isEmpty() ? Optional.empty() : Optional.of(found.get(0));
    }

    /** Every sandbox carrying all of {@code labels}, newest first. */
    public List<SandboxRecord> list(Map<String, String> labels) {
        StringBuilder where = new StringBuilder("WHERE 1 = 1");
        List<String> args = new ArrayList<>();
        for (Map.Entry<String, String> e : labels.entrySet()) {
            where.append(" AND EXISTS (SELECT 1 FROM label l WHERE l.sandbox = s.name AND l.key = ? AND l.value = ?)");
            args.add(e.getKey());
            args.add(e.getValue());
        }
        return query(where.toString(), args);
    }

    private List<SandboxRecord> query(String where, List<String> args) {
        return inReadTransaction(c -> {
            List<SandboxRecord> records = new ArrayList<>();
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT s.name, s.config, s.status, s.ephemeral, s.created_at, s.updated_at FROM sandbox s "
                            + where + " ORDER BY s.rowid DESC")) {
                for (int i = 0; i < args.size(); i++) {
                    ps.setString(i + 1, args.get(i));
                }
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        String name = rs.getString(1);
                        records.add(new SandboxRecord(name, rs.getString(2), rs.getString(3), rs.getInt(4) != 0,
                                Instant.parse(rs.getString(5)), Instant.parse(rs.getString(6)), labels(c, name), lastRun(c, name)));
                    }
                }
            }
            // as instants, not as their text (whose fraction has 0 to 9 digits); ties newest row first
            records.sort(java.util.Comparator.comparing(SandboxRecord::createdAt).reversed());
            return records;
        });
    }

    private static Map<String, String> labels(Connection c, String name) throws SQLException {
        Map<String, String> labels = new LinkedHashMap<>();
        try (PreparedStatement ps = c.prepareStatement("SELECT key, value FROM label WHERE sandbox = ? ORDER BY key")) {
            ps.setString(1, name);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    labels.put(rs.getString(1), rs.getString(2));
                }
            }
        }
        return labels;
    }

    private static RunRecord lastRun(Connection c, String name) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT id, supervisor_pid, vmm_pid, started_at, terminated_at, status, exit_code, signal, reason, source "
                        + "FROM run WHERE sandbox = ? ORDER BY id DESC LIMIT 1")) {
            ps.setString(1, name);
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) {
                    return null;
                }
                Long supervisorPid = rs.getLong(2);
                supervisorPid = rs.wasNull() ? null : supervisorPid;
                Long vmmPid = rs.getLong(3);
                vmmPid = rs.wasNull() ? null : vmmPid;
                Integer exitCode = rs.getInt(7);
                exitCode = rs.wasNull() ? null : exitCode;
                Integer signal = rs.getInt(8);
                signal = rs.wasNull() ? null : signal;
                return new RunRecord(rs.getLong(1), supervisorPid, vmmPid,
                        Instant.parse(rs.getString(4)), rs.getString(5) == null ? null : Instant.parse(rs.getString(5)),
                        rs.getString(6), exitCode, signal, rs.getString(9), rs.getString(10));
            }
        }
    }

    /** Sets the status of a sandbox. */
    public void updateStatus(String name, String status) {
        inTransaction(c -> {
            setStatus(c, name, status, Instant.now().toString());
            return null;
        });
    }

    /** Records that a run began: the sandbox is running under this supervisor and VMM. */
    public void startRun(String name, long supervisorPid, long vmmPid) {
        inTransaction(c -> {
            String now = Instant.now().toString();
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO run (sandbox, supervisor_pid, vmm_pid, started_at) VALUES (?, ?, ?, ?)")) {
                ps.setString(1, name);
                ps.setLong(2, supervisorPid);
                ps.setLong(3, vmmPid);
                ps.setString(4, now);
                ps.executeUpdate();
            }
            setStatus(c, name, "running", now);
            return null;
        });
    }

    /**
     * Records how the latest run ended and sets the sandbox's status to match, unless the run
     * already has an end (the first observer wins).
     */
    public void finishRun(String name, String status, Integer exitCode, Integer signal, String reason, String source) {
        inTransaction(c -> {
            String now = Instant.now().toString();
            try (PreparedStatement ps = c.prepareStatement(
                    "UPDATE run SET terminated_at = ?, status = ?, exit_code = ?, signal = ?, reason = ?, source = ? "
                            + "WHERE id = (SELECT max(id) FROM run WHERE sandbox = ?) AND terminated_at IS NULL")) {
                ps.setString(1, now);
                ps.setString(2, status);
                ps.setObject(3, exitCode);
                ps.setObject(4, signal);
                ps.setString(5, reason);
                ps.setString(6, source);
                ps.setString(7, name);
                if (ps.executeUpdate() == 0 && !endsAbandonedCreation(c, name)) {
                    return null; // someone recorded this end first
                }
            }
            setStatus(c, name, status, now);
            return null;
        });
    }

    private static void setStatus(Connection c, String name, String status, String now) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("UPDATE sandbox SET status = ?, updated_at = ? WHERE name = ?")) {
            ps.setString(1, status);
            ps.setString(2, now);
            ps.setString(3, name);
            ps.executeUpdate();
        }
    }

    /** A live status with no open run: its creator died before the supervisor took over. */
    private static boolean endsAbandonedCreation(Connection c, String name) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT 1 FROM sandbox s WHERE s.name = ? AND s.status IN ('running', 'draining', 'paused') "
                        + "AND NOT EXISTS (SELECT 1 FROM run r WHERE r.sandbox = s.name AND r.terminated_at IS NULL)")) {
            ps.setString(1, name);
            try (ResultSet rs = ps.executeQuery()) {
                return rs.next();
            }
        }
    }

    /**
     * Forgets the sandbox {@code name} created at {@code createdAt}, with its labels and runs:
     * never a newer sandbox of the same name, recorded since the caller read the old one.
     */
    public void delete(String name, Instant createdAt) {
        inTransaction(c -> {
            try (PreparedStatement ps = c.prepareStatement("DELETE FROM sandbox WHERE name = ? AND created_at = ?")) {
                ps.setString(1, name);
                ps.setString(2, createdAt.toString());
                ps.executeUpdate();
            }
            return null;
        });
    }

    /** Forgets a sandbox with its labels and runs. */
    public void delete(String name) {
        inTransaction(c -> {
            try (PreparedStatement ps = c.prepareStatement("DELETE FROM sandbox WHERE name = ?")) {
                ps.setString(1, name);
                ps.executeUpdate();
            }
            return null;
        });
    }

    interface Work<T> {
        T run(Connection c) throws SQLException;
    }

    /**
     * Runs {@code work} in a transaction that takes the write lock when it begins, so that two
     * writing processes wait for each other instead of failing on a lock upgrade.
     */
    <T> T inTransaction(Work<T> work) {
        return transaction("BEGIN IMMEDIATE", false, work);
    }

    /**
     * Runs reads only: in WAL mode they never wait for a writer, nor make one wait, but for a
     * moment of recovery (a connection that died while writing); they are tried again then.
     */
    <T> T inReadTransaction(Work<T> work) {
        return transaction("BEGIN DEFERRED", true, work);
    }

    /**
     * The transaction is begun and ended by statements on a connection in auto-commit mode: the
     * driver's own {@code commit()} begins the next transaction at once, which took the write
     * lock a second time and could fail, waiting for it, after the work was committed. A lock
     * that the connection's set-up or its {@code BEGIN} meets is tried again until the busy
     * timeout: SQLite reports some at once, without waiting, where waiting could deadlock (two
     * connections switching a new database to WAL together), and nothing is done before.
     *
     * @param readOnly whether {@code work} only reads: then a lock met within it is tried again too
     */
    private <T> T transaction(String begin, boolean readOnly, Work<T> work) {
        long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(BUSY_TIMEOUT_MS);
        for (int attempt = 0; ; attempt++) {
            boolean begun = false;
            try (Connection c = connect(); Statement s = c.createStatement()) {
                s.execute(begin);
                begun = true;
                try {
                    T result = work.run(c);
                    s.execute("COMMIT");
                    return result;
                } catch (SQLException | RuntimeException e) {
                    try {
                        s.execute("ROLLBACK");
                    } catch (SQLException rollback) {
                        e.addSuppressed(rollback); // the failure is what the caller needs to see
                    }
                    throw e;
                }
            } catch (SQLException e) {
                if (diskFailure(e)) {
                    throw new MicrosandboxException(ErrorKind.IO, "sandbox database " + url + ": " + e.getMessage()
                            + "; check the disk under the home (free space, errors)", e);
                }
                if (!busy(e)) {
                    throw new MicrosandboxException(ErrorKind.INTERNAL, "sandbox database " + url + ": " + e.getMessage(), e);
                }
                if (begun && !readOnly || System.nanoTime() - deadline >= 0) {
                    throw new MicrosandboxException(ErrorKind.RESOURCE_LIMIT, "sandbox database " + url + " stayed locked by another process for "
                            + BUSY_TIMEOUT_MS + " ms; try again", e);
                }
                try {
                    Thread.sleep(Math.min(50, 1L << Math.min(attempt, 6)));
                } catch (InterruptedException interrupted) {
                    Thread.currentThread().interrupt();
                    throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for the sandbox database " + url, e);
                }
            }
        }
    }

    /** A full disk or an I/O error (SQLITE_FULL, SQLITE_IOERR and its extended codes): the disk's trouble, not ours. */
    static boolean diskFailure(SQLException e) {
        if (!(e instanceof org.sqlite.SQLiteException lite)) {
            return false;
        }
        int primary = lite.getResultCode().code & 0xff;
        return primary == org.sqlite.SQLiteErrorCode.SQLITE_FULL.code || primary == org.sqlite.SQLiteErrorCode.SQLITE_IOERR.code;
    }

    /** SQLITE_BUSY, or one of its extended codes (recovery, snapshot, timeout). */
    static boolean busy(SQLException e) {
        return e instanceof org.sqlite.SQLiteException lite
                && (lite.getResultCode().code & 0xff) == org.sqlite.SQLiteErrorCode.SQLITE_BUSY.code;
    }
}

package io.microsandbox.store;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.nio.file.Path;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/** The {@code volume} table of the home's database (see {@link SandboxStore}). */
public final class VolumeStore {
    /** One recorded volume; {@code sizeMib} is null for a directory volume. */
    public record Row(String name, String kind, Integer sizeMib, Instant createdAt) {
    }

    private final SandboxStore db;

    private VolumeStore(SandboxStore db) {
        this.db = db;
    }

    /** Opens (creating and migrating as needed) the database under {@code home}. */
    public static VolumeStore open(Path home) {
        return new VolumeStore(SandboxStore.open(home));
    }

    /**
     * Records a new volume.
     *
     * @throws MicrosandboxException {@link ErrorKind#VOLUME_ALREADY_EXISTS} when the name is taken
     */
    public void insert(String name, String kind, Integer sizeMib) {
        db.inTransaction(c -> {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO volume (name, kind, size_mib, created_at) VALUES (?, ?, ?, ?)")) {
                ps.setString(1, name);
                ps.setString(2, kind);
                ps.setObject(3, sizeMib);
                ps.setString(4, Instant.now().toString());
                ps.executeUpdate();
            } catch (SQLException e) {
                if (e.getMessage() != null && e.getMessage().contains("UNIQUE")) {
                    throw new MicrosandboxException(ErrorKind.VOLUME_ALREADY_EXISTS, "a volume named '" + name + "' already exists");
                }
                throw e;
            }
            return null;
        });
    }

    /** The volume named {@code name}, if recorded. */
    public Optional<Row> find(String name) {
        List<Row> rows = query("WHERE name = ?", name);
        return rows.isEmpty() ? Optional.empty() : Optional.of(rows.get(0));
    }

    /** Every volume, by name. */
    public List<Row> list() {
        return query("", null);
    }

    /**
     * Forgets a volume unless a sandbox's configuration mounts it, in one transaction with the
     * sandboxes' rows: a sandbox being recorded meanwhile is either seen here or finds the
     * volume gone (see {@link SandboxStore#insert(String, String, java.util.Map, boolean, String, java.util.Collection)}).
     *
     * @param mountsIt whether a sandbox configuration (JSON) mounts the volume
     * @return the sandboxes that mount it, by name, when it was kept; empty when it was forgotten
     */
    public List<String> deleteUnlessMounted(String name, java.util.function.Predicate<String> mountsIt) {
        return db.inTransaction(c -> {
            List<String> users = new ArrayList<>();
            try (PreparedStatement ps = c.prepareStatement("SELECT name, config FROM sandbox ORDER BY name");
                 ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    if (mountsIt.test(rs.getString(2))) {
                        users.add(rs.getString(1));
                    }
                }
            }
            if (users.isEmpty()) {
                try (PreparedStatement ps = c.prepareStatement("DELETE FROM volume WHERE name = ?")) {
                    ps.setString(1, name);
                    ps.executeUpdate();
                }
            }
            return users;
        });
    }

    /** Forgets a volume (its files are the caller's to delete). */
    public void delete(String name) {
        db.inTransaction(c -> {
            try (PreparedStatement ps = c.prepareStatement("DELETE FROM volume WHERE name = ?")) {
                ps.setString(1, name);
                ps.executeUpdate();
            }
            return null;
        });
    }

    private List<Row> query(String where, String arg) {
        return db.inReadTransaction(c -> {
            List<Row> rows = new ArrayList<>();
            try (PreparedStatement ps = c.prepareStatement("SELECT name, kind, size_mib, created_at FROM volume " + where + " ORDER BY name")) {
                if (arg != null) {
                    ps.setString(1, arg);
                }
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        int size = rs.getInt(3);
                        Integer sizeMib = rs.wasNull() ? null : size;
                        rows.add(new Row(rs.getString(1), rs.getString(2), sizeMib, Instant.parse(rs.getString(4))));
                    }
                }
            }
            return rows;
        });
    }
}

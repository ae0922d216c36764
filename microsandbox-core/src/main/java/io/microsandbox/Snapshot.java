package io.microsandbox;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.microsandbox.runtime.SparseFiles;
import java.io.IOException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.util.Collections;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A disk snapshot of a stopped sandbox: a directory holding {@code snapshot.json} (the
 * manifest) and a sparse copy of the sandbox's writable upper disk. A new sandbox boots from
 * it with {@link SandboxConfig.Builder#snapshot(String)}: a cold boot on a copy of the upper,
 * over the same image.
 *
 * <pre>{@code
 * Snapshot snap = Sandbox.get("build").snapshot("deps-installed");      // the sandbox is stopped
 * try (Sandbox sb = Sandbox.create("job-1", SandboxConfig.builder().snapshot("deps-installed").build())) { ... }
 * Snapshot.list();  Snapshot.get("deps-installed").verify();  Snapshot.remove("deps-installed");
 * }</pre>
 *
 * <p>Its identity, {@link #digest()}, is the SHA-256 of the canonical manifest (keys sorted,
 * no white space), which is also the manifest file's exact content. With an integrity hash
 * recorded ({@link SnapshotOptions.Builder#integrity(boolean)}, on by default) the upper copy
 * is checked by {@link #verify()} and on every boot from it.
 */
public final class Snapshot {
    /** Version of the manifest layout. */
    static final int FORMAT = 1;
    static final String MANIFEST_FILE = "snapshot.json";
    static final String UPPER_FILE = "upper.ext4";
    private static final ObjectMapper CANONICAL = new ObjectMapper().configure(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS, true);

    private final Path path;
    private final String image;
    private final String imageDigest;
    private final String sourceSandbox;
    private final String upperFile;
    private final long sizeBytes;
    private final Instant createdAt;
    private final Map<String, String> labels;
    private final String integrity;
    private final String digest;

    private Snapshot(Path path, JsonNode manifest, String digest) {
        this.path = path;
        this.image = manifest.path("image").asText(null);
        this.imageDigest = manifest.path("imageDigest").asText(null);
        this.sourceSandbox = manifest.path("sourceSandbox").asText(null);
        this.upperFile = manifest.path("upperFile").asText(UPPER_FILE);
        this.sizeBytes = manifest.path("sizeBytes").asLong();
        this.createdAt = Instant.parse(manifest.path("createdAt").asText());
        Map<String, String> l = new TreeMap<>();
        manifest.path("labels").fields().forEachRemaining(e -> l.put(e.getKey(), e.getValue().asText()));
        this.labels = Collections.unmodifiableMap(l);
        this.integrity = manifest.path("integrity").asText(null);
        this.digest = digest;
    }

    /** The snapshot of the default runtime with this bare name, or at this path (a name holding a '/'). */
    public static Snapshot get(String nameOrPath) {
        return Microsandbox.defaultRuntime().snapshots().get(nameOrPath);
    }

    /** Every named snapshot of the default runtime, newest first. */
    public static List<Snapshot> list() {
        return Microsandbox.defaultRuntime().snapshots().list();
    }

    /** Deletes a snapshot of the default runtime (sandboxes booted from it keep their own copy). */
    public static void remove(String nameOrPath) {
        Microsandbox.defaultRuntime().snapshots().remove(nameOrPath);
    }

    /** The snapshot's directory. */
    public Path path() {
        return path;
    }

    /** The directory's name: the bare name of a named snapshot. */
    public String name() {
        return path.getFileName().toString();
    }

    /** The image the source sandbox was booted from (reference or root filesystem directory). */
    public String image() {
        return image;
    }

    /** The OCI manifest digest the source sandbox was pinned to, or null for a directory image. */
    public String imageDigest() {
        return imageDigest;
    }

    /** The sandbox it was taken from. */
    public String sourceSandbox() {
        return sourceSandbox;
    }

    /** The upper disk copy inside {@link #path()}. */
    public Path upperDisk() {
        return path.resolve(upperFile);
    }

    /** Apparent size of the upper disk in bytes (the copy is sparse: far less is allocated). */
    public long sizeBytes() {
        return sizeBytes;
    }

    public Instant createdAt() {
        return createdAt;
    }

    public Map<String, String> labels() {
        return labels;
    }

    /** The recorded content digest of the upper disk ({@code sha256:...}), or null when none was recorded. */
    public String integrity() {
        return integrity;
    }

    /** The snapshot's identity: {@code sha256:} of the canonical manifest. */
    public String digest() {
        return digest;
    }

    /**
     * Checks the upper copy against the recorded integrity hash.
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_INTEGRITY} when it differs or the
     *         copy is missing, {@link ErrorKind#INVALID_ARGUMENT} when no hash was recorded
     */
    public void verify() {
        if (integrity == null) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT,
                    "snapshot '" + name() + "' has no integrity hash to verify (taken with integrity(false))");
        }
        String actual;
        try {
            actual = SparseFiles.digest(upperDisk());
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY,
                    "cannot read the upper disk of snapshot '" + name() + "': " + e.getMessage(), e);
        }
        checkIntegrity(actual);
    }

    /** Compares a content digest of the upper copy with the recorded one. */
    void checkIntegrity(String actual) {
        if (integrity != null && !integrity.equals(actual)) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the upper disk of snapshot '" + name()
                    + "' is corrupt: its content digest is " + actual + ", the manifest records " + integrity);
        }
    }

    /** The canonical manifest bytes: keys sorted, no white space, nulls left out. */
    static byte[] canonicalManifest(Map<String, Object> fields) {
        Map<String, Object> sorted = new TreeMap<>();
        fields.forEach((k, v) -> {
            if (v != null) {
                sorted.put(k, v instanceof Map<?, ?> m ? new TreeMap<>(m) : v);
            }
        });
        try {
            return CANONICAL.writeValueAsBytes(sorted);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Reads a snapshot whose manifest holds {@code bytes}. */
    static Snapshot parse(Path dir, byte[] bytes) {
        try {
            JsonNode manifest = CANONICAL.readTree(bytes);
            if (manifest == null || manifest.path("format").asInt() != FORMAT || !manifest.path("createdAt").isTextual()) {
                throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the manifest of snapshot " + dir
                        + " is not a version " + FORMAT + " snapshot manifest");
            }
            String upper = manifest.path("upperFile").asText(UPPER_FILE);
            if (upper.contains("/") || upper.startsWith(".")) {
                throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the manifest of snapshot " + dir
                        + " names an upper file outside its directory: " + upper);
            }
            return new Snapshot(dir, manifest, sha256(bytes));
        } catch (IOException | java.time.format.DateTimeParseException e) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the manifest of snapshot " + dir + " is unreadable: " + e.getMessage(), e);
        }
    }

    static String sha256(byte[] bytes) {
        try {
            return "sha256:" + HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    @Override
    public String toString() {
        return "Snapshot[" + path + ", " + digest + "]";
    }
}

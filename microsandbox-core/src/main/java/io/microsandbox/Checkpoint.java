package io.microsandbox;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A memory checkpoint of a running sandbox ({@link Sandbox#checkpoint(String)}): a directory
 * holding {@code checkpoint.json} (the manifest), {@code memory.bin} (device state, a QEMU
 * migration stream), {@code ram.bin} (the guest's memory, a sparse file with the pages that
 * hold data) and {@code upper.ext4} (a sparse copy of the upper disk taken while the guest was
 * paused). {@link Sandbox#restore(String, String)} starts a new sandbox from
 * it without booting: its processes, open files and memory are as they were at the checkpoint.
 *
 * <p>A checkpoint is tied to what made it ({@link #vm()}): the QEMU version, machine type,
 * accelerator, CPU model, memory size and vCPU count, the guest kernel's and agent's SHA-256
 * and the image's lower disk. A restore under anything else is refused with
 * {@link ErrorKind#SNAPSHOT_INCOMPATIBLE} before QEMU starts. Its identity, {@link #digest()}, is
 * the SHA-256 of the canonical manifest (the manifest file's exact content).
 */
public final class Checkpoint {
    /** Version 2 keeps guest memory in {@code ram.bin}; version 1 had it in the migration stream. */
    static final int FORMAT = 2;
    static final String MANIFEST_FILE = "checkpoint.json";
    static final String MEMORY_FILE = "memory.bin";
    static final String RAM_FILE = "ram.bin";
    static final String UPPER_FILE = "upper.ext4";
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path path;
    private final JsonNode manifest;
    private final Map<String, String> vm;
    private final Instant createdAt;
    private final String digest;

    private Checkpoint(Path path, JsonNode manifest, String digest) {
        this.path = path;
        this.manifest = manifest;
        Map<String, String> v = new LinkedHashMap<>();
        manifest.path("vm").fields().forEachRemaining(e -> v.put(e.getKey(), e.getValue().asText()));
        this.vm = Collections.unmodifiableMap(v);
        this.createdAt = Instant.parse(manifest.path("createdAt").asText());
        this.digest = digest;
    }

    /** The checkpoint of the default runtime with this bare name, or at this path (a name holding a '/'). */
    public static Checkpoint get(String nameOrPath) {
        return Microsandbox.defaultRuntime().checkpoints().get(nameOrPath);
    }

    /** Every named checkpoint of the default runtime, newest first. */
    public static List<Checkpoint> list() {
        return Microsandbox.defaultRuntime().checkpoints().list();
    }

    /** Deletes a checkpoint of the default runtime; sandboxes restored from it are not affected. */
    public static void remove(String nameOrPath) {
        Microsandbox.defaultRuntime().checkpoints().remove(nameOrPath);
    }

    public Path path() {
        return path;
    }

    /** The directory's name: the bare name of a named checkpoint. */
    public String name() {
        return path.getFileName().toString();
    }

    /** The sandbox it was taken from. */
    public String sourceSandbox() {
        return manifest.path("sourceSandbox").asText();
    }

    /** The source sandbox's configuration; restored sandboxes start from it. */
    public SandboxConfig config() {
        return SandboxConfig.fromJson(manifest.path("config").asText());
    }

    /** The image reference or root directory the source sandbox was booted from. */
    public String image() {
        return manifest.path("image").asText(null);
    }

    /** The OCI manifest digest the source was pinned to, or null for a directory image. */
    public String imageDigest() {
        return manifest.path("imageDigest").asText(null);
    }

    /** The saved device state (a QEMU migration stream without the guest's memory). */
    public Path memoryFile() {
        return path.resolve(MEMORY_FILE);
    }

    /** The saved guest memory: a sparse file as large as the guest's memory, holding the pages that had data. */
    public Path ramFile() {
        return path.resolve(RAM_FILE);
    }

    /** The size of {@link #ramFile()} (the guest's memory size). */
    public long ramBytes() {
        return manifest.path("ramBytes").asLong();
    }

    /** The bytes of guest memory the checkpoint holds (the data in {@link #ramFile()}). */
    public long ramDataBytes() {
        return manifest.path("ramDataBytes").asLong();
    }

    /** The manifest's format: 1 for checkpoints of an earlier microsandbox, which restores refuse. */
    int format() {
        return manifest.path("format").asInt();
    }

    /** Bytes of {@link #memoryFile()}. */
    public long memoryBytes() {
        return manifest.path("memoryBytes").asLong();
    }

    /** The upper disk copy. */
    public Path upperDisk() {
        return path.resolve(UPPER_FILE);
    }

    /** The upper copy's content digest, checked on every restore. */
    public String upperDigest() {
        return manifest.path("upperDigest").asText();
    }

    /** What the checkpoint is tied to: QEMU version, machine, accelerator, CPU, memory, vCPUs, kernel, agent, lower disk. */
    public Map<String, String> vm() {
        return vm;
    }

    public Instant createdAt() {
        return createdAt;
    }

    /** How long the guest was paused to take it, in milliseconds. */
    public long pausedMillis() {
        return manifest.path("pausedMs").asLong();
    }

    /** The checkpoint's identity: {@code sha256:} of the canonical manifest. */
    public String digest() {
        return digest;
    }

    /** Reads a checkpoint whose manifest holds {@code bytes}. */
    static Checkpoint parse(Path dir, byte[] bytes) {
        try {
            JsonNode manifest = JSON.readTree(bytes);
            int format = manifest == null ? 0 : manifest.path("format").asInt();
            // earlier formats are still listed and removable; restores refuse them
            if (format < 1 || format > FORMAT || !manifest.path("vm").isObject()
                    || !manifest.path("config").isTextual() || !manifest.path("createdAt").isTextual()) {
                throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the manifest of checkpoint " + dir
                        + " is not a version 1 to " + FORMAT + " checkpoint manifest");
            }
            return new Checkpoint(dir, manifest, Snapshot.sha256(bytes));
        } catch (IOException | java.time.format.DateTimeParseException e) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the manifest of checkpoint " + dir + " is unreadable: " + e.getMessage(), e);
        }
    }

    @Override
    public String toString() {
        return "Checkpoint[" + path + ", " + digest + "]";
    }
}

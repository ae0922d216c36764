package io.microsandbox.image.oci;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.microsandbox.runtime.FileLocks;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.SandboxPreparer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;

/**
 * The content-addressed image cache under {@code <home>/cache/oci}, shared by every JVM on
 * the home:
 * <pre>
 *   blobs/sha256/&lt;hex&gt;   manifests, configs and layers, each verified against its digest before it got its name
 *   refs/&lt;hash&gt;.json     what a reference resolved to (reference, manifest digest, index digest)
 *   lower/&lt;hex&gt;.ext4    the read-only root disk of a manifest digest, built once
 *   tmp/                 downloads and staging trees in progress, named after what they become
 *   locks/&lt;key&gt;.lock     file locks: one writer per blob, per lower disk, per reference
 * </pre>
 * Nothing gets its final name before it is complete and verified (temporary file, then an
 * atomic rename), so an interrupted or failed pull leaves only temporaries, which the next
 * holder of the same lock deletes.
 */
public final class OciStore {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path root;

    public OciStore(Path home) {
        this.root = home.resolve("cache").resolve("oci");
    }

    public Path root() {
        return root;
    }

    public Path blob(String digest) {
        return root.resolve("blobs").resolve("sha256").resolve(Digests.hex(digest));
    }

    public boolean hasBlob(String digest) {
        return Files.isRegularFile(blob(digest));
    }

    public Path lowerDisk(String manifestDigest) {
        return root.resolve("lower").resolve(Digests.hex(manifestDigest) + ".ext4");
    }

    Path tmpDir() throws IOException {
        return dir(root.resolve("tmp"));
    }

    /** Creates {@code dir} and its parents under the home, all owner-only. */
    Path dir(Path dir) throws IOException {
        OwnerOnly.directory(dir);
        return dir;
    }

    /** A new empty owner-only temporary file whose name starts with {@code key}. */
    Path tempFile(String key) throws IOException {
        return OwnerOnly.createTempFile(tmpDir(), key + ".", ".part");
    }

    /** Deletes the temporaries a crashed or interrupted holder of {@code key}'s lock left. Call with the lock held. */
    void deleteLeftovers(String key) throws IOException {
        Path tmp = tmpDir();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(tmp, key + ".*")) {
            for (Path p : ds) {
                SandboxPreparer.deleteTree(p);
            }
        }
    }

    /** Moves a verified temporary file to its content address. */
    void commitBlob(Path tmp, String digest) throws IOException {
        Path target = blob(digest);
        dir(target.getParent());
        OwnerOnly.restrictFile(tmp);
        Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    /** Stores small verified content (a manifest, a config) under its digest. */
    void putBlob(String digest, byte[] data) throws IOException {
        if (!Digests.of(data).equals(digest)) {
            throw new IllegalArgumentException("content does not match " + digest);
        }
        if (hasBlob(digest)) {
            return;
        }
        Path tmp = tempFile(Digests.hex(digest));
        try {
            Files.write(tmp, data);
            commitBlob(tmp, digest);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** Reads a small blob and checks it against its digest; null when absent, corrupt (then deleted). */
    byte[] readVerified(String digest) throws IOException {
        Path p = blob(digest);
        if (!Files.isRegularFile(p)) {
            return null;
        }
        if (Files.size(p) > RegistryClient.MAX_MANIFEST) {
            // manifests and configs only: one this large (an imported archive's) is not read into memory
            throw RegistryClient.failed("the JSON blob " + digest + " is larger than " + RegistryClient.MAX_MANIFEST + " bytes");
        }
        byte[] data = Files.readAllBytes(p);
        if (!Digests.of(data).equals(digest)) {
            Files.deleteIfExists(p);
            return null;
        }
        return data;
    }

    // references

    private Path refFile(String reference) {
        return root.resolve("refs").resolve(Digests.hex(Digests.of(reference.getBytes(StandardCharsets.UTF_8))) + ".json");
    }

    /** What {@code reference} resolved to when last pulled, or null. */
    public RefRecord readRef(String reference) {
        Path f = refFile(reference);
        try {
            if (!Files.isRegularFile(f)) {
                return null;
            }
            return RefRecord.parse(JSON.readTree(Files.readAllBytes(f)));
        } catch (IOException | RuntimeException e) {
            return null; // unreadable: as if absent, pulled again
        }
    }

    void writeRef(RefRecord record) throws IOException {
        Path f = refFile(record.reference());
        dir(f.getParent());
        Path tmp = OwnerOnly.createTempFile(f.getParent(), "ref-", ".part");
        try {
            Files.write(tmp, record.toJson().getBytes(StandardCharsets.UTF_8));
            Files.move(tmp, f, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    public boolean deleteRef(String reference) throws IOException {
        return Files.deleteIfExists(refFile(reference));
    }

    /** Every recorded reference. */
    public List<RefRecord> refs() throws IOException {
        List<RefRecord> out = new ArrayList<>();
        Path dir = root.resolve("refs");
        if (!Files.isDirectory(dir)) {
            return out;
        }
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, "*.json")) {
            for (Path p : ds) {
                try {
                    out.add(RefRecord.parse(JSON.readTree(Files.readAllBytes(p))));
                } catch (IOException | RuntimeException e) {
                    // a half-written record cannot exist (atomic rename); skip foreign files
                }
            }
        }
        return out;
    }

    /** What a reference resolved to: the platform manifest and, when it came from an index, the index. */
    public record RefRecord(String reference, String manifestDigest, String indexDigest, long pulledAtMillis) {
        String toJson() {
            var n = JSON.createObjectNode();
            n.put("reference", reference);
            n.put("manifest", manifestDigest);
            n.put("index", indexDigest);
            n.put("pulledAt", pulledAtMillis);
            return n.toString();
        }

        static RefRecord parse(JsonNode n) {
            String manifest = n.path("manifest").asText();
            if (!Digests.valid(manifest)) {
                throw new IllegalArgumentException("bad manifest digest");
            }
            JsonNode index = n.get("index");
            return new RefRecord(n.path("reference").asText(), manifest,
                    index == null || index.isNull() ? null : index.asText(), n.path("pulledAt").asLong());
        }
    }

    // locks

    /**
     * Runs {@code action} holding the lock {@code key}: first among this JVM's threads, then
     * among processes (a file lock, freed by the kernel if the holder dies).
     */
    public <T> T withLock(String key, FileLocks.IoAction<T> action) throws IOException {
        return FileLocks.withLock(dir(root.resolve("locks")).resolve(key + ".lock"), "the image cache lock " + key, action);
    }
}

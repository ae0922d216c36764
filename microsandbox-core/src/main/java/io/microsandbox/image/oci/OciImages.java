package io.microsandbox.image.oci;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.PullPolicy;
import io.microsandbox.PullProgressListener;
import io.microsandbox.PullProgressListener.Phase;
import io.microsandbox.RegistryAuth;
import io.microsandbox.image.RootDisks;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.SandboxPreparer;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Pulls OCI images into the {@link OciStore} and builds their read-only lower disks.
 */
public final class OciImages {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** The only platform this runtime boots. */
    public static final String OS = "linux";
    public static final String ARCH = "amd64";

    private final OciStore store;
    private final AtomicInteger blobsDownloaded = new AtomicInteger();
    private final AtomicLong bytesDownloaded = new AtomicLong();

    public OciImages(Path home) {
        this.store = new OciStore(home);
    }

    public OciStore store() {
        return store;
    }

    /** Blobs this instance downloaded from registries (cache misses), for tests and benchmarks. */
    public int blobsDownloaded() {
        return blobsDownloaded.get();
    }

    public long bytesDownloaded() {
        return bytesDownloaded.get();
    }

    /** The image config's defaults for a sandbox: {@code KEY=value} environment, entrypoint, cmd, working dir, user. */
    public record Defaults(List<String> env, List<String> entrypoint, List<String> cmd, String workingDir, String user) {
    }

    public record Layer(String digest, long size, String mediaType, String diffId) {
    }

    /** A pulled image: everything in the cache, verified. */
    public record Image(String reference, String manifestDigest, String indexDigest, String configDigest,
                        List<Layer> layers, Defaults defaults) {
        /** Compressed size of the layers, as downloaded. */
        public long size() {
            return layers.stream().mapToLong(Layer::size).sum();
        }
    }

    /**
     * Resolves {@code reference} through the cache or the registry, as {@code policy} says,
     * downloading what is missing; every blob is verified against its digest before it is
     * stored.
     *
     * @throws MicrosandboxException IMAGE_NOT_FOUND (unknown to the registry, or not cached under
     *         {@link PullPolicy#NEVER}), IMAGE_PULL_FAILED (unreachable, credentials, digests,
     *         platform), INVALID_CONFIG (a malformed reference)
     */
    public Image pull(String reference, PullPolicy policy, RegistryAuth auth, PullProgressListener listener) {
        ImageReference ref = ImageReference.parse(reference);
        String key = ref.toString();
        PullProgressListener l = listener != null ? listener : PullProgressListener.NONE;
        if (policy != PullPolicy.ALWAYS) {
            Image cached = cached(key);
            if (cached != null) {
                l.onProgress(key, null, Phase.DONE, 0, 0);
                return cached;
            }
            if (policy == PullPolicy.NEVER) {
                throw new MicrosandboxException(ErrorKind.IMAGE_NOT_FOUND,
                        "image " + key + " is not in the cache and the pull policy is never");
            }
        }
        try {
            return store.withLock("ref-" + Digests.hex(Digests.of(key.getBytes(java.nio.charset.StandardCharsets.UTF_8))), () -> {
                if (policy != PullPolicy.ALWAYS) {
                    Image cached = cached(key); // pulled by another thread or JVM while we waited
                    if (cached != null) {
                        return cached;
                    }
                }
                return fetch(ref, policy == PullPolicy.ALWAYS, auth, l);
            });
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot write the image cache " + store.root() + ": " + e.getMessage(), e);
        }
    }

    /**
     * The image with this manifest digest from the cache alone (for a sandbox pinned to it),
     * or null when its manifest, config or (without a built lower disk) a layer is missing.
     */
    public Image byManifestDigest(String reference, String manifestDigest) {
        return usableFromCache(reference, manifestDigest, null);
    }

    /**
     * The image of a manifest in the cache, or null when its manifest, its config or (without
     * a built lower disk) a layer is missing, or anything cannot be read.
     */
    private Image usableFromCache(String reference, String manifestDigest, String indexDigest) {
        try {
            byte[] manifest = store.readVerified(manifestDigest);
            if (manifest == null) {
                return null;
            }
            Image img = parse(reference, manifestDigest, indexDigest, JSON.readTree(manifest), null, false, null);
            if (img != null && !Files.isRegularFile(store.lowerDisk(manifestDigest))) {
                for (Layer layer : img.layers()) {
                    if (!store.hasBlob(layer.digest())) {
                        return null;
                    }
                }
            }
            return img;
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    /** Parses a manifest already in the store whose config is in the store (local imports). */
    Image fromStore(String reference, String manifestDigest) throws IOException {
        byte[] manifest = store.readVerified(manifestDigest);
        if (manifest == null) {
            throw new IOException("manifest " + manifestDigest + " is not in the cache");
        }
        Image img = parse(reference, manifestDigest, null, JSON.readTree(manifest), null, false, null);
        if (img == null) {
            throw new IOException("the config of " + manifestDigest + " is not in the cache");
        }
        return img;
    }

    /** The cached image for a fully qualified reference, or null when anything it needs is missing. */
    public Image cached(String key) {
        OciStore.RefRecord rec = store.readRef(key);
        return rec == null ? null : usableFromCache(key, rec.manifestDigest(), rec.indexDigest());
    }

    private Image fetch(ImageReference ref, boolean verifyCached, RegistryAuth auth, PullProgressListener l) throws IOException {
        String key = ref.toString();
        RegistryClient client = new RegistryClient(ref, auth);
        l.onProgress(key, null, Phase.RESOLVING, 0, 0);
        RegistryClient.Manifest m = client.manifest(ref.reference());
        String indexDigest = null;
        if (isIndex(m.mediaType(), m.json())) {
            indexDigest = m.digest();
            String chosen = choosePlatform(key, m.json());
            storeSmall(m.digest(), m.body());
            m = client.manifest(chosen);
        }
        JsonNode manifest = m.json();
        if (!isManifest(m.mediaType(), manifest)) {
            throw RegistryClient.failed("image " + key + ": unsupported manifest type '" + m.mediaType() + "' (schema " + manifest.path("schemaVersion").asInt() + ")");
        }
        storeSmall(m.digest(), m.body());
        Image img = parse(key, m.digest(), indexDigest, manifest, client, verifyCached, l);
        for (Layer layer : img.layers()) {
            ensureBlob(client, layer.digest(), layer.size(), verifyCached, key, l);
        }
        store.writeRef(new OciStore.RefRecord(key, m.digest(), indexDigest, System.currentTimeMillis()));
        return img;
    }

    /**
     * Reads the manifest and its config (fetching the config when {@code client} is given).
     * Null when the config is missing from the cache and there is no client.
     */
    private Image parse(String key, String manifestDigest, String indexDigest, JsonNode manifest, RegistryClient client,
                        boolean verifyCached, PullProgressListener l) throws IOException {
        JsonNode cfgDesc = manifest.path("config");
        String cfgDigest = cfgDesc.path("digest").asText();
        if (!Digests.valid(cfgDigest)) {
            throw RegistryClient.failed("image " + key + ": the manifest has no valid config digest");
        }
        if (cfgDesc.path("size").asLong() > RegistryClient.MAX_MANIFEST) {
            throw RegistryClient.failed("image " + key + ": its config is " + cfgDesc.path("size").asLong() + " bytes, more than the "
                    + RegistryClient.MAX_MANIFEST + " a config may have");
        }
        byte[] cfg = store.readVerified(cfgDigest);
        if (cfg == null || verifyCached && client != null) {
            if (client == null) {
                return null;
            }
            ensureBlob(client, cfgDigest, cfgDesc.path("size").asLong(), verifyCached, key, l);
            cfg = store.readVerified(cfgDigest);
            if (cfg == null) {
                throw RegistryClient.failed("image " + key + ": the config blob " + cfgDigest + " vanished from the cache");
            }
        }
        JsonNode config = JSON.readTree(cfg);
        String os = config.path("os").asText(OS);
        String arch = config.path("architecture").asText(ARCH);
        if (!os.equals(OS) || !arch.equals(ARCH)) {
            throw RegistryClient.failed("image " + key + " is for " + os + "/" + arch + ", not " + OS + "/" + ARCH);
        }
        JsonNode diffIds = config.path("rootfs").path("diff_ids");
        JsonNode layersJson = manifest.path("layers");
        if (!layersJson.isArray() || !diffIds.isArray() || diffIds.size() != layersJson.size()) {
            throw RegistryClient.failed("image " + key + ": " + layersJson.size() + " layers but " + diffIds.size() + " diff_ids in the config");
        }
        List<Layer> layers = new ArrayList<>();
        for (int i = 0; i < layersJson.size(); i++) {
            JsonNode d = layersJson.get(i);
            String digest = d.path("digest").asText();
            String diffId = diffIds.get(i).asText();
            if (!Digests.valid(digest) || !Digests.valid(diffId)) {
                throw RegistryClient.failed("image " + key + ": layer " + i + " has no valid sha256 digest or diff_id");
            }
            String type = d.path("mediaType").asText("");
            if (!(type.contains("tar") || type.isEmpty())) {
                throw RegistryClient.failed("image " + key + ": layer " + digest + " has the unsupported media type " + type);
            }
            layers.add(new Layer(digest, d.path("size").asLong(), type, diffId));
        }
        JsonNode c = config.path("config");
        Defaults defaults = new Defaults(strings(c.path("Env")), strings(c.path("Entrypoint")), strings(c.path("Cmd")),
                c.path("WorkingDir").asText("").isEmpty() ? null : c.path("WorkingDir").asText(),
                c.path("User").asText("").isEmpty() ? null : c.path("User").asText());
        return new Image(key, manifestDigest, indexDigest, cfgDigest, List.copyOf(layers), defaults);
    }

    private static List<String> strings(JsonNode arr) {
        List<String> out = new ArrayList<>();
        if (arr.isArray()) {
            arr.forEach(n -> out.add(n.asText()));
        }
        return List.copyOf(out);
    }

    static boolean isIndex(String mediaType, JsonNode json) {
        return mediaType.equals(RegistryClient.OCI_INDEX) || mediaType.equals(RegistryClient.DOCKER_LIST)
                || (mediaType.isEmpty() && json.has("manifests") && !json.has("layers"));
    }

    static boolean isManifest(String mediaType, JsonNode json) {
        return (mediaType.equals(RegistryClient.OCI_MANIFEST) || mediaType.equals(RegistryClient.DOCKER_MANIFEST)
                || mediaType.isEmpty() || mediaType.equals("application/json")) && json.path("schemaVersion").asInt() == 2 && json.has("config");
    }

    /** The digest of the linux/amd64 manifest of an index. */
    static String choosePlatform(String key, JsonNode index) {
        List<String> seen = new ArrayList<>();
        for (JsonNode d : index.path("manifests")) {
            JsonNode p = d.path("platform");
            String os = p.path("os").asText("");
            String arch = p.path("architecture").asText("");
            seen.add(os + "/" + arch + (p.hasNonNull("variant") ? "/" + p.get("variant").asText() : ""));
            if (os.equals(OS) && arch.equals(ARCH) && Digests.valid(d.path("digest").asText())) {
                return d.path("digest").asText();
            }
        }
        throw RegistryClient.failed("image " + key + " has no " + OS + "/" + ARCH + " manifest (platforms: "
                + (seen.isEmpty() ? "none" : String.join(", ", seen)) + ")");
    }

    private void storeSmall(String digest, byte[] body) throws IOException {
        store.withLock("blob-" + Digests.hex(digest), () -> {
            store.putBlob(digest, body);
            return null;
        });
    }

    /** Makes sure the blob is in the cache, downloading it once however many threads and JVMs ask. */
    private void ensureBlob(RegistryClient client, String digest, long size, boolean verifyCached, String key, PullProgressListener l) throws IOException {
        String hex = Digests.hex(digest);
        store.withLock("blob-" + hex, () -> {
            store.deleteLeftovers(hex);
            Path blob = store.blob(digest);
            if (Files.isRegularFile(blob)) {
                long cached = Files.size(blob);
                if (cached == size && (!verifyCached || Digests.of(blob).equals(digest))) {
                    l.onProgress(key, digest, Phase.CACHED, size, size);
                    return null;
                }
                if (cached != size && Digests.of(blob).equals(digest)) {
                    // the blob is whole: the manifest is what is wrong, and must not evict it for every other image
                    throw RegistryClient.failed("image " + key + ": its manifest gives blob " + digest + " a size of " + size
                            + " bytes, but that blob has " + cached);
                }
                Files.delete(blob); // corrupt: fetched again
            }
            Path tmp = store.tempFile(hex);
            try {
                client.blob(digest, size, tmp, l, key);
                store.commitBlob(tmp, digest);
                blobsDownloaded.incrementAndGet();
                bytesDownloaded.addAndGet(size);
                l.onProgress(key, digest, Phase.DONE, size, size);
            } finally {
                Files.deleteIfExists(tmp);
            }
            return null;
        });
    }

    /**
     * Writes {@code pin}, which names {@code img}'s manifest as a sandbox's, under the lock a
     * collection holds: one under way finishes first (what it deleted, {@link #lowerDisk} then
     * fetches or builds again), and one that begins later reads the pin and keeps the image.
     */
    public void pinned(Path pin, Image img) throws IOException {
        store.withLock("gc", () -> {
            OwnerOnly.write(pin, (img.manifestDigest() + "\n").getBytes(java.nio.charset.StandardCharsets.UTF_8));
            return null;
        });
    }

    /**
     * The read-only lower disk of {@code img}, built once per manifest digest: the layers are
     * applied in order into a staging tree, checked against their digests and diff_ids, and
     * the tree becomes an ext4 image. A cached layer found corrupt is deleted and fetched again
     * (with {@code auth}) once.
     */
    public Path lowerDisk(Image img, RegistryAuth auth, PullProgressListener listener) {
        PullProgressListener l = listener != null ? listener : PullProgressListener.NONE;
        Path target = store.lowerDisk(img.manifestDigest());
        if (Files.isRegularFile(target)) {
            return target;
        }
        try {
            String lockKey = "lower-" + Digests.hex(img.manifestDigest());
            return store.withLock(lockKey, () -> {
                if (Files.isRegularFile(target)) {
                    return target;
                }
                store.deleteLeftovers(lockKey);
                try {
                    build(img, target, lockKey, l);
                } catch (CorruptBlob e) {
                    // refetch what is damaged, then build again once
                    ImageReference ref = ImageReference.parse(img.reference());
                    RegistryClient client = new RegistryClient(ref, auth);
                    for (Layer layer : img.layers()) {
                        ensureBlob(client, layer.digest(), layer.size(), true, img.reference(), l);
                    }
                    build(img, target, lockKey, l);
                }
                return target;
            });
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot build the root disk of " + img.reference() + ": " + e.getMessage(), e);
        }
    }

    private static final class CorruptBlob extends IOException {
        CorruptBlob(String message) {
            super(message);
        }
    }

    private void build(Image img, Path target, String lockKey, PullProgressListener l) throws IOException {
        Path staging = Files.createTempDirectory(store.tmpDir(), lockKey + ".");
        Path disk = null;
        try {
            Posix.chmod(staging, 0755);
            LayerApplier applier = new LayerApplier(staging);
            for (Layer layer : img.layers()) {
                Path blob = store.blob(layer.digest());
                if (!Files.isRegularFile(blob)) {
                    throw new CorruptBlob("layer " + layer.digest() + " is missing from the cache");
                }
                l.onProgress(img.reference(), layer.digest(), Phase.UNPACKING, 0, layer.size());
                MessageDigest compressed = Digests.sha256();
                MessageDigest uncompressed = Digests.sha256();
                try (InputStream raw = new DigestInputStream(Files.newInputStream(blob), compressed);
                     InputStream tar = new DigestInputStream(LayerApplier.decompressed(raw), uncompressed)) {
                    applier.apply(tar);
                    raw.transferTo(java.io.OutputStream.nullOutputStream());
                } catch (IOException | RuntimeException e) {
                    if (!Digests.of(blob).equals(layer.digest())) {
                        Files.deleteIfExists(blob);
                        throw new CorruptBlob("cached layer " + layer.digest() + " is corrupt");
                    }
                    throw RegistryClient.failed("image " + img.reference() + ": cannot unpack layer " + layer.digest() + ": " + e.getMessage(), e);
                }
                String gotBlob = Digests.of(compressed);
                if (!gotBlob.equals(layer.digest())) {
                    Files.deleteIfExists(blob);
                    throw new CorruptBlob("cached layer " + layer.digest() + " is corrupt (reads as " + gotBlob + ")");
                }
                String gotDiff = Digests.of(uncompressed);
                if (!gotDiff.equals(layer.diffId())) {
                    throw RegistryClient.failed("image " + img.reference() + ": diff_id mismatch: layer " + layer.digest()
                            + " unpacks to " + gotDiff + ", the config says " + layer.diffId());
                }
                l.onProgress(img.reference(), layer.digest(), Phase.DONE, layer.size(), layer.size());
            }
            applier.finish();
            disk = OwnerOnly.createTempFile(store.tmpDir(), lockKey + ".", ".ext4");
            RootDisks.buildLowerExt4(staging, disk);
            if (!applier.privileged()) {
                DebugfsFixups.apply(disk, applier.fixups(), store.tmpDir());
            }
            store.dir(target.getParent());
            Files.move(disk, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } finally {
            SandboxPreparer.deleteTree(staging);
            if (disk != null) {
                Files.deleteIfExists(disk);
            }
        }
    }

    /**
     * Deletes blobs and lower disks that neither a recorded reference nor one of the pinned
     * manifests reaches, and that are older than {@code minAge} (a pull in progress records its
     * reference last: its fresh blobs are left alone). Returns the bytes freed. The pins are read
     * under the lock that {@link #pinned} takes too: a sandbox pinned once this begins is kept.
     */
    public long collect(java.util.function.Supplier<java.util.Set<String>> pinnedManifests, java.time.Duration minAge) throws IOException {
        return collect(pinnedManifests, minAge, null);
    }

    /** {@link #collect(java.util.function.Supplier, java.time.Duration)} limited to the blobs and disk of {@code only} (null: everything). */
    public long collect(java.util.function.Supplier<java.util.Set<String>> pinnedManifests, java.time.Duration minAge, Image only)
            throws IOException {
        java.util.Set<String> candidates = only == null ? null : new java.util.HashSet<>();
        if (only != null) {
            candidates.add(only.manifestDigest());
            candidates.add(only.configDigest());
            if (only.indexDigest() != null) {
                candidates.add(only.indexDigest());
            }
            only.layers().forEach(l -> candidates.add(l.digest()));
        }
        final java.util.Set<String> limit = candidates;
        long cutoff = System.currentTimeMillis() - minAge.toMillis();
        return store.withLock("gc", () -> {
            java.util.Set<String> keepManifests = new java.util.HashSet<>(pinnedManifests.get());
            java.util.Set<String> keepBlobs = new java.util.HashSet<>();
            for (OciStore.RefRecord r : store.refs()) {
                keepManifests.add(r.manifestDigest());
                if (r.indexDigest() != null) {
                    keepBlobs.add(r.indexDigest());
                }
            }
            for (String m : keepManifests) {
                if (!Digests.valid(m)) {
                    continue;
                }
                keepBlobs.add(m);
                byte[] manifest = store.readVerified(m);
                if (manifest == null) {
                    continue;
                }
                JsonNode json = JSON.readTree(manifest);
                keepBlobs.add(json.path("config").path("digest").asText());
                for (JsonNode l : json.path("layers")) {
                    keepBlobs.add(l.path("digest").asText());
                }
            }
            long freed = 0;
            Path blobs = store.root().resolve("blobs").resolve("sha256");
            if (Files.isDirectory(blobs)) {
                try (var s = Files.list(blobs)) {
                    for (Path p : s.toList()) {
                        String digest = "sha256:" + p.getFileName();
                        if (!keepBlobs.contains(digest) && (limit == null || limit.contains(digest)) && Files.getLastModifiedTime(p).toMillis() <= cutoff) {
                            freed += Files.size(p);
                            Files.deleteIfExists(p);
                        }
                    }
                }
            }
            Path lower = store.root().resolve("lower");
            if (Files.isDirectory(lower)) {
                try (var s = Files.list(lower)) {
                    for (Path p : s.toList()) {
                        String name = p.getFileName().toString();
                        String digest = "sha256:" + name.substring(0, Math.max(0, name.length() - 5));
                        if (name.endsWith(".ext4") && !keepManifests.contains(digest) && (limit == null || limit.contains(digest))
                                && Files.getLastModifiedTime(p).toMillis() <= cutoff) {
                            freed += Files.size(p);
                            Files.deleteIfExists(p);
                        }
                    }
                }
            }
            return freed;
        });
    }
}

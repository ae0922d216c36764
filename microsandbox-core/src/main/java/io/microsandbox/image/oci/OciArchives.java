package io.microsandbox.image.oci;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.SandboxPreparer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;

/**
 * Local images: an OCI image-layout directory ({@code oci-layout} + {@code index.json} +
 * {@code blobs/}), or a tarball of one ({@code docker save} of Docker 25+ and OCI archives),
 * or a classic {@code docker save} tarball ({@code manifest.json}, {@code <id>/layer.tar}).
 * Their blobs are copied into the {@link OciStore}, each checked against its digest, so that
 * they boot like pulled images; the user's files are only read.
 */
public final class OciArchives {
    private static final ObjectMapper JSON = new ObjectMapper();

    private OciArchives() {
    }

    /** Whether {@code path} is an OCI layout directory. */
    public static boolean isLayout(Path path) {
        return Files.isDirectory(path) && Files.isRegularFile(path.resolve("oci-layout")) && Files.isRegularFile(path.resolve("index.json"));
    }

    /** Imports a layout directory or an image tarball and returns the image (linux/amd64). */
    public static OciImages.Image load(OciImages images, Path path) {
        Path real;
        try {
            real = path.toRealPath();
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IMAGE_NOT_FOUND, "image " + path + " does not exist");
        }
        String reference = "file:" + real;
        try {
            if (Files.isDirectory(real)) {
                if (!isLayout(real)) {
                    throw notAnImage(real, "a directory without oci-layout and index.json");
                }
                return importLayout(images, real, reference);
            }
            Path staging = Files.createTempDirectory(images.store().tmpDir(), "archive.");
            try {
                unpack(real, staging);
                if (isLayout(staging)) {
                    return importLayout(images, staging, reference);
                }
                if (Files.isRegularFile(staging.resolve("manifest.json"))) {
                    return importDockerSave(images, staging, reference);
                }
                throw notAnImage(real, "neither an OCI archive (oci-layout, index.json) nor a docker save tarball (manifest.json)");
            } finally {
                SandboxPreparer.deleteTree(staging);
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IMAGE_NOT_FOUND, "cannot read the image " + real + ": " + e.getMessage(), e);
        }
    }

    private static MicrosandboxException notAnImage(Path p, String why) {
        return new MicrosandboxException(ErrorKind.IMAGE_NOT_FOUND, "no image in " + p + ": " + why);
    }

    /** Unpacks the regular files of a tarball (gzip or not) into {@code dir}; links and devices are skipped. */
    private static void unpack(Path tarball, Path dir) throws IOException {
        try (InputStream raw = Files.newInputStream(tarball);
             TarArchiveInputStream in = new TarArchiveInputStream(LayerApplier.decompressed(raw))) {
            TarArchiveEntry e;
            boolean any = false;
            while ((e = in.getNextEntry()) != null) {
                any = true;
                String rel = LayerApplier.normalize(e.getName());
                if (rel == null || !e.isFile()) {
                    continue;
                }
                Path target = dir.resolve(rel);
                for (Path p = target.getParent(); !p.equals(dir); p = p.getParent()) {
                    if (Files.isSymbolicLink(p)) {
                        throw new IOException("entry " + e.getName() + " goes through a symbolic link");
                    }
                }
                Files.createDirectories(target.getParent());
                try (OutputStream out = OwnerOnly.newOutputStream(target, java.nio.file.StandardOpenOption.CREATE_NEW)) {
                    in.transferTo(out);
                }
            }
            if (!any) {
                throw new IOException("not a tar archive (no entries)");
            }
        } catch (IllegalArgumentException e) {
            throw new IOException("not a tar archive: " + e.getMessage(), e);
        }
    }

    private static OciImages.Image importLayout(OciImages images, Path dir, String reference) throws IOException {
        JsonNode index = JSON.readTree(dir.resolve("index.json").toFile());
        String manifestDigest = chooseManifest(dir, index, reference, 0);
        byte[] manifestBytes = copyBlob(images, dir, manifestDigest, -1);
        if (manifestBytes == null) {
            throw new IOException("the manifest " + manifestDigest + " is larger than " + RegistryClient.MAX_MANIFEST + " bytes");
        }
        JsonNode manifest = JSON.readTree(manifestBytes);
        JsonNode cfg = manifest.path("config");
        copyBlob(images, dir, cfg.path("digest").asText(), cfg.path("size").asLong(-1));
        for (JsonNode l : manifest.path("layers")) {
            copyBlob(images, dir, l.path("digest").asText(), l.path("size").asLong(-1));
        }
        return finish(images, reference, manifestDigest);
    }

    /** Nested indexes followed at most: a real image has one level, an index naming itself would have no end. */
    private static final int MAX_INDEX_NESTING = 4;

    private static String chooseManifest(Path dir, JsonNode index, String reference, int nesting) throws IOException {
        if (nesting > MAX_INDEX_NESTING) {
            throw new IOException("indexes nested more than " + MAX_INDEX_NESTING + " deep");
        }
        JsonNode manifests = index.path("manifests");
        if (!manifests.isArray() || manifests.size() == 0) {
            throw new IOException("index.json lists no manifest");
        }
        for (JsonNode d : manifests) {
            String type = d.path("mediaType").asText("");
            String digest = d.path("digest").asText();
            if (type.equals(RegistryClient.OCI_INDEX) || type.equals(RegistryClient.DOCKER_LIST)) {
                byte[] nested = readBlob(dir, digest);
                return chooseManifest(dir, JSON.readTree(nested), reference, nesting + 1);
            }
        }
        if (manifests.size() == 1 && !manifests.get(0).has("platform")) {
            return manifests.get(0).path("digest").asText();
        }
        return OciImages.choosePlatform(reference, index);
    }

    private static byte[] readBlob(Path dir, String digest) throws IOException {
        if (!Digests.valid(digest)) {
            throw new IOException("invalid digest '" + Json.brief(digest, 100) + "'");
        }
        Path p = dir.resolve("blobs").resolve("sha256").resolve(Digests.hex(digest));
        if (!Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS) || Files.size(p) > RegistryClient.MAX_MANIFEST) {
            throw new IOException("the index " + digest + " is missing or larger than " + RegistryClient.MAX_MANIFEST + " bytes");
        }
        byte[] data = Files.readAllBytes(p);
        if (!Digests.of(data).equals(digest)) {
            throw new IOException("blob " + digest + " does not match its digest");
        }
        return data;
    }

    /** Copies a layout blob into the store, verified; returns its bytes when small (manifests). */
    private static byte[] copyBlob(OciImages images, Path dir, String digest, long size) throws IOException {
        if (!Digests.valid(digest)) {
            throw new IOException("invalid digest '" + digest + "'");
        }
        Path src = dir.resolve("blobs").resolve("sha256").resolve(Digests.hex(digest));
        if (!Files.isRegularFile(src, LinkOption.NOFOLLOW_LINKS)) {
            throw new IOException("blob " + digest + " is missing");
        }
        return copyFile(images, src, digest, size);
    }

    private static byte[] copyFile(OciImages images, Path src, String digest, long size) throws IOException {
        OciStore store = images.store();
        String hex = Digests.hex(digest);
        store.withLock("blob-" + hex, () -> {
            store.deleteLeftovers(hex);
            if (store.hasBlob(digest)) {
                return null;
            }
            Path tmp = store.tempFile(hex);
            try {
                MessageDigest md = Digests.sha256();
                try (InputStream in = new DigestInputStream(Files.newInputStream(src), md);
                     OutputStream out = Files.newOutputStream(tmp)) {
                    in.transferTo(out);
                }
                String got = Digests.of(md);
                if (!got.equals(digest)) {
                    throw new MicrosandboxException(ErrorKind.IMAGE_PULL_FAILED, "digest mismatch: blob " + digest + " of the image reads as " + got);
                }
                if (size >= 0 && Files.size(tmp) != size) {
                    throw new MicrosandboxException(ErrorKind.IMAGE_PULL_FAILED, "blob " + digest + " has " + Files.size(tmp) + " bytes, its descriptor says " + size);
                }
                store.commitBlob(tmp, digest);
            } finally {
                Files.deleteIfExists(tmp);
            }
            return null;
        });
        return Files.size(store.blob(digest)) <= RegistryClient.MAX_MANIFEST ? Files.readAllBytes(store.blob(digest)) : null;
    }

    /** A classic docker save: manifest.json names the config and the layer tars; an OCI manifest is made for them. */
    private static OciImages.Image importDockerSave(OciImages images, Path dir, String reference) throws IOException {
        JsonNode list = JSON.readTree(dir.resolve("manifest.json").toFile());
        if (!list.isArray() || list.size() == 0) {
            throw new IOException("manifest.json lists no image");
        }
        JsonNode entry = list.get(0);
        Path cfgFile = safe(dir, entry.path("Config").asText());
        byte[] cfg = Files.readAllBytes(cfgFile);
        String cfgDigest = Digests.of(cfg);
        copyFile(images, cfgFile, cfgDigest, cfg.length);
        ObjectNode manifest = JSON.createObjectNode();
        manifest.put("schemaVersion", 2);
        manifest.put("mediaType", RegistryClient.OCI_MANIFEST);
        ObjectNode c = manifest.putObject("config");
        c.put("mediaType", "application/vnd.oci.image.config.v1+json");
        c.put("digest", cfgDigest);
        c.put("size", cfg.length);
        ArrayNode layers = manifest.putArray("layers");
        List<String> seen = new ArrayList<>();
        for (JsonNode l : entry.path("Layers")) {
            Path layerFile = safe(dir, l.asText());
            String digest = Digests.of(layerFile);
            copyFile(images, layerFile, digest, Files.size(layerFile));
            ObjectNode d = layers.addObject();
            d.put("mediaType", "application/vnd.oci.image.layer.v1.tar");
            d.put("digest", digest);
            d.put("size", Files.size(layerFile));
            seen.add(digest);
        }
        if (seen.isEmpty()) {
            throw new IOException("manifest.json names no layer");
        }
        byte[] manifestBytes = JSON.writeValueAsBytes(manifest);
        String manifestDigest = Digests.of(manifestBytes);
        images.store().withLock("blob-" + Digests.hex(manifestDigest), () -> {
            images.store().putBlob(manifestDigest, manifestBytes);
            return null;
        });
        return finish(images, reference, manifestDigest);
    }

    private static Path safe(Path dir, String rel) throws IOException {
        String n = LayerApplier.normalize(rel);
        if (n == null) {
            throw new IOException("empty path in manifest.json");
        }
        Path p = dir.resolve(n);
        if (!Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS)) {
            throw new IOException(rel + " named in manifest.json is missing");
        }
        return p;
    }

    private static OciImages.Image finish(OciImages images, String reference, String manifestDigest) throws IOException {
        OciImages.Image img = images.fromStore(reference, manifestDigest);
        images.store().writeRef(new OciStore.RefRecord(reference, manifestDigest, null, System.currentTimeMillis()));
        return img;
    }
}

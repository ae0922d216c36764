package io.microsandbox.image.oci;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.GZIPOutputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.archivers.tar.TarConstants;

/**
 * A small OCI image writer for tests: layers as tar (commons-compress) with gzip or zstd, the
 * image config, manifests (OCI or Docker v2 media types), indexes, and a push through the
 * registry API (blob upload POST + PUT, manifest PUT). Deterministic: fixed timestamps.
 */
final class OciWriter {
    static final ObjectMapper JSON = new ObjectMapper();
    static final Date EPOCH = new Date(1_700_000_000_000L);

    enum Compression { NONE, GZIP, ZSTD }

    /** A blob on disk with its digest, size and media type; diffId for layers. */
    record Blob(Path file, String digest, long size, String mediaType, String diffId) {
        byte[] bytes() throws IOException {
            return Files.readAllBytes(file);
        }
    }

    private final Path work;
    private int counter;

    OciWriter(Path work) throws IOException {
        this.work = Files.createDirectories(work);
    }

    /** Entries of one layer. */
    final class LayerBuilder {
        private final List<TarArchiveEntry> entries = new ArrayList<>();
        private final List<byte[]> contents = new ArrayList<>();

        LayerBuilder dir(String path, int mode, int uid, int gid) {
            TarArchiveEntry e = new TarArchiveEntry(path.endsWith("/") ? path : path + "/");
            return add(e, mode, uid, gid, null);
        }

        LayerBuilder file(String path, String content, int mode, int uid, int gid) {
            return file(path, content.getBytes(StandardCharsets.UTF_8), mode, uid, gid, Map.of());
        }

        LayerBuilder file(String path, byte[] content, int mode, int uid, int gid, Map<String, String> xattrs) {
            TarArchiveEntry e = new TarArchiveEntry(path);
            e.setSize(content.length);
            xattrs.forEach((k, v) -> e.addPaxHeader("SCHILY.xattr." + k, v));
            return add(e, mode, uid, gid, content);
        }

        LayerBuilder symlink(String path, String target) {
            TarArchiveEntry e = new TarArchiveEntry(path, TarConstants.LF_SYMLINK);
            e.setLinkName(target);
            return add(e, 0777, 0, 0, null);
        }

        LayerBuilder hardlink(String path, String existing) {
            TarArchiveEntry e = new TarArchiveEntry(path, TarConstants.LF_LINK);
            e.setLinkName(existing);
            return add(e, 0644, 0, 0, null);
        }

        /** A character device node. */
        LayerBuilder charDevice(String path, int major, int minor, int mode) {
            TarArchiveEntry e = new TarArchiveEntry(path, TarConstants.LF_CHR);
            e.setDevMajor(major);
            e.setDevMinor(minor);
            return add(e, mode, 0, 0, null);
        }

        /** Deletes {@code path} of lower layers. */
        LayerBuilder whiteout(String path) {
            int slash = path.lastIndexOf('/');
            return file(path.substring(0, slash + 1) + ".wh." + path.substring(slash + 1), "", 0644, 0, 0);
        }

        /** Hides what lower layers have in {@code dir}. */
        LayerBuilder opaque(String dir) {
            return file(dir + "/.wh..wh..opq", "", 0644, 0, 0);
        }

        private LayerBuilder add(TarArchiveEntry e, int mode, int uid, int gid, byte[] content) {
            e.setMode(mode);
            e.setUserId(uid);
            e.setGroupId(gid);
            e.setModTime(EPOCH);
            entries.add(e);
            contents.add(content);
            return this;
        }

        Blob build(Compression c) throws IOException {
            ByteArrayOutputStream tar = new ByteArrayOutputStream();
            try (TarArchiveOutputStream out = new TarArchiveOutputStream(tar)) {
                out.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
                out.setBigNumberMode(TarArchiveOutputStream.BIGNUMBER_POSIX);
                for (int i = 0; i < entries.size(); i++) {
                    out.putArchiveEntry(entries.get(i));
                    if (contents.get(i) != null) {
                        out.write(contents.get(i));
                    }
                    out.closeArchiveEntry();
                }
            }
            Path f = work.resolve("layer-" + (counter++) + ".tar");
            Files.write(f, tar.toByteArray());
            return layer(f, c);
        }
    }

    LayerBuilder layer() {
        return new LayerBuilder();
    }

    /** A layer from a tar file on disk, compressed as asked. */
    Blob layer(Path tar, Compression c) throws IOException {
        String diffId = Digests.of(tar);
        if (c == Compression.NONE) {
            return new Blob(tar, diffId, Files.size(tar), "application/vnd.oci.image.layer.v1.tar", diffId);
        }
        Path out = work.resolve(tar.getFileName() + (c == Compression.GZIP ? ".gz" : ".zst"));
        try (OutputStream os = Files.newOutputStream(out);
             OutputStream z = c == Compression.GZIP ? new GZIPOutputStream(os, 1 << 16) : new com.github.luben.zstd.ZstdOutputStream(os);
             InputStream in = Files.newInputStream(tar)) {
            in.transferTo(z);
        }
        return new Blob(out, Digests.of(out), Files.size(out),
                "application/vnd.oci.image.layer.v1.tar+" + (c == Compression.GZIP ? "gzip" : "zstd"), diffId);
    }

    /** The test image's root filesystem as one uncompressed layer (GNU tar, sorted, numeric owners, xattrs). */
    Blob layerFromDirectory(Path rootfs) throws Exception {
        Path tar = work.resolve("base-" + (counter++) + ".tar");
        Process p = new ProcessBuilder("tar", "--sort=name", "--numeric-owner", "--xattrs", "--xattrs-include=*",
                "-C", rootfs.toString(), "-cf", tar.toString(), ".").redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (p.waitFor() != 0) {
            throw new IOException("tar failed: " + out);
        }
        return layer(tar, Compression.NONE);
    }

    Blob blob(byte[] content, String mediaType) throws IOException {
        Path f = work.resolve("blob-" + (counter++));
        Files.write(f, content);
        return new Blob(f, Digests.of(content), content.length, mediaType, null);
    }

    /** An image config: platform, diff_ids, env, working dir, entrypoint, cmd, user. */
    Blob config(String arch, List<Blob> layers, List<String> env, String workdir, List<String> entrypoint, List<String> cmd, String user, boolean docker) throws IOException {
        ObjectNode n = JSON.createObjectNode();
        n.put("architecture", arch);
        n.put("os", "linux");
        ObjectNode c = n.putObject("config");
        ArrayNode e = c.putArray("Env");
        env.forEach(e::add);
        if (workdir != null) {
            c.put("WorkingDir", workdir);
        }
        if (entrypoint != null) {
            ArrayNode a = c.putArray("Entrypoint");
            entrypoint.forEach(a::add);
        }
        if (cmd != null) {
            ArrayNode a = c.putArray("Cmd");
            cmd.forEach(a::add);
        }
        if (user != null) {
            c.put("User", user);
        }
        ObjectNode rootfs = n.putObject("rootfs");
        rootfs.put("type", "layers");
        ArrayNode ids = rootfs.putArray("diff_ids");
        layers.forEach(l -> ids.add(l.diffId()));
        return blob(JSON.writeValueAsBytes(n), docker ? "application/vnd.docker.container.image.v1+json" : "application/vnd.oci.image.config.v1+json");
    }

    /** A manifest; with {@code docker} the Docker v2 schema 2 media types. */
    Blob manifest(Blob config, List<Blob> layers, boolean docker) throws IOException {
        ObjectNode n = JSON.createObjectNode();
        n.put("schemaVersion", 2);
        n.put("mediaType", docker ? RegistryClient.DOCKER_MANIFEST : RegistryClient.OCI_MANIFEST);
        n.set("config", descriptor(config));
        ArrayNode a = n.putArray("layers");
        for (Blob l : layers) {
            ObjectNode d = descriptor(l);
            if (docker) {
                d.put("mediaType", l.mediaType().endsWith("gzip") ? "application/vnd.docker.image.rootfs.diff.tar.gzip" : "application/vnd.docker.image.rootfs.diff.tar");
            }
            a.add(d);
        }
        return blob(JSON.writeValueAsBytes(n), docker ? RegistryClient.DOCKER_MANIFEST : RegistryClient.OCI_MANIFEST);
    }

    /** An OCI index of manifests, each with its platform ("linux/arm64"). */
    Blob index(Map<String, Blob> byPlatform) throws IOException {
        ObjectNode n = JSON.createObjectNode();
        n.put("schemaVersion", 2);
        n.put("mediaType", RegistryClient.OCI_INDEX);
        ArrayNode a = n.putArray("manifests");
        byPlatform.forEach((platform, m) -> {
            ObjectNode d = descriptor(m);
            ObjectNode p = d.putObject("platform");
            p.put("os", platform.split("/")[0]);
            p.put("architecture", platform.split("/")[1]);
            a.add(d);
        });
        return blob(JSON.writeValueAsBytes(n), RegistryClient.OCI_INDEX);
    }

    static ObjectNode descriptor(Blob b) {
        ObjectNode d = JSON.createObjectNode();
        d.put("mediaType", b.mediaType());
        d.put("digest", b.digest());
        d.put("size", b.size());
        return d;
    }

    // push

    private static final HttpClient HTTP = HttpClient.newHttpClient();

    static void pushBlob(TestRegistry reg, String repo, Blob b) throws Exception {
        HttpResponse<Void> head = HTTP.send(req(reg, reg.url() + "/v2/" + repo + "/blobs/" + b.digest())
                .method("HEAD", HttpRequest.BodyPublishers.noBody()).build(), HttpResponse.BodyHandlers.discarding());
        if (head.statusCode() == 200) {
            return;
        }
        HttpResponse<String> start = HTTP.send(req(reg, reg.url() + "/v2/" + repo + "/blobs/uploads/")
                .POST(HttpRequest.BodyPublishers.noBody()).build(), HttpResponse.BodyHandlers.ofString());
        if (start.statusCode() != 202) {
            throw new IOException("upload start: HTTP " + start.statusCode() + " " + start.body());
        }
        String location = start.headers().firstValue("Location").orElseThrow();
        URI uri = URI.create(reg.url()).resolve(location);
        String put = uri + (uri.getQuery() != null ? "&" : "?") + "digest=" + b.digest();
        HttpResponse<String> done = HTTP.send(req(reg, put).header("Content-Type", "application/octet-stream")
                .PUT(HttpRequest.BodyPublishers.ofFile(b.file())).build(), HttpResponse.BodyHandlers.ofString());
        if (done.statusCode() != 201) {
            throw new IOException("upload of " + b.digest() + ": HTTP " + done.statusCode() + " " + done.body());
        }
    }

    static void pushManifest(TestRegistry reg, String repo, String tag, Blob manifest) throws Exception {
        HttpResponse<String> r = HTTP.send(req(reg, reg.url() + "/v2/" + repo + "/manifests/" + tag)
                .header("Content-Type", manifest.mediaType())
                .PUT(HttpRequest.BodyPublishers.ofFile(manifest.file())).build(), HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() != 201) {
            throw new IOException("manifest " + repo + ":" + tag + ": HTTP " + r.statusCode() + " " + r.body());
        }
    }

    /** Pushes config, layers and manifest; returns the manifest digest. */
    static String pushImage(TestRegistry reg, String repo, String tag, Blob config, List<Blob> layers, Blob manifest) throws Exception {
        for (Blob l : layers) {
            pushBlob(reg, repo, l);
        }
        pushBlob(reg, repo, config);
        pushManifest(reg, repo, tag, manifest);
        return manifest.digest();
    }

    private static HttpRequest.Builder req(TestRegistry reg, String url) {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url));
        if (reg.authorization() != null) {
            b.header("Authorization", reg.authorization());
        }
        return b;
    }

    static Map<String, Blob> platforms(Object... kv) {
        Map<String, Blob> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], (Blob) kv[i + 1]);
        }
        return m;
    }

    static String sha256Hex(byte[] b) {
        MessageDigest md = Digests.sha256();
        return java.util.HexFormat.of().formatHex(md.digest(b));
    }

    static OutputStream hashing(OutputStream out, MessageDigest md) {
        return new DigestOutputStream(out, md);
    }
}

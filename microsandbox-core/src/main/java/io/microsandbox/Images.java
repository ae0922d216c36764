package io.microsandbox;

import io.microsandbox.image.oci.ImageReference;
import io.microsandbox.image.oci.OciArchives;
import io.microsandbox.image.oci.OciImages;
import io.microsandbox.image.oci.OciStore;
import io.microsandbox.runtime.RuntimeFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * The image cache of a home: pull ahead of time, list, inspect, remove, prune.
 * <pre>{@code
 * Images images = Images.local();
 * images.pull("python:3.12", null, (img, digest, phase, done, total) -> ...);
 * for (ImageInfo i : images.list()) System.out.println(i.reference() + " " + i.digest());
 * images.remove("python:3.12");   // IMAGE_IN_USE while a sandbox was booted from it
 * images.prune();                 // blobs and disks no image or sandbox needs
 * }</pre>
 */
public final class Images {
    private final Path home;

    private Images(Path home) {
        this.home = home;
    }

    /** The images of the default home ({@code ~/.microsandbox}, {@code microsandbox.home}, {@code MSB_HOME}). */
    public static Images local() {
        return new Images(RuntimeFiles.defaultHome());
    }

    /** The images of another home. */
    public static Images at(Path home) {
        return new Images(home);
    }

    /**
     * Pulls (policy {@link PullPolicy#ALWAYS}) or loads an image (an OCI layout directory or an
     * image tarball given by path) and builds its root disk, so that a later sandbox boots
     * without waiting.
     */
    public ImageInfo pull(String image, RegistryAuth auth, PullProgressListener listener) {
        OciImages oci = new OciImages(home);
        Path asPath = Path.of(image);
        OciImages.Image img = OciArchives.isLayout(asPath) || Files.isRegularFile(asPath)
                ? OciArchives.load(oci, asPath)
                : oci.pull(image, PullPolicy.ALWAYS, auth, listener);
        oci.lowerDisk(img, auth, listener);
        return inspect(img.reference());
    }

    /** Every recorded reference, newest first. */
    public List<ImageInfo> list() {
        OciImages oci = new OciImages(home);
        List<ImageInfo> out = new ArrayList<>();
        for (OciStore.RefRecord r : refs(oci)) {
            ImageInfo info = info(oci, r);
            if (info != null) {
                out.add(info);
            }
        }
        out.sort(Comparator.comparing(ImageInfo::pulledAt).reversed());
        return out;
    }

    /**
     * One image by the reference it was pulled as ({@code python} finds
     * {@code docker.io/library/python:latest}) or loaded from (its path).
     *
     * @throws MicrosandboxException IMAGE_NOT_FOUND when it is not cached
     */
    public ImageInfo inspect(String image) {
        OciImages oci = new OciImages(home);
        OciStore.RefRecord r = oci.store().readRef(key(image));
        ImageInfo info = r == null ? null : info(oci, r);
        if (info == null) {
            throw new MicrosandboxException(ErrorKind.IMAGE_NOT_FOUND, "image " + image + " is not in the cache");
        }
        return info;
    }

    /**
     * Forgets a reference and deletes what only it needed (its blobs and root disk; blobs that
     * other images share stay).
     *
     * @throws MicrosandboxException IMAGE_IN_USE while a sandbox (running or stopped) was booted
     *         from it, or a snapshot or checkpoint of the home needs it; IMAGE_NOT_FOUND when it
     *         is not cached
     */
    public void remove(String image) {
        ImageInfo info = inspect(image);
        if (!info.inUseBy().isEmpty()) {
            throw new MicrosandboxException(ErrorKind.IMAGE_IN_USE,
                    "image " + info.reference() + " is in use by sandbox(es) " + String.join(", ", info.inUseBy()) + "; remove them first");
        }
        List<String> keptBy = new ArrayList<>();
        savedStates().forEach((what, digest) -> {
            if (digest.equals(info.digest())) {
                keptBy.add(what);
            }
        });
        if (!keptBy.isEmpty()) {
            throw new MicrosandboxException(ErrorKind.IMAGE_IN_USE, "image " + info.reference() + " is needed by " + String.join(", ", keptBy)
                    + " (booting from one needs this exact image, which a pull of the tag may not bring back); remove them first");
        }
        OciImages oci = new OciImages(home);
        try {
            OciStore.RefRecord rec = oci.store().readRef(info.reference());
            OciImages.Image img = oci.byManifestDigest(info.reference(), info.digest());
            oci.store().deleteRef(info.reference());
            if (img != null) {
                // only this image's blobs and disk, and only what no other image or sandbox needs;
                // a pull in progress elsewhere keeps its blobs
                img = new OciImages.Image(img.reference(), img.manifestDigest(), rec != null ? rec.indexDigest() : null,
                        img.configDigest(), img.layers(), img.defaults());
                oci.collect(this::pinnedDigests, java.time.Duration.ZERO, img);
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot remove image " + image + ": " + e.getMessage(), e);
        }
    }

    /**
     * Deletes every blob and root disk that no recorded image and no sandbox needs, except
     * those written in the last 10 minutes (a pull in progress records its image last);
     * returns the bytes freed. Directory images' disks go too (one per content of a tree, so
     * each edit of a tree leaves the old one behind) unless a sandbox of the home last booted
     * on it or a checkpoint of the home was taken over it.
     */
    public long prune() {
        return prune(java.time.Duration.ofMinutes(10));
    }

    /** {@link #prune()} with another grace period for fresh files ({@link java.time.Duration#ZERO}: none). */
    public long prune(java.time.Duration olderThan) {
        try {
            return new OciImages(home).collect(this::pinnedDigests, olderThan)
                    + io.microsandbox.image.DirectoryImageCache.collect(home, this::checkpointedDirectoryDisks, olderThan);
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot prune the image cache: " + e.getMessage(), e);
        }
    }

    private String key(String image) {
        Path asPath = Path.of(image);
        if (OciArchives.isLayout(asPath) || Files.isRegularFile(asPath)) {
            try {
                return "file:" + asPath.toRealPath();
            } catch (IOException e) {
                return "file:" + asPath.toAbsolutePath();
            }
        }
        return ImageReference.parse(image).toString();
    }

    private static List<OciStore.RefRecord> refs(OciImages oci) {
        try {
            return oci.store().refs();
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot read the image cache: " + e.getMessage(), e);
        }
    }

    private ImageInfo info(OciImages oci, OciStore.RefRecord r) {
        OciImages.Image img = oci.byManifestDigest(r.reference(), r.manifestDigest());
        if (img == null) {
            return null;
        }
        Path disk = oci.store().lowerDisk(img.manifestDigest());
        long diskBytes = 0;
        try {
            if (Files.isRegularFile(disk)) {
                diskBytes = Files.size(disk);
            }
        } catch (IOException | RuntimeException e) {
            diskBytes = 0;
        }
        List<String> users = new ArrayList<>();
        pins().forEach((name, digest) -> {
            if (digest.equals(img.manifestDigest())) {
                users.add(name);
            }
        });
        OciImages.Defaults d = img.defaults();
        return new ImageInfo(r.reference(), img.manifestDigest(), img.layers().size(), img.size(), diskBytes,
                Instant.ofEpochMilli(r.pulledAtMillis()), d.env(), d.entrypoint(), d.cmd(), d.workingDir(), d.user(), List.copyOf(users));
    }

    /** Sandbox name to the manifest digest it was booted from. */
    private java.util.Map<String, String> pins() {
        java.util.Map<String, String> pins = new java.util.TreeMap<>();
        Path dir = home.resolve("sandboxes");
        if (!Files.isDirectory(dir)) {
            return pins;
        }
        try (var s = Files.list(dir)) {
            for (Path sb : s.toList()) {
                if (sb.getFileName().toString().startsWith(".")) {
                    continue; // a claim or a deletion under way (see ClaimedDirectory), not a sandbox
                }
                Path pin = sb.resolve("image.digest");
                if (Files.isRegularFile(pin)) {
                    pins.put(sb.getFileName().toString(), Files.readString(pin).strip());
                }
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot read the sandboxes of " + home + ": " + e.getMessage(), e);
        }
        return pins;
    }

    /**
     * Snapshots and checkpoints with a bare name (those at other paths are not known here), as
     * {@code snapshot 'x'}, to the manifest digest that booting from them needs.
     */
    private java.util.Map<String, String> savedStates() {
        java.util.Map<String, String> saved = new java.util.TreeMap<>();
        for (Snapshot s : new Snapshots(home).list()) {
            if (s.imageDigest() != null) {
                saved.put("snapshot '" + s.name() + "'", s.imageDigest());
            }
        }
        for (Checkpoint c : new Checkpoints(home).list()) {
            if (c.imageDigest() != null) {
                saved.put("checkpoint '" + c.name() + "'", c.imageDigest());
            }
        }
        return saved;
    }

    /** The directory images' lower disks the home's checkpoints were taken over: their saved guests read those very disks. */
    private java.util.Set<Path> checkpointedDirectoryDisks() {
        java.util.Set<Path> disks = new java.util.HashSet<>();
        for (Checkpoint c : new Checkpoints(home).list()) {
            if (c.imageDigest() == null) {
                disks.add(io.microsandbox.runtime.vmm.VmIdentity.lowerDisk(c.vm()));
            }
        }
        return disks;
    }

    private java.util.Set<String> pinnedDigests() {
        java.util.Set<String> pinned = new java.util.HashSet<>(pins().values());
        pinned.addAll(savedStates().values());
        return pinned;
    }
}

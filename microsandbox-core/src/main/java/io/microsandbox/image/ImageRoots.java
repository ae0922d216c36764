package io.microsandbox.image;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.PullPolicy;
import io.microsandbox.SandboxConfig;
import io.microsandbox.image.oci.Digests;
import io.microsandbox.image.oci.ImageReference;
import io.microsandbox.image.oci.OciArchives;
import io.microsandbox.image.oci.OciImages;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Decides what a sandbox's {@code image} is and turns it into a lower disk plus the image's
 * defaults: an existing directory is a root filesystem tree ({@link DirectoryImageCache}); anything
 * else that reads as a reference is an OCI image, pulled as the config's pull policy says.
 * A sandbox is pinned to the manifest digest it was first booted from (file {@code image.digest}
 * in its directory), so a restart uses the same lower disk under its upper even if the tag
 * has moved since; a directory image's sandbox names the cached disk it booted on (file
 * {@value DirectoryImageCache#PIN}), which keeps that disk from a prune.
 */
public final class ImageRoots {
    private ImageRoots() {
    }

    /** The lower disk to boot and what the image contributes to the sandbox's settings. */
    public record Root(Path lowerDisk, OciImages.Defaults defaults, String manifestDigest, String lowerFormat, boolean lowerReadOnly) {
        Root(Path lowerDisk, OciImages.Defaults defaults, String manifestDigest) {
            this(lowerDisk, defaults, manifestDigest, "raw", true);
        }

        /** The image's environment under the config's: config entries win. */
        public Map<String, String> env(Map<String, String> configured) {
            Map<String, String> env = new LinkedHashMap<>();
            if (defaults != null) {
                for (String kv : defaults.env()) {
                    int eq = kv.indexOf('=');
                    if (eq > 0) {
                        env.put(kv.substring(0, eq), kv.substring(eq + 1));
                    }
                }
            }
            env.putAll(configured);
            return env;
        }

        public String workdir(String configured) {
            return configured != null ? configured : defaults != null ? defaults.workingDir() : null;
        }

        public String user(String configured) {
            return configured != null ? configured : defaults != null ? defaults.user() : null;
        }
    }

    /**
     * The root of a directory image whose lower disk {@link #resolve} built in {@code home}'s
     * cache, found again by its path without walking the tree (a restore has its checkpoint's);
     * null unless {@code lowerDisk} is such a disk, so a path from a checkpoint's manifest can
     * name nothing else on the host.
     */
    public static Root builtDirectoryImage(Path home, Path lowerDisk) {
        Path disk = RootDisks.cachedLowerDisk(DirectoryImageCache.cacheDir(home), lowerDisk);
        return disk == null ? null : new Root(disk, null, null);
    }

    /**
     * @param sandboxDir the sandbox's state directory, where the pin is kept
     * @param freshUpper whether the upper disk is new (then the image is resolved anew and pinned)
     */
    public static Root resolve(Path home, SandboxConfig config, Path sandboxDir, boolean freshUpper) {
        if (config.imageDisk() != null) {
            return DiskImageRoots.overlay(home, config.imageDisk(), sandboxDir, freshUpper);
        }
        String image = config.image();
        Path asPath = Path.of(image);
        boolean layout = OciArchives.isLayout(asPath);
        boolean archive = Files.isRegularFile(asPath);
        if (!layout && !archive && (Files.isDirectory(asPath) || !ImageReference.looksLikeReference(image))) {
            return new Root(DirectoryImageCache.lowerDisk(home, asPath, sandboxDir), null, null);
        }
        OciImages images = new OciImages(home);
        Path pin = sandboxDir.resolve("image.digest");
        OciImages.Image img = null;
        try {
            String pinned = !freshUpper && Files.isRegularFile(pin) ? Files.readString(pin, StandardCharsets.UTF_8).strip() : null;
            if (pinned != null && Digests.valid(pinned)) {
                img = images.byManifestDigest(image, pinned);
                if (img == null && !layout && !archive) {
                    ImageReference ref = ImageReference.parse(image);
                    img = images.pull(ref.registry() + "/" + ref.repository() + "@" + pinned, PullPolicy.IF_MISSING,
                            config.registryAuth(), config.pullProgress());
                }
            }
            if (img == null) {
                img = fetch(images, config, layout || archive);
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot read " + pin + ": " + e.getMessage(), e);
        }
        try {
            // pinned before the disk is built: from here on a prune or remove keeps the image
            images.pinned(pin, img);
            if (images.byManifestDigest(image, img.manifestDigest()) == null) {
                // a remove collected it between the pull and the pin: fetched or loaded again, now pinned
                img = fetch(images, config, layout || archive);
                images.pinned(pin, img);
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot write " + pin + ": " + e.getMessage(), e);
        }
        Path lower = images.lowerDisk(img, config.registryAuth(), config.pullProgress());
        return new Root(lower, img.defaults(), img.manifestDigest());
    }

    /** The config's OCI image, loaded from its layout or archive ({@code local}) or pulled by its pull policy. */
    private static OciImages.Image fetch(OciImages images, SandboxConfig config, boolean local) {
        return local ? OciArchives.load(images, Path.of(config.image()))
                : images.pull(config.image(), config.pullPolicy(), config.registryAuth(), config.pullProgress());
    }

    /**
     * The command line of the image's workload, as Docker forms it: the entrypoint (the
     * config's, which drops the image's cmd, or the image's), then {@code args}, or the cmd
     * when {@code args} is empty.
     *
     * @throws MicrosandboxException INVALID_ARGUMENT when there is nothing to run
     */
    public static java.util.List<String> command(Path home, SandboxConfig config, Path sandboxDir, java.util.List<String> args) {
        java.util.List<String> entrypoint = config.entrypoint();
        java.util.List<String> cmd = java.util.List.of();
        OciImages.Defaults d = null;
        Path pin = sandboxDir.resolve("image.digest");
        try {
            if (Files.isRegularFile(pin)) {
                OciImages.Image img = new OciImages(home).byManifestDigest(String.valueOf(config.image()), Files.readString(pin).strip());
                d = img == null ? null : img.defaults();
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot read " + pin + ": " + e.getMessage(), e);
        }
        if (entrypoint == null) {
            entrypoint = d != null ? d.entrypoint() : java.util.List.of();
            cmd = d != null ? d.cmd() : java.util.List.of();
        }
        java.util.List<String> argv = new java.util.ArrayList<>(entrypoint);
        argv.addAll(args.isEmpty() ? cmd : args);
        if (argv.isEmpty()) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "nothing to run: neither the sandbox config nor the image has an entrypoint or cmd, and no arguments were given");
        }
        return argv;
    }
}

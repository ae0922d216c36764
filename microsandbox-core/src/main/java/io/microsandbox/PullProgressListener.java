package io.microsandbox;

/**
 * Receives the progress of an image pull, per layer. Called on the pulling thread; keep it short.
 */
@FunctionalInterface
public interface PullProgressListener {
    /** What is happening to one blob. */
    enum Phase {
        /** the reference is being resolved to a manifest ({@code digest} is null) */
        RESOLVING,
        /** bytes are arriving: {@code done} of {@code total} */
        DOWNLOADING,
        /** the blob was already in the cache */
        CACHED,
        /** the download is being checked against its digest */
        VERIFYING,
        /** the layer is being unpacked into the root filesystem */
        UNPACKING,
        /** this blob is finished */
        DONE
    }

    /**
     * @param image the image reference being pulled
     * @param digest the blob ({@code sha256:...}), or null for the image as a whole
     * @param phase what happens now
     * @param done bytes so far (downloading), else 0
     * @param total the blob's size in bytes, or 0 when unknown
     */
    void onProgress(String image, String digest, Phase phase, long done, long total);

    /** A listener that ignores everything. */
    PullProgressListener NONE = (image, digest, phase, done, total) -> { };
}

package io.microsandbox;

import java.time.Instant;
import java.util.List;

/**
 * A cached image: the reference it was pulled or loaded as, its manifest digest, the
 * compressed size of its layers, the size of its built root disk (0 when not built yet),
 * and the defaults its config gives a sandbox.
 *
 * @param inUseBy names of the sandboxes booted from it (running or stopped)
 */
public record ImageInfo(String reference, String digest, int layers, long sizeBytes, long diskBytes, Instant pulledAt,
                        List<String> env, List<String> entrypoint, List<String> cmd, String workingDir, String user,
                        List<String> inUseBy) {
}

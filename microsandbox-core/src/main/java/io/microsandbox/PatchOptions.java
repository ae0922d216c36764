package io.microsandbox;

/**
 * Options of a {@link Patch}: the mode of what it creates (null: the kind's default, or the
 * source's for copies) and whether it may replace what the image has at that path.
 */
public record PatchOptions(Integer mode, boolean replace) {
    /** The kind's default mode, and no replacing. */
    public static final PatchOptions DEFAULT = new PatchOptions(null, false);

    /** Creates with {@code mode} (permission bits, e.g. {@code 0600}). */
    public static PatchOptions mode(int mode) {
        return new PatchOptions(mode, false);
    }

    /** May replace what the image has at the path. */
    public static PatchOptions replacing() {
        return new PatchOptions(null, true);
    }

    /** These options, replacing or not. */
    public PatchOptions withReplace(boolean replace) {
        return new PatchOptions(mode, replace);
    }

    /** These options with {@code mode}. */
    public PatchOptions withMode(int mode) {
        return new PatchOptions(mode, replace);
    }
}

package io.microsandbox;

/**
 * Options of a {@link Patch}: the mode of what it creates (null: the kind's default, or the
 * source's for copies) and whether it may replace what the image has at that path.
 */
public record PatchOptions(Integer mode, boolean replace) {
    public static final PatchOptions DEFAULT = new PatchOptions(null, false);

    public static PatchOptions mode(int mode) {
        return new PatchOptions(mode, false);
    }

    public static PatchOptions replacing() {
        return new PatchOptions(null, true);
    }

    public PatchOptions withReplace(boolean replace) {
        return new PatchOptions(mode, replace);
    }

    public PatchOptions withMode(int mode) {
        return new PatchOptions(mode, replace);
    }
}

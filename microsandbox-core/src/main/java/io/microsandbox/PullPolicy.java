package io.microsandbox;

import java.util.Locale;

/** When an OCI image is fetched from its registry. */
public enum PullPolicy {
    /** Resolve the reference at the registry every time; blobs already cached and intact are not downloaded again. */
    ALWAYS,
    /** Use the cached image when there is one, pull otherwise (the default). */
    IF_MISSING,
    /** Never contact a registry: fail with {@link ErrorKind#IMAGE_NOT_FOUND} when the image is not cached. */
    NEVER;

    /** The reference's spelling: {@code always}, {@code if-missing}, {@code never}. */
    public String value() {
        return name().toLowerCase(Locale.ROOT).replace('_', '-');
    }

    /** Parses {@link #value()}; empty or null is the default, {@link #IF_MISSING}. */
    public static PullPolicy parse(String value) {
        if (value == null || value.isBlank()) {
            return IF_MISSING;
        }
        for (PullPolicy p : values()) {
            if (p.value().equalsIgnoreCase(value.strip()) || p.name().equalsIgnoreCase(value.strip())) {
                return p;
            }
        }
        throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "unknown pull policy '" + value + "' (always, if-missing, never)");
    }
}

package io.microsandbox.spring.pool;

import java.util.Locale;

/** Where a pool member came from: the tag {@code source} of {@code microsandbox.pool.created}. */
public enum MemberOrigin {
    /** Booted cold by this pool. */
    BOOT,
    /** Restored from the pool's memory checkpoint ({@code warm-start=checkpoint}). */
    RESTORE,
    /** Left running by an earlier start of the same instance and re-adopted. */
    ADOPTED;

    /** The lower-case name used in tags and the actuator endpoint. */
    public String tag() {
        return name().toLowerCase(Locale.ROOT);
    }
}

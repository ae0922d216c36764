package io.microsandbox.spring.pool;

import io.microsandbox.Metrics;
import java.time.Instant;

/** A read-only look at one pool member, for the endpoint and the meters. */
public interface PoolMemberView {

    String name();

    /** idle, active or retiring. */
    String state();

    int uses();

    Instant createdAt();

    Instant expiresAt();

    /** Marked for rotation when it comes back. */
    boolean evictionPending();

    boolean adopted();

    /** Booted cold, restored from the pool's checkpoint, or re-adopted. */
    MemberOrigin origin();

    /** The latest metrics sample, or null before the first one. */
    Metrics lastMetrics();
}

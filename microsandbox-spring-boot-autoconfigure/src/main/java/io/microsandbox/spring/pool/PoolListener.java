package io.microsandbox.spring.pool;

import java.time.Duration;

/** Events of a {@link SandboxPool}, for meters. Every method has an empty default. */
public interface PoolListener {

    default void memberAdded(PoolMemberView member) {
    }

    default void memberRemoved(String name) {
    }

    default void acquired(Duration waited) {
    }

    default void acquireTimedOut(Duration waited) {
    }

    /** A member started: booted cold (including its warm-up) or restored from the pool's checkpoint. */
    default void created(Duration took, MemberOrigin origin) {
    }

    default void bootFailed(Throwable error) {
    }

    default void returned(Duration lent) {
    }

    /** A member replaced because of its lifetime, its use count or a reset. */
    default void rotated(String name, String reason) {
    }

    /** A member thrown away (timed out, unresponsive, lost, crashed). */
    default void discarded(String name, String reason) {
    }

    /** A member whose VM was found stopped or crashed without the pool asking. */
    default void crashed(String name) {
    }

    default void exec(long nanos, String outcome) {
    }
}

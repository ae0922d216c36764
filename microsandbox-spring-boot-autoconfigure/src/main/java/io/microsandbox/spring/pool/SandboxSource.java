package io.microsandbox.spring.pool;

/**
 * Where {@link io.microsandbox.spring.SandboxTemplate} gets its sandboxes: the pool, or one
 * fresh sandbox per loan when the pool is disabled.
 */
public interface SandboxSource {

    /** The name used in tags and messages (the pool's name). */
    String name();

    /**
     * Lends a running sandbox.
     *
     * @throws io.microsandbox.spring.SandboxPoolExhaustedException when none is free in time
     */
    Lease borrow();

    /** Takes a lent sandbox back; {@link Lease#markBroken(String)} before this discards it. */
    void giveBack(Lease lease);

    /** Called after every command with its duration and outcome (for meters). */
    default void recordExec(long nanos, String outcome) {
    }
}

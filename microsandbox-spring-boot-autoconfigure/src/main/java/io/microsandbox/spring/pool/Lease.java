package io.microsandbox.spring.pool;

import io.microsandbox.Sandbox;

/** One loan of one sandbox. Not thread-safe: it belongs to the borrowing thread. */
public final class Lease {
    private final Sandbox sandbox;
    private final Object owner;
    private final long borrowedNanos = System.nanoTime();
    private String brokenReason;
    private boolean returned;

    public Lease(Sandbox sandbox, Object owner) {
        this.sandbox = sandbox;
        this.owner = owner;
    }

    public Sandbox sandbox() {
        return sandbox;
    }

    public String name() {
        return sandbox.name();
    }

    Object owner() {
        return owner;
    }

    long borrowedNanos() {
        return borrowedNanos;
    }

    /** The sandbox must not be lent again (timed out, unresponsive, lost). */
    public void markBroken(String reason) {
        if (brokenReason == null) {
            brokenReason = reason;
        }
    }

    public String brokenReason() {
        return brokenReason;
    }

    boolean markReturned() {
        boolean first = !returned;
        returned = true;
        return first;
    }
}

package io.microsandbox.spring.pool;

import io.microsandbox.Sandbox;

/**
 * One loan of one sandbox. A template bound to it (inside a callback) may be used from other
 * threads too, so uses and the return are counted under its lock: a use after the return is
 * refused, and a return while a use is under way breaks the lease, so that the sandbox is
 * never lent to the next borrower while an earlier one still works in it.
 */
public final class Lease {
    private final Sandbox sandbox;
    private final Object owner;
    private final long borrowedNanos = System.nanoTime();
    private String brokenReason;
    private boolean returned;
    private int usesUnderWay;

    /** A loan of {@code sandbox} by {@code owner}, the source it goes back to. */
    public Lease(Sandbox sandbox, Object owner) {
        this.sandbox = sandbox;
        this.owner = owner;
    }

    /** The sandbox lent; for the borrower until it gives the lease back. */
    public Sandbox sandbox() {
        return sandbox;
    }

    /** The lent sandbox's name. */
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
    public synchronized void markBroken(String reason) {
        if (brokenReason == null) {
            brokenReason = reason;
        }
    }

    /** Why the sandbox must not be lent again ({@link #markBroken}), or null when it may. */
    public synchronized String brokenReason() {
        return brokenReason;
    }

    /** Starts a use of the sandbox; false once the lease was returned. Each true needs one {@link #endUse()}. */
    public synchronized boolean beginUse() {
        if (returned) {
            return false;
        }
        usesUnderWay++;
        return true;
    }

    /** Ends a use {@link #beginUse()} started. */
    public synchronized void endUse() {
        usesUnderWay--;
    }

    synchronized boolean markReturned() {
        boolean first = !returned;
        returned = true;
        if (first && usesUnderWay > 0) {
            markBroken("in use after its return");
        }
        return first;
    }
}

package io.microsandbox.runtime.agent;

/**
 * A number of bytes shared by several users, such as the frame buffers of every client
 * reader of a supervisor: whoever would go over the budget waits, so the sum of what is
 * allocated stays within a heap that was sized for it.
 */
public final class ByteBudget {
    private final long capacity;
    private long used;

    public ByteBudget(long capacity) {
        this.capacity = capacity;
    }

    /** Waits until {@code bytes} fit, then takes them. More than the capacity waits for an empty budget. */
    public synchronized void acquire(long bytes) throws InterruptedException {
        long wanted = Math.min(bytes, capacity);
        while (used + wanted > capacity) {
            wait();
        }
        used += wanted;
    }

    /** Takes {@code bytes} if they fit now. */
    public synchronized boolean tryAcquire(long bytes) {
        if (used + bytes > capacity) {
            return false;
        }
        used += bytes;
        return true;
    }

    /** Gives back what {@link #acquire} or a successful {@link #tryAcquire} took. */
    public synchronized void release(long bytes) {
        used -= Math.min(bytes, capacity);
        if (used < 0) {
            used = 0;
        }
        notifyAll();
    }

    public synchronized long used() {
        return used;
    }

    public long capacity() {
        return capacity;
    }
}

package io.microsandbox.runtime.supervisor;

import io.microsandbox.runtime.agent.ByteBudget;
import io.microsandbox.runtime.agent.FrameLink;
import java.io.IOException;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.HashMap;
import java.util.Map;

/**
 * Encoded frames waiting for one peer, written by a thread of their own: whoever queues a
 * frame never blocks on the peer, and no lock is held while a write blocks. The queue is
 * bounded in bytes, per queue and (optionally) against a budget shared with other queues.
 */
final class OutboundQueue {
    private static final Entry END = new Entry(new byte[0], false, 0);

    private final String peer;
    private final FrameLink link;
    private final long maxBytes;
    private final ByteBudget shared;
    private final Deque<Entry> frames = new ArrayDeque<>();
    /** Sessions' opening requests the writer has not taken yet, by session id. */
    private final Map<Integer, Entry> requests = new HashMap<>();
    private long queuedBytes;
    /** Bytes of urgent frames queued: outside the bounds above, but not without end. */
    private long urgentBytes;
    private boolean urgentDropLogged;
    private boolean ended;
    /** The frame queued by {@link #offerThenHold} that the writer has not taken yet; null when none. */
    private Entry holdAfter;
    /** Whether the writer waits, after that frame, until {@link #releaseHold}. */
    private boolean held;
    private final java.util.concurrent.CountDownLatch closed = new java.util.concurrent.CountDownLatch(1);

    /**
     * @param peer     who is at the other end, for the log
     * @param maxBytes bytes this queue may hold
     * @param shared   a budget every byte queued here also draws on, or null
     */
    OutboundQueue(String peer, FrameLink link, long maxBytes, ByteBudget shared) {
        this.peer = peer;
        this.link = link;
        this.maxBytes = maxBytes;
        this.shared = shared;
        SupervisorLog.daemon("writer-" + peer, this::writeQueued, e -> link.close()).start();
    }

    /**
     * Queues an encoded frame at the back.
     *
     * @return false when it does not fit in this queue or the shared budget (nothing was queued)
     */
    synchronized boolean offer(byte[] frame) {
        if (ended) {
            return true; // the peer is being closed: the frame has nowhere to go
        }
        return queue(frame, false, 0);
    }

    /**
     * Queues a session's opening request at the back, like {@link #offer(byte[])}, so that
     * {@link #withdraw} can take it back while it waits.
     */
    synchronized boolean offerRequest(byte[] frame, int session) {
        if (ended) {
            return true;
        }
        return queue(frame, false, session);
    }

    /**
     * Takes back {@code session}'s request if the writer has not taken it yet: the peer never
     * hears of the session. Once the writer has taken it, whatever is queued later, urgent
     * frames too, reaches the peer after it.
     *
     * @return true when the request was taken back
     */
    synchronized boolean withdraw(int session) {
        Entry request = requests.remove(session);
        if (request == null) {
            return false;
        }
        // out of the queue, not only its bytes: a client that requests and cancels on a guest
        // that reads nothing must not grow it past its bound
        frames.removeFirstOccurrence(request);
        release(request.bytes.length);
        return true;
    }

    /**
     * Queues an encoded frame at the back, like {@link #offer(byte[])}, and holds every frame
     * after it: once it is written, what is queued (urgent frames too) waits for
     * {@link #releaseHold}, within the bounds. A checkpoint's last frame: nothing may follow it
     * into the guest until the guest runs again.
     */
    synchronized boolean offerThenHold(byte[] frame) {
        return !ended && queue(frame, true, 0);
    }

    /** Lets the writer go on after {@link #offerThenHold}'s frame, or not hold at all if it is still queued. */
    synchronized void releaseHold() {
        holdAfter = null;
        held = false;
        notifyAll();
    }

    private boolean queue(byte[] frame, boolean hold, int session) {
        if (queuedBytes + frame.length > maxBytes || (shared != null && !shared.tryAcquire(frame.length))) {
            return false;
        }
        queuedBytes += frame.length;
        Entry entry = new Entry(frame, true, session);
        frames.addLast(entry);
        if (session != 0) {
            requests.put(session, entry);
        }
        if (hold) {
            holdAfter = entry;
        }
        notifyAll();
        return true;
    }

    /**
     * Queues an encoded frame at the back, waiting up to {@code timeoutMillis} for room (the
     * monitor is released while waiting): back-pressure for data that must not be dropped.
     *
     * @return false when it still did not fit after the wait, or the queue ended
     */
    synchronized boolean offer(byte[] frame, long timeoutMillis) throws InterruptedException {
        long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.MILLISECONDS.toNanos(timeoutMillis);
        while (!offer(frame)) {
            long left = deadline - System.nanoTime();
            if (left <= 0 || ended) {
                return false;
            }
            // woken when the writer frees room; bounded, also for room in a shared budget
            java.util.concurrent.TimeUnit.NANOSECONDS.timedWait(this, Math.min(left, 50_000_000L));
        }
        return true;
    }

    /**
     * What urgent frames may hold at most. They answer what the peer sends (a window for each
     * piece of data, a reply for each name lookup), so a peer that sends but never reads would
     * otherwise have them grow without end; past this it is not reading at all.
     */
    static final long MAX_URGENT_BYTES = 4L << 20;

    /**
     * Queues a small control frame ahead of everything else, outside the bounds of
     * {@link #offer}; dropped (and logged, once while they are) past {@link #MAX_URGENT_BYTES}.
     *
     * @return false when it was dropped
     */
    synchronized boolean urgent(byte[] frame) {
        if (!ended && urgentBytes + frame.length > MAX_URGENT_BYTES) {
            if (!urgentDropLogged) {
                urgentDropLogged = true;
                SupervisorLog.warn(peer + " reads nothing: over " + MAX_URGENT_BYTES + " bytes of control frames wait for it;"
                        + " further ones are dropped while they do");
            }
            return false;
        }
        essential(frame);
        return true;
    }

    /**
     * Queues a control frame the supervisor itself must get through ahead of everything else,
     * whatever the bounds: a shutdown, or a session's cancel (at most one for each session the
     * peer has heard of, so bounded by the sessions open); never in answer to the peer.
     */
    synchronized void essential(byte[] frame) {
        if (ended) {
            return;
        }
        urgentBytes += frame.length;
        frames.addFirst(new Entry(frame, false, 0));
        notifyAll();
    }

    /** Writes what is queued, then closes the link. */
    synchronized void finish() {
        if (!ended) {
            frames.addLast(END);
            ended = true;
            notifyAll();
        }
    }

    /** Drops what is queued and closes the link now. */
    void abort() {
        synchronized (this) {
            ended = true;
            releaseAll();
            frames.clear();
            requests.clear();
            urgentBytes = 0;
            frames.addLast(END);
            notifyAll();
        }
        link.close();
    }

    /** Waits until the writer has finished and closed the link; false on timeout. */
    boolean awaitClosed(long millis) {
        try {
            return closed.await(millis, java.util.concurrent.TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    synchronized long queuedBytes() {
        return queuedBytes;
    }

    private void writeQueued() {
        try {
            while (true) {
                Entry next;
                synchronized (this) {
                    // a hold ends with the queue: what a closing peer is owed is written
                    while (frames.isEmpty() || (held && !ended)) {
                        wait();
                    }
                    next = frames.pollFirst();
                    if (next == holdAfter) {
                        holdAfter = null;
                        held = true;
                    }
                    if (next.session != 0) {
                        requests.remove(next.session); // the peer hears of it now
                    }
                }
                if (next == END) {
                    return;
                }
                link.writeEncoded(next.bytes);
                synchronized (this) {
                    if (next.counted) {
                        release(next.bytes.length);
                    } else {
                        urgentBytes -= next.bytes.length;
                        urgentDropLogged &= urgentBytes > 0; // a new spell of drops is logged again
                    }
                }
            }
        } catch (IOException e) {
            SupervisorLog.warn(peer + " gone: " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            synchronized (this) {
                ended = true;
                releaseAll();
                frames.clear();
                requests.clear();
                urgentBytes = 0;
            }
            link.close();
            closed.countDown();
        }
    }

    synchronized long urgentBytes() {
        return urgentBytes;
    }

    /** Frames waiting for the writer, whatever their kind. */
    synchronized int queuedFrames() {
        return frames.size();
    }

    /**
     * A queued frame; urgent ones are not counted against the bounds of {@link #offer}. A
     * session's request ({@code session} not 0) may be withdrawn while it waits. Compared by
     * identity (a class, not a record): two equal frames are still two entries.
     */
    private static final class Entry {
        final byte[] bytes;
        final boolean counted;
        final int session;

        Entry(byte[] bytes, boolean counted, int session) {
            this.bytes = bytes;
            this.counted = counted;
            this.session = session;
        }
    }

    /** Gives back a written frame's bytes; an abort may have given them back already. */
    private void release(long bytes) {
        long released = Math.min(bytes, queuedBytes);
        queuedBytes -= released;
        if (shared != null) {
            shared.release(released);
        }
        notifyAll(); // a sender waiting for room
    }

    private void releaseAll() {
        if (shared != null && queuedBytes > 0) {
            shared.release(queuedBytes);
        }
        queuedBytes = 0;
    }
}

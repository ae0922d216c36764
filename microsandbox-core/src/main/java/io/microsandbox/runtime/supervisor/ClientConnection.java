package io.microsandbox.runtime.supervisor;

import io.microsandbox.runtime.agent.ByteBudget;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.agent.FrameLink;

/**
 * One connected client: its slot, and the frames waiting for it. A client that lets
 * {@link #MAX_QUEUED_BYTES} pile up unread, or pushes the supervisor over the budget all
 * clients share, is dropped: a client that stops reading costs itself its connection, never
 * the supervisor or the other clients.
 */
final class ClientConnection {
    /** Unread bytes one client may let pile up before it is dropped. */
    static final long MAX_QUEUED_BYTES = 8L << 20;

    final int slot;
    final FrameLink link;
    /** A connection that may only stop, kill or ask the status (see {@link Supervisor#CONTROL_SLOTS}). */
    final boolean control;
    private final OutboundQueue outbound;
    private volatile boolean dropped;

    ClientConnection(int slot, FrameLink link, ByteBudget sharedQueueBudget, boolean control) {
        this.slot = slot;
        this.link = link;
        this.control = control;
        this.outbound = new OutboundQueue("client-" + slot, link, MAX_QUEUED_BYTES, sharedQueueBudget);
    }

    /** Queues a frame; drops the client when it does not fit. Never blocks. */
    void send(Frame frame) {
        if (dropped) {
            return;
        }
        byte[] bytes;
        try {
            bytes = FrameCodec.encode(frame);
        } catch (IllegalArgumentException e) {
            SupervisorLog.warn("not forwarding " + frame + " to client " + slot + ": " + e.getMessage());
            return;
        }
        if (!outbound.offer(bytes)) {
            dropped = true;
            SupervisorLog.warn("dropping client " + slot + ": it left " + outbound.queuedBytes()
                    + " bytes unread (limit " + MAX_QUEUED_BYTES + " per client, and a budget shared by all)");
            outbound.abort();
        }
    }

    /** Sends what is queued, then closes the connection. */
    void finish() {
        outbound.finish();
    }

    /** Waits until what was queued before {@link #finish()} is written; false on timeout. */
    boolean awaitClosed(long millis) {
        return outbound.awaitClosed(millis);
    }

    /** Closes the connection without sending what is queued. */
    void abort() {
        dropped = true;
        outbound.abort();
    }

    @Override
    public String toString() {
        return "client " + slot;
    }
}

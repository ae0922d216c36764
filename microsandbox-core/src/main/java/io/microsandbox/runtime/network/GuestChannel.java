package io.microsandbox.runtime.network;

import io.microsandbox.runtime.agent.Frame;

/** The supervisor's queue of frames to the agent, as the network relay uses it. */
public interface GuestChannel {
    /** Queues a frame at the back, waiting up to {@code timeoutMillis} for room; false when it did not fit. */
    boolean send(Frame frame, long timeoutMillis) throws InterruptedException;

    /**
     * Queues a small control frame ahead of everything else.
     *
     * @return false when it was dropped: the agent has left too many such frames unread
     */
    boolean urgent(Frame frame);
}

package io.microsandbox.runtime.agent;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.Closeable;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.channels.SocketChannel;

/**
 * A frame connection over a Unix socket: one reader thread calls {@link #read()}, any number
 * of threads call {@link #write(Frame)}.
 */
public final class FrameLink implements Closeable {
    private final SocketChannel channel;
    private final DataInputStream in;
    private final OutputStream out;
    private final Object writeLock = new Object();

    public FrameLink(SocketChannel channel) {
        this.channel = channel;
        this.in = new DataInputStream(new BufferedInputStream(ChannelStreams.input(channel), 64 * 1024));
        this.out = new BufferedOutputStream(ChannelStreams.output(channel), 64 * 1024);
    }

    /** The next frame, or null when the peer closed the link between frames. */
    public Frame read() throws IOException {
        return FrameCodec.read(in);
    }

    /** The next frame, its buffer drawn from {@code budget} while it is decoded; null at a clean end. */
    public Frame read(ByteBudget budget) throws IOException {
        return FrameCodec.read(in, budget);
    }

    /** Sends one frame; safe to call from many threads. */
    public void write(Frame frame) throws IOException {
        writeEncoded(FrameCodec.encode(frame));
    }

    /** Sends one frame already encoded by {@link FrameCodec#encode(Frame)}. */
    public void writeEncoded(byte[] bytes) throws IOException {
        synchronized (writeLock) {
            out.write(bytes);
            out.flush();
        }
    }

    /** Closes the link; a blocked {@link #read()} then fails. */
    @Override
    public void close() {
        try {
            channel.close();
        } catch (IOException ignored) {
            // closing is best effort: the peer may already be gone
        }
    }
}

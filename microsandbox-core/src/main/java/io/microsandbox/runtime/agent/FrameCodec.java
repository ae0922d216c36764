package io.microsandbox.runtime.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/**
 * Reads and writes frames: {@code [len u32 BE][id u32 BE][flags u8][CBOR {v, t, p}]}.
 *
 * <p>The decoder treats its input as hostile (the guest is untrusted): the length is checked
 * before anything is allocated, the body must be exactly one CBOR map with an integer
 * {@code v}, a text {@code t} and a map {@code p}, and {@link CborReader} accepts only what
 * can be encoded again, with bounded items and nesting.
 */
public final class FrameCodec {
    private FrameCodec() {
    }

    /** The complete wire form of a frame, length prefix included: one array of its size. */
    public static byte[] encode(Frame frame) {
        ObjectNode body = Json.object();
        body.put("v", Protocol.VERSION);
        body.put("t", frame.type());
        body.set("p", frame.payload());
        long len = Protocol.HEADER_BYTES + CborWriter.size(body);
        if (len > Protocol.MAX_FRAME_BYTES) {
            throw new IllegalArgumentException(frame + " is " + len + " bytes, over the "
                    + Protocol.MAX_FRAME_BYTES + " byte frame limit");
        }
        byte[] out = new byte[4 + (int) len];
        putInt(out, 0, len);
        putInt(out, 4, frame.id());
        out[8] = (byte) frame.flags();
        CborWriter.write(body, out, 4 + Protocol.HEADER_BYTES);
        return out;
    }

    /** Writes one frame; callers serialise concurrent writers. */
    public static void write(OutputStream out, Frame frame) throws IOException {
        out.write(encode(frame));
        out.flush();
    }

    /**
     * Reads one frame.
     *
     * @return the frame, or null when the stream ended cleanly between frames
     * @throws ProtocolException for an oversized, truncated or malformed frame
     */
    public static Frame read(InputStream in) throws IOException {
        return read(in, null);
    }

    /**
     * Reads one frame, taking its buffer from {@code budget} (when not null) for as long as
     * it is being decoded.
     *
     * @return the frame, or null when the stream ended cleanly between frames
     * @throws ProtocolException for an oversized, truncated or malformed frame
     * @throws java.io.InterruptedIOException when interrupted while waiting for the budget
     */
    public static Frame read(InputStream in, ByteBudget budget) throws IOException {
        DataInputStream data = in instanceof DataInputStream d ? d : new DataInputStream(in);
        int first = data.read();
        if (first < 0) {
            return null;
        }
        long len;
        try {
            len = ((long) first << 24) | ((long) data.readUnsignedByte() << 16)
                    | ((long) data.readUnsignedByte() << 8) | data.readUnsignedByte();
        } catch (EOFException e) {
            throw new ProtocolException("stream ended inside a frame length", e);
        }
        if (len > Protocol.MAX_FRAME_BYTES) {
            throw new ProtocolException("frame of " + len + " bytes exceeds the "
                    + Protocol.MAX_FRAME_BYTES + " byte limit");
        }
        if (len < Protocol.HEADER_BYTES + 1) {
            throw new ProtocolException("frame of " + len + " bytes is shorter than its header");
        }
        if (budget != null) {
            try {
                budget.acquire(len);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("interrupted while waiting to read a frame of " + len + " bytes");
            }
        }
        try {
            byte[] buf = new byte[(int) len];
            try {
                data.readFully(buf);
            } catch (EOFException e) {
                throw new ProtocolException("stream ended inside a frame of " + len + " bytes", e);
            }
            return decodeBody(buf);
        } finally {
            if (budget != null) {
                budget.release(len);
            }
        }
    }

    /** Decodes a frame from the bytes that follow its length prefix. */
    static Frame decodeBody(byte[] buf) throws ProtocolException {
        int id = ((buf[0] & 0xFF) << 24) | ((buf[1] & 0xFF) << 16) | ((buf[2] & 0xFF) << 8) | (buf[3] & 0xFF);
        int flags = buf[4] & 0xFF;
        JsonNode body = CborReader.decode(buf, Protocol.HEADER_BYTES, buf.length - Protocol.HEADER_BYTES);
        if (!body.isObject()) {
            throw new ProtocolException("frame body is not a map");
        }
        JsonNode v = body.get("v");
        JsonNode t = body.get("t");
        JsonNode p = body.get("p");
        if (v == null || !v.isIntegralNumber()) {
            throw new ProtocolException("frame body lacks an integer version 'v'");
        }
        if (v.longValue() != Protocol.VERSION) {
            throw new ProtocolException("frame has protocol version " + v.asText()
                    + ", this runtime speaks " + Protocol.VERSION);
        }
        if (t == null || !t.isTextual() || t.textValue().isEmpty()) {
            throw new ProtocolException("frame body lacks a type 't'");
        }
        if (p != null && !p.isObject() && !p.isNull()) {
            throw new ProtocolException("frame payload 'p' of " + t.textValue() + " is not a map");
        }
        return new Frame(id, flags, t.textValue(), p instanceof ObjectNode o ? o : null);
    }

    private static void putInt(byte[] out, int offset, long v) {
        out[offset] = (byte) (v >>> 24);
        out[offset + 1] = (byte) (v >>> 16);
        out[offset + 2] = (byte) (v >>> 8);
        out[offset + 3] = (byte) v;
    }
}

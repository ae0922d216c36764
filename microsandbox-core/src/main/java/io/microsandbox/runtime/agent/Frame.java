package io.microsandbox.runtime.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;

/**
 * One protocol frame: correlation id, flags, message type and payload. See docs/protocol.md.
 *
 * @param id      correlation id; 0 is the connection itself
 * @param flags   {@link Protocol#FLAG_TERMINAL}, {@link Protocol#FLAG_SESSION_START},
 *                {@link Protocol#FLAG_SHUTDOWN}
 * @param type    message type name such as {@code exec.stdout}
 * @param payload message payload (never null)
 */
public record Frame(int id, int flags, String type, ObjectNode payload) {

    public Frame {
        if (type == null || type.isEmpty()) {
            throw new IllegalArgumentException("frame type must not be empty");
        }
        if ((flags & ~0xFF) != 0) {
            throw new IllegalArgumentException("flags must fit in one byte: " + flags);
        }
        if (payload == null) {
            payload = Json.object();
        }
    }

    /** A new frame with an empty payload that callers fill in. */
    public static Frame of(int id, int flags, String type) {
        return new Frame(id, flags, type, Json.object());
    }

    public boolean isTerminal() {
        return (flags & Protocol.FLAG_TERMINAL) != 0;
    }

    public boolean isSessionStart() {
        return (flags & Protocol.FLAG_SESSION_START) != 0;
    }

    /** The text value of a payload field, or null when absent or not text. */
    public String text(String field) {
        JsonNode n = payload.get(field);
        return n != null && n.isTextual() ? n.textValue() : null;
    }

    /** The integer value of a payload field, or null when absent or not an integer. */
    public Long number(String field) {
        JsonNode n = payload.get(field);
        return n != null && n.isIntegralNumber() ? n.longValue() : null;
    }

    /** The bytes of a payload byte-string field, or an empty array when absent or of another type. */
    public byte[] bytes(String field) {
        JsonNode n = payload.get(field);
        if (n != null && n.isBinary()) {
            try {
                return n.binaryValue();
            } catch (java.io.IOException e) {
                return new byte[0];
            }
        }
        return new byte[0];
    }

    @Override
    public String toString() {
        // the type comes from the peer, the guest perhaps: cut short for log lines and errors
        return "Frame[id=" + Integer.toUnsignedString(id) + ", flags=" + flags + ", type=" + Json.brief(type, 64) + "]";
    }
}

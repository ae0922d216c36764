package io.microsandbox.runtime.agent;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * Encodes a Jackson tree as CBOR with definite lengths only. Jackson's generator writes
 * indefinite-length maps for trees; the guest agent's small decoder accepts definite
 * lengths only, which also keeps the encoding canonical and compact.
 *
 * <p>Two passes: {@link #size} first, then {@link #write} into an array the caller made of
 * exactly the frame's size, so that a frame carrying a 256 KiB chunk costs one array of its
 * size, not a growing buffer and two copies (a supervisor relays every chunk of a transfer).
 */
final class CborWriter {
    private static final int MAJOR_UNSIGNED = 0;
    private static final int MAJOR_NEGATIVE = 1;
    private static final int MAJOR_BYTES = 2;
    private static final int MAJOR_TEXT = 3;
    private static final int MAJOR_ARRAY = 4;
    private static final int MAJOR_MAP = 5;

    private final byte[] out;
    private int pos;

    private CborWriter(byte[] out, int pos) {
        this.out = out;
        this.pos = pos;
    }

    /**
     * Writes {@code node} into {@code out} from {@code offset}, which must leave exactly
     * {@link #size}{@code (node)} bytes.
     */
    static void write(JsonNode node, byte[] out, int offset) {
        CborWriter writer = new CborWriter(out, offset);
        writer.write(node);
        if (writer.pos != out.length) {
            throw new IllegalStateException("CBOR of " + (writer.pos - offset) + " bytes written where " + (out.length - offset)
                    + " were made room for");
        }
    }

    /** How many bytes {@code node} takes as CBOR. */
    static long size(JsonNode node) {
        return switch (node.getNodeType()) {
            case OBJECT -> {
                long size = headSize(node.size());
                for (Map.Entry<String, JsonNode> e : node.properties()) {
                    size += textSize(e.getKey()) + size(e.getValue());
                }
                yield size;
            }
            case ARRAY -> {
                long size = headSize(node.size());
                for (JsonNode item : node) {
                    size += size(item);
                }
                yield size;
            }
            case STRING -> textSize(node.textValue());
            case BINARY -> {
                int length = binary(node).length;
                yield headSize(length) + length;
            }
            case BOOLEAN, NULL, MISSING -> 1;
            case NUMBER -> {
                long v = integer(node);
                yield headSize(v >= 0 ? v : -1 - v);
            }
            default -> throw new IllegalArgumentException("cannot encode " + node.getNodeType() + " as CBOR");
        };
    }

    private void write(JsonNode node) {
        switch (node.getNodeType()) {
            case OBJECT -> {
                head(MAJOR_MAP, node.size());
                for (Map.Entry<String, JsonNode> e : node.properties()) {
                    text(e.getKey());
                    write(e.getValue());
                }
            }
            case ARRAY -> {
                head(MAJOR_ARRAY, node.size());
                for (JsonNode item : node) {
                    write(item);
                }
            }
            case STRING -> text(node.textValue());
            case BINARY -> {
                byte[] bytes = binary(node);
                head(MAJOR_BYTES, bytes.length);
                bytes(bytes);
            }
            case BOOLEAN -> out[pos++] = (byte) (node.booleanValue() ? 0xF5 : 0xF4);
            case NULL, MISSING -> out[pos++] = (byte) 0xF6;
            case NUMBER -> {
                long v = integer(node);
                if (v >= 0) {
                    head(MAJOR_UNSIGNED, v);
                } else {
                    head(MAJOR_NEGATIVE, -1 - v);
                }
            }
            default -> throw new IllegalArgumentException("cannot encode " + node.getNodeType() + " as CBOR");
        }
    }

    private static long integer(JsonNode node) {
        if (!node.isIntegralNumber() || !node.canConvertToLong()) {
            throw new IllegalArgumentException("only integers are used by the protocol, got " + node.asText());
        }
        return node.longValue();
    }

    private static long textSize(String s) {
        int length = s.getBytes(StandardCharsets.UTF_8).length;
        return headSize(length) + length;
    }

    private void text(String s) {
        byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
        head(MAJOR_TEXT, bytes.length);
        bytes(bytes);
    }

    private void bytes(byte[] bytes) {
        System.arraycopy(bytes, 0, out, pos, bytes.length);
        pos += bytes.length;
    }

    /** The size of a major type's head with its argument in the shortest form. */
    private static int headSize(long value) {
        if (value < 24) {
            return 1;
        } else if (value <= 0xFF) {
            return 2;
        } else if (value <= 0xFFFF) {
            return 3;
        } else if (value <= 0xFFFFFFFFL) {
            return 5;
        }
        return 9;
    }

    /** Writes a major type with its argument in the shortest form. */
    private void head(int major, long value) {
        int m = major << 5;
        switch (headSize(value)) {
            case 1 -> out[pos++] = (byte) (m | (int) value);
            case 2 -> {
                out[pos++] = (byte) (m | 24);
                be(value, 1);
            }
            case 3 -> {
                out[pos++] = (byte) (m | 25);
                be(value, 2);
            }
            case 5 -> {
                out[pos++] = (byte) (m | 26);
                be(value, 4);
            }
            default -> {
                out[pos++] = (byte) (m | 27);
                be(value, 8);
            }
        }
    }

    private void be(long value, int bytes) {
        for (int i = bytes - 1; i >= 0; i--) {
            out[pos++] = (byte) (value >>> (8 * i));
        }
    }

    private static byte[] binary(JsonNode node) {
        try {
            return node.binaryValue();
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }
}

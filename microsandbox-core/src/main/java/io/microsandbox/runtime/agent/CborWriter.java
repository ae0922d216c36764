package io.microsandbox.runtime.agent;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * Encodes a Jackson tree as CBOR with definite lengths only. Jackson's generator writes
 * indefinite-length maps for trees; the guest agent's small decoder accepts definite
 * lengths only, which also keeps the encoding canonical and compact.
 */
final class CborWriter {
    private static final int MAJOR_UNSIGNED = 0;
    private static final int MAJOR_NEGATIVE = 1;
    private static final int MAJOR_BYTES = 2;
    private static final int MAJOR_TEXT = 3;
    private static final int MAJOR_ARRAY = 4;
    private static final int MAJOR_MAP = 5;

    private final ByteArrayOutputStream out = new ByteArrayOutputStream(256);

    static byte[] encode(JsonNode node) {
        CborWriter writer = new CborWriter();
        writer.write(node);
        return writer.out.toByteArray();
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
                out.writeBytes(bytes);
            }
            case BOOLEAN -> out.write(node.booleanValue() ? 0xF5 : 0xF4);
            case NULL, MISSING -> out.write(0xF6);
            case NUMBER -> number(node);
            default -> throw new IllegalArgumentException("cannot encode " + node.getNodeType() + " as CBOR");
        }
    }

    private void number(JsonNode node) {
        if (!node.isIntegralNumber() || !node.canConvertToLong()) {
            throw new IllegalArgumentException("only integers are used by the protocol, got " + node.asText());
        }
        long v = node.longValue();
        if (v >= 0) {
            head(MAJOR_UNSIGNED, v);
        } else {
            head(MAJOR_NEGATIVE, -1 - v);
        }
    }

    private void text(String s) {
        byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
        head(MAJOR_TEXT, bytes.length);
        out.writeBytes(bytes);
    }

    /** Writes a major type with its argument in the shortest form. */
    private void head(int major, long value) {
        int m = major << 5;
        if (value < 24) {
            out.write(m | (int) value);
        } else if (value <= 0xFF) {
            out.write(m | 24);
            out.write((int) value);
        } else if (value <= 0xFFFF) {
            out.write(m | 25);
            be(value, 2);
        } else if (value <= 0xFFFFFFFFL) {
            out.write(m | 26);
            be(value, 4);
        } else {
            out.write(m | 27);
            be(value, 8);
        }
    }

    private void be(long value, int bytes) {
        for (int i = bytes - 1; i >= 0; i--) {
            out.write((int) (value >>> (8 * i)) & 0xFF);
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

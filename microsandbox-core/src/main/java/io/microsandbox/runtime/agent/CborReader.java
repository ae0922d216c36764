package io.microsandbox.runtime.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Decodes the CBOR subset the protocol uses, and nothing else, into a Jackson tree. The input
 * comes from the guest, which is hostile, so:
 *
 * <ul>
 *   <li>only what {@link CborWriter} can write again is accepted: unsigned and negative
 *       integers within {@code long}, byte and text strings, arrays, maps with text keys,
 *       {@code true}, {@code false} and {@code null}; floats, tags, big numbers, undefined,
 *       other simple values and indefinite lengths are refused, so a decoded frame can always
 *       be forwarded;</li>
 *   <li>every declared length is checked against the bytes that remain before anything is
 *       allocated;</li>
 *   <li>a frame holds at most {@link #MAX_ITEMS} items and {@link #MAX_DEPTH} levels, so
 *       a 4 MiB frame of one-byte items cannot expand into hundreds of megabytes of nodes.</li>
 * </ul>
 */
final class CborReader {
    /** Items (values, keys included) one frame may hold; larger messages are chunked. */
    static final int MAX_ITEMS = 65_536;
    /** Nesting levels of arrays and maps. */
    static final int MAX_DEPTH = 32;

    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    private final byte[] buf;
    private final int end;
    private int pos;
    private int items;

    private CborReader(byte[] buf, int offset, int length) {
        this.buf = buf;
        this.pos = offset;
        this.end = offset + length;
    }

    /**
     * Decodes exactly one item spanning {@code buf[offset, offset + length)}.
     *
     * @throws ProtocolException naming what is wrong and where
     */
    static JsonNode decode(byte[] buf, int offset, int length) throws ProtocolException {
        CborReader reader = new CborReader(buf, offset, length);
        JsonNode node = reader.item(0);
        if (reader.pos != reader.end) {
            throw new ProtocolException((reader.end - reader.pos) + " trailing bytes after the frame body");
        }
        return node;
    }

    private JsonNode item(int depth) throws ProtocolException {
        if (++items > MAX_ITEMS) {
            throw error("more than " + MAX_ITEMS + " items in one frame");
        }
        int initial = nextByte();
        int major = initial >>> 5;
        int info = initial & 0x1F;
        if (major == 7) {
            return simple(info);
        }
        long arg = argument(info);
        switch (major) {
            case 0 -> {
                if (arg < 0) {
                    throw error("unsigned integer beyond the 64-bit signed range");
                }
                return number(arg);
            }
            case 1 -> {
                if (arg < 0) {
                    throw error("negative integer beyond the 64-bit signed range");
                }
                return number(-1 - arg);
            }
            case 2 -> {
                return NODES.binaryNode(take(arg));
            }
            case 3 -> {
                return NODES.textNode(text(arg));
            }
            case 4 -> {
                checkContainer(arg, depth, 1);
                ArrayNode array = NODES.arrayNode();
                for (long i = 0; i < arg; i++) {
                    array.add(item(depth + 1));
                }
                return array;
            }
            case 5 -> {
                checkContainer(arg, depth, 2);
                ObjectNode map = NODES.objectNode();
                for (long i = 0; i < arg; i++) {
                    String key = key();
                    if (map.has(key)) {
                        throw error("duplicate map key '" + printable(key) + "'");
                    }
                    map.set(key, item(depth + 1));
                }
                return map;
            }
            default -> throw error("CBOR tags (major type 6) are not used by the protocol");
        }
    }

    private JsonNode simple(int info) throws ProtocolException {
        return switch (info) {
            case 20 -> NODES.booleanNode(false);
            case 21 -> NODES.booleanNode(true);
            case 22 -> NODES.nullNode();
            case 25, 26, 27 -> throw error("floating-point numbers are not used by the protocol");
            case 31 -> throw error("indefinite-length items are not used by the protocol");
            default -> throw error("simple value " + info + " is not used by the protocol");
        };
    }

    private String key() throws ProtocolException {
        if (++items > MAX_ITEMS) {
            throw error("more than " + MAX_ITEMS + " items in one frame");
        }
        int initial = nextByte();
        if (initial >>> 5 != 3) {
            throw error("map key is not a text string");
        }
        return text(argument(initial & 0x1F));
    }

    private static JsonNode number(long v) {
        return v == (int) v ? NODES.numberNode((int) v) : NODES.numberNode(v);
    }

    /** The argument of a head; negative when it does not fit a signed long. */
    private long argument(int info) throws ProtocolException {
        if (info < 24) {
            return info;
        }
        int bytes = switch (info) {
            case 24 -> 1;
            case 25 -> 2;
            case 26 -> 4;
            case 27 -> 8;
            case 31 -> throw error("indefinite-length items are not used by the protocol");
            default -> throw error("reserved additional information " + info);
        };
        if (end - pos < bytes) {
            throw error("input ends inside an item head");
        }
        long v = 0;
        for (int i = 0; i < bytes; i++) {
            v = (v << 8) | (buf[pos++] & 0xFF);
        }
        return v;
    }

    /** An array or map must fit in what is left, at one byte per item at least. */
    private void checkContainer(long count, int depth, int bytesPerEntry) throws ProtocolException {
        if (depth + 1 > MAX_DEPTH) {
            throw error("nesting deeper than " + MAX_DEPTH + " levels");
        }
        if (count < 0 || count > (long) (end - pos) / bytesPerEntry) {
            throw error("container declares " + Long.toUnsignedString(count) + " entries but only "
                    + (end - pos) + " bytes remain");
        }
        if (count * bytesPerEntry > MAX_ITEMS - items) {
            throw error("more than " + MAX_ITEMS + " items in one frame");
        }
    }

    private byte[] take(long length) throws ProtocolException {
        if (length < 0 || length > end - pos) {
            throw error("string declares " + Long.toUnsignedString(length) + " bytes but only "
                    + (end - pos) + " remain");
        }
        byte[] out = Arrays.copyOfRange(buf, pos, pos + (int) length);
        pos += (int) length;
        return out;
    }

    private String text(long length) throws ProtocolException {
        if (length < 0 || length > end - pos) {
            throw error("text declares " + Long.toUnsignedString(length) + " bytes but only "
                    + (end - pos) + " remain");
        }
        try {
            String s = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(buf, pos, (int) length))
                    .toString();
            pos += (int) length;
            return s;
        } catch (CharacterCodingException e) {
            throw error("text string is not valid UTF-8");
        }
    }

    private int nextByte() throws ProtocolException {
        if (pos >= end) {
            throw error("input ends before an item");
        }
        return buf[pos++] & 0xFF;
    }

    private ProtocolException error(String what) {
        return new ProtocolException("malformed frame body at byte " + pos + ": " + what);
    }

    private static String printable(String s) {
        String cut = s.length() > 40 ? s.substring(0, 40) + "..." : s;
        return cut.replaceAll("\\p{Cntrl}", "?");
    }
}

package io.microsandbox.runtime;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The runtime's JSON: Jackson's tree nodes, read and written with jackson-core's streaming
 * parser and generator, never with databind's {@code ObjectMapper}. Everything a supervisor
 * reads and writes (its spec, QMP, its run log, network settings, metrics) goes through here,
 * because a mapper's start-up (bean introspection, serializer and deserializer caches, date
 * formats with their locales; about 450 classes) cost every supervisor about 6.5 MiB of memory
 * (an idle one: 58.3 MiB RSS with it, 51.7 MiB without). The JSON written is the mapper's
 * (same field order, escaping and pretty printer), so files written by either read back with
 * either. Nesting is limited to {@value #MAX_DEPTH} levels: nothing the runtime reads nests
 * deeper, and reading and writing recurse on a supervisor's small thread stacks.
 *
 * <p>{@link JsonNode#toString()} starts a mapper of its own: code that runs in a supervisor
 * uses {@link #toText} instead.
 */
public final class Json {
    /** Nesting levels of arrays and objects that {@link #parse} accepts. */
    public static final int MAX_DEPTH = 64;
    /** The longest text {@link #brief} gives. */
    static final int BRIEF_CHARS = 256;

    private static final JsonFactory FACTORY = JsonFactory.builder()
            .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(MAX_DEPTH).build())
            .build();
    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    private Json() {
    }

    /** A new, empty object node. */
    public static ObjectNode object() {
        return NODES.objectNode();
    }

    /** A new object node of {@code map}'s entries, converted as {@link #tree} converts values. */
    public static ObjectNode object(Map<String, ?> map) {
        return (ObjectNode) tree(map);
    }

    /** A new, empty array node. */
    public static ArrayNode array() {
        return NODES.arrayNode();
    }

    /**
     * Parses exactly one JSON value (anything after it but white space is an error). Numbers
     * become nodes as a mapper makes them: integers the smallest of int, long and big integer
     * nodes, others doubles; a repeated key keeps its last value.
     *
     * @throws IOException for text that is no JSON, naming where (a {@link com.fasterxml.jackson.core.JsonProcessingException})
     */
    public static JsonNode parse(byte[] json) throws IOException {
        try (JsonParser parser = FACTORY.createParser(json)) {
            return parseOne(parser);
        }
    }

    /** As {@link #parse(byte[])}, of a string. */
    public static JsonNode parse(String json) throws IOException {
        try (JsonParser parser = FACTORY.createParser(json)) {
            return parseOne(parser);
        }
    }

    /** As {@link #parse(byte[])}, of a file's content. */
    public static JsonNode parse(Path file) throws IOException {
        return parse(Files.readAllBytes(file));
    }

    /** {@code node} as compact JSON in UTF-8. */
    public static byte[] bytes(JsonNode node) {
        return write(node, false);
    }

    /** {@code node} as JSON in UTF-8, indented as a mapper's default pretty printer does. */
    public static byte[] pretty(JsonNode node) {
        return write(node, true);
    }

    /**
     * {@code node} as compact JSON text, cut to {@value #BRIEF_CHARS} characters: for a log line
     * or an error message about something from the guest, which controls its size.
     */
    public static String brief(JsonNode node) {
        return brief(toText(node), BRIEF_CHARS);
    }

    /** {@code text} cut to {@code max} characters, saying how long it was: for text a peer controls. */
    public static String brief(String text, int max) {
        return text.length() <= max ? text : text.substring(0, max) + "... (" + text.length() + " characters)";
    }

    /** {@code node} as compact JSON text; what {@link JsonNode#toString()} gives, without a mapper. */
    public static String toText(JsonNode node) {
        StringWriter out = new StringWriter();
        try (JsonGenerator generator = FACTORY.createGenerator(out)) {
            write(generator, node);
        } catch (IOException e) {
            // only nesting beyond the generator's limit fails in memory
            throw new UncheckedIOException(e);
        }
        return out.toString();
    }

    /**
     * The tree of a plain Java value: maps with string keys, collections, strings, numbers,
     * booleans, byte arrays, nodes and null, nested.
     *
     * @throws IllegalArgumentException for any other value, naming its class
     */
    public static JsonNode tree(Object value) {
        if (value == null) {
            return NODES.nullNode();
        } else if (value instanceof JsonNode node) {
            return node;
        } else if (value instanceof String s) {
            return NODES.textNode(s);
        } else if (value instanceof Boolean b) {
            return NODES.booleanNode(b);
        } else if (value instanceof Integer || value instanceof Short || value instanceof Byte) {
            return NODES.numberNode(((Number) value).intValue());
        } else if (value instanceof Long l) {
            return NODES.numberNode(l);
        } else if (value instanceof Double d) {
            return NODES.numberNode(d);
        } else if (value instanceof Float f) {
            return NODES.numberNode(f);
        } else if (value instanceof java.math.BigInteger big) {
            return NODES.numberNode(big);
        } else if (value instanceof java.math.BigDecimal big) {
            return NODES.numberNode(big);
        } else if (value instanceof byte[] bytes) {
            return NODES.binaryNode(bytes);
        } else if (value instanceof Map<?, ?> map) {
            ObjectNode object = object();
            for (Map.Entry<?, ?> e : map.entrySet()) {
                if (!(e.getKey() instanceof String key)) {
                    throw new IllegalArgumentException("a map key for JSON must be a string, not " + e.getKey());
                }
                object.set(key, tree(e.getValue()));
            }
            return object;
        } else if (value instanceof Collection<?> items) {
            ArrayNode array = array();
            items.forEach(item -> array.add(tree(item)));
            return array;
        }
        throw new IllegalArgumentException("no JSON form for a " + value.getClass().getName());
    }

    /**
     * The plain Java value of a tree, as a mapper reads JSON into {@code Object}: objects as
     * ordered maps, arrays as lists, integers as the smallest of Integer, Long and BigInteger,
     * other numbers as Double, and strings, booleans and null.
     */
    public static Object plain(JsonNode node) {
        if (node == null || node.isNull() || node.isMissingNode()) {
            return null;
        } else if (node.isObject()) {
            Map<String, Object> map = new LinkedHashMap<>();
            node.properties().forEach(e -> map.put(e.getKey(), plain(e.getValue())));
            return map;
        } else if (node.isArray()) {
            List<Object> list = new ArrayList<>(node.size());
            node.forEach(item -> list.add(plain(item)));
            return list;
        } else if (node.isTextual()) {
            return node.textValue();
        } else if (node.isBoolean()) {
            return node.booleanValue();
        } else if (node.isBinary()) {
            return binary(node);
        } else if (node.isNumber()) {
            return node.numberValue();
        }
        throw new IllegalArgumentException("no plain value for a " + node.getNodeType() + " node");
    }

    /**
     * The text of {@code object}'s {@code field}: null when it is absent or null.
     *
     * @throws IOException when it holds anything but text, naming the field
     */
    public static String string(JsonNode object, String field) throws IOException {
        JsonNode value = present(object, field);
        if (value == null) {
            return null;
        }
        if (!value.isTextual()) {
            throw wrongType(field, "text", value);
        }
        return value.textValue();
    }

    /**
     * The integer of {@code object}'s {@code field}: 0 when it is absent or null.
     *
     * @throws IOException when it holds anything but an integer within long, naming the field
     */
    public static long integer(JsonNode object, String field) throws IOException {
        JsonNode value = present(object, field);
        if (value == null) {
            return 0;
        }
        if (!value.isIntegralNumber() || !value.canConvertToLong()) {
            throw wrongType(field, "an integer", value);
        }
        return value.longValue();
    }

    /**
     * The boolean of {@code object}'s {@code field}: false when it is absent or null.
     *
     * @throws IOException when it holds anything but a boolean, naming the field
     */
    public static boolean bool(JsonNode object, String field) throws IOException {
        JsonNode value = present(object, field);
        if (value == null) {
            return false;
        }
        if (!value.isBoolean()) {
            throw wrongType(field, "true or false", value);
        }
        return value.booleanValue();
    }

    /**
     * The object of {@code object}'s {@code field}: null when it is absent or null.
     *
     * @throws IOException when it holds anything but an object, naming the field
     */
    public static ObjectNode object(JsonNode object, String field) throws IOException {
        JsonNode value = present(object, field);
        if (value == null) {
            return null;
        }
        if (!value.isObject()) {
            throw wrongType(field, "a JSON object", value);
        }
        return (ObjectNode) value;
    }

    /**
     * The strings of {@code object}'s array {@code field}: null when it is absent or null.
     *
     * @throws IOException when it holds anything but an array of text, naming the field
     */
    public static List<String> strings(JsonNode object, String field) throws IOException {
        JsonNode value = present(object, field);
        if (value == null) {
            return null;
        }
        if (!value.isArray()) {
            throw wrongType(field, "an array of text", value);
        }
        List<String> texts = new ArrayList<>(value.size());
        for (JsonNode item : value) {
            if (!item.isTextual()) {
                throw new IOException("\"" + field + "\" must be an array of text, it holds " + item.getNodeType());
            }
            texts.add(item.textValue());
        }
        return texts;
    }

    /** {@code object}'s {@code field}, or null when it is absent or null. */
    private static JsonNode present(JsonNode object, String field) {
        JsonNode value = object.path(field);
        return value.isMissingNode() || value.isNull() ? null : value;
    }

    private static IOException wrongType(String field, String expected, JsonNode value) {
        return new IOException("\"" + field + "\" must be " + expected + ", not " + value.getNodeType());
    }

    private static byte[] binary(JsonNode node) {
        try {
            return node.binaryValue();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static JsonNode parseOne(JsonParser parser) throws IOException {
        JsonToken first = parser.nextToken();
        if (first == null) {
            throw new com.fasterxml.jackson.core.JsonParseException(parser, "no JSON value: the input is empty");
        }
        JsonNode node = value(parser, first);
        if (parser.nextToken() != null) {
            throw new com.fasterxml.jackson.core.JsonParseException(parser, "more after the JSON value");
        }
        return node;
    }

    /** The value that starts at {@code token}; the parser's own limits bound its nesting and sizes. */
    private static JsonNode value(JsonParser parser, JsonToken token) throws IOException {
        switch (token) {
            case START_OBJECT -> {
                ObjectNode object = object();
                for (JsonToken t = parser.nextToken(); t != JsonToken.END_OBJECT; t = parser.nextToken()) {
                    String key = parser.currentName();
                    object.set(key, value(parser, parser.nextToken()));
                }
                return object;
            }
            case START_ARRAY -> {
                ArrayNode array = array();
                for (JsonToken t = parser.nextToken(); t != JsonToken.END_ARRAY; t = parser.nextToken()) {
                    array.add(value(parser, t));
                }
                return array;
            }
            case VALUE_STRING -> {
                return NODES.textNode(parser.getText());
            }
            case VALUE_NUMBER_INT -> {
                return switch (parser.getNumberType()) {
                    case INT -> NODES.numberNode(parser.getIntValue());
                    case LONG -> NODES.numberNode(parser.getLongValue());
                    default -> NODES.numberNode(parser.getBigIntegerValue());
                };
            }
            case VALUE_NUMBER_FLOAT -> {
                return NODES.numberNode(parser.getDoubleValue());
            }
            case VALUE_TRUE -> {
                return NODES.booleanNode(true);
            }
            case VALUE_FALSE -> {
                return NODES.booleanNode(false);
            }
            case VALUE_NULL -> {
                return NODES.nullNode();
            }
            default -> throw new com.fasterxml.jackson.core.JsonParseException(parser, "unexpected " + token);
        }
    }

    private static byte[] write(JsonNode node, boolean pretty) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (JsonGenerator generator = FACTORY.createGenerator(out)) {
            if (pretty) {
                generator.useDefaultPrettyPrinter();
            }
            write(generator, node);
        } catch (IOException e) {
            // only nesting beyond the generator's limit fails in memory
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    private static void write(JsonGenerator g, JsonNode node) throws IOException {
        switch (node.getNodeType()) {
            case OBJECT -> {
                g.writeStartObject();
                for (Map.Entry<String, JsonNode> e : node.properties()) {
                    g.writeFieldName(e.getKey());
                    write(g, e.getValue());
                }
                g.writeEndObject();
            }
            case ARRAY -> {
                g.writeStartArray();
                for (JsonNode item : node) {
                    write(g, item);
                }
                g.writeEndArray();
            }
            case STRING -> g.writeString(node.textValue());
            case NUMBER -> {
                switch (node.numberType()) {
                    case INT -> g.writeNumber(node.intValue());
                    case LONG -> g.writeNumber(node.longValue());
                    case BIG_INTEGER -> g.writeNumber(node.bigIntegerValue());
                    case FLOAT -> g.writeNumber(node.floatValue());
                    case DOUBLE -> g.writeNumber(node.doubleValue());
                    default -> g.writeNumber(node.decimalValue());
                }
            }
            case BOOLEAN -> g.writeBoolean(node.booleanValue());
            case BINARY -> g.writeBinary(node.binaryValue());
            case NULL, MISSING -> g.writeNull();
            default -> throw new IllegalArgumentException("no JSON form for a " + node.getNodeType() + " node");
        }
    }
}

package io.microsandbox.runtime;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** {@link Json} reads and writes what databind's mapper does, with the mapper as the reference. */
class JsonTest {
    private static final ObjectMapper MAPPER = new ObjectMapper();
    private static final String SAMPLE = "{\"text\":\"tab\\t quote\\\" slash\\\\ nul\\u0000 \u00e9\u4e2d \ud83d\ude00\","
            + "\"int\":-7,\"long\":9000000000,\"big\":123456789012345678901234567890,\"double\":1.5e-3,"
            + "\"yes\":true,\"no\":false,\"nothing\":null,\"empty\":{},\"list\":[1,\"two\",[3,{\"four\":4}],[]],"
            + "\"repeated\":1,\"repeated\":2}";

    @Test
    void parsesAsTheMapperReadsATree() throws IOException {
        assertThat(Json.parse(SAMPLE)).isEqualTo(MAPPER.readTree(SAMPLE));
        assertThat(Json.parse(SAMPLE.getBytes(StandardCharsets.UTF_8))).isEqualTo(MAPPER.readTree(SAMPLE));
        assertThat(Json.parse(SAMPLE).get("repeated").intValue()).isEqualTo(2);
        assertThat(Json.parse(SAMPLE).get("big").bigIntegerValue()).isEqualTo(new BigInteger("123456789012345678901234567890"));
        assertThat(Json.parse("  42 ")).isEqualTo(MAPPER.readTree("42"));
    }

    @Test
    void writesWhatTheMapperWritesCompactAndPretty() throws IOException {
        JsonNode tree = MAPPER.readTree(SAMPLE);
        ((ObjectNode) tree).put("bytes", new byte[] {0, 1, 2, (byte) 0xff});
        ((ObjectNode) tree).put("float", 0.25f);
        ((ObjectNode) tree).put("decimal", new java.math.BigDecimal("1.10"));
        assertThat(Json.bytes(tree)).isEqualTo(MAPPER.writeValueAsBytes(tree));
        assertThat(Json.toText(tree)).isEqualTo(tree.toString());
        assertThat(Json.pretty(tree)).isEqualTo(MAPPER.writerWithDefaultPrettyPrinter().writeValueAsBytes(tree));
        assertThat(Json.parse(Json.bytes(tree)).get("bytes").asText()).isEqualTo("AAEC/w==");
    }

    @Test
    void plainValuesAreThoseTheMapperReadsIntoObject() throws IOException {
        assertThat(Json.plain(Json.parse(SAMPLE))).isEqualTo(MAPPER.readValue(SAMPLE, Object.class));
        assertThat(Json.plain(Json.parse("{\"a\":1,\"b\":1.0,\"c\":4294967296}"))).isEqualTo(
                Map.of("a", 1, "b", 1.0, "c", 4294967296L));
    }

    @Test
    void treesOfPlainValuesAreThoseTheMapperMakes() {
        Map<String, Object> value = new LinkedHashMap<>();
        value.put("list", List.of("text", 1, 2L, 1.5, true));
        value.put("map", Map.of("n", 1L));
        value.put("none", null);
        value.put("bytes", new byte[] {1, 2});
        value.put("big", BigInteger.TEN.pow(30));
        value.put("float", 0.1f);
        assertThat(Json.tree(value)).isEqualTo(MAPPER.valueToTree(value));
        assertThat(Json.object(value)).isEqualTo(MAPPER.valueToTree(value));
        assertThat(Json.plain(Json.tree(List.of(Map.of("k", "v"))))).isEqualTo(List.of(Map.of("k", "v")));
    }

    @Test
    void aValueWithNoPlainJsonFormIsRefusedByName() {
        assertThatThrownBy(() -> Json.tree(Map.of("when", java.time.Instant.EPOCH)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("java.time.Instant");
        assertThatThrownBy(() -> Json.tree(Map.of(1, "x")))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("string");
    }

    @Test
    void textThatIsNotExactlyOneJsonValueIsRefused() throws IOException {
        assertThatThrownBy(() -> Json.parse("")).isInstanceOf(IOException.class).hasMessageContaining("empty");
        assertThatThrownBy(() -> Json.parse("{} {}")).isInstanceOf(IOException.class).hasMessageContaining("more after");
        assertThatThrownBy(() -> Json.parse("{\"a\":")).isInstanceOf(IOException.class);
        assertThatThrownBy(() -> Json.parse("[1,]")).isInstanceOf(IOException.class);
        assertThatThrownBy(() -> Json.parse("[".repeat(Json.MAX_DEPTH + 1) + "]".repeat(Json.MAX_DEPTH + 1)))
                .isInstanceOf(IOException.class).hasMessageContaining("nesting depth");
        assertThat(Json.parse("[".repeat(Json.MAX_DEPTH) + "]".repeat(Json.MAX_DEPTH))).isNotNull();
    }

    @Test
    void fieldsAreReadByTypeAndAWrongTypeIsNamed() throws IOException {
        JsonNode n = Json.parse("{\"s\":\"x\",\"i\":5,\"b\":true,\"l\":[\"a\",\"b\"],\"z\":null,\"f\":1.5,\"bad\":[1]}");
        assertThat(Json.string(n, "s")).isEqualTo("x");
        assertThat(Json.integer(n, "i")).isEqualTo(5);
        assertThat(Json.bool(n, "b")).isTrue();
        assertThat(Json.strings(n, "l")).containsExactly("a", "b");
        assertThat(Json.string(n, "z")).isNull();
        assertThat(Json.string(n, "absent")).isNull();
        assertThat(Json.integer(n, "absent")).isZero();
        assertThat(Json.bool(n, "absent")).isFalse();
        assertThat(Json.strings(n, "absent")).isNull();
        assertThatThrownBy(() -> Json.string(n, "i")).hasMessageContaining("\"i\" must be text");
        assertThatThrownBy(() -> Json.integer(n, "f")).hasMessageContaining("\"f\" must be an integer");
        assertThatThrownBy(() -> Json.bool(n, "s")).hasMessageContaining("\"s\" must be true or false");
        assertThatThrownBy(() -> Json.strings(n, "bad")).hasMessageContaining("\"bad\" must be an array of text");
        assertThatThrownBy(() -> Json.strings(n, "s")).hasMessageContaining("\"s\" must be an array of text");
        assertThat(Json.object(Json.parse("{\"o\":{\"k\":1}}"), "o")).isEqualTo(Json.object().put("k", 1));
        assertThat(Json.object(n, "z")).isNull();
        assertThatThrownBy(() -> Json.object(n, "l")).hasMessageContaining("\"l\" must be a JSON object");
    }

    @Test
    void briefTextIsCutForLogLines() {
        assertThat(Json.brief(Json.object().put("k", "v"))).isEqualTo("{\"k\":\"v\"}");
        String brief = Json.brief(Json.object().put("k", "x".repeat(10_000)));
        assertThat(brief).hasSizeLessThan(Json.BRIEF_CHARS + 40).startsWith("{\"k\":\"xxx").endsWith("(10008 characters)");
    }
}

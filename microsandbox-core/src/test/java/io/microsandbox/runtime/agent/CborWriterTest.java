package io.microsandbox.runtime.agent;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import io.microsandbox.runtime.Json;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;

class CborWriterTest {
    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    /** The examples of RFC 8949, appendix A, that the protocol's types cover: every head size. */
    @Test
    void writesTheRfcExamples() {
        assertCbor(NODES.numberNode(0), "00");
        assertCbor(NODES.numberNode(23), "17");
        assertCbor(NODES.numberNode(24), "1818");
        assertCbor(NODES.numberNode(100), "1864");
        assertCbor(NODES.numberNode(1000), "1903e8");
        assertCbor(NODES.numberNode(1000000), "1a000f4240");
        assertCbor(NODES.numberNode(1000000000000L), "1b000000e8d4a51000");
        assertCbor(NODES.numberNode(-1), "20");
        assertCbor(NODES.numberNode(-100), "3863");
        assertCbor(NODES.numberNode(-1000), "3903e7");
        assertCbor(NODES.textNode("a"), "6161");
        assertCbor(NODES.textNode("\u00fc"), "62c3bc");
        assertCbor(NODES.textNode("\u6c34"), "63e6b0b4");
        assertCbor(NODES.binaryNode(new byte[] {1, 2, 3, 4}), "4401020304");
        assertCbor(NODES.arrayNode().add(1).add(2).add(3), "83010203");
        assertCbor(Json.object().put("a", 1).set("b", NODES.arrayNode().add(2).add(3)), "a26161016162820203");
        assertCbor(NODES.booleanNode(false), "f4");
        assertCbor(NODES.booleanNode(true), "f5");
        assertCbor(NODES.nullNode(), "f6");
    }

    /** A frame carrying a transfer's chunk is one array of exactly its size, and reads back. */
    @Test
    void aFrameIsOneArrayOfItsExactSize() throws IOException {
        byte[] chunk = new byte[Protocol.FS_CHUNK_BYTES];
        for (int i = 0; i < chunk.length; i++) {
            chunk[i] = (byte) (i * 31);
        }
        Frame frame = new Frame(7, Protocol.FLAG_TERMINAL, Protocol.FS_DATA, Json.object().put("data", chunk).put("n", 70000));

        byte[] wire = FrameCodec.encode(frame);

        long length = ((wire[0] & 0xFFL) << 24) | ((wire[1] & 0xFF) << 16) | ((wire[2] & 0xFF) << 8) | (wire[3] & 0xFF);
        assertThat(wire).hasSize(4 + (int) length);
        Frame read = FrameCodec.read(new ByteArrayInputStream(wire));
        assertThat(read.id()).isEqualTo(7);
        assertThat(read.bytes("data")).isEqualTo(chunk);
        assertThat(read.number("n")).isEqualTo(70000L);
    }

    private static void assertCbor(JsonNode node, String hex) {
        assertThat(CborWriter.size(node)).as(hex).isEqualTo(hex.length() / 2);
        assertThat(HexFormat.of().formatHex(cbor(node))).isEqualTo(hex);
    }

    /** {@code node} as CBOR, as {@link FrameCodec} writes a frame's body. */
    static byte[] cbor(JsonNode node) {
        byte[] bytes = new byte[Math.toIntExact(CborWriter.size(node))];
        CborWriter.write(node, bytes, 0);
        return bytes;
    }
}

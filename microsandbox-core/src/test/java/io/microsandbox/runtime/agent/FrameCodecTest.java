package io.microsandbox.runtime.agent;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class FrameCodecTest {

    @Test
    void roundTripsIdFlagsTypeAndPayload() throws IOException {
        ObjectNode p = FrameCodec.mapper().createObjectNode();
        p.put("cmd", "echo");
        p.putArray("args").add("hi").add("there");
        p.put("data", new byte[] {0, 1, (byte) 0xFF});
        p.put("code", -3);
        p.putNull("cwd");
        Frame sent = new Frame(0xFF000001, Protocol.FLAG_SESSION_START | Protocol.FLAG_TERMINAL, "exec.request", p);

        Frame got = FrameCodec.read(new ByteArrayInputStream(FrameCodec.encode(sent)));

        assertThat(got.id()).isEqualTo(0xFF000001);
        assertThat(got.isSessionStart()).isTrue();
        assertThat(got.isTerminal()).isTrue();
        assertThat(got.type()).isEqualTo("exec.request");
        assertThat(got.text("cmd")).isEqualTo("echo");
        assertThat(got.bytes("data")).containsExactly(0, 1, 0xFF);
        assertThat(got.number("code")).isEqualTo(-3L);
        assertThat(got.payload().get("args").size()).isEqualTo(2);
    }

    @Test
    void readsConsecutiveFramesAndReportsCleanEnd() throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        FrameCodec.write(out, Frame.of(1, 0, "core.ping"));
        FrameCodec.write(out, Frame.of(2, 0, "core.pong"));
        InputStream in = new ByteArrayInputStream(out.toByteArray());

        assertThat(FrameCodec.read(in).type()).isEqualTo("core.ping");
        assertThat(FrameCodec.read(in).id()).isEqualTo(2);
        assertThat(FrameCodec.read(in)).isNull();
    }

    @Test
    void rejectsOversizedFrameBeforeAllocating() {
        // A length of 2 GiB with no body: reading it must fail on the length alone.
        byte[] header = ByteBuffer.allocate(4).putInt(0x7FFFFFF0).array();
        assertThatThrownBy(() -> FrameCodec.read(new ByteArrayInputStream(header)))
                .isInstanceOf(ProtocolException.class)
                .hasMessageContaining("exceeds");
        byte[] justOver = ByteBuffer.allocate(4).putInt(Protocol.MAX_FRAME_BYTES + 1).array();
        assertThatThrownBy(() -> FrameCodec.read(new ByteArrayInputStream(justOver)))
                .isInstanceOf(ProtocolException.class);
    }

    @Test
    void refusesToEncodeOversizedFrame() {
        ObjectNode p = FrameCodec.mapper().createObjectNode();
        p.put("data", new byte[Protocol.MAX_FRAME_BYTES]);
        assertThatThrownBy(() -> FrameCodec.encode(new Frame(1, 0, "exec.stdout", p)))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("frame limit");
    }

    @Test
    void rejectsTruncatedFrames() {
        byte[] whole = FrameCodec.encode(Frame.of(7, 0, "core.ping"));
        for (int cut = 1; cut < whole.length; cut++) {
            byte[] part = Arrays.copyOf(whole, cut);
            assertThatThrownBy(() -> FrameCodec.read(new ByteArrayInputStream(part)))
                    .as("frame cut at %d bytes", cut)
                    .isInstanceOf(ProtocolException.class);
        }
    }

    @Test
    void rejectsTooShortLength() {
        byte[] bytes = {0, 0, 0, 3, 0, 0, 0};
        assertThatThrownBy(() -> FrameCodec.read(new ByteArrayInputStream(bytes)))
                .isInstanceOf(ProtocolException.class)
                .hasMessageContaining("shorter than its header");
    }

    @Test
    void rejectsBodiesThatAreNotVersionedTypedMaps() throws IOException {
        assertMalformed(FrameCodec.mapper().writeValueAsBytes(42), "not a map");
        assertMalformed(cbor("{\"t\":\"x\",\"p\":{}}"), "version");
        assertMalformed(cbor("{\"v\":" + (Protocol.VERSION + 1) + ",\"t\":\"x\",\"p\":{}}"), "protocol version " + (Protocol.VERSION + 1));
        assertMalformed(cbor("{\"v\":" + Protocol.VERSION + ",\"p\":{}}"), "type");
        assertMalformed(cbor("{\"v\":" + Protocol.VERSION + ",\"t\":\"\",\"p\":{}}"), "type");
        assertMalformed(cbor("{\"v\":" + Protocol.VERSION + ",\"t\":\"x\",\"p\":[1]}"), "not a map");
        assertMalformed(new byte[] {(byte) 0xA1, 0x61}, "malformed");
        assertMalformed(new byte[] {(byte) 0xFF}, "malformed");
    }

    @Test
    void rejectsTrailingBytesAfterBody() throws IOException {
        byte[] body = cbor("{\"v\":" + Protocol.VERSION + ",\"t\":\"x\",\"p\":{}}");
        byte[] withTrailer = Arrays.copyOf(body, body.length + 1);
        assertMalformed(withTrailer, "trailing");
    }

    @Test
    void rejectsDeepNesting() {
        byte[] body = new byte[200];
        Arrays.fill(body, (byte) 0x81); // arrays of one element, nested 200 deep
        assertThatThrownBy(() -> FrameCodec.read(new ByteArrayInputStream(frame(body))))
                .isInstanceOf(ProtocolException.class);
    }

    @Test
    void randomGarbageNeverEscapesAsAnythingButProtocolException() {
        Random random = new Random(42);
        for (int i = 0; i < 5000; i++) {
            byte[] body = new byte[1 + random.nextInt(64)];
            random.nextBytes(body);
            try {
                FrameCodec.read(new ByteArrayInputStream(frame(body)));
            } catch (ProtocolException expected) {
                // fine: rejected
            } catch (Throwable t) {
                throw new AssertionError("garbage body " + Arrays.toString(body) + " escaped as " + t, t);
            }
        }
    }

    private static void assertMalformed(byte[] body, String message) {
        assertThatThrownBy(() -> FrameCodec.read(new ByteArrayInputStream(frame(body))))
                .isInstanceOf(ProtocolException.class)
                .hasMessageContaining(message);
    }

    private static byte[] cbor(String json) throws IOException {
        return FrameCodec.mapper().writeValueAsBytes(new com.fasterxml.jackson.databind.ObjectMapper().readTree(json));
    }

    private static byte[] frame(byte[] body) {
        ByteBuffer buf = ByteBuffer.allocate(4 + 5 + body.length);
        buf.putInt(5 + body.length).putInt(9).put((byte) 0).put(body);
        return buf.array();
    }
}

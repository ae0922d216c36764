package io.microsandbox.runtime.agent;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
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
        ObjectNode p = Json.object();
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
        ObjectNode p = Json.object();
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
        assertMalformed(cbor("42"), "not a map");
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

    /** Finding 1: whatever the decoder accepts must be forwardable, so values CborWriter cannot write are refused. */
    @Test
    void refusesValuesThatCannotBeEncodedAgain() {
        byte[] prefix = {(byte) 0xA3, 0x61, 'v', 0x01, 0x61, 't', 0x61, 'x', 0x61, 'p', (byte) 0xA1, 0x61, 'n'};
        assertMalformed(concat(prefix, new byte[] {(byte) 0xF9, 0x7E, 0x00}), "floating-point"); // half NaN
        assertMalformed(concat(prefix, new byte[] {(byte) 0xFA, 0x7F, (byte) 0x80, 0, 0}), "floating-point"); // single Infinity
        assertMalformed(concat(prefix, new byte[] {(byte) 0xFB, 0x3F, (byte) 0xF0, 0, 0, 0, 0, 0, 0}), "floating-point");
        assertMalformed(concat(prefix, new byte[] {0x1B, -1, -1, -1, -1, -1, -1, -1, -1}), "beyond the 64-bit");
        assertMalformed(concat(prefix, new byte[] {0x3B, -1, -1, -1, -1, -1, -1, -1, -1}), "beyond the 64-bit");
        assertMalformed(concat(prefix, new byte[] {(byte) 0xC2, 0x41, 0x01}), "tags");
        assertMalformed(concat(prefix, new byte[] {(byte) 0xF7}), "simple value 23");
        assertMalformed(concat(prefix, new byte[] {(byte) 0x9F, (byte) 0xFF}), "indefinite");
        assertMalformed(new byte[] {(byte) 0xA1, 0x01, 0x01}, "key is not a text");
        assertMalformed(new byte[] {(byte) 0xA2, 0x61, 'v', 0x01, 0x61, 'v', 0x01}, "duplicate");
    }

    /** Finding 2: a 4 MiB frame of one-byte items is refused before it can expand into a huge tree. */
    @Test
    void aFrameOfMillionsOfTinyItemsIsRefusedWithoutExpanding() {
        for (byte tiny : new byte[] {(byte) 0xA0, (byte) 0xF6, 0x00}) {
            int n = Protocol.MAX_FRAME_BYTES - 64;
            byte[] prefix = {(byte) 0xA3, 0x61, 'v', 0x01, 0x61, 't', 0x61, 'x', 0x61, 'p', (byte) 0xA1, 0x61, 'n',
                    (byte) 0x9A, (byte) (n >>> 24), (byte) (n >>> 16), (byte) (n >>> 8), (byte) n};
            byte[] body = Arrays.copyOf(prefix, prefix.length + n);
            Arrays.fill(body, prefix.length, body.length, tiny);
            assertMalformed(body, "items in one frame");
        }
    }

    @Test
    void everyAcceptedRandomFrameEncodesAgainToTheSameFrame() throws IOException {
        Random random = new Random(7);
        byte[] valid = CborWriterTest.cbor(new com.fasterxml.jackson.databind.ObjectMapper().readTree(
                "{\"v\":" + Protocol.VERSION + ",\"t\":\"exec.request\",\"p\":{\"cmd\":\"sh\",\"args\":[\"-c\",\"x\"],"
                        + "\"env\":{\"A\":\"b\"},\"n\":-5,\"big\":9000000000,\"t\":true,\"z\":null}}"));
        int accepted = 0;
        for (int i = 0; i < 20_000; i++) {
            byte[] body = valid.clone();
            for (int m = random.nextInt(3); m >= 0; m--) {
                body[random.nextInt(body.length)] = (byte) random.nextInt(256);
            }
            Frame frame;
            try {
                frame = FrameCodec.read(new ByteArrayInputStream(frame(body)));
            } catch (ProtocolException rejected) {
                continue;
            }
            accepted++;
            Frame again = FrameCodec.read(new ByteArrayInputStream(FrameCodec.encode(frame)));
            assertThat(again.payload()).isEqualTo(frame.payload());
            assertThat(again.type()).isEqualTo(frame.type());
        }
        assertThat(accepted).isGreaterThan(100);
    }

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    private static void assertMalformed(byte[] body, String message) {
        assertThatThrownBy(() -> FrameCodec.read(new ByteArrayInputStream(frame(body))))
                .isInstanceOf(ProtocolException.class)
                .hasMessageContaining(message);
    }

    private static byte[] cbor(String json) throws IOException {
        // definite lengths, as every peer of the protocol writes them
        return CborWriterTest.cbor(new com.fasterxml.jackson.databind.ObjectMapper().readTree(json));
    }

    private static byte[] frame(byte[] body) {
        ByteBuffer buf = ByteBuffer.allocate(4 + 5 + body.length);
        buf.putInt(5 + body.length).putInt(9).put((byte) 0).put(body);
        return buf.array();
    }
}

package io.microsandbox.runtime.network;

import java.io.ByteArrayOutputStream;
import java.net.InetAddress;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class DnsMessageTest {
    static byte[] query(String name, int type) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(new byte[] {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0});
        for (String label : name.split("\\.")) {
            out.write(label.length());
            out.writeBytes(label.getBytes());
        }
        out.write(0);
        out.writeBytes(new byte[] {0, (byte) type, 0, 1});
        return out.toByteArray();
    }

    @Test
    void readsTheQuestionAndBuildsErrors() {
        byte[] q = query("WWW.Example.test", 1);
        DnsMessage.Question question = DnsMessage.question(q);
        assertThat(question.name()).isEqualTo("www.example.test");
        assertThat(question.type()).isEqualTo(1);
        byte[] nx = DnsMessage.error(q, question, DnsMessage.NXDOMAIN);
        assertThat(nx[0]).isEqualTo((byte) 0x12);
        assertThat(nx[2] & 0x80).isNotZero();
        assertThat(DnsMessage.rcode(nx)).isEqualTo(DnsMessage.NXDOMAIN);
        assertThat(DnsMessage.question(nx).name()).isEqualTo("www.example.test");
        assertThat(DnsMessage.addresses(nx)).isEmpty();
    }

    /** A label holding dots is one name, not the allowed name its text spells: read escaped, as the master-file format writes it. */
    @Test
    void aLabelHoldingDotsOrOddBytesIsReadEscaped() {
        byte[] label = "api.example.test".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        java.io.ByteArrayOutputStream q = new java.io.ByteArrayOutputStream();
        q.writeBytes(new byte[] {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0});
        q.write(label.length);
        q.writeBytes(label);
        q.writeBytes(new byte[] {2, 'a', 0x07, 1, '\\', 0, 0, 1, 0, 1});
        assertThat(DnsMessage.question(q.toByteArray()).name()).isEqualTo("api\\.example\\.test.a\\007.\\\\");
    }

    @Test
    void readsAddressesThroughCompressedNames() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] q = query("a.test", 1);
        out.writeBytes(q);
        byte[] answer = out.toByteArray();
        answer[2] = (byte) 0x81;
        answer[3] = (byte) 0x80;
        answer[7] = 2; // two answers
        out.reset();
        out.writeBytes(answer);
        for (int last : new int[] {10, 11}) {
            out.writeBytes(new byte[] {(byte) 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, (byte) 203, 0, 113, (byte) last});
        }
        assertThat(DnsMessage.addresses(out.toByteArray())).extracting(InetAddress::getHostAddress)
                .containsExactly("203.0.113.10", "203.0.113.11");
    }

    @Test
    void refusesMalformedMessages() {
        assertThatThrownBy(() -> DnsMessage.question(new byte[5])).isInstanceOf(IllegalArgumentException.class);
        // an UPDATE (opcode 5) or a response is not a lookup: it is not forwarded
        assertThat(DnsMessage.standardQuery(query("www.example.test", 1))).isTrue();
        byte[] update = query("www.example.test", 1);
        update[2] = (byte) (5 << 3);
        assertThat(DnsMessage.standardQuery(update)).isFalse();
        byte[] response = query("www.example.test", 1);
        response[2] = (byte) 0x80;
        assertThat(DnsMessage.standardQuery(response)).isFalse();
        byte[] loop = query("a.test", 1);
        loop[12] = (byte) 0xc0;
        loop[13] = 12; // points at itself
        byte[] reply = java.util.Arrays.copyOf(loop, loop.length + 16);
        reply[7] = 1;
        System.arraycopy(new byte[] {(byte) 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4}, 0, reply, loop.length, 16);
        assertThatThrownBy(() -> DnsMessage.addresses(reply)).isInstanceOf(IllegalArgumentException.class);
        byte[] truncated = java.util.Arrays.copyOf(query("abc.test", 1), 15);
        assertThatThrownBy(() -> DnsMessage.question(truncated)).isInstanceOf(IllegalArgumentException.class);
    }
}

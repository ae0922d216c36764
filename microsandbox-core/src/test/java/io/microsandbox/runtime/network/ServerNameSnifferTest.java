package io.microsandbox.runtime.network;

import io.microsandbox.NetworkPolicy;
import io.microsandbox.NetworkRule;
import io.microsandbox.NetworkRule.Direction;
import io.microsandbox.NetworkRule.Protocol;
import io.microsandbox.runtime.network.ServerNameSniffer.State;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;

class ServerNameSnifferTest {
    /** A TLS 1.2 ClientHello record with one cipher suite and the SNI extension. */
    static byte[] clientHello(String sni) {
        return records(handshake(sni, 0));
    }

    /**
     * A ClientHello handshake message (its 4-byte header first) with one cipher suite, then a
     * padding extension of {@code padding} bytes when above 0, then the SNI extension (none for a null {@code sni}).
     */
    static byte[] handshake(String sni, int padding) {
        ByteArrayOutputStream ext = new ByteArrayOutputStream();
        if (padding > 0) {
            writeU16(ext, 21);
            writeU16(ext, padding);
            ext.writeBytes(new byte[padding]);
        }
        if (sni != null) {
            byte[] name = sni.getBytes(StandardCharsets.US_ASCII);
            writeU16(ext, 0);                 // server_name
            writeU16(ext, name.length + 5);
            writeU16(ext, name.length + 3);   // list
            ext.write(0);                     // host_name
            writeU16(ext, name.length);
            ext.writeBytes(name);
        }
        ByteArrayOutputStream hello = new ByteArrayOutputStream();
        hello.writeBytes(new byte[] {3, 3});
        hello.writeBytes(new byte[32]);
        hello.write(0);                   // session id
        writeU16(hello, 2);
        hello.writeBytes(new byte[] {0x13, 0x01});
        hello.write(1);
        hello.write(0);                   // compression
        writeU16(hello, ext.size());
        hello.writeBytes(ext.toByteArray());
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(1);
        out.writeBytes(new byte[] {(byte) (hello.size() >> 16), (byte) (hello.size() >> 8), (byte) hello.size()});
        out.writeBytes(hello.toByteArray());
        return out.toByteArray();
    }

    /** {@code message} in handshake records, split at {@code cuts} and at most 16 KiB each (as TLS limits a record). */
    static byte[] records(byte[] message, int... cuts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        int from = 0;
        for (int i = 0; from < message.length; i++) {
            int to = Math.min(message.length, Math.min(i < cuts.length ? cuts[i] : message.length, from + 16384));
            out.writeBytes(new byte[] {0x16, 3, 1});
            writeU16(out, to - from);
            out.write(message, from, to - from);
            from = to;
        }
        return out.toByteArray();
    }

    private static void writeU16(ByteArrayOutputStream out, int v) {
        out.write(v >> 8);
        out.write(v);
    }

    private static ServerNameSniffer.Result sniff(byte[] b) {
        byte[] buf = java.util.Arrays.copyOf(b, ServerNameSniffer.MAX_BYTES);
        return ServerNameSniffer.sniff(buf, b.length);
    }

    @Test
    void findsTheSniOfAClientHelloWholeAndWaitsForTheRest() {
        byte[] hello = clientHello("API.Example.Test");
        assertThat(sniff(hello).name()).contains("api.example.test");
        for (int cut : new int[] {1, 4, 5, 40, hello.length - 1}) {
            assertThat(sniff(java.util.Arrays.copyOf(hello, cut)).state()).as("cut at " + cut).isEqualTo(State.NEED_MORE);
        }
    }

    /** A ClientHello split over records is joined: a name past the first record is found all the same. */
    @Test
    void findsTheSniOfAClientHelloSplitOverRecords() {
        byte[] message = handshake("evil.test", 0);
        for (int[] cuts : new int[][] {{1}, {4}, {20}, {message.length - 3}, {10, 11, 50}}) {
            byte[] split = records(message, cuts);
            assertThat(sniff(split).name()).as(java.util.Arrays.toString(cuts)).contains("evil.test");
            assertThat(sniff(java.util.Arrays.copyOf(split, split.length - 1)).state()).isEqualTo(State.NEED_MORE);
        }
    }

    /** A name the sniff cannot read (padded past its limit, malformed, another record in between) is hidden, not absent. */
    @Test
    void aNameTheSniffCannotReadIsHidden() {
        byte[] padded = records(handshake("evil.test", ServerNameSniffer.MAX_BYTES));
        assertThat(sniff(java.util.Arrays.copyOf(padded, ServerNameSniffer.MAX_BYTES)).state()).isEqualTo(State.HIDDEN);
        byte[] malformed = clientHello("evil.test");
        malformed[malformed.length - 11] = (byte) 0xff; // the name's length past its extension
        assertThat(sniff(malformed).state()).isEqualTo(State.HIDDEN);
        byte[] message = handshake("evil.test", 0);
        byte[] interleaved = records(message, 20);
        interleaved[5 + 20] = 0x17; // application data before the hello ended
        assertThat(sniff(interleaved).state()).isEqualTo(State.HIDDEN);
        assertThat(sniff(records(handshake(null, 0))).state()).as("a whole hello without SNI names none").isEqualTo(State.NONE);
    }

    @Test
    void findsTheHostOfAnHttpRequest() {
        assertThat(sniff("GET / HTTP/1.1\r\nUser-Agent: x\r\nhost: Www.Pub.Test:8080\r\n\r\n".getBytes()).name()).contains("www.pub.test");
        assertThat(sniff("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n".getBytes()).state()).as("an address names no domain").isEqualTo(State.NONE);
        assertThat(sniff("GET / HTTP/1.1\r\nHost: 203.0.113.10\r\n\r\n".getBytes()).state()).isEqualTo(State.NONE);
        assertThat(sniff("GET / HTTP/1.1\r\nHost: a.test\r\n".getBytes()).name()).contains("a.test");
        assertThat(sniff("GET / HTTP/1.1\r\nHo".getBytes()).state()).isEqualTo(State.NEED_MORE);
        assertThat(sniff("GE".getBytes()).state()).isEqualTo(State.NEED_MORE);
        assertThat(sniff("GET / HTTP/1.0\r\n\r\n".getBytes()).state()).isEqualTo(State.NONE);
    }

    @Test
    void otherProtocolsAndGarbageNameNothing() {
        assertThat(sniff("SSH-2.0-OpenSSH\r\n".getBytes()).state()).isEqualTo(State.NONE);
        assertThat(sniff(new byte[] {0x16, 3, 1, (byte) 0xff, (byte) 0xff, 9, 9}).state()).isEqualTo(State.NEED_MORE);
        java.util.Random random = new java.util.Random(3);
        for (int i = 0; i < 20_000; i++) {
            byte[] b = clientHello("x.test");
            b[random.nextInt(b.length)] = (byte) random.nextInt(256);
            byte[] cut = java.util.Arrays.copyOf(b, random.nextInt(b.length + 1));
            sniff(cut); // never throws
        }
    }

    @Test
    void claimedNamesDenyWhenAnyMatchesAndMustAgreeForAllows() {
        PolicyMatcher m = new PolicyMatcher(NetworkPolicy.builder()
                .rule(NetworkRule.deny("blocked.test"))
                .rule(NetworkRule.allow(".pub.test"))
                .rule(NetworkRule.deny("*"))
                .build(), new AddressGroups(Set.of()));
        var ip = InetLiterals.parse("203.0.113.10");
        assertThat(m.connection(Direction.EGRESS, Protocol.TCP, ip, 443, List.of("pub.test"), List.of()).allowed()).isTrue();
        assertThat(m.connection(Direction.EGRESS, Protocol.TCP, ip, 443, List.of("pub.test"), List.of("www.pub.test")).allowed()).isTrue();
        assertThat(m.connection(Direction.EGRESS, Protocol.TCP, ip, 443, List.of("pub.test"), List.of("blocked.test")).allowed())
                .as("a denied name behind an allowed address").isFalse();
        assertThat(m.connection(Direction.EGRESS, Protocol.TCP, ip, 443, List.of("pub.test"), List.of("other.test")).allowed())
                .as("a claimed name the allow rule does not cover").isFalse();
        assertThat(m.connection(Direction.EGRESS, Protocol.TCP, ip, 443, List.of(), List.of("www.pub.test")).allowed())
                .as("an allowed name claimed toward an address it was never looked up for").isFalse();
        assertThat(m.needsServerName(Protocol.TCP, 443)).isTrue();
        assertThat(new PolicyMatcher(NetworkPolicy.publicOnly(), new AddressGroups(Set.of())).needsServerName(Protocol.TCP, 443)).isFalse();
    }
}

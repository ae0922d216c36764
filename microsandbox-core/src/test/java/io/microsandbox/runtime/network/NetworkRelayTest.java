package io.microsandbox.runtime.network;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.NetworkPolicy;
import io.microsandbox.PortBinding;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.agent.Protocol;
import io.microsandbox.runtime.agent.Protocol.Net;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The host side of the network without a VM: the agent's frames played by the test, toward a server on 127.0.0.1. */
class NetworkRelayTest {
    private static final int ID = 0x8000_0001;
    private final BlockingQueue<Frame> toGuest = new LinkedBlockingQueue<>();
    private final List<String> log = new CopyOnWriteArrayList<>();
    /** How many window frames the guest channel drops next. */
    private final java.util.concurrent.atomic.AtomicInteger droppedWindows = new java.util.concurrent.atomic.AtomicInteger();
    private NetworkRelay relay;

    private NetworkRelay relay(NetworkPolicy policy, List<PortBinding> ports) {
        relay = new NetworkRelay(new NetworkSettings(policy, ports), new AddressGroups(Set.of()), new GuestChannel() {
            @Override
            public boolean send(Frame frame, long timeoutMillis) {
                return toGuest.add(frame);
            }

            @Override
            public boolean urgent(Frame frame) {
                if (frame.type().equals(Net.WINDOW) && droppedWindows.getAndDecrement() > 0) {
                    return false; // as the supervisor's queue does for an agent that reads nothing
                }
                return toGuest.add(frame);
            }
        }, log::add);
        relay.start();
        return relay;
    }

    @AfterEach
    void close() {
        if (relay != null) {
            relay.close();
        }
    }

    private static Frame frame(int flags, String type, ObjectNode p) {
        return new Frame(ID, flags, type, p);
    }

    private static ObjectNode connect(String dst, int port) {
        return Json.object().put("proto", "tcp").put("dst", dst).put("port", port).put("window", 1 << 20);
    }

    private static ObjectNode data(String s) {
        return Json.object().put("data", s.getBytes(StandardCharsets.UTF_8));
    }

    private Frame next(String type) throws InterruptedException {
        while (true) {
            Frame f = toGuest.poll(10, TimeUnit.SECONDS);
            assertThat(f).as("a " + type + " frame").isNotNull();
            if (f.type().equals(type)) {
                return f;
            }
        }
    }

    @Test
    void carriesAnAllowedConnectionBothWaysWithWindowsAndHalfCloses() throws Exception {
        try (ServerSocket upstream = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            relay(NetworkPolicy.allowAll(), List.of());
            relay.fromGuest(frame(Protocol.FLAG_SESSION_START, Net.CONNECT, connect("127.0.0.1", upstream.getLocalPort())));
            try (Socket s = upstream.accept()) {
                assertThat(next(Net.CONNECTED).id()).isEqualTo(ID);
                relay.fromGuest(frame(0, Net.DATA, data("hello")));
                InputStream in = s.getInputStream();
                assertThat(new String(in.readNBytes(5), StandardCharsets.UTF_8)).isEqualTo("hello");
                assertThat(next(Net.WINDOW).number("bytes")).isEqualTo(5L);
                s.getOutputStream().write("world".getBytes(StandardCharsets.UTF_8));
                assertThat(new String(next(Net.DATA).bytes("data"), StandardCharsets.UTF_8)).isEqualTo("world");
                relay.fromGuest(frame(0, Net.DATA, data(""))); // the guest's EOF
                assertThat(in.read()).isEqualTo(-1);
                s.shutdownOutput();
                assertThat(next(Net.DATA).bytes("data")).isEmpty(); // the server's EOF
            }
            relay.fromGuest(frame(Protocol.FLAG_TERMINAL, Net.CLOSE, Json.object().put("reset", false)));
            assertThat(relay.txBytes()).isEqualTo(5);
            assertThat(relay.rxBytes()).isEqualTo(5);
        }
    }

    /** A connection the guest closed whose peer reads slowly is reset when the relay closes, not handed its last bytes for 30 s more. */
    @Test
    void closingTheRelayResetsAConnectionThatStillHandsItsPeerTheGuestsLastBytes() throws Exception {
        try (ServerSocket upstream = new ServerSocket()) {
            upstream.setReceiveBufferSize(4096);
            upstream.bind(new java.net.InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
            relay(NetworkPolicy.allowAll(), List.of());
            relay.fromGuest(frame(Protocol.FLAG_SESSION_START, Net.CONNECT, connect("127.0.0.1", upstream.getLocalPort())));
            try (Socket s = upstream.accept()) {
                next(Net.CONNECTED);
                // as the agent does: within the window, until the peer's buffers are full and no credit comes back
                long total = 0;
                long credit = NetworkRelay.WINDOW;
                for (Frame f = null; total < (64 << 20); f = toGuest.poll(1, TimeUnit.SECONDS)) {
                    if (f != null && f.type().equals(Net.WINDOW)) {
                        credit += f.number("bytes");
                    } else if (f == null && total > 0) {
                        break;
                    }
                    for (; credit >= 65536; credit -= 65536, total += 65536) {
                        relay.fromGuest(frame(0, Net.DATA, Json.object().put("data", new byte[65536])));
                    }
                }
                relay.fromGuest(frame(Protocol.FLAG_TERMINAL, Net.CLOSE, Json.object().put("reset", false)));
                Thread.sleep(500); // the writer is held up by the peer, which reads nothing
                relay.close();
                long read = 0;
                try {
                    InputStream in = s.getInputStream();
                    s.setSoTimeout(10_000);
                    for (int n; (n = in.read(new byte[65536])) > 0; ) {
                        read += n;
                    }
                } catch (java.net.SocketException reset) {
                    // what the relay's close does to it
                }
                assertThat(read).as("bytes the peer got after the relay closed").isLessThan(total);
            }
        }
    }

    @Test
    void aClientThatNamesItsServerOnlyAfterTheSniffIsStillCheckedByThatName() throws Exception {
        // the address is allowed; one name on it is not (a CDN address shared by an allowed and a denied site)
        NetworkPolicy policy = NetworkPolicy.builder().rule(io.microsandbox.NetworkRule.deny("evil.test"))
                .rule(io.microsandbox.NetworkRule.allow("*")).rebindingProtection(false).build();
        try (ServerSocket upstream = new ServerSocket(0, 2, InetAddress.getLoopbackAddress())) {
            relay(policy, List.of());
            for (String host : List.of("evil.test", "good.test")) {
                toGuest.clear();
                int id = host.startsWith("evil") ? ID : ID + 2;
                relay.fromGuest(new Frame(id, Protocol.FLAG_SESSION_START, Net.CONNECT, connect("127.0.0.1", upstream.getLocalPort())));
                next(Net.CONNECTED);
                try (Socket s = upstream.accept()) { // silent past the sniff: let through, the server may speak first
                    s.setSoTimeout(10_000);
                    String request = "GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
                    relay.fromGuest(new Frame(id, 0, Net.DATA, data(request)));
                    InputStream in = s.getInputStream();
                    if (host.startsWith("evil")) {
                        Frame closed = next(Net.CLOSE);
                        assertThat(closed.payload().path("reset").asBoolean()).isTrue();
                        int first;
                        try {
                            first = in.read();
                        } catch (java.net.SocketException reset) {
                            first = -1;
                        }
                        assertThat(first).as("nothing of the request reached the server").isEqualTo(-1);
                        assertThat(log).anyMatch(l -> l.contains("denied tcp connection to 127.0.0.1:" + upstream.getLocalPort()
                                + " for evil.test, named after 3000 ms, by rule 1 (deny evil.test)"));
                    } else {
                        assertThat(new String(in.readNBytes(request.length()), StandardCharsets.UTF_8)).isEqualTo(request);
                        assertThat(next(Net.WINDOW).number("bytes")).isEqualTo((long) request.length());
                    }
                }
            }
        }
    }

    /**
     * A TLS client that hides its server name from the sniff cannot reach another site behind an
     * allowed name's address: a ClientHello split over records is read whole (its name denied),
     * one padded past the sniff's limit or never finished is reset, as only an address rule could
     * allow it; an allowed name split the same way passes.
     */
    @Test
    void aTlsClientHidingItsServerNameIsNotLetThroughByAnAllowedName() throws Exception {
        try (java.net.DatagramSocket dns = new java.net.DatagramSocket(0, InetAddress.getLoopbackAddress());
                ServerSocket upstream = new ServerSocket(0, 8, InetAddress.getLoopbackAddress())) {
            Thread resolver = new Thread(() -> answerEveryQueryWithLoopback(dns), "test-dns");
            resolver.setDaemon(true);
            resolver.start();
            NetworkPolicy policy = NetworkPolicy.builder().rule(io.microsandbox.NetworkRule.allow("good.test"))
                    .rule(io.microsandbox.NetworkRule.deny("*")).rebindingProtection(false)
                    .dnsServers("127.0.0.1:" + dns.getLocalPort()).build();
            relay(policy, List.of());
            byte[] query = new byte[] {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, 'g', 'o', 'o', 'd', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
            relay.fromGuest(new Frame(ID, Protocol.FLAG_SESSION_START, Net.DNS, Json.object().put("query", query).put("dst", "10.0.2.3")));
            assertThat(DnsMessage.addresses(next(Net.DNS_REPLY).bytes("reply"))).containsExactly(InetAddress.getByName("127.0.0.1"));

            byte[] evil = ServerNameSnifferTest.handshake("evil.test", 0);
            byte[] padded = ServerNameSnifferTest.records(ServerNameSnifferTest.handshake("evil.test", ServerNameSniffer.MAX_BYTES));
            byte[] unfinished = java.util.Arrays.copyOf(ServerNameSnifferTest.records(evil, 30), 5 + 30 + 5);
            int id = ID + 2;
            for (byte[] hello : List.of(ServerNameSnifferTest.records(evil, 20), padded, unfinished)) {
                toGuest.clear();
                relay.fromGuest(new Frame(id, Protocol.FLAG_SESSION_START, Net.CONNECT, connect("127.0.0.1", upstream.getLocalPort())));
                next(Net.CONNECTED);
                relay.fromGuest(new Frame(id, 0, Net.DATA, Json.object().put("data", hello)));
                Frame closed = next(Net.CLOSE);
                assertThat(closed.id()).isEqualTo(id);
                assertThat(closed.payload().path("reset").asBoolean()).isTrue();
                id += 2;
            }
            assertThat(log).anyMatch(l -> l.contains("for evil.test by"))
                    .anyMatch(l -> l.contains("hides the server name"));
            // an unfinished hello is let through past the sniff (the server may speak first), so its upstream was
            // connected; nothing of it reached the server
            drainAccepted(upstream);

            toGuest.clear();
            byte[] good = ServerNameSnifferTest.records(ServerNameSnifferTest.handshake("good.test", 0), 20);
            relay.fromGuest(new Frame(id, Protocol.FLAG_SESSION_START, Net.CONNECT, connect("127.0.0.1", upstream.getLocalPort())));
            next(Net.CONNECTED);
            relay.fromGuest(new Frame(id, 0, Net.DATA, Json.object().put("data", good)));
            try (Socket s = upstream.accept()) {
                assertThat(s.getInputStream().readNBytes(good.length)).isEqualTo(good);
            }
        }
    }

    /** Accepts what the relay connected so far and checks that none of it carried a byte. */
    private static void drainAccepted(ServerSocket upstream) throws Exception {
        upstream.setSoTimeout(200);
        while (true) {
            try (Socket s = upstream.accept()) {
                s.setSoTimeout(2000);
                int first;
                try {
                    first = s.getInputStream().read();
                } catch (java.io.IOException reset) {
                    first = -1;
                }
                assertThat(first).as("nothing of a refused hello reached the server").isEqualTo(-1);
            } catch (java.net.SocketTimeoutException none) {
                upstream.setSoTimeout(0);
                return;
            }
        }
    }

    /** A resolver that answers every A query with 127.0.0.1. */
    private static void answerEveryQueryWithLoopback(java.net.DatagramSocket dns) {
        byte[] buf = new byte[512];
        while (!dns.isClosed()) {
            try {
                java.net.DatagramPacket q = new java.net.DatagramPacket(buf, buf.length);
                dns.receive(q);
                java.io.ByteArrayOutputStream a = new java.io.ByteArrayOutputStream();
                a.write(buf, 0, 2);
                a.writeBytes(new byte[] {(byte) 0x81, (byte) 0x80, 0, 1, 0, 1, 0, 0, 0, 0});
                a.write(buf, 12, q.getLength() - 12);
                a.writeBytes(new byte[] {(byte) 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1});
                dns.send(new java.net.DatagramPacket(a.toByteArray(), a.size(), q.getSocketAddress()));
            } catch (java.io.IOException closed) {
                return;
            }
        }
    }

    /**
     * A window frame the supervisor's queue dropped (an agent that left too many control frames
     * unread) is not lost: its credit goes with the next one, or again once the connection idles.
     */
    @Test
    void windowCreditOfADroppedFrameStillReachesTheGuest() throws Exception {
        try (ServerSocket upstream = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            relay(NetworkPolicy.allowAll(), List.of());
            relay.fromGuest(frame(Protocol.FLAG_SESSION_START, Net.CONNECT, connect("127.0.0.1", upstream.getLocalPort())));
            try (Socket s = upstream.accept()) {
                next(Net.CONNECTED);
                droppedWindows.set(1);
                relay.fromGuest(frame(0, Net.DATA, data("hello")));
                assertThat(new String(s.getInputStream().readNBytes(5), StandardCharsets.UTF_8)).isEqualTo("hello");
                assertThat(next(Net.WINDOW).number("bytes")).as("sent again while the connection idles").isEqualTo(5L);
                droppedWindows.set(1);
                relay.fromGuest(frame(0, Net.DATA, data("hello")));
                s.getInputStream().readNBytes(5);
                relay.fromGuest(frame(0, Net.DATA, data("world")));
                s.getInputStream().readNBytes(5);
                assertThat(next(Net.WINDOW).number("bytes")).as("with the next window").isEqualTo(10L);
            }
        }
    }

    /** A keep-alive connection judged by its first request cannot switch to a denied host on the same address. */
    @Test
    void aLaterRequestOfAKeepAliveConnectionIsCheckedToo() throws Exception {
        NetworkPolicy policy = NetworkPolicy.builder().rule(io.microsandbox.NetworkRule.deny("evil.test"))
                .rule(io.microsandbox.NetworkRule.allow("*")).rebindingProtection(false).build();
        try (ServerSocket upstream = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            relay(policy, List.of());
            relay.fromGuest(frame(Protocol.FLAG_SESSION_START, Net.CONNECT, connect("127.0.0.1", upstream.getLocalPort())));
            next(Net.CONNECTED);
            String first = "GET / HTTP/1.1\r\nHost: good.test\r\n\r\n";
            relay.fromGuest(frame(0, Net.DATA, data(first)));
            try (Socket s = upstream.accept()) {
                s.setSoTimeout(10_000);
                InputStream in = s.getInputStream();
                assertThat(new String(in.readNBytes(first.length()), StandardCharsets.UTF_8)).isEqualTo(first);
                relay.fromGuest(frame(0, Net.DATA, data("GET /secret HTTP/1.1\r\nHost: evil.test\r\n\r\n")));
                assertThat(next(Net.CLOSE).payload().path("reset").asBoolean()).isTrue();
                int more;
                try {
                    more = in.read();
                } catch (java.net.SocketException reset) {
                    more = -1;
                }
                assertThat(more).as("nothing of the second request reached the server").isEqualTo(-1);
                assertThat(log).anyMatch(l -> l.equals("network: denied a request for evil.test on the tcp connection to 127.0.0.1:"
                        + upstream.getLocalPort() + " for good.test by rule 1 (deny evil.test): connection reset"));
            }
        }
    }

    /** A name the guest sends is logged as text, never as the escape sequence it may hold. */
    @Test
    void aDeniedNameIsLoggedWithoutItsControlCharacters() throws Exception {
        NetworkPolicy policy = NetworkPolicy.builder().rule(io.microsandbox.NetworkRule.allow("good.test"))
                .rule(io.microsandbox.NetworkRule.deny("*")).rebindingProtection(false).build();
        try (ServerSocket upstream = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            relay(policy, List.of());
            relay.fromGuest(frame(Protocol.FLAG_SESSION_START, Net.CONNECT, connect("127.0.0.1", upstream.getLocalPort())));
            next(Net.CONNECTED);
            relay.fromGuest(frame(0, Net.DATA, data("GET / HTTP/1.1\r\nHost: x\u001b]52;c;QUFB\u0007.test\r\n\r\n")));
            assertThat(next(Net.CLOSE).payload().path("reset").asBoolean()).isTrue();
            assertThat(log).anyMatch(l -> l.contains("for x\\x1b]52;c;qufb\\x07.test by"))
                    .noneMatch(l -> l.chars().anyMatch(Character::isISOControl));
        }
    }

    @Test
    void deniedAndMalformedRequestsAreResetAndLogged() throws Exception {
        relay(NetworkPolicy.publicOnly(), List.of());
        relay.fromGuest(frame(Protocol.FLAG_SESSION_START, Net.CONNECT, connect("127.0.0.1", 9)));
        Frame closed = next(Net.CLOSE);
        assertThat(closed.isTerminal()).isTrue();
        assertThat(closed.payload().path("reset").asBoolean()).isTrue();
        assertThat(log).anyMatch(l -> l.startsWith("network: denied tcp connection to 127.0.0.1:9 by default (deny)"));
        for (ObjectNode bad : List.of(connect("example.com", 80), connect("1.2.3.4", 0), connect("999.1.1.1", 80),
                Json.object())) {
            toGuest.clear();
            relay.fromGuest(new Frame(ID + 1, Protocol.FLAG_SESSION_START, Net.CONNECT, bad));
            assertThat(next(Net.CLOSE).payload().path("reset").asBoolean()).as(bad.toString()).isTrue();
        }
        assertThat(log).anyMatch(l -> l.contains("malformed connection request"));

        // frames for sessions that do not exist are ignored
        relay.fromGuest(new Frame(0x8000_0777, 0, Net.DATA, data("x")));
        relay.fromGuest(new Frame(0x8000_0777, 0, Net.WINDOW, Json.object().put("bytes", 5)));
        relay.fromGuest(new Frame(0x8000_0777, 0, "net.bogus", Json.object()));
    }

    /** The host's own session ids (published ports) are not the guest's to start sessions with, even toward an allowed destination. */
    @Test
    void aSessionOnAHostIdIsRefused() throws Exception {
        try (ServerSocket upstream = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            relay(NetworkPolicy.allowAll(), List.of());
            for (String type : List.of(Net.CONNECT, Net.UDP)) {
                toGuest.clear();
                ObjectNode p = type.equals(Net.CONNECT) ? connect("127.0.0.1", upstream.getLocalPort())
                        : Json.object().put("dst", "127.0.0.1").put("port", upstream.getLocalPort());
                relay.fromGuest(new Frame(0x4000_0001, Protocol.FLAG_SESSION_START, type, p));
                Frame first = toGuest.poll(10, TimeUnit.SECONDS);
                assertThat(first).isNotNull();
                assertThat(first.type()).as(type).isEqualTo(Net.CLOSE);
                assertThat(first.id()).isEqualTo(0x4000_0001);
            }
        }
    }

    @Test
    void lookupsArePolicedWithoutAnUpstream() throws Exception {
        relay(NetworkPolicy.none(), List.of());
        byte[] query = new byte[] {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
        relay.fromGuest(new Frame(ID, Protocol.FLAG_SESSION_START, Net.DNS,
                Json.object().put("query", query).put("dst", "10.0.2.3")));
        byte[] reply = next(Net.DNS_REPLY).bytes("reply");
        assertThat(DnsMessage.rcode(reply)).isEqualTo(DnsMessage.NXDOMAIN);
        assertThat(log).anyMatch(l -> l.contains("lookup of a.test denied"));
        relay.fromGuest(new Frame(ID + 1, Protocol.FLAG_SESSION_START, Net.DNS,
                Json.object().put("query", new byte[] {1, 2, 3}).put("dst", "10.0.2.3")));
        assertThat(next(Net.DNS_REPLY).bytes("reply")).as("garbage gets no answer").isEmpty();
    }

    @Test
    void publishedPortsAreTakenWhileRunningAndReleasedOnClose() throws Exception {
        int port;
        try (ServerSocket free = new ServerSocket(0)) {
            port = free.getLocalPort();
        }
        relay(NetworkPolicy.publicOnly(), List.of(PortBinding.tcp(port, 80)));
        NetworkSettings same = new NetworkSettings(NetworkPolicy.publicOnly(), List.of(PortBinding.tcp(port, 80)));
        assertThatThrownBy(same::checkPortsFree)
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
        try (Socket client = new Socket(InetAddress.getLoopbackAddress(), port)) {
            Frame open = next(Net.OPEN);
            assertThat(open.isSessionStart()).isTrue();
            assertThat(open.number("port")).isEqualTo(80L);
            assertThat(open.id() & 0xC000_0000).isEqualTo(0x4000_0000);
        }
        relay.close();
        same.checkPortsFree(); // released
    }
}

package io.microsandbox;

import io.microsandbox.NetworkPolicy.Profile;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import io.microsandbox.runtime.RuntimeFiles;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The sandbox network through real VMs: the guest reaches only what the host's policy
 * allows. Traffic goes only to test hosts this class creates on this machine (network
 * namespaces, see {@link NetTestHosts}) and to 127.0.0.1.
 */
class SandboxNetworkIT {
    /** A python3 helper in the guest: {@code probe URL...} prints one line per URL, OK or the error and how long it took. */
    private static final String PROBE = """
            import sys, time, urllib.request, socket
            for url in sys.argv[1:]:
                t = time.time()
                try:
                    body = urllib.request.urlopen(url, timeout=20).read()
                    print("OK", url, len(body), body[:40].decode(errors="replace").strip(), "%.2f" % (time.time() - t))
                except Exception as e:
                    r = getattr(e, "reason", e)
                    print("ERR", url, type(r).__name__, str(r).replace(" ", "_")[:80], "%.2f" % (time.time() - t))
            """;
    private static NetTestHosts hosts;
    private static ServerSocket hostService;

    @BeforeAll
    static void hosts() throws Exception {
        Assumptions.assumeTrue(NetTestHosts.isRoot(), "SandboxNetworkIT needs root (network namespaces and veth pairs); skipped");
        hosts = new NetTestHosts(Map.of(
                "pub.test", NetTestHosts.PUBLIC_IP,
                "www.pub.test", NetTestHosts.PUBLIC_IP,
                "blocked.test", NetTestHosts.PUBLIC_IP,
                "priv.test", NetTestHosts.PRIVATE_IP,
                "meta.test", "169.254.169.254"));
        hosts.startAuthorizationChecker("Bearer none-needed"); // keep-alive HTTP on 8080, HTTPS on 8443
        // a service of the host itself, on all addresses: the "host" group
        hostService = new ServerSocket();
        hostService.bind(new InetSocketAddress("0.0.0.0", 0));
        Thread t = new Thread(() -> {
            while (!hostService.isClosed()) {
                try (Socket s = hostService.accept()) {
                    s.getOutputStream().write("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhost\n".getBytes(StandardCharsets.US_ASCII));
                } catch (IOException e) {
                    // closed
                }
            }
        }, "host-service");
        t.setDaemon(true);
        t.start();
    }

    @AfterAll
    static void cleanUp() throws IOException {
        if (hostService != null) {
            hostService.close();
        }
        if (hosts != null) {
            hosts.close();
        }
    }

    private static Map<String, String> probe(Sandbox sb, String... urls) {
        ExecOutput out = sb.exec("python3", java.util.stream.Stream.concat(java.util.stream.Stream.of("-c", PROBE),
                java.util.stream.Stream.of(urls)).toList(), ExecOptions.builder().timeout(Duration.ofSeconds(120)).build());
        assertThat(out.exitCode()).as(out.stderr()).isZero();
        return out.stdout().lines().map(l -> l.split(" ", 3)).collect(Collectors.toMap(f -> f[1], f -> f[0] + " " + f[2]));
    }

    private static double seconds(String probeLine) {
        String[] f = probeLine.split(" ");
        return Double.parseDouble(f[f.length - 1]);
    }

    static String systemLog(Sandbox sb) {
        return sb.logs(LogOptions.builder().sources(LogSource.SYSTEM).build()).stream().map(LogEntry::text)
                .collect(Collectors.joining("\n"));
    }

    private static String hostUrl() {
        return "http://" + NetTestHosts.PUBLIC_HOST_SIDE + ":" + hostService.getLocalPort() + "/";
    }

    /**
     * A host client that sends its request, half-closes and reads slowly: the guest server's
     * answer, written after the request's end and closed, arrives whole. The guest socket hangs
     * up (both directions shut) while its last bytes still wait for the client's credit.
     */
    @Test
    void aHalfClosedConnectionGetsTheWholeAnswerOfAServerThatCloses() throws Exception {
        int published;
        try (ServerSocket free = new ServerSocket(0)) {
            published = free.getLocalPort();
        }
        int size = 8 << 20;
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("net-halfclose"), TestSandboxes.config()
                .network(NetworkPolicy.none()).ports(Map.of(published, 8001)).ephemeral(true).build())) {
            sb.fs().writeString("/tmp/answer.py", String.join("\n",
                    "import socket",
                    "s = socket.socket()",
                    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
                    "s.bind(('0.0.0.0', 8001))",
                    "s.listen(1)",
                    "while True:",
                    "    c, _ = s.accept()",
                    "    while c.recv(65536):",
                    "        pass",
                    "    c.sendall(b'x' * " + size + ")",
                    "    c.close()",
                    ""));
            sb.shell("(nohup python3 /tmp/answer.py > /dev/null 2>&1 &); for i in $(seq 1 300); do"
                    + " grep -q ':1F41 00000000:0000 0A' /proc/net/tcp && break; sleep 0.1; done");
            long received = 0;
            try (Socket client = new Socket(InetAddress.getLoopbackAddress(), published)) {
                client.setReceiveBufferSize(16 << 10);
                client.getOutputStream().write("request".getBytes(StandardCharsets.US_ASCII));
                client.shutdownOutput();
                InputStream in = client.getInputStream();
                byte[] buf = new byte[16 << 10];
                int n;
                while ((n = in.read(buf)) > 0) {
                    received += n;
                    Thread.sleep(2); // slower than the guest writes: its credit runs out
                }
            }
            assertThat(received).isEqualTo(size);
        }
    }

    @Test
    void defaultPolicyReachesThePublicInternetOnly() throws Exception {
        int published;
        try (ServerSocket free = new ServerSocket(0)) {
            published = free.getLocalPort();
        }
        int publishedUdp;
        try (java.net.DatagramSocket free = new java.net.DatagramSocket(0)) {
            publishedUdp = free.getLocalPort();
        }
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("net-default"), TestSandboxes.config()
                .network(NetworkPolicy.publicOnly().toBuilder().dnsServers(hosts.dnsServer()).build())
                .ports(Map.of(published, 8000))
                .portsUdp(Map.of(publishedUdp, 9999))
                .ephemeral(true)
                .build())) {
            // no NIC in the guest: no interface has a device behind it (lo and sit0 are virtual)
            assertThat(sb.shell("ls /sys/class/net").stdout()).contains("lo");
            assertThat(sb.shell("ls -d /sys/class/net/*/device 2>/dev/null; ls /sys/bus/virtio/drivers/virtio_net 2>/dev/null | grep virtio").stdout())
                    .isEmpty();

            Map<String, String> r = probe(sb, "http://" + NetTestHosts.PUBLIC_IP + "/", "http://pub.test/",
                    "http://" + NetTestHosts.PRIVATE_IP + "/", "http://169.254.169.254/latest/meta-data/", hostUrl(),
                    "http://priv.test/", "http://meta.test/");
            assertThat(r.get("http://" + NetTestHosts.PUBLIC_IP + "/")).startsWith("OK 25 hello from the test host");
            assertThat(r.get("http://pub.test/")).startsWith("OK 25 hello");
            // denied connections fail fast with a reset, and are logged
            for (String denied : List.of("http://" + NetTestHosts.PRIVATE_IP + "/", "http://169.254.169.254/latest/meta-data/", hostUrl())) {
                assertThat(r.get(denied)).as(denied).startsWith("ERR");
                assertThat(seconds(r.get(denied))).as(denied).isLessThan(5);
            }
            // rebinding protection: names that resolve to private or metadata addresses are refused
            assertThat(r.get("http://priv.test/")).startsWith("ERR gaierror");
            assertThat(r.get("http://meta.test/")).startsWith("ERR gaierror");
            String log = systemLog(sb);
            assertThat(log).contains("network: denied tcp connection to " + NetTestHosts.PRIVATE_IP + ":80")
                    .contains("network: denied tcp connection to 169.254.169.254:80")
                    .contains("network: denied tcp connection to " + NetTestHosts.PUBLIC_HOST_SIDE + ":" + hostService.getLocalPort())
                    .contains("answer for priv.test holds " + NetTestHosts.PRIVATE_IP)
                    .contains("rebinding protection");

            // UDP: a flow to the public host is carried both ways, one to the private host is dropped
            ExecOutput udp = sb.exec("python3", List.of("-c", UDP_CLIENT, NetTestHosts.PUBLIC_IP, NetTestHosts.PRIVATE_IP),
                    ExecOptions.builder().timeout(Duration.ofSeconds(120)).build());
            assertThat(udp.stdout()).as(udp.stderr())
                    .contains("udp " + NetTestHosts.PUBLIC_IP + " ping-udp ping-udp-2", "udp " + NetTestHosts.PRIVATE_IP + " ERR");
            assertThat(systemLog(sb)).contains("network: denied udp to " + NetTestHosts.PRIVATE_IP + ":7 by default (deny)");

            // a 4 MiB download arrives whole, and counts in the metrics
            ExecOutput big = sb.shell("python3 -c \"import urllib.request,hashlib;"
                    + "print(hashlib.sha256(urllib.request.urlopen('http://pub.test/big.bin').read()).hexdigest())\"");
            assertThat(big.stdout().trim()).isEqualTo(sha256OfBigFile());
            Metrics m = sb.metrics();
            assertThat(m.netRxBytes()).isGreaterThan(4L * 1024 * 1024);
            assertThat(m.netTxBytes()).isGreaterThan(0);

            // the published port: 127.0.0.1 only, reaches the guest service while it runs
            sb.shell("cd /tmp && echo published-ok > index.html && (nohup python3 -m http.server 8000 >/dev/null 2>&1 &)");
            assertThat(httpGetWithRetry("127.0.0.1", published)).contains("published-ok");
            assertThatThrownBy(() -> httpGet(NetTestHosts.PUBLIC_HOST_SIDE, published)).isInstanceOf(IOException.class);
            // the published UDP port reaches a guest UDP echo server
            sb.shell("(nohup python3 -c \"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    + "s.bind(('0.0.0.0', 9999))\nwhile True:\n    d, a = s.recvfrom(9000)\n    s.sendto(b'echo:' + d, a)\n\" >/dev/null 2>&1 &)");
            assertThat(udpEchoWithRetry(publishedUdp)).isEqualTo("echo:hello-udp");
            // the port is taken while the sandbox runs: another sandbox cannot publish it
            assertThatThrownBy(() -> Sandbox.create(TestSandboxes.uniqueName("net-taken"), TestSandboxes.config()
                    .ports(Map.of(published, 8000)).ephemeral(true).build()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                        assertThat(e.getMessage()).contains(Integer.toString(published));
                    });

            // root in the guest: no interface leads out; deleting the agent's route only cuts the guest off
            ExecOutput bypass = sb.exec("python3", List.of("-c", ROOT_BYPASS, NetTestHosts.PRIVATE_IP, NetTestHosts.PUBLIC_IP),
                    ExecOptions.builder().timeout(Duration.ofSeconds(120)).build());
            assertThat(bypass.stdout()).as(bypass.stderr()).contains("raw-sent").contains("connect-after-route-delete ERR");
            assertThat(bypass.stdout()).doesNotContain("connect-after-route-delete OK");
        }
        // released with the sandbox
        try (ServerSocket again = new ServerSocket()) {
            again.bind(new InetSocketAddress("127.0.0.1", published));
        }
    }

    /** Two datagrams of one flow to each address's UDP echo port; prints the echoes or the error. */
    private static final String UDP_CLIENT = """
            import socket, sys
            for ip in sys.argv[1:]:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(5)
                try:
                    s.sendto(b"ping-udp", (ip, 7))
                    first = s.recvfrom(100)[0].decode()
                    s.sendto(b"ping-udp-2", (ip, 7))
                    print("udp", ip, first, s.recvfrom(100)[0].decode(), flush=True)
                except OSError as e:
                    print("udp", ip, "ERR", type(e).__name__, flush=True)
            """;

    /** Root in the guest: raw IP packets to the private host, a TUN device with a default route, then the agent's route deleted. */
    private static final String ROOT_BYPASS = """
            import socket, sys, struct, fcntl, os, time
            target = sys.argv[1]
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            pkt = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, socket.inet_aton("10.0.2.15"), socket.inet_aton(target)) + b"\\0" * 20
            try:
                s.sendto(pkt, (target, 0)); print("raw-sent")
            except OSError as e:
                print("raw-sent-failed", e)
            try:
                tun = os.open("/dev/net/tun", os.O_RDWR)
                fcntl.ioctl(tun, 0x400454ca, struct.pack("16sH", b"evil0", 0x0001 | 0x1000))
                print("tun-created")
            except OSError as e:
                print("tun-failed", e)
            # RTM_DELROUTE of local 0.0.0.0/0 in table local
            nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
            rt = struct.pack("BBBBBBBBI", socket.AF_INET, 0, 0, 0, 255, 3, 254, 2, 0)
            hdr = struct.pack("IHHII", 16 + len(rt), 25, 0x1 | 0x4, 1, 0)
            nl.sendto(hdr + rt, (0, 0))
            print("route-delete", struct.unpack("i", nl.recv(512)[16:20])[0])
            for addr in sys.argv[1:]:
                c = socket.socket(); c.settimeout(10)
                try:
                    c.connect((addr, 80)); print("connect-after-route-delete OK", addr)
                except OSError as e:
                    print("connect-after-route-delete ERR", addr, e)
            """;

    @Test
    void rulesMatchInOrderByDomainSuffixCidrAndWildcard() throws Exception {
        NetworkPolicy policy = NetworkPolicy.builder()
                .rule(NetworkRule.deny("127.0.0.0/8").direction(NetworkRule.Direction.INGRESS))
                .rule(NetworkRule.deny("blocked.test"))
                .rule(NetworkRule.allow(".pub.test").ports(80))
                .rule(NetworkRule.allow(NetTestHosts.PRIVATE_IP + "/24").ports(80))
                .rule(NetworkRule.deny(NetTestHosts.PRIVATE_IP))
                .rule(NetworkRule.deny("*"))
                .dnsServers(hosts.dnsServer())
                .build();
        int published;
        try (ServerSocket free = new ServerSocket(0)) {
            published = free.getLocalPort();
        }
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("net-rules"), TestSandboxes.config()
                .network(policy).ports(Map.of(published, 8000)).ephemeral(true).build())) {
            // the ingress rule refuses clients from 127.0.0.0/8 at the published port
            assertThatThrownBy(() -> httpGet("127.0.0.1", published)).isInstanceOf(IOException.class);
            // by address before any lookup: no name, so only "*" matches
            Map<String, String> first = probe(sb, "http://" + NetTestHosts.PUBLIC_IP + "/");
            assertThat(first.get("http://" + NetTestHosts.PUBLIC_IP + "/")).startsWith("ERR");
            Map<String, String> r = probe(sb, "http://pub.test/", "http://www.pub.test/", "http://blocked.test/",
                    "http://" + NetTestHosts.PRIVATE_IP + "/", "http://priv.test/", "http://pub.test:81/");
            assertThat(r.get("http://pub.test/")).as("suffix rule, the domain itself").startsWith("OK");
            assertThat(r.get("http://www.pub.test/")).as("suffix rule, a subdomain").startsWith("OK");
            assertThat(r.get("http://blocked.test/")).as("exact domain denied: NXDOMAIN").startsWith("ERR gaierror");
            assertThat(r.get("http://" + NetTestHosts.PRIVATE_IP + "/")).as("CIDR allow before the exact deny").startsWith("OK");
            assertThat(r.get("http://priv.test/")).as("no domain rule names it: \"deny *\" denies the lookup").startsWith("ERR gaierror");
            assertThat(r.get("http://pub.test:81/")).as("port outside the rule").startsWith("ERR");
            assertThat(systemLog(sb)).contains("lookup of blocked.test denied by rule 2")
                    .contains("denied tcp connection to " + NetTestHosts.PUBLIC_IP + ":80 by rule 6 (deny *)")
                    .contains("network: refused a connection from 127.0.0.1 to published port " + published + " by rule 1");

            // domain rules also match what the client names: HTTP Host and TLS SNI, to the address pub.test resolved to
            ExecOutput named = sb.exec("python3", List.of("-c", NAMED_CLIENT, NetTestHosts.PUBLIC_IP),
                    ExecOptions.builder().timeout(Duration.ofSeconds(120)).build());
            assertThat(named.stdout()).as(named.stderr())
                    .contains("http pub.test OK", "http www.pub.test OK", "http blocked.test ERR", "http other.test ERR",
                            "tls www.pub.test SSL", "tls blocked.test ERR");
            assertThat(systemLog(sb)).containsPattern("denied tcp connection to " + NetTestHosts.PUBLIC_IP.replace(".", "\\.")
                    + ":80 \\([a-z., ]*pub\\.test[a-z., ]*\\) for blocked\\.test by rule 2 \\(deny blocked\\.test\\)")
                    .contains("for other.test by rule 6 (deny *)");
        }
    }

    /**
     * Domain rules judge every request of a connection, not only its first bytes: a keep-alive
     * connection to an allowed name cannot go on to a denied name served at the same address, in
     * plaintext nor inside intercepted TLS (domain fronting: SNI allowed, Host denied).
     */
    @Test
    void everyRequestOfAConnectionIsJudgedByTheDomainRules() throws Exception {
        NetworkPolicy policy = NetworkPolicy.builder()
                .rule(NetworkRule.deny("blocked.test"))
                .rule(NetworkRule.allow(".pub.test"))
                .rule(NetworkRule.deny("*"))
                .dnsServers(hosts.dnsServer()).tlsInterception(true).tlsTrustedCaFile(hosts.tlsCertFile())
                .build();
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("net-per-request"), TestSandboxes.config()
                .network(policy).ephemeral(true).build())) {
            ExecOutput out = sb.exec("python3", List.of("-c", KEEP_ALIVE_CLIENT),
                    ExecOptions.builder().timeout(Duration.ofSeconds(120)).build());
            // the checker answers "bad" to a request without its Authorization: an answer all the same
            assertThat(out.stdout()).as(out.stderr()).containsPattern("plain bad ERR_\\w+")
                    .containsPattern("tls bad ERR_\\w+");
            assertThat(systemLog(sb))
                    .contains("network: denied a request for blocked.test on the tcp connection to " + NetTestHosts.PUBLIC_IP + ":8080")
                    .contains("network: denied a request for blocked.test on the tcp connection to " + NetTestHosts.PUBLIC_IP + ":8443");
        }
    }

    /** On one keep-alive connection per kind, a request for pub.test, then one naming blocked.test; each answer or ERR_. */
    private static final String KEEP_ALIVE_CLIENT = """
            import http.client, ssl
            for kind in ("plain", "tls"):
                if kind == "tls":
                    c = http.client.HTTPSConnection("pub.test", 8443, context=ssl.create_default_context(), timeout=30)
                else:
                    c = http.client.HTTPConnection("pub.test", 8080, timeout=30)
                answers = []
                for host in ("pub.test", "blocked.test"):
                    try:
                        c.request("GET", "/", headers={"Host": host})
                        answers.append(c.getresponse().read().decode())
                    except Exception as e:
                        answers.append("ERR_" + type(e).__name__)
                print(kind, *answers, flush=True)
            """;

    /** HTTP requests and TLS handshakes to one address under different Host / SNI names; "SSL": the handshake reached the (plain HTTP) server. */
    private static final String NAMED_CLIENT = """
            import socket, ssl, sys
            ip = sys.argv[1]
            socket.gethostbyname("pub.test")
            def http(host):
                try:
                    s = socket.create_connection((ip, 80), timeout=20)
                    s.sendall(("GET / HTTP/1.1\\r\\nHost: %s\\r\\nConnection: close\\r\\n\\r\\n" % host).encode())
                    print("http", host, "OK" if s.recv(100).startswith(b"HTTP/1") else "ERR empty", flush=True)
                except OSError as e:
                    print("http", host, "ERR", type(e).__name__, flush=True)
            def tls(name):
                try:
                    context = ssl.create_default_context()  # before connecting: see TLS_CLIENT
                    s = socket.create_connection((ip, 80), timeout=20)
                    context.wrap_socket(s, server_hostname=name)
                    print("tls", name, "OK", flush=True)
                except ssl.SSLError as e:
                    print("tls", name, "SSL", type(e).__name__, flush=True)
                except OSError as e:
                    print("tls", name, "ERR", type(e).__name__, flush=True)
            for h in ("pub.test", "www.pub.test", "blocked.test", "other.test"):
                http(h)
            for n in ("www.pub.test", "blocked.test"):
                tls(n)
            """;

    /**
     * For each name: the issuer the guest sees on port 443 and the body of https://NAME/, or the
     * error. The context (which loads the CA bundle, seconds under a loaded TCG guest) is made
     * before connecting: the relay waits 3 s at most for the first bytes to learn the name, and
     * a connection whose ClientHello comes later is not intercepted.
     */
    private static final String TLS_CLIENT = """
            import socket, ssl, sys, urllib.error, urllib.request
            for name in sys.argv[1:]:
                try:
                    context = ssl.create_default_context()
                    with socket.create_connection((name, 443), timeout=20) as s:
                        with context.wrap_socket(s, server_hostname=name) as t:
                            issuer = dict(x[0] for x in t.getpeercert()["issuer"])["commonName"]
                    body = urllib.request.urlopen("https://%s/" % name, timeout=20).read().decode().strip()
                    print("tls", name, "issuer=" + issuer.replace(" ", "_"), "body=" + body.replace(" ", "_"), flush=True)
                except Exception as e:
                    r = e.reason if isinstance(e, urllib.error.URLError) and isinstance(e.reason, Exception) else e
                    print("tls", name, "ERR", type(r).__name__, flush=True)
            """;

    @Test
    void tlsInterceptionPresentsTheHomeCaVerifiesUpstreamAndHonoursTheBypassList() throws Exception {
        NetworkPolicy intercepting = NetworkPolicy.publicOnly().toBuilder().dnsServers(hosts.dnsServer())
                .tlsInterception(true).tlsTrustedCaFile(hosts.tlsCertFile()).build();
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("net-tls"), TestSandboxes.config()
                .network(intercepting).ephemeral(true).build())) {
            ExecOutput out = sb.exec("python3", List.of("-c", TLS_CLIENT, "pub.test"),
                    ExecOptions.builder().timeout(Duration.ofSeconds(120)).build());
            assertThat(out.stdout()).as(out.stderr()).contains("tls pub.test issuer=microsandbox_CA_")
                    .contains("body=hello_from_the_test_host");
        }
        // bypassed names keep the server's own certificate (untrusted by the guest here); an
        // upstream the host does not trust is refused
        NetworkPolicy bypassing = NetworkPolicy.publicOnly().toBuilder().dnsServers(hosts.dnsServer())
                .tlsInterception(true).tlsBypass("www.pub.test").build();
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("net-tls-bypass"), TestSandboxes.config()
                .network(bypassing).ephemeral(true).build())) {
            ExecOutput out = sb.exec("python3", List.of("-c", TLS_CLIENT, "www.pub.test", "pub.test"),
                    ExecOptions.builder().timeout(Duration.ofSeconds(120)).build());
            assertThat(out.stdout()).as(out.stderr()).contains("tls www.pub.test ERR SSLCertVerificationError")
                    .contains("tls pub.test ERR");
            assertThat(systemLog(sb)).contains("network: TLS to pub.test (" + NetTestHosts.PUBLIC_IP + ":443) failed");
        }
        assertThat(Files.readString(RuntimeFiles.defaultHome().resolve("tls").resolve("ca.pem"))).contains("BEGIN CERTIFICATE");
    }

    @Test
    void profilesOpenPrivateAndHostButNeverMetadataAndNoneHasNoNetwork() throws Exception {
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("net-profiles"), TestSandboxes.config()
                .network(NetworkPolicy.fromProfiles(Profile.PRIVATE, Profile.HOST).toBuilder().dnsServers(hosts.dnsServer()).build())
                .ephemeral(true).build())) {
            Map<String, String> r = probe(sb, "http://" + NetTestHosts.PRIVATE_IP + "/", hostUrl(),
                    "http://169.254.169.254/", "http://" + NetTestHosts.PUBLIC_IP + "/");
            assertThat(r.get("http://" + NetTestHosts.PRIVATE_IP + "/")).startsWith("OK");
            assertThat(r.get(hostUrl())).startsWith("OK 5 host");
            assertThat(r.get("http://169.254.169.254/")).startsWith("ERR");
            assertThat(r.get("http://" + NetTestHosts.PUBLIC_IP + "/")).startsWith("ERR");
        }
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("net-none"), TestSandboxes.config()
                .network(NetworkPolicy.none()).ephemeral(true).build())) {
            Map<String, String> r = probe(sb, "http://" + NetTestHosts.PUBLIC_IP + "/");
            assertThat(r.get("http://" + NetTestHosts.PUBLIC_IP + "/")).startsWith("ERR");
            assertThat(seconds(r.get("http://" + NetTestHosts.PUBLIC_IP + "/"))).isLessThan(5);
        }
    }

    private static String sha256OfBigFile() throws Exception {
        byte[] big = new byte[4 * 1024 * 1024];
        new java.util.Random(7).nextBytes(big);
        return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256").digest(big));
    }

    static String httpGet(String host, int port) throws IOException {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(host, port), 5000);
            s.setSoTimeout(20_000);
            s.getOutputStream().write("GET / HTTP/1.0\r\nHost: x\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
            InputStream in = s.getInputStream();
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    private static String udpEchoWithRetry(int port) throws Exception {
        try (java.net.DatagramSocket s = new java.net.DatagramSocket()) {
            s.setSoTimeout(2000);
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            while (true) {
                byte[] msg = "hello-udp".getBytes(StandardCharsets.US_ASCII);
                s.send(new java.net.DatagramPacket(msg, msg.length, InetAddress.getLoopbackAddress(), port));
                try {
                    java.net.DatagramPacket p = new java.net.DatagramPacket(new byte[100], 100);
                    s.receive(p);
                    return new String(p.getData(), 0, p.getLength(), StandardCharsets.US_ASCII);
                } catch (java.net.SocketTimeoutException e) {
                    if (System.nanoTime() > deadline) {
                        throw new AssertionError("no echo through the published UDP port");
                    }
                }
            }
        }
    }

    static String httpGetWithRetry(String host, int port) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (true) {
            try {
                String body = httpGet(host, port);
                if (body.contains("200")) {
                    return body;
                }
            } catch (IOException e) {
                if (System.nanoTime() > deadline) {
                    throw e;
                }
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("no answer through the published port");
            }
            Thread.sleep(500);
        }
    }
}

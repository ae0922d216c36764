package io.microsandbox;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Test hosts on this machine only, for the network tests: network namespaces joined to the
 * host by veth pairs, each running a small HTTP server, and a DNS responder on 127.0.0.1
 * answering test names. Needs root; {@link #close()} removes everything it created.
 *
 * <ul>
 *   <li>"public": 198.51.100.10 (TEST-NET-2, public for the policy), host side 198.51.100.1; not
 *       TEST-NET-3, where this machine's package registries live</li>
 *   <li>"private": 10.200.0.10, host side 10.200.0.1</li>
 *   <li>each also echoes UDP datagrams on port 7</li>
 * </ul>
 */
final class NetTestHosts implements AutoCloseable {
    static final String PUBLIC_IP = "198.51.100.10";
    static final String PUBLIC_HOST_SIDE = "198.51.100.1";
    static final String PRIVATE_IP = "10.200.0.10";

    private final String tag = Long.toString(ProcessHandle.current().pid() % 100000);
    private final List<String> namespaces = new ArrayList<>();
    private final List<String> hostLinks = new ArrayList<>();
    private final List<Process> servers = new ArrayList<>();
    private final Path webRoot;
    private final Path tlsDir;
    private DatagramSocket dns;
    private Thread dnsThread;

    NetTestHosts(Map<String, String> names) throws IOException, InterruptedException {
        removeLeftoversOfDeadRuns();
        webRoot = Files.createTempDirectory("msb-net-web");
        Files.writeString(webRoot.resolve("index.html"), "hello from the test host\n");
        // 4 MiB for the throughput check
        byte[] big = new byte[4 * 1024 * 1024];
        new java.util.Random(7).nextBytes(big);
        Files.write(webRoot.resolve("big.bin"), big);
        // a self-signed certificate for pub.test and www.pub.test: the public host's HTTPS server
        tlsDir = Files.createTempDirectory("msb-net-tls");
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", tlsDir.resolve("key.pem").toString(), "-out", tlsDir.resolve("cert.pem").toString(),
                "-subj", "/CN=pub.test", "-addext", "subjectAltName=DNS:pub.test,DNS:www.pub.test", "-days", "2");
        try {
            host("pub", "198.51.100", PUBLIC_IP);
            host("priv", "10.200.0", PRIVATE_IP);
            startDns(names);
        } catch (IOException | InterruptedException | RuntimeException e) {
            close();
            throw e;
        }
    }

    static boolean isRoot() {
        return "root".equals(System.getProperty("user.name"));
    }

    /** The public host's HTTPS certificate (self-signed, PEM): trust it to reach https://pub.test/. */
    String tlsCertFile() {
        return tlsDir.resolve("cert.pem").toString();
    }

    /** Where the DNS responder listens, as a policy's dnsServers entry. */
    String dnsServer() {
        return "127.0.0.1:" + dns.getLocalPort();
    }

    private void host(String role, String net, String ip) throws IOException, InterruptedException {
        String ns = "msbt-" + role + "-" + tag;
        String hostSide = "mh" + role + tag;
        String nsSide = "mn" + role + tag;
        sh("ip", "netns", "add", ns);
        namespaces.add(ns);
        sh("ip", "link", "add", hostSide, "type", "veth", "peer", "name", nsSide);
        hostLinks.add(hostSide);
        sh("ip", "link", "set", nsSide, "netns", ns);
        sh("ip", "addr", "add", net + ".1/24", "dev", hostSide);
        sh("ip", "link", "set", hostSide, "up");
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", ip + "/24", "dev", nsSide);
        sh("ip", "netns", "exec", ns, "ip", "link", "set", nsSide, "up");
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up");
        sh("ip", "netns", "exec", ns, "ip", "route", "add", "default", "via", net + ".1");
        // http.server's own server_bind looks its address up (getfqdn): none of that in a namespace without DNS
        Process server = new ProcessBuilder("ip", "netns", "exec", ns, "python3", "-c",
                "import functools, http.server, socketserver, sys\n"
                        + "class Server(http.server.ThreadingHTTPServer):\n"
                        + "    def server_bind(self):\n"
                        + "        socketserver.TCPServer.server_bind(self)\n"
                        + "        self.server_name, self.server_port = 'test', self.server_address[1]\n"
                        + "Server((sys.argv[1], 80), functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2]))"
                        + ".serve_forever()\n", ip, webRoot.toString())
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        servers.add(server);
        if (role.equals("pub")) {
            servers.add(new ProcessBuilder("ip", "netns", "exec", ns, "python3", "-c",
                    "import functools, http.server, socketserver, ssl, sys\n"
                            + "class Server(http.server.ThreadingHTTPServer):\n"
                            + "    def server_bind(self):\n"
                            + "        socketserver.TCPServer.server_bind(self)\n"
                            + "        self.server_name, self.server_port = 'test', self.server_address[1]\n"
                            + "srv = Server((sys.argv[1], 443), functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2]))\n"
                            + "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
                            + "ctx.load_cert_chain(sys.argv[3], sys.argv[4])\n"
                            + "srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n"
                            + "srv.serve_forever()\n", ip, webRoot.toString(), tlsDir.resolve("cert.pem").toString(),
                    tlsDir.resolve("key.pem").toString())
                    .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start());
        }
        // a UDP echo server on port 7
        servers.add(new ProcessBuilder("ip", "netns", "exec", ns, "python3", "-c",
                "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('" + ip + "', 7))\n"
                        + "while True:\n    d, a = s.recvfrom(65535)\n    s.sendto(d, a)\n")
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start());
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (true) {
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress(ip, 80), 1000);
                return;
            } catch (IOException e) {
                if (System.nanoTime() > deadline || !server.isAlive()) {
                    throw new IOException("the test HTTP server on " + ip + " did not start", e);
                }
                Thread.sleep(100);
            }
        }
    }

    /**
     * An HTTP server on the public host's port 8080 and an HTTPS one on 8443 that answer "ok" when
     * the request's Authorization header is one of {@code accepted}, else "bad": never an echo, so a
     * value the host put in cannot come back into the guest. A POST is "ok" when its JSON body (by
     * {@code Content-Length}, which must be its exact length, or chunked) is {@code {"key": K}} with
     * {@code "Bearer " + K} one of {@code accepted}, "bad" for another key, "badbody" for a body
     * that is not such JSON; a body shorter than its length times out and closes the connection.
     */
    void startAuthorizationChecker(String... accepted) throws IOException, InterruptedException {
        String ns = "msbt-pub-" + tag;
        String script = "import http.server, json, socketserver, ssl, sys\n"
                + "class H(http.server.BaseHTTPRequestHandler):\n"
                + "    protocol_version = 'HTTP/1.1'\n"
                + "    timeout = 20\n"
                + "    def do_GET(self):\n"
                + "        self.do_answer(b'ok' if self.headers.get('Authorization') in sys.argv[3].split(',') else b'bad')\n"
                + "    def do_POST(self):\n"
                + "        if 'chunked' in self.headers.get('Transfer-Encoding', ''):\n"
                + "            data = b''\n"
                + "            while True:\n"
                + "                size = int(self.rfile.readline().split(b';')[0], 16)\n"
                + "                if size == 0:\n"
                + "                    while self.rfile.readline() not in (b'\\r\\n', b''):\n"
                + "                        pass\n"
                + "                    break\n"
                + "                data += self.rfile.read(size)\n"
                + "                self.rfile.readline()\n"
                + "        else:\n"
                + "            data = self.rfile.read(int(self.headers['Content-Length']))\n"
                + "        try:\n"
                + "            key = json.loads(data)['key']\n"
                + "            body = b'ok' if 'Bearer ' + key in sys.argv[3].split(',') else b'bad'\n"
                + "        except (ValueError, KeyError, TypeError):\n"
                + "            body = b'badbody'\n"
                + "        self.do_answer(body)\n"
                + "    def do_answer(self, body):\n"
                + "        self.send_response(200)\n"
                + "        self.send_header('Content-Length', str(len(body)))\n"
                + "        self.end_headers()\n"
                + "        self.wfile.write(body)\n"
                + "    def log_message(self, *a):\n"
                + "        pass\n"
                + "class S(http.server.ThreadingHTTPServer):\n"
                + "    def server_bind(self):\n"
                + "        socketserver.TCPServer.server_bind(self)\n"
                + "        self.server_name, self.server_port = 'test', self.server_address[1]\n"
                + "srv = S((sys.argv[1], int(sys.argv[2])), H)\n"
                + "if len(sys.argv) > 4:\n"
                + "    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
                + "    ctx.load_cert_chain(sys.argv[4], sys.argv[5])\n"
                + "    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n"
                + "srv.serve_forever()\n";
        String list = String.join(",", accepted);
        servers.add(new ProcessBuilder("ip", "netns", "exec", ns, "python3", "-c", script, PUBLIC_IP, "8080", list)
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start());
        servers.add(new ProcessBuilder("ip", "netns", "exec", ns, "python3", "-c", script, PUBLIC_IP, "8443", list,
                tlsDir.resolve("cert.pem").toString(), tlsDir.resolve("key.pem").toString())
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start());
        for (int port : new int[] {8080, 8443}) {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (true) {
                try (Socket s = new Socket()) {
                    s.connect(new InetSocketAddress(PUBLIC_IP, port), 1000);
                    break;
                } catch (IOException e) {
                    if (System.nanoTime() > deadline) {
                        throw new IOException("the authorization checker on port " + port + " did not start", e);
                    }
                    Thread.sleep(100);
                }
            }
        }
    }

    private void startDns(Map<String, String> names) throws IOException {
        dns = new DatagramSocket(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
        dnsThread = new Thread(() -> {
            byte[] buf = new byte[512];
            while (!dns.isClosed()) {
                try {
                    DatagramPacket p = new DatagramPacket(buf, buf.length);
                    dns.receive(p);
                    byte[] reply = answer(java.util.Arrays.copyOf(buf, p.getLength()), names);
                    dns.send(new DatagramPacket(reply, reply.length, p.getSocketAddress()));
                } catch (IOException | RuntimeException e) {
                    // closed, or a query we do not understand
                }
            }
        }, "test-dns");
        dnsThread.setDaemon(true);
        dnsThread.start();
    }

    /** A reply with one A record for a known name asked for type A; NXDOMAIN for unknown names. */
    private static byte[] answer(byte[] q, Map<String, String> names) {
        int p = 12;
        StringBuilder name = new StringBuilder();
        while (q[p] != 0) {
            if (name.length() > 0) {
                name.append('.');
            }
            name.append(new String(q, p + 1, q[p], StandardCharsets.US_ASCII));
            p += q[p] + 1;
        }
        int end = p + 5;
        int type = ((q[p + 1] & 0xff) << 8) | (q[p + 2] & 0xff);
        String ip = names.get(name.toString().toLowerCase(java.util.Locale.ROOT));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(q, 0, end);
        byte[] r = out.toByteArray();
        r[2] = (byte) (0x84 | (q[2] & 0x01));
        r[3] = (byte) (ip == null ? 0x83 : 0x80);
        boolean withAnswer = ip != null && type == 1;
        r[7] = (byte) (withAnswer ? 1 : 0);
        r[9] = r[11] = 0;
        out.reset();
        out.writeBytes(r);
        if (withAnswer) {
            out.writeBytes(new byte[] {(byte) 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4});
            for (String octet : ip.split("\\.")) {
                out.write(Integer.parseInt(octet));
            }
        }
        return out.toByteArray();
    }

    /**
     * The namespaces of a test JVM that was killed (its {@link #close} never ran) still hold
     * the same addresses, and their servers answer this run's connections with their own
     * certificate: removed first, with their servers.
     */
    private void removeLeftoversOfDeadRuns() throws IOException, InterruptedException {
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("(?m)^msbt-(pub|priv)-(\\d+)\\b").matcher(sh("ip", "netns", "list"));
        while (m.find()) {
            String role = m.group(1);
            String owner = m.group(2);
            boolean ownerAlive = ProcessHandle.allProcesses().anyMatch(h -> Long.toString(h.pid() % 100000).equals(owner)
                    && h.info().command().orElse("").endsWith("java"));
            if (owner.equals(tag) || ownerAlive) {
                continue;
            }
            String ns = "msbt-" + role + "-" + owner;
            for (String pid : sh("ip", "netns", "pids", ns).split("\\s+")) {
                if (pid.matches("\\d+")) {
                    ProcessHandle.of(Long.parseLong(pid)).ifPresent(ProcessHandle::destroyForcibly);
                }
            }
            try {
                sh("ip", "link", "del", "mh" + role + owner);
            } catch (IOException e) {
                // gone with its namespace already
            }
            sh("ip", "netns", "del", ns);
            System.err.println("removed " + ns + ", left by a test JVM that is gone");
        }
    }

    /** Runs a command; its output, or an IOException with it when it fails. */
    private static String sh(String... argv) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(argv).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new IOException(String.join(" ", argv) + " failed: " + out);
        }
        return out;
    }

    @Override
    public void close() {
        if (dns != null) {
            dns.close();
        }
        for (Process server : servers) {
            server.descendants().forEach(ProcessHandle::destroyForcibly);
            server.destroyForcibly();
            try {
                server.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        for (String link : hostLinks) {
            try {
                sh("ip", "link", "del", link);
            } catch (IOException | InterruptedException e) {
                // gone with its namespace already
            }
        }
        for (String ns : namespaces) {
            try {
                sh("ip", "netns", "del", ns);
            } catch (IOException | InterruptedException e) {
                System.err.println("cannot remove network namespace " + ns + ": " + e.getMessage());
            }
        }
        for (Path dir : new Path[] {webRoot, tlsDir}) {
            if (dir == null) {
                continue;
            }
            try (var files = Files.walk(dir)) {
                files.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
            } catch (IOException e) {
                // a temp directory
            }
        }
    }
}

package io.microsandbox;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Secrets against real VMs (docs/network.md, "Secrets"): the guest holds placeholders, the host
 * puts the values into requests toward allowed hosts only, and a placeholder anywhere else is
 * blocked, logged or ends the sandbox. The test hosts ({@link NetTestHosts}) check the
 * Authorization header and answer only "ok" or "bad", so no value can come back into the guest.
 * Needs root.
 */
class SandboxSecretsIT {
    private static final String KEY_VALUE = "real-tls-" + UUID.randomUUID();
    private static final String PLAIN_VALUE = "real-plain-" + UUID.randomUUID();
    private static final String CLIENT = """
            import http.client, json, ssl, sys
            kind, key, host, how = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
            def call(conn):
                try:
                    if how == "get":
                        conn.request("GET", "/", headers={"Authorization": "Bearer " + key})
                    else:
                        body = json.dumps({"key": key}).encode()
                        half = len(body) // 2  # chunked: the placeholder split across two chunks
                        conn.request("POST", "/", body=body if how == "post" else iter([body[:half], body[half:]]),
                                     headers={"Content-Type": "application/json"}, encode_chunked=how == "chunked")
                    return conn.getresponse().read().decode()
                except Exception as e:
                    return "ERR_" + type(e).__name__
            if kind == "tls":
                c = http.client.HTTPSConnection(host, 8443, context=ssl.create_default_context(), timeout=30)
            else:
                c = http.client.HTTPConnection(host, 8080, timeout=30)
            print(kind, host, call(c), call(c), flush=True)
            """;
    private static NetTestHosts hosts;

    @BeforeAll
    static void hosts() throws Exception {
        Assumptions.assumeTrue(NetTestHosts.isRoot(), "SandboxSecretsIT needs root (network namespaces and veth pairs); skipped");
        hosts = new NetTestHosts(Map.of("pub.test", NetTestHosts.PUBLIC_IP, "www.pub.test", NetTestHosts.PUBLIC_IP,
                "blocked.test", NetTestHosts.PUBLIC_IP));
        hosts.startAuthorizationChecker("Bearer " + KEY_VALUE, "Bearer " + PLAIN_VALUE);
    }

    @AfterAll
    static void cleanUp() throws IOException {
        if (hosts != null) {
            hosts.close();
        }
    }

    private NetworkPolicy intercepting() {
        return NetworkPolicy.publicOnly().toBuilder().dnsServers(hosts.dnsServer())
                .tlsInterception(true).tlsTrustedCaFile(hosts.tlsCertFile()).build();
    }

    /** Runs the client in the guest: two GETs on one connection, each printed as the server's answer or ERR_. */
    private static String request(Sandbox sb, String kind, String envName, String host) {
        return request(sb, kind, envName, host, "get");
    }

    /**
     * As {@link #request(Sandbox, String, String, String)} with {@code how}: "get" (the placeholder
     * in the Authorization header), "post" (in a JSON body by Content-Length) or "chunked" (the
     * same body chunked, the placeholder split across two chunks).
     */
    private static String request(Sandbox sb, String kind, String envName, String host, String how) {
        ExecOutput out = sb.shell("python3 -c '" + CLIENT.replace("'", "'\\''") + "' " + kind + " \"$" + envName + "\" " + host
                + " " + how, ExecOptions.builder().timeout(Duration.ofSeconds(120)).build());
        assertThat(out.exitCode()).as(out.stderr()).isZero();
        return out.stdout().trim();
    }

    private static String systemLog(Sandbox sb) {
        return sb.logs(LogOptions.builder().sources(LogSource.SYSTEM).build()).stream().map(LogEntry::text)
                .collect(Collectors.joining("\n"));
    }

    @Test
    void valuesGoOnlyToAllowedHostsAndNeverIntoTheSandboxFiles() throws Exception {
        Secret key = Secret.env("API_KEY", KEY_VALUE).allowHosts("pub.test").build();
        Secret plain = Secret.env("PLAIN_KEY", PLAIN_VALUE).allowHosts("pub.test").requireTls(false)
                .placeholder("plain-placeholder-0001").build();
        String name = TestSandboxes.uniqueName("secrets");
        Path home;
        try {
            try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().network(intercepting()).secret(key).secret(plain).build())) {
                home = sb.runtime().home();
                Path dir = home.resolve("sandboxes").resolve(name);
                assertThat(dir.resolve("secrets.json")).as("the hand-over file is gone once the supervisor read it").doesNotExist();

                String env = sb.shell("echo \"$API_KEY $PLAIN_KEY\"").stdout().trim();
                assertThat(env).isEqualTo(key.placeholder() + " plain-placeholder-0001");
                assertThat(key.placeholder()).startsWith("msb-secret-");

                // substituted toward the allowed host: over intercepted TLS, and in plaintext where allowed, on keep-alive connections
                assertThat(request(sb, "tls", "API_KEY", "pub.test")).isEqualTo("tls pub.test ok ok");
                assertThat(request(sb, "plain", "PLAIN_KEY", "pub.test")).isEqualTo("plain pub.test ok ok");
                // a literal placeholder the host does not know passes unchanged (and the server says so)
                assertThat(request(sb, "plain", "HOME", "pub.test")).isEqualTo("plain pub.test bad bad");

                // in request bodies too: the server gets the value with an exact Content-Length (the second
                // request on the connection would be misread otherwise) or in chunks; another host is refused
                assertThat(request(sb, "tls", "API_KEY", "pub.test", "post")).isEqualTo("tls pub.test ok ok");
                assertThat(request(sb, "plain", "PLAIN_KEY", "pub.test", "post")).isEqualTo("plain pub.test ok ok");
                assertThat(request(sb, "tls", "API_KEY", "pub.test", "chunked")).isEqualTo("tls pub.test ok ok");
                assertThat(request(sb, "plain", "PLAIN_KEY", "blocked.test", "post")).matches("plain blocked\\.test ERR_\\w+ ERR_\\w+");
                assertThat(request(sb, "tls", "API_KEY", "www.pub.test", "chunked")).matches("tls www\\.pub\\.test ERR_\\w+ ERR_\\w+");
                String bodyLog = systemLog(sb);
                assertThat(bodyLog).contains("the placeholder of secret PLAIN_KEY was sent to Host blocked.test:8080: connection reset")
                        .contains("the placeholder of secret API_KEY was sent to Host www.pub.test:8443: connection reset");

                // requireTls: the same allowed host in plaintext is a violation; another host (same address) too
                assertThat(request(sb, "plain", "API_KEY", "pub.test")).matches("plain pub\\.test ERR_\\w+ ERR_\\w+");
                assertThat(request(sb, "plain", "PLAIN_KEY", "blocked.test")).matches("plain blocked\\.test ERR_\\w+ ERR_\\w+");
                // www.pub.test has a valid certificate upstream, but is not an allowed host
                assertThat(request(sb, "tls", "API_KEY", "www.pub.test")).as("TLS to a host not allowed")
                        .matches("tls www\\.pub\\.test ERR_\\w+ ERR_\\w+");
                String log = systemLog(sb);
                assertThat(log).contains("the placeholder of secret API_KEY was sent to Host pub.test:8080 in plaintext (the secret requires TLS): connection reset")
                        .contains("the placeholder of secret PLAIN_KEY was sent to Host blocked.test:8080: connection reset")
                        .contains("the placeholder of secret API_KEY was sent to Host www.pub.test:8443: connection reset")
                        .doesNotContain(KEY_VALUE).doesNotContain(PLAIN_VALUE);
                sb.stop();
            }
            // every file of the sandbox (disks, config, network.json, logs), its run directory and the home's database, as bytes
            io.microsandbox.runtime.SandboxLayout layout = io.microsandbox.runtime.SandboxLayout.of(home, name);
            List<Path> files = new ArrayList<>();
            for (Path top : List.of(layout.dir(), layout.runDir())) {
                if (Files.isDirectory(top)) {
                    try (Stream<Path> s = Files.walk(top)) {
                        s.filter(Files::isRegularFile).forEach(files::add);
                    }
                }
            }
            try (Stream<Path> s = Files.list(home.resolve("db"))) {
                s.filter(p -> p.getFileName().toString().startsWith("msb.db")).forEach(files::add);
            }
            assertThat(files).as("files searched").anyMatch(p -> p.getFileName().toString().equals("msb.db"))
                    .anyMatch(p -> p.getFileName().toString().equals("exec.log"))
                    .anyMatch(p -> p.getFileName().toString().equals("supervisor.log"))
                    .anyMatch(p -> p.getFileName().toString().equals("network.json"))
                    .anyMatch(p -> p.getFileName().toString().equals("upper.ext4"));
            // the search finds what is there: the placeholder the guest printed is in the exec log
            assertThat(contains(layout.dir().resolve("logs").resolve("exec.log"), "plain-placeholder-0001".getBytes(StandardCharsets.US_ASCII)))
                    .isTrue();
            for (Path f : files) {
                for (String value : List.of(KEY_VALUE, PLAIN_VALUE)) {
                    assertThat(contains(f, value.getBytes(StandardCharsets.US_ASCII))).as(f + " holds a secret value").isFalse();
                }
            }
        } finally {
            removeQuietly(name);
        }
    }

    private static void removeQuietly(String name) {
        try {
            Sandbox.remove(name);
        } catch (MicrosandboxException e) {
            // never created
        }
    }

    @Test
    void terminateStopsTheSandbox() throws Exception {
        Secret key = Secret.env("API_KEY", KEY_VALUE).allowHosts("pub.test").requireTls(false)
                .onViolation(Secret.Violation.TERMINATE).build();
        String name = TestSandboxes.uniqueName("secrets-terminate");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().network(intercepting()).secret(key).build())) {
            assertThat(request(sb, "plain", "API_KEY", "pub.test")).isEqualTo("plain pub.test ok ok");
            try {
                sb.shell("python3 -c '" + CLIENT.replace("'", "'\\''") + "' plain \"$API_KEY\" blocked.test get",
                        ExecOptions.builder().timeout(Duration.ofSeconds(60)).build());
            } catch (MicrosandboxException e) {
                // the sandbox may stop before the exec answers
            }
            long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
            SandboxHandle handle = Sandbox.get(name);
            while (!handle.status().isTerminal() && System.nanoTime() < deadline) {
                Thread.sleep(250);
                handle = handle.refresh();
            }
            assertThat(handle.status().isTerminal()).as("stopped after the violation").isTrue();
            assertThat(handle.lastStop().orElseThrow().reason()).isEqualTo("secret-violation");
        } finally {
            removeQuietly(name);
        }
    }

    private static boolean contains(Path file, byte[] needle) throws IOException {
        byte[] buf = new byte[8 << 20];
        int kept = 0;
        try (InputStream in = Files.newInputStream(file)) {
            int n;
            while ((n = in.read(buf, kept, buf.length - kept)) > 0) {
                int len = kept + n;
                for (int i = 0; i + needle.length <= len; i++) {
                    if (buf[i] == needle[0] && java.util.Arrays.equals(buf, i, i + needle.length, needle, 0, needle.length)) {
                        return true;
                    }
                }
                kept = Math.min(needle.length - 1, len);
                System.arraycopy(buf, len - kept, buf, 0, kept);
            }
        }
        return false;
    }
}

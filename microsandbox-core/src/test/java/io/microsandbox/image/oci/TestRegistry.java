package io.microsandbox.image.oci;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Base64;
import java.util.concurrent.TimeUnit;

/**
 * Debian's {@code docker-registry} (distribution 2.8) on 127.0.0.1 with a random port, a
 * temporary storage directory and config, optionally behind basic auth (a bcrypt htpasswd
 * made with {@code htpasswd -B}); {@link #close()} stops it and deletes its storage.
 */
public final class TestRegistry implements AutoCloseable {
    private final Path dir;
    private final Process process;
    private final int port;
    private final String user;
    private final String password;

    private TestRegistry(Path dir, Process process, int port, String user, String password) {
        this.dir = dir;
        this.process = process;
        this.port = port;
        this.user = user;
        this.password = password;
    }

    /** Whether the registry binary is installed (scripts/setup.sh installs it). */
    public static boolean available() {
        return Files.isExecutable(Path.of("/usr/bin/docker-registry"));
    }

    public static TestRegistry start(Path dir, String user, String password) throws Exception {
        Files.createDirectories(dir);
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        StringBuilder cfg = new StringBuilder()
                .append("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\n")
                .append("storage:\n  filesystem:\n    rootdirectory: ").append(dir.resolve("data")).append('\n')
                .append("  delete:\n    enabled: true\n")
                .append("http:\n  addr: 127.0.0.1:").append(port).append("\n  secret: msb-test-secret\n");
        if (user != null) {
            Process h = new ProcessBuilder("htpasswd", "-Bbn", user, password).redirectErrorStream(false).start();
            byte[] line = h.getInputStream().readAllBytes();
            if (h.waitFor() != 0) {
                throw new IOException("htpasswd failed (package apache2-utils)");
            }
            Files.write(dir.resolve("htpasswd"), line);
            cfg.append("auth:\n  htpasswd:\n    realm: msb-test\n    path: ").append(dir.resolve("htpasswd")).append('\n');
        }
        Files.writeString(dir.resolve("config.yml"), cfg.toString());
        Process p = new ProcessBuilder("/usr/bin/docker-registry", "serve", dir.resolve("config.yml").toString())
                .redirectErrorStream(true).redirectOutput(dir.resolve("registry.log").toFile()).start();
        TestRegistry r = new TestRegistry(dir, p, port, user, password);
        HttpClient http = HttpClient.newHttpClient();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (true) {
            try {
                HttpResponse<Void> resp = http.send(HttpRequest.newBuilder(URI.create(r.url() + "/v2/")).build(),
                        HttpResponse.BodyHandlers.discarding());
                if (resp.statusCode() == 200 || resp.statusCode() == 401) {
                    return r;
                }
            } catch (IOException e) {
                // not listening yet
            }
            if (!p.isAlive() || System.nanoTime() > deadline) {
                r.close();
                throw new IOException("docker-registry did not start: " + Files.readString(dir.resolve("registry.log")));
            }
            Thread.sleep(50);
        }
    }

    public String host() {
        return "127.0.0.1:" + port;
    }

    public String url() {
        return "http://" + host();
    }

    /** Lines of the access log that fetched a blob (GET .../blobs/sha256:...). */
    public long blobGets() throws IOException {
        return Files.readAllLines(dir.resolve("registry.log"), StandardCharsets.UTF_8).stream()
                .filter(l -> l.contains("\"GET /v2/") && l.contains("/blobs/sha256:")).count();
    }

    String authorization() {
        return user == null ? null : "Basic " + Base64.getEncoder().encodeToString((user + ":" + password).getBytes(StandardCharsets.UTF_8));
    }

    @Override
    public void close() throws Exception {
        process.destroy();
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            process.waitFor(10, TimeUnit.SECONDS);
        }
        try (var walk = Files.walk(dir.resolve("data"))) {
            walk.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // already gone
        }
    }

    static Duration timeout() {
        return Duration.ofMinutes(2);
    }
}

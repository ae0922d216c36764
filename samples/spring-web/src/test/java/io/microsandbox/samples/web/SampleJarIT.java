package io.microsandbox.samples.web;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The packaged sample, started as {@code java -jar target/sandbox-web.jar} on a free port with a
 * test home: health comes UP with a warm pool, {@code POST /run} runs Python, the endpoint and
 * the meters answer, and after SIGTERM no sandbox process is left.
 */
class SampleJarIT {

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    @Test
    void javaDashJarServesRun() throws Exception {
        Path jar = Path.of(System.getProperty("sample.jar"));
        assertThat(jar).exists();
        // the checkout's own base, as in the auto-configuration's VmTestSupport: a build of another
        // checkout on the same machine must not delete this home while this test uses it
        String checkout = String.format("%08x", Path.of("").toAbsolutePath().normalize().toString().hashCode());
        Path home = Path.of(System.getProperty("msb.test.home.base", "/tmp/msb-spring-it") + "-" + checkout, "sample-jar").toAbsolutePath();
        deleteTree(home);
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        Path log = Files.createTempFile("sandbox-web", ".log");
        List<String> cmd = new ArrayList<>(List.of(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Dmicrosandbox.home=" + home,
                "-jar", jar.toString(),
                "--server.port=" + port,
                // the endpoint's writes are off unless the operator turns them on; this test drains the pool through it
                "--management.endpoint.microsandbox.access=unrestricted",
                "--microsandbox.image=" + System.getProperty("msb.test.rootfs")));
        Process app = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        String base = "http://127.0.0.1:" + port;
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
            String health = "";
            while (System.nanoTime() < deadline && !(health.contains("\"status\":\"UP\"") && health.contains("\"idle\":1"))) {
                assertThat(app.isAlive()).as("the app is running; its log:\n%s", read(log)).isTrue();
                Thread.sleep(1000);
                health = get(base + "/actuator/health");
            }
            assertThat(health).as("health; the app's log:\n%s", read(log)).contains("\"microsandboxPool\"").contains("\"idle\":1");

            HttpResponse<String> run = http.send(HttpRequest.newBuilder(URI.create(base + "/run"))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString(
                            "{\"language\":\"python\",\"code\":\"import sys\\nprint(6*7)\\nprint('oops', file=sys.stderr)\\nsys.exit(2)\"}"))
                    .timeout(Duration.ofSeconds(60)).build(), HttpResponse.BodyHandlers.ofString());
            assertThat(run.statusCode()).as(run.body()).isEqualTo(200);
            assertThat(run.body()).contains("\"stdout\":\"42\\n\"").contains("\"stderr\":\"oops\\n\"")
                    .contains("\"exitCode\":2").contains("\"durationMs\":");

            assertThat(get(base + "/actuator/microsandbox")).contains("\"poolState\"").contains("\"status\":\"running\"");
            assertThat(get(base + "/actuator/metrics/microsandbox.pool.acquire")).contains("\"COUNT\"");
            assertThat(get(base + "/actuator/metrics/microsandbox.exec")).contains("outcome");

            // the endpoint drains the pool over HTTP; the pool warms up again
            HttpResponse<String> drain = http.send(HttpRequest.newBuilder(URI.create(base + "/actuator/microsandbox"))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString("{\"action\":\"drain\"}"))
                    .timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString());
            assertThat(drain.statusCode()).as(drain.body()).isEqualTo(200);
            // one member, or two when housekeeping had booted a second idle one during a request
            java.util.regex.Matcher members = java.util.regex.Pattern.compile("\"members\":(\\d+)").matcher(drain.body());
            assertThat(members.find()).as(drain.body()).isTrue();
            int drained = Integer.parseInt(members.group(1));
            assertThat(drained).as(drain.body()).isBetween(1, 2);
            String rotatedAll = "\"COUNT\",\"value\":" + drained + ".0";
            long again = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            String rotated = "";
            while (System.nanoTime() < again && !rotated.contains(rotatedAll)) {
                Thread.sleep(500);
                rotated = get(base + "/actuator/metrics/microsandbox.pool.rotated");
            }
            assertThat(rotated).contains(rotatedAll);
            HttpResponse<String> after = http.send(HttpRequest.newBuilder(URI.create(base + "/run"))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString("{\"language\":\"python\",\"code\":\"print('again')\"}"))
                    .timeout(Duration.ofSeconds(120)).build(), HttpResponse.BodyHandlers.ofString());
            assertThat(after.body()).contains("\"stdout\":\"again\\n\"");
        } finally {
            app.destroy();
            boolean exited = app.waitFor(90, TimeUnit.SECONDS);
            if (!exited) {
                app.destroyForcibly();
            }
            assertThat(exited).as("the app stops on SIGTERM").isTrue();
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        List<ProcessHandle> left;
        do {
            left = ProcessHandle.allProcesses()
                    .filter(p -> p.info().commandLine().map(c -> c.contains(home.toString())).orElse(false)).toList();
            if (!left.isEmpty()) {
                Thread.sleep(200);
            }
        } while (!left.isEmpty() && System.nanoTime() < deadline);
        assertThat(left).as("sandbox processes left after the app stopped").isEmpty();
        deleteTree(home);
        try {
            Files.deleteIfExists(home.getParent());
        } catch (java.nio.file.DirectoryNotEmptyException e) {
            // other tests' homes are still there
        }
        Files.deleteIfExists(log);
    }

    private String get(String url) {
        try {
            return http.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(30)).build(),
                    HttpResponse.BodyHandlers.ofString()).body();
        } catch (IOException e) {
            return "";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "";
        }
    }

    private static String read(Path log) throws IOException {
        String s = Files.readString(log);
        return s.length() > 8000 ? s.substring(s.length() - 8000) : s;
    }

    private static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (var walk = Files.walk(dir)) {
            for (Path p : walk.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }
}

package io.microsandbox;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A supervisor serving the usual work, checkpoints and restores never starts Jackson databind's {@code ObjectMapper}
 * (nor, without TLS interception, opens Bouncy Castle's jars):
 * its start-up cost every supervisor about 6.5 MiB of memory, so the runtime reads and writes
 * JSON through {@code io.microsandbox.runtime.Json} (and a node's {@code toString()}, which
 * starts a mapper of its own, is not used there). Checked in the live process with
 * {@code jcmd VM.class_hierarchy}, which lists every class it has loaded.
 */
class SupervisorFootprintIT {
    @Test
    @Timeout(300)
    void aSupervisorServingCommandsFilesLogsMetricsAndItsNetworkLoadsNoObjectMapper() throws Exception {
        int published;
        try (ServerSocket free = new ServerSocket(0)) {
            published = free.getLocalPort();
        }
        NetworkPolicy policy = NetworkPolicy.builder()
                .rule(NetworkRule.allow("127.0.0.0/8").direction(NetworkRule.Direction.INGRESS))
                .rule(NetworkRule.deny("*"))
                .build();
        String name = TestSandboxes.uniqueName("footprint");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().network(policy).ports(Map.of(published, 8000))
                .ephemeral(true).build())) {
            assertThat(sb.exec("echo", List.of("hi")).stdout()).isEqualTo("hi\n");
            sb.fs().writeString("/tmp/f.txt", "content");
            assertThat(sb.fs().readString("/tmp/f.txt")).isEqualTo("content");
            // a connection the policy denies (it never leaves the host) and one through the published port
            sb.exec("python3", List.of("-c", "import socket\ntry:\n s = socket.create_connection(('192.0.2.1', 80), 5)\n"
                    + " s.settimeout(10)\n s.recv(1)\nexcept OSError:\n pass"));
            assertThat(await(() -> SandboxNetworkIT.systemLog(sb).contains("denied tcp connection to 192.0.2.1:80"))).isTrue();
            try (ExecHandle server = sb.execStream("python3", List.of("-m", "http.server", "8000"), ExecOptions.defaults())) {
                assertThat(SandboxNetworkIT.httpGetWithRetry("127.0.0.1", published)).contains("200");
                server.kill();
            }
            assertThat(sb.logs(LogOptions.builder().build())).isNotEmpty();
            assertThat(sb.metrics().memoryBytes()).isPositive();
            // the supervisor's once-a-second samples and the guest's statistics
            assertThat(Sandbox.get(name).metrics().uptime()).isPositive();
            Thread.sleep(2500);

            long supervisor = SandboxPids.of(name).supervisorPid();
            assertThat(loadedClasses(supervisor)).contains("io.microsandbox.runtime.network.NetworkRelay/");
            assertNoMapper(name);
            // without TLS interception, Bouncy Castle's jars are never opened (their directories took close to 1 MiB of its heap)
            assertThat(openFiles(supervisor)).as("files the supervisor holds open").anyMatch(f -> f.contains("jackson-core"))
                    .noneMatch(f -> f.contains("bcprov") || f.contains("bcpkix") || f.contains("bcutil"));
        }
    }

    @Test
    @Timeout(300)
    void theSupervisorsOfACheckpointedSandboxAndOfItsRestoresLoadNoObjectMapper() throws Exception {
        Microsandbox runtime = Microsandbox.defaultRuntime();
        String source = TestSandboxes.uniqueName("footprint-cp-src");
        String cpName = TestSandboxes.uniqueName("footprint-cp");
        List<String> restores = List.of(TestSandboxes.uniqueName("footprint-r1"), TestSandboxes.uniqueName("footprint-r2"));
        try (Sandbox sb = Sandbox.create(source, TestSandboxes.config().ephemeral(true).build())) {
            Checkpoint cp = sb.checkpoint(cpName);
            assertNoMapper(source);
            // the second restore may take the QEMU that the spare started ahead for this checkpoint
            for (String name : restores) {
                try (Sandbox restored = runtime.restore(name, cp, RestoreOptions.defaults())) {
                    assertThat(restored.exec("echo", List.of("back")).stdout()).isEqualTo("back\n");
                    assertNoMapper(name);
                }
            }
        } finally {
            for (String name : restores) {
                runtime.find(name).ifPresent(h -> {
                    h.kill();
                    h.remove();
                });
            }
            if (java.nio.file.Files.isDirectory(runtime.checkpoints().directory().resolve(cpName))) {
                Checkpoint.remove(cpName);
            }
        }
    }

    private static void assertNoMapper(String sandbox) throws Exception {
        String classes = loadedClasses(SandboxPids.of(sandbox).supervisorPid());
        assertThat(classes).contains("io.microsandbox.runtime.supervisor.Supervisor/");
        assertThat(classes.lines().filter(l -> l.contains("com.fasterxml.jackson.databind.ObjectMapper/")).toList())
                .as("a mapper in the supervisor of " + sandbox + ": code there used one, or a JsonNode's toString(); use runtime.Json")
                .isEmpty();
    }

    private static List<String> openFiles(long pid) throws IOException {
        List<String> files = new java.util.ArrayList<>();
        try (java.util.stream.Stream<Path> fds = java.nio.file.Files.list(Path.of("/proc", Long.toString(pid), "fd"))) {
            for (Path fd : fds.toList()) {
                try {
                    files.add(java.nio.file.Files.readSymbolicLink(fd).toString());
                } catch (java.nio.file.NoSuchFileException closedMeanwhile) {
                    // gone since the listing
                }
            }
        }
        return files;
    }

    private static boolean await(java.util.function.BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                return false;
            }
            Thread.sleep(100);
        }
        return true;
    }

    private static String loadedClasses(long pid) throws IOException, InterruptedException {
        Path jcmd = Path.of(System.getProperty("java.home"), "bin", "jcmd");
        Process p = new ProcessBuilder(jcmd.toString(), Long.toString(pid), "VM.class_hierarchy")
                .redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).as("jcmd ends").isTrue();
        String text = new String(out, StandardCharsets.UTF_8);
        assertThat(p.exitValue()).as(text).isZero();
        return text;
    }
}

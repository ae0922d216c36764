package io.microsandbox;

import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The smaller parts of the reference API on real VMs: the SDK and runtime versions, metrics of
 * a handle that does not connect, and what logLevel / quietLogs do to the supervisor's log and
 * the agent's console lines.
 */
class SandboxRuntimeInfoIT {
    private static Sandbox sandbox;

    @BeforeAll
    static void boot() {
        sandbox = Sandbox.create(TestSandboxes.uniqueName("info"), TestSandboxes.config().ephemeral(true).build());
    }

    @AfterAll
    static void shutdown() {
        if (sandbox != null) {
            sandbox.close();
        }
    }

    @Test
    void versionsNameTheSdkAgentKernelAndQemuInUse() throws Exception {
        assertThat(Sandbox.sdkVersion()).matches("\\d+\\.\\d+\\.\\d+.*");
        RuntimeVersion v = sandbox.runtimeVersion();
        assertThat(v.sdk()).isEqualTo(Sandbox.sdkVersion());
        assertThat(v.protocol()).isEqualTo(2);
        assertThat(v.agent()).isEqualTo("0.1.0");
        assertThat(v.kernel()).isEqualTo(sandbox.exec("uname", List.of("-r")).stdout().strip());
        // QEMU's own answer to --version, e.g. "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u16)"
        Process p = new ProcessBuilder("qemu-system-x86_64", "--version").redirectErrorStream(true).start();
        String first = new String(p.getInputStream().readAllBytes()).lines().findFirst().orElseThrow();
        assertThat(p.waitFor()).isZero();
        assertThat("QEMU emulator version " + v.qemu()).isEqualTo(first);
        // a second handle on the same sandbox gets the same answer from the supervisor
        try (Sandbox other = Sandbox.connect(sandbox.name())) {
            assertThat(other.runtimeVersion()).isEqualTo(v);
            other.detach();
        }
    }

    @Test
    @Timeout(120)
    void handleMetricsComeFromTheSupervisorsSamplesWithoutAConnection() throws Exception {
        SandboxHandle handle = Sandbox.get(sandbox.name());
        // the guest allocates 64 MiB and holds it: the sampled guest memory must see it
        ExecHandle hog = sandbox.execStream("python3", List.of("-c", "b = bytearray(64 << 20)\nimport time\ntime.sleep(60)"),
                ExecOptions.defaults());
        try {
            Metrics m = await(() -> {
                Metrics s = handle.metrics();
                return s.memoryBytes() > 64L << 20 ? s : null;
            }, Duration.ofSeconds(60), "a sample with the guest's 64 MiB");
            assertThat(m.memoryAvailableBytes()).isNotNull().isPositive();
            assertThat(m.memoryHostResidentBytes()).isNotNull().isPositive();
            assertThat(m.memoryLimitBytes()).isEqualTo(256L << 20);
            assertThat(m.vcpuTimeNs()).isPositive();
            assertThat(m.uptime()).isPositive();
            assertThat(m.upperFreeBytes()).isNotNull().isPositive();
            // samples keep coming: the uptime grows
            Metrics later = await(() -> {
                Metrics s = handle.metrics();
                return s.uptime().compareTo(m.uptime()) > 0 ? s : null;
            }, Duration.ofSeconds(10), "a newer sample");
            assertThat(later.vcpuTimeNs()).isGreaterThanOrEqualTo(m.vcpuTimeNs());
        } finally {
            hog.kill();
            hog.close();
        }
    }

    /**
     * A client polling metrics without pause while the supervisor samples once a second: QEMU's
     * disk counters are asked by the sampling thread alone (two threads on the monitor's one
     * connection read each other's answers), so every answer is whole and the counters never go back.
     */
    @Test
    @Timeout(120)
    void metricsPolledWithoutPauseAreWholeAndNeverGoBack() throws Exception {
        sandbox.shell("head -c 1000000 /dev/urandom > /root/poll.bin && sync");
        long deadline = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        long lastRead = 0;
        long lastWritten = 0;
        int polls = 0;
        while (System.nanoTime() < deadline) {
            Metrics m = sandbox.metrics();
            assertThat(m.diskReadBytes()).isGreaterThanOrEqualTo(lastRead);
            assertThat(m.diskWriteBytes()).isGreaterThanOrEqualTo(lastWritten);
            lastRead = m.diskReadBytes();
            lastWritten = m.diskWriteBytes();
            polls++;
        }
        assertThat(lastWritten).isGreaterThanOrEqualTo(1_000_000);
        assertThat(polls).isGreaterThan(20);
        assertThat(Files.readString(layout(sandbox.name()).supervisorLog())).doesNotContain("block statistics");
        sandbox.shell("rm /root/poll.bin");
    }

    /** A stream whose supervisor stops answering (frozen here) says so instead of ending as if the sandbox had. */
    @Test
    @Timeout(120)
    void aMetricsStreamWhoseSupervisorStopsAnsweringFails() throws Exception {
        String name = TestSandboxes.uniqueName("info-frozen");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().build());
             MetricsStream stream = sb.metricsStream(Duration.ofMillis(100))) {
            assertThat(stream.recv(Duration.ofSeconds(10))).isNotNull();
            long supervisor = Long.parseLong(Files.readString(layout(name).pidFile()).strip());
            Posix.kill((int) supervisor, Posix.SIGSTOP);
            try {
                // snapshots sampled before the freeze, then the failure, and again on the next call
                long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
                MicrosandboxException failure = null;
                while (failure == null && System.nanoTime() < deadline) {
                    try {
                        assertThat(stream.recv(Duration.ofSeconds(30))).as("a stream that ended as if the sandbox had").isNotNull();
                    } catch (MicrosandboxException e) {
                        failure = e;
                    }
                }
                assertThat(failure).isNotNull();
                assertThat(failure.getMessage()).contains("metrics stream of sandbox '" + name + "' failed", "no answer");
                assertThat(stream.isEnded()).isTrue();
                assertThatThrownBy(stream::recv).isInstanceOf(MicrosandboxException.class);
            } finally {
                Posix.kill((int) supervisor, Posix.SIGCONT);
            }
        } finally {
            Sandbox.remove(name);
        }
    }

    @Test
    @Timeout(240)
    void handleMetricsOfAStoppedSandboxFail() throws Exception {
        String name = TestSandboxes.uniqueName("info-stopped");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().build());
        try {
            // a sample exists before the stop, so its removal is what is checked below
            await(() -> Sandbox.get(name).metrics(), Duration.ofSeconds(30), "a first metrics sample");
            sb.stop();
            assertThatThrownBy(() -> Sandbox.get(name).metrics())
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_RUNNING));
            // the supervisor removed its run files, the metrics sample with them, and the directory
            SandboxLayout layout = SandboxLayout.of(RuntimeFiles.defaultHome(), name);
            await(() -> Files.exists(layout.runDir()) ? null : true, Duration.ofSeconds(15), "the run directory removed");
            assertThat(layout.metricsFile()).doesNotExist();
        } finally {
            sb.close();
            Sandbox.remove(name);
        }
    }

    @Test
    @Timeout(300)
    void debugAddsSupervisorAndAgentLinesAndQuietSuppressesBoth() throws Exception {
        // the default level: lifecycle lines in the supervisor log, an agent warning for a refused exec
        SandboxLayout normal = layout(sandbox.name());
        runAsMissingUser(sandbox);
        String normalConsole = awaitContent(normal.consoleLog(), "msb-agent: session", "the agent's refusal line");
        assertThat(normalConsole).doesNotContain("msb-agent: session 1: started");
        String normalLog = Files.readString(normal.supervisorLog());
        assertThat(normalLog).contains("INFO", "agent says hello").doesNotContain("DEBUG");

        String debugName = TestSandboxes.uniqueName("info-debug");
        try (Sandbox sb = Sandbox.create(debugName, TestSandboxes.config().ephemeral(true).logLevel(LogLevel.DEBUG).build())) {
            assertThat(sb.config().logLevel()).isEqualTo(LogLevel.DEBUG);
            assertThat(sb.exec("true", List.of()).exitCode()).isZero();
            SandboxLayout layout = layout(debugName);
            String console = awaitContent(layout.consoleLog(), "exited (code 0)", "the agent's debug lines");
            assertThat(console).containsPattern("msb-agent: session \\d+: started true \\(pid \\d+\\)")
                    .containsPattern("msb-agent: session \\d+: exited \\(code 0\\)");
            String log = awaitContent(layout.supervisorLog(), "started session", "the supervisor's debug lines");
            assertThat(log).contains("DEBUG").contains("connected").containsPattern("started session \\d+: true");
        }

        String quietName = TestSandboxes.uniqueName("info-quiet");
        try (Sandbox sb = Sandbox.create(quietName, TestSandboxes.config().ephemeral(true).quietLogs().build())) {
            assertThat(sb.exec("echo", List.of("still-captured")).stdout()).isEqualTo("still-captured\n");
            runAsMissingUser(sb);
            // what the default level showed above must not appear: give the console a moment to catch up
            Thread.sleep(2000);
            SandboxLayout layout = layout(quietName);
            assertThat(Files.readString(layout.supervisorLog())).isEmpty();
            assertThat(Files.readString(layout.consoleLog())).doesNotContain("msb-agent: session");
            assertThat(sb.logs()).anySatisfy(e -> assertThat(e.text()).contains("still-captured"));
        }
    }

    /** The agent refuses the session (user_setup_failed) and says so on the console, at warn level. */
    private static void runAsMissingUser(Sandbox sb) {
        assertThatThrownBy(() -> sb.exec("true", List.of(), ExecOptions.builder().user("no-such-user").build()))
                .isInstanceOf(MicrosandboxException.class);
    }

    private static SandboxLayout layout(String name) {
        return SandboxLayout.of(RuntimeFiles.defaultHome(), name);
    }

    private static String awaitContent(Path file, String needle, String what) throws Exception {
        return await(() -> {
            try {
                String s = Files.exists(file) ? Files.readString(file) : "";
                return s.contains(needle) ? s : null;
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }, Duration.ofSeconds(30), what + " in " + file);
    }

    private static <T> T await(Supplier<T> probe, Duration limit, String what) throws InterruptedException {
        long end = System.nanoTime() + limit.toNanos();
        MicrosandboxException last = null;
        while (System.nanoTime() < end) {
            try {
                T v = probe.get();
                if (v != null) {
                    return v;
                }
            } catch (MicrosandboxException e) {
                if (e.kind() != ErrorKind.METRICS_UNAVAILABLE) {
                    throw e;
                }
                last = e;
            }
            Thread.sleep(250);
        }
        throw new AssertionError("timed out waiting for " + what + (last != null ? " (" + last.getMessage() + ")" : ""));
    }
}

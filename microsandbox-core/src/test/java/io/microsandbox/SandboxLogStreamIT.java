package io.microsandbox;

import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.supervisor.ExecLog;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** logStream against one real VM; the restart test runs last. */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class SandboxLogStreamIT {
    private static Sandbox sandbox;
    private static String name;

    @BeforeAll
    static void boot() {
        name = TestSandboxes.uniqueName("logs");
        sandbox = Sandbox.create(name, TestSandboxes.config().build());
    }

    @AfterAll
    static void shutdown() {
        if (sandbox != null) {
            sandbox.close();
        }
        Sandbox.remove(name);
    }

    @Test
    @Order(1)
    void aFollowStreamReceivesOutputOfACommandStartedAfterIt() throws Exception {
        try (LogStream stream = sandbox.logStream(LogStreamOptions.builder().follow(true).since(Instant.now()).build())) {
            AtomicReference<LogEntry> seen = new AtomicReference<>();
            Thread reader = new Thread(() -> {
                LogEntry e;
                while ((e = stream.recv(Duration.ofSeconds(60))) != null) {
                    if (e.text().contains("late-marker")) {
                        seen.set(e);
                        return;
                    }
                }
            });
            reader.start();
            Thread.sleep(500); // the stream is open and has read to the end
            sandbox.exec("sh", List.of("-c", "echo late-marker"));
            reader.join(60_000);
            assertThat(seen.get()).isNotNull();
            assertThat(seen.get().source()).isEqualTo(LogSource.STDOUT);
            assertThat(seen.get().cursor()).isNotNull();
        }
    }

    /** The stream reads the host's log: it follows on when the handle it came from is detached. */
    @Test
    @Order(2)
    void aFollowStreamOfADetachedHandleFollowsOn() throws Exception {
        Sandbox watcher = Sandbox.connect(name);
        try (LogStream stream = watcher.logStream(LogStreamOptions.builder().follow(true).since(Instant.now()).build())) {
            CompletableFuture<LogEntry> marker = CompletableFuture.supplyAsync(() -> {
                LogEntry e;
                while ((e = stream.recv(Duration.ofSeconds(60))) != null && !e.text().contains("after-detach-marker")) {
                    // earlier entries
                }
                return e;
            });
            Thread.sleep(500); // the stream waits at the end of the log
            watcher.detach();
            Thread.sleep(3000); // the stream's checks of whether the sandbox runs go on meanwhile
            sandbox.exec("sh", List.of("-c", "echo after-detach-marker"));
            assertThat(marker.get(60, TimeUnit.SECONDS)).as("the entry written after the detach").isNotNull();
        }
    }

    @Test
    @Order(2)
    void kernelConsoleLinesAreSystemEntries() {
        sandbox.exec("sh", List.of("-c", "echo console-marker-42 > /dev/console"));
        List<String> system = new ArrayList<>();
        long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
        while (system.stream().noneMatch(t -> t.contains("console-marker-42")) && System.nanoTime() < deadline) {
            system.clear();
            try (LogStream stream = sandbox.logStream(LogStreamOptions.builder().sources(LogSource.SYSTEM).build())) {
                stream.forEach(e -> system.add(e.text()));
            }
        }
        assertThat(system).anyMatch(t -> t.equals("console: console-marker-42"));
        // the boot's own kernel messages are there too (quiet boots still print warnings)
        assertThat(system).anyMatch(t -> t.startsWith("console: ") && !t.contains("console-marker-42"));
        // and logs() sees them too
        assertThat(sandbox.logs(LogOptions.builder().sources(LogSource.SYSTEM).build()))
                .anyMatch(e -> e.text().equals("console: console-marker-42"));
    }

    @Test
    @Order(3)
    void aCursorResumesAcrossARotationWithNothingLostOrRepeated() {
        String cursor0 = lastCursor(null);
        // ~7.5 MiB of numbered lines, then as much again: the log rotates during the second
        sandbox.exec("python3", List.of("-c", lines(0, 100_000)), ExecOptions.builder().maxOutputBytes(64L << 20).build());
        StringBuilder got = new StringBuilder();
        String cursor1 = null;
        try (LogStream first = sandbox.logStream(LogStreamOptions.builder().fromCursor(cursor0).build())) {
            // take about half of it, then stop reading
            LogEntry e;
            while (got.length() < 3_500_000 && (e = first.recv()) != null) {
                got.append(e.text());
                cursor1 = e.cursor();
            }
        }
        Path execLog = SandboxLayout.of(RuntimeFiles.defaultHome(), name).execLog();
        assertThat(Files.exists(ExecLog.rotated(execLog))).isFalse();
        sandbox.exec("python3", List.of("-c", lines(100_000, 200_000)), ExecOptions.builder().maxOutputBytes(64L << 20).build());
        assertThat(Files.exists(ExecLog.rotated(execLog))).as("the log rotated").isTrue();
        try (LogStream rest = sandbox.logStream(LogStreamOptions.builder().fromCursor(cursor1).build())) {
            rest.forEach(e -> got.append(e.text()));
        }
        String[] all = got.toString().split("\n");
        assertThat(all).hasSize(200_000);
        for (int i = 0; i < all.length; i++) {
            if (!all[i].startsWith(String.format("line-%07d-", i))) {
                throw new AssertionError("line " + i + " is " + all[i]);
            }
        }
    }

    @Test
    @Order(4)
    void aCursorResumesAcrossARestartAndHandlesStreamStoppedSandboxes() throws Exception {
        String cursor = lastCursor(LogSource.SYSTEM);
        // a stream that follows across restarts sees the stop, the next boot and its output
        List<String> across = java.util.Collections.synchronizedList(new ArrayList<>());
        LogStream acrossStream = Sandbox.get(name).logStream(LogStreamOptions.builder().followAcrossRestarts(true).fromCursor(cursor)
                .sources(LogSource.SYSTEM, LogSource.STDOUT).build());
        Thread acrossReader = new Thread(() -> {
            LogEntry e;
            while ((e = acrossStream.recv(Duration.ofSeconds(90))) != null) {
                across.add(e.text());
                if (e.text().equals("after-restart\n")) {
                    return;
                }
            }
        });
        acrossReader.start();
        SandboxFs fs = sandbox.fs();
        sandbox.stop();
        // files need a running sandbox
        assertThatThrownBy(() -> fs.read("/etc/passwd")).isInstanceOf(MicrosandboxException.class)
                .extracting(e -> ((MicrosandboxException) e).kind()).isEqualTo(ErrorKind.SANDBOX_NOT_RUNNING);
        assertThatThrownBy(() -> sandbox.fs()).isInstanceOf(MicrosandboxException.class)
                .extracting(e -> ((MicrosandboxException) e).kind()).isEqualTo(ErrorKind.SANDBOX_NOT_RUNNING);
        SandboxHandle handle = Sandbox.get(name);
        // a stopped sandbox streams what it has and ends, even when following
        List<LogEntry> afterStop = new ArrayList<>();
        try (LogStream stream = handle.logStream(LogStreamOptions.builder().follow(true).fromCursor(cursor)
                .sources(LogSource.SYSTEM, LogSource.STDOUT).build())) {
            stream.forEach(afterStop::add);
        }
        assertThat(afterStop).anyMatch(e -> e.text().startsWith("sandbox stopped"));

        sandbox = Sandbox.start(name);
        sandbox.exec("sh", List.of("-c", "echo after-restart"));
        List<LogEntry> resumed = new ArrayList<>();
        try (LogStream stream = sandbox.logStream(LogStreamOptions.builder().fromCursor(afterStop.get(afterStop.size() - 1).cursor())
                .sources(LogSource.STDOUT).build())) {
            stream.forEach(resumed::add);
        }
        assertThat(resumed).extracting(LogEntry::text).containsExactly("after-restart\n");
        acrossReader.join(90_000);
        acrossStream.close();
        assertThat(across).contains("sandbox started", "after-restart\n");
        assertThat(across).anyMatch(t -> t.startsWith("sandbox stopped"));
        assertThat(across.indexOf("after-restart\n")).isGreaterThan(across.indexOf(
                across.stream().filter(t -> t.startsWith("sandbox stopped")).findFirst().orElseThrow()));
    }

    /**
     * Output the guest sent as its VM was killed is logged before the run's end marker, which
     * stays the run's last entry.
     */
    @Test
    @Order(5)
    void theEndMarkerIsTheRunsLastEntry() throws Exception {
        String name = TestSandboxes.uniqueName("logs-end");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().build());
        try {
            ExecHandle flood = sb.execStream("sh", List.of("-c", "while :; do echo tick; done"), ExecOptions.defaults());
            Thread reader = new Thread(() -> {
                try {
                    while (flood.recv() != null) {
                        // consumed, so that the guest keeps writing until the kill
                    }
                } catch (MicrosandboxException ended) {
                    // the kill ends the stream
                }
            });
            reader.setDaemon(true);
            reader.start();
            Thread.sleep(1000);
            sb.kill();
            List<LogEntry> all = new ArrayList<>();
            try (LogStream stream = Sandbox.get(name).logStream(LogStreamOptions.builder().sources(LogSource.SYSTEM, LogSource.STDOUT).build())) {
                stream.forEach(all::add);
            }
            assertThat(all).anyMatch(e -> e.text().startsWith("tick"));
            assertThat(all.get(all.size() - 1).text()).startsWith("sandbox stopped");
        } finally {
            Sandbox.remove(name);
        }
    }

    private static String lastCursor(LogSource source) {
        String cursor = null;
        LogStreamOptions.Builder b = LogStreamOptions.builder().sources(LogSource.STDOUT, LogSource.STDERR, LogSource.SYSTEM, LogSource.OUTPUT);
        try (LogStream stream = sandbox.logStream(b.build())) {
            for (LogEntry e : stream) {
                if (source == null || e.source() == source) {
                    cursor = e.cursor();
                }
            }
        }
        assertThat(cursor).isNotNull();
        return cursor;
    }

    private static String lines(int from, int to) {
        return "import sys\nw=sys.stdout.write\nfor i in range(" + from + "," + to + "): w('line-%07d-%s\\n' % (i, 'x'*60))\n";
    }
}

package io.microsandbox;

import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.supervisor.Supervisor;
import io.microsandbox.store.SandboxStore;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The soak test of the hardening issue: {@code msb.soak.sandboxes} sandboxes (8 by default,
 * {@code scripts/soak.sh} runs 200) created and destroyed one after another. Each runs
 * commands (exec, shell with a timeout, a streamed {@code cat} fed through a stdin pipe, a
 * terminal session with a resize), a metrics stream, {@link Sandbox#allMetrics()} and a log
 * read; they are created in turn ephemeral or persistent, attached or detached and
 * reconnected from a {@link SandboxHandle}, and ended in turn by close, stop, kill,
 * {@link SandboxHandle#kill()} and a drain, some with a command and a metrics stream still
 * open. Every few sandboxes a second JVM that streams a command's output (on a terminal every
 * other time) from a detached sandbox is killed with SIGKILL: the sandbox must go on working
 * and the orphaned command must die in the guest.
 *
 * <p>After each sandbox, and again at the end, nothing may be left: no QEMU or supervisor
 * process (the one idle spare supervisor and the VM it pre-booted aside), no socket or file
 * under the home's {@code run/} and {@code sandboxes/} and nothing new elsewhere under the home, no database
 * row, nothing in {@link Sandbox#list()}, no new thread or file descriptor in this JVM, and
 * the heap within 16 MiB of where it was after the first sandbox (which loads classes and
 * starts the runtime's lasting threads). What is left after a sandbox is collected rather than
 * thrown at once, so that one run reports every leak with the operation that left it; the
 * test fails at the end, listing them. Complaints in a persistent sandbox's supervisor log are
 * printed as notes.
 */
class SandboxSoakIT {
    private static final int SANDBOXES = Integer.getInteger("msb.soak.sandboxes", 8);
    /**
     * Heap growth allowed from the first sandbox to the end, measured after full collections.
     * Measured: the heap stays within 0.2 MiB over a run here; a run of 200 that leaks 200 KiB
     * per sandbox grows by about 40 MiB, and one that leaks 100 KiB by 20 MiB.
     */
    private static final long HEAP_MARGIN_BYTES = 16L << 20;
    /** How long processes, files and rows get to disappear after a sandbox ended. */
    private static final Duration SETTLE = Duration.ofSeconds(15);
    private static final String RUN = "soak-" + ProcessHandle.current().pid() + "-" + System.currentTimeMillis();

    enum Creation {
        EPHEMERAL("attached ephemeral"),
        PERSISTENT("attached persistent"),
        DETACHED("detached persistent, reconnected from a handle"),
        DETACHED_EPHEMERAL("detached ephemeral, reconnected from a handle");

        final String description;

        Creation(String description) {
            this.description = description;
        }

        boolean ephemeral() {
            return this == EPHEMERAL || this == DETACHED_EPHEMERAL;
        }

        boolean detached() {
            return this == DETACHED || this == DETACHED_EPHEMERAL;
        }
    }

    enum Ending {
        CLOSE("close()", "shutdown-requested"),
        STOP("stop()", "shutdown-requested"),
        KILL("kill()", "signal"),
        HANDLE_KILL("SandboxHandle.kill()", "signal"),
        DRAIN("requestDrain() with a command running", "drain-requested");

        final String description;
        final String reason;

        Ending(String description, String reason) {
            this.description = description;
            this.reason = reason;
        }
    }

    private final Path home = RuntimeFiles.defaultHome();
    private final List<String> findings = new ArrayList<>();
    private final List<String> notes = new ArrayList<>();

    @Test
    @org.junit.jupiter.api.Timeout(value = 3, unit = java.util.concurrent.TimeUnit.HOURS) // 200 sandboxes take about 20 minutes
    void sandboxesComeAndGoAndLeaveNothingBehind() throws Exception {
        SandboxStore.open(home); // the database exists, and sqlite-jdbc loads as the runtime loads it
        long heapAtStart = settledHeap();
        Set<String> runFilesBefore = files(home.resolve("run"));
        Set<String> stateFilesBefore = files(home.resolve("sandboxes"));
        List<String> rowsBefore = dbRows(null);
        Set<Long> processesBefore = processesMentioning(home.toString()).stream().map(HostProcess::pid).collect(Collectors.toSet());
        if (!runFilesBefore.isEmpty() || !stateFilesBefore.isEmpty() || !rowsBefore.isEmpty()) {
            System.out.println("soak: the home " + home + " is not empty at the start; only what this test adds is checked: "
                    + rowsBefore + " " + stateFilesBefore + " " + runFilesBefore);
        }

        int clientKillEvery = Math.max(4, SANDBOXES / 8);
        int heapSampleEvery = Math.max(1, SANDBOXES / 10);
        System.out.printf("soak: %d sandboxes, a client killed every %d, home %s%n", SANDBOXES, clientKillEvery, home);

        Set<Thread> threadsBefore = null;
        Map<String, Integer> fdsBefore = null;
        Set<String> otherHomeFilesBefore = null;
        long heapBefore = 0;
        List<String> heapTrend = new ArrayList<>();
        List<Long> iterationMillis = new ArrayList<>();
        Throwable failure = null;
        int clientKills = 0;
        long start = System.nanoTime();
        for (int i = 0; i < SANDBOXES && failure == null; i++) {
            boolean clientKill = (i + 1) % clientKillEvery == 0;
            Creation creation = Creation.values()[i % Creation.values().length];
            if (clientKill) {
                creation = clientKills++ % 2 == 0 ? Creation.DETACHED : Creation.DETACHED_EPHEMERAL;
            }
            Ending ending = Ending.values()[i % Ending.values().length];
            long iterationStart = System.nanoTime();
            try {
                iteration(i, creation, ending, clientKill);
            } catch (Throwable t) {
                failure = t;
            }
            iterationMillis.add(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - iterationStart));
            if (i == 0) {
                // The first sandbox loads classes and starts the runtime's lasting threads
                // (exec timeouts, the spare supervisor): what follows is measured against it.
                waitFor(() -> Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().equals("msb-supervisor-spare")),
                        Duration.ofSeconds(10)); // the spare is started and held, with its pipes
                threadsBefore = Set.copyOf(Thread.getAllStackTraces().keySet());
                fdsBefore = openFileDescriptors();
                otherHomeFilesBefore = otherHomeFiles();
                heapBefore = settledHeap();
                heapTrend.add("at the start: " + mib(heapAtStart));
                heapTrend.add("after 1: " + mib(heapBefore));
            } else if ((i + 1) % heapSampleEvery == 0) {
                heapTrend.add("after " + (i + 1) + ": " + mib(settledHeap()));
            }
        }
        long totalMillis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        long[] sorted = iterationMillis.stream().mapToLong(Long::longValue).sorted().toArray();
        System.out.printf("soak: %d sandboxes in %.1f s: %.2f s per sandbox on average, median %.2f s, slowest %.2f s; %d clients killed%n",
                iterationMillis.size(), totalMillis / 1000.0, totalMillis / 1000.0 / Math.max(1, iterationMillis.size()),
                sorted.length == 0 ? 0 : sorted[sorted.length / 2] / 1000.0, sorted.length == 0 ? 0 : sorted[sorted.length - 1] / 1000.0,
                clientKills);

        // What the whole run left. Files and rows are read before anything calls Sandbox.list(),
        // which would clean up after an ephemeral sandbox whose supervisor did not.
        List<String> leftovers = new ArrayList<>();
        waitFor(() -> leftoverProcesses(processesBefore).isEmpty(), SETTLE);
        leftoverProcesses(processesBefore).forEach(p -> leftovers.add("process left: " + p));
        List<HostProcess> spares = processesMentioning(home.toString()).stream().filter(this::isIdleSpareSupervisor).toList();
        spares.forEach(p -> System.out.println("soak: the idle spare supervisor, which ends with this JVM: " + p));
        if (spares.size() > 1) {
            leftovers.add(spares.size() + " idle spare supervisors (at most one is kept): " + spares);
        }
        waitFor(() -> runFilesLeft(runFilesBefore).isEmpty()
                && difference(files(home.resolve("sandboxes")), stateFilesBefore).isEmpty(), SETTLE);
        runFilesLeft(runFilesBefore).forEach(f -> leftovers.add("file left under run/: " + f));
        difference(files(home.resolve("sandboxes")), stateFilesBefore).forEach(f -> leftovers.add("file left under sandboxes/: " + f));
        List<String> rows = new ArrayList<>(dbRows(null));
        rows.removeAll(rowsBefore);
        rows.forEach(r -> leftovers.add("database row left: " + r));
        if (otherHomeFilesBefore != null) {
            difference(otherHomeFiles(), otherHomeFilesBefore).forEach(f -> leftovers.add("new file under the home: " + f));
        }
        Set<String> listedBefore = rowsBefore.stream().filter(r -> r.startsWith("sandbox ")).map(r -> r.split(" ")[1]).collect(Collectors.toSet());
        Sandbox.list().stream().map(SandboxHandle::name).filter(n -> !listedBefore.contains(n))
                .forEach(n -> leftovers.add("Sandbox.list() still has " + n));
        if (threadsBefore != null) {
            List<Thread> newThreads = settleThreads(threadsBefore);
            System.out.printf("soak: threads: %d after the first sandbox, %d at the end (%d of them the JDK's process reapers and common pool)%n",
                    threadsBefore.size(), Thread.getAllStackTraces().size(),
                    Thread.getAllStackTraces().keySet().stream().filter(SandboxSoakIT::isJdkPoolThread).count());
            if (!newThreads.isEmpty()) {
                leftovers.add("threads left in the test JVM (" + threadsBefore.size() + " after the first sandbox, "
                        + Thread.getAllStackTraces().size() + " now): " + describe(newThreads));
            }
            Map<String, Integer> fdsBaseline = fdsBefore;
            waitFor(() -> grown(openFileDescriptors(), fdsBaseline).isEmpty(), Duration.ofSeconds(5));
            Map<String, Integer> fdsAfter = openFileDescriptors();
            Map<String, Integer> grown = grown(fdsAfter, fdsBefore);
            if (!grown.isEmpty()) {
                leftovers.add("file descriptors left open in the test JVM (new ones, by kind or path, with their count): " + grown
                        + " (" + sum(fdsBefore) + " after the first sandbox, " + sum(fdsAfter) + " now)");
            }
            long heapAfter = settledHeap();
            heapTrend.add("end: " + mib(heapAfter));
            System.out.printf("soak: heap after full collections: %s; %+.1f KiB per sandbox after the first%n",
                    String.join(", ", heapTrend), (heapAfter - heapBefore) / 1024.0 / Math.max(1, iterationMillis.size() - 1));
            if (heapAfter - heapBefore > HEAP_MARGIN_BYTES) {
                leftovers.add("heap grew from " + mib(heapBefore) + " after the first sandbox to " + mib(heapAfter) + " (margin "
                        + mib(HEAP_MARGIN_BYTES) + "); samples: " + String.join(", ", heapTrend));
            }
        }

        notes.forEach(note -> System.out.println("soak: note: " + note));
        List<String> report = new ArrayList<>();
        if (failure != null) {
            report.add("the soak stopped at sandbox " + iterationMillis.size() + " of " + SANDBOXES + ": " + failure);
        }
        report.addAll(findings);
        report.addAll(leftovers);
        if (!report.isEmpty()) {
            AssertionError error = new AssertionError("the soak left something behind or failed:\n  - " + String.join("\n  - ", report));
            if (failure != null) {
                error.initCause(failure);
            }
            throw error;
        }
    }

    /** One sandbox from creation to removal; leftovers go to {@link #findings}, failures are thrown. */
    private void iteration(int i, Creation creation, Ending ending, boolean clientKill) throws Exception {
        String name = TestSandboxes.uniqueName("soak");
        try {
            iteration(i, name, creation, ending, clientKill);
        } catch (Throwable t) {
            // leave no VM behind: the failure is what gets reported
            try {
                SandboxHandle handle = Sandbox.get(name);
                handle.kill();
                handle.remove();
            } catch (RuntimeException ignored) {
                // gone already, or not even created
            }
            throw t;
        }
    }

    private void iteration(int i, String name, Creation creation, Ending ending, boolean clientKill) throws Exception {
        boolean lingering = i % 3 == 1 && ending != Ending.DRAIN; // a drain would wait for the command
        boolean clientOnTerminal = creation == Creation.DETACHED_EPHEMERAL;
        String what = "sandbox " + (i + 1) + " (" + name + ", " + creation.description + ", ended by " + ending.description
                + (clientKill ? ", a client killed mid-stream" + (clientOnTerminal ? " on a terminal" : "") : "")
                + (lingering ? ", a command and a metrics stream left open" : "") + ")";
        SandboxLayout layout = SandboxLayout.of(home, name);
        long t0 = System.nanoTime();
        Sandbox created = Sandbox.create(name, TestSandboxes.config()
                .ephemeral(creation.ephemeral())
                .detached(creation.detached())
                .label("soak-run", RUN)
                .label("iteration", Integer.toString(i))
                .env("SOAK_ITERATION", Integer.toString(i))
                .build());
        long t1 = System.nanoTime();
        SandboxPids pids = SandboxPids.of(name);
        Sandbox sb = created;
        ExecHandle lingeringCommand = null;
        MetricsStream lingeringMetrics = null;
        long t2;
        long t3;
        try {
            if (creation.detached()) {
                created.detach();
                sb = Sandbox.get(name).connect();
                assertThat(sb.ownsLifecycle()).isFalse();
            }
            assertThat(Sandbox.list(SandboxFilter.labels(Map.of("soak-run", RUN)))).extracting(SandboxHandle::name)
                    .as("the only sandbox of this run: the earlier ones are gone").containsExactly(name);
            exercise(sb, i);
            if (clientKill) {
                killClientMidStream(sb, name, what, clientOnTerminal);
            }
            assertThat(Sandbox.allMetrics()).containsKey(name);
            t2 = System.nanoTime();
            if (lingering) {
                // a command and a metrics stream nobody closes before the sandbox ends
                lingeringCommand = sb.execStream("sleep", List.of("600"), ExecOptions.defaults());
                assertThat(lingeringCommand.recv(Duration.ofSeconds(30))).isInstanceOf(ExecEvent.Started.class);
                lingeringMetrics = sb.metricsStream(Duration.ofMillis(100));
                assertThat(lingeringMetrics.recv(Duration.ofSeconds(30))).isNotNull();
            }
            end(sb, name, ending);
            if (lingering) {
                ExecHandle command = lingeringCommand;
                MetricsStream metrics = lingeringMetrics;
                if (!waitFor(() -> command.recv(Duration.ofMillis(100)) instanceof ExecEvent.Done, Duration.ofSeconds(10))) {
                    findings.add(what + ": a command left running got no Done event within 10 s of the end");
                }
                if (!waitFor(() -> metrics.recv(Duration.ofMillis(100)) == null && metrics.isEnded(), Duration.ofSeconds(10))) {
                    findings.add(what + ": a metrics stream left open did not end within 10 s of the end");
                }
            }
        } finally {
            if (lingeringCommand != null) {
                lingeringCommand.close();
            }
            if (lingeringMetrics != null) {
                lingeringMetrics.close();
            }
            try {
                sb.close();
            } finally {
                created.close();
            }
        }
        t3 = System.nanoTime();

        waitFor(() -> !SandboxPids.alive(pids.vmmPid()) && !SandboxPids.alive(pids.supervisorPid())
                && !Files.exists(layout.runDir()) && (!creation.ephemeral() || (!Files.exists(layout.dir()) && dbRows(name).isEmpty())), SETTLE);
        List<String> left = leftBehind(pids, layout, creation.ephemeral() ? null : "stopped");
        if (!left.isEmpty()) {
            findings.add(what + ", after its end: " + String.join("; ", left));
        }
        if (creation.ephemeral()) {
            assertThatThrownBy(() -> Sandbox.get(name))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_FOUND));
        } else {
            SandboxHandle stopped = Sandbox.get(name);
            assertThat(stopped.status()).isEqualTo(SandboxStatus.STOPPED);
            assertThat(stopped.lastStop()).hasValueSatisfying(r -> assertThat(r.reason()).isEqualTo(ending.reason));
            List<LogEntry> system = stopped.logs(LogOptions.builder().sources(LogSource.SYSTEM).build());
            assertThat(system).extracting(LogEntry::text).last().isEqualTo("sandbox stopped: " + ending.reason);
            // Diagnostics, not failures: what the supervisor complained of shows in the output,
            // and whatever it costs (a process, a file, a row) fails the checks.
            supervisorLogComplaints(layout).forEach(line -> notes.add(what + ": its supervisor log says: " + line));
            stopped.remove();
            waitFor(() -> !Files.exists(layout.dir()) && dbRows(name).isEmpty(), SETTLE);
            left = leftBehind(pids, layout, null);
            if (!left.isEmpty()) {
                findings.add(what + ", after Sandbox.remove: " + String.join("; ", left));
            }
        }
        long t4 = System.nanoTime();
        System.out.printf("soak: %3d/%d %-46s %-38s%s%s create %5d ms, use %5d ms, end %5d ms, cleanup %4d ms%n", i + 1, SANDBOXES,
                creation.description, ending.description, clientKill ? " client-kill" : "", lingering ? " left-open" : "",
                ms(t1 - t0), ms(t2 - t1), ms(t3 - t2), ms(t4 - t3));
    }

    /** Commands, streams, a terminal, metrics and logs. */
    private static void exercise(Sandbox sb, int i) throws IOException {
        ExecOutput python = sb.exec("python3", List.of("-c", "import os; print(int(os.environ['SOAK_ITERATION']) ** 2)"));
        assertThat(python.exitCode()).isZero();
        assertThat(python.stdout()).isEqualTo(i * i + "\n");

        ExecOutput shell = sb.shell("echo soak-out-" + i + "; echo soak-err-" + i + " >&2; exit 3",
                ExecOptions.builder().timeout(Duration.ofMinutes(5)).build());
        assertThat(shell.exitCode()).isEqualTo(3);
        assertThat(shell.stdout()).isEqualTo("soak-out-" + i + "\n");
        assertThat(shell.stderr()).isEqualTo("soak-err-" + i + "\n");

        try (ExecHandle cat = sb.execStream("cat", List.of(), ExecOptions.builder().stdinPipe().build())) {
            assertThat(cat.recv(Duration.ofSeconds(30))).isInstanceOf(ExecEvent.Started.class);
            OutputStream stdin = cat.stdin();
            StringBuilder echoed = new StringBuilder();
            for (int line = 0; line < 3; line++) {
                String text = "soak-cat-" + i + "-" + line + "\n";
                stdin.write(text.getBytes(StandardCharsets.UTF_8));
                stdin.flush();
                while (!echoed.toString().endsWith(text)) {
                    ExecEvent event = cat.recv(Duration.ofSeconds(30));
                    assertThat(event).as("cat echoes line %d", line).isInstanceOf(ExecEvent.Stdout.class);
                    echoed.append(((ExecEvent.Stdout) event).text());
                }
            }
            stdin.close();
            ExecOutput rest = cat.collect();
            assertThat(rest.exitCode()).isZero();
            assertThat(echoed.toString()).isEqualTo("soak-cat-" + i + "-0\nsoak-cat-" + i + "-1\nsoak-cat-" + i + "-2\n");
        }

        try (ExecHandle tty = sb.shellStream("read line; echo got-$line; stty size", ExecOptions.builder().tty(24, 80).stdinPipe().build())) {
            assertThat(tty.recv(Duration.ofSeconds(30))).isInstanceOf(ExecEvent.Started.class);
            tty.resize(30, 100);
            tty.stdin().write(("soak-tty-" + i + "\n").getBytes(StandardCharsets.UTF_8));
            ExecOutput out = tty.collect();
            assertThat(out.exitCode()).isZero();
            assertThat(out.stdout().replace("\r", "")).contains("got-soak-tty-" + i + "\n").endsWith("30 100\n");
        }

        try (MetricsStream metrics = sb.metricsStream(Duration.ofMillis(100))) {
            for (int sample = 0; sample < 2; sample++) {
                Metrics m = metrics.recv(Duration.ofSeconds(30));
                assertThat(m).as("metrics sample %d", sample).isNotNull();
                assertThat(m.memoryLimitBytes()).isEqualTo(256L << 20);
                assertThat(m.uptime()).isPositive();
            }
        }

        List<LogEntry> logs = sb.logs(LogOptions.builder().sources(LogSource.values()).build());
        // guest console lines ("console: ...") may come before the start marker
        assertThat(logs.stream().filter(e -> e.source() == LogSource.SYSTEM && !e.text().startsWith("console: "))
                .map(LogEntry::text).collect(Collectors.joining())).startsWith("sandbox started");
        assertThat(sb.logs()).noneMatch(e -> e.source() == LogSource.OUTPUT || e.source() == LogSource.SYSTEM);
        assertThat(text(logs, LogSource.STDOUT)).contains("soak-out-" + i + "\n", "soak-cat-" + i + "-2\n");
        assertThat(text(logs, LogSource.STDERR)).contains("soak-err-" + i + "\n");
        assertThat(text(logs, LogSource.OUTPUT)).contains("got-soak-tty-" + i);
    }

    /**
     * A second JVM connects and streams a command's output; it is killed with SIGKILL. The
     * sandbox must stay usable and the orphaned command must be killed in the guest.
     */
    private void killClientMidStream(Sandbox sb, String name, String what, boolean tty) throws Exception {
        String marker = ChildJvm.orphanMarker(name);
        Process child = ChildJvm.start(tty ? "stream-tty" : "stream", name);
        try {
            String[] streaming = ChildJvm.awaitLine(child, "STREAMING");
            assertThat(Integer.parseInt(streaming[1])).isPositive();
            assertThat(sb.exec("pgrep", List.of("-f", marker)).exitCode()).as("the client's command runs in the guest").isZero();
            child.destroyForcibly();
            assertThat(child.waitFor(30, TimeUnit.SECONDS)).as("the client JVM died").isTrue();
        } finally {
            child.destroyForcibly();
            child.getInputStream().close();
            child.getOutputStream().close();
        }
        assertThat(sb.shell("echo still-here").stdout()).as("the sandbox works after its other client died").isEqualTo("still-here\n");
        assertThat(Sandbox.get(name).status()).isEqualTo(SandboxStatus.RUNNING);
        boolean orphanGone = waitFor(() -> sb.exec("pgrep", List.of("-f", marker)).exitCode() == 1, Duration.ofSeconds(10));
        if (!orphanGone) {
            findings.add(what + ": the command of the killed client still runs in the guest 10 s later: "
                    + sb.shell("ps -ef | grep -F " + marker + " | grep -v grep || true").stdout().strip());
        }
    }

    private static void end(Sandbox sb, String name, Ending ending) {
        switch (ending) {
            case CLOSE -> sb.close();
            case STOP -> sb.stop();
            case KILL -> sb.kill();
            case HANDLE_KILL -> Sandbox.get(name).kill();
            case DRAIN -> {
                try (ExecHandle running = sb.shellStream("sleep 0.5; echo drained", ExecOptions.defaults())) {
                    assertThat(running.recv(Duration.ofSeconds(30))).isInstanceOf(ExecEvent.Started.class);
                    sb.requestDrain();
                    ExecOutput out = running.collect();
                    assertThat(out.stdout()).isEqualTo("drained\n");
                }
                SandboxStopResult result = sb.waitUntilStopped(Duration.ofSeconds(60));
                assertThat(result.reason()).isEqualTo("drain-requested");
            }
            default -> throw new IllegalArgumentException(ending.name());
        }
    }

    /** Lines of a stopped sandbox's supervisor log that tell of something going wrong. */
    private static List<String> supervisorLogComplaints(SandboxLayout layout) throws IOException {
        if (!Files.exists(layout.supervisorLog())) {
            return List.of("(no supervisor log)");
        }
        return Files.readAllLines(layout.supervisorLog()).stream()
                .filter(line -> line.contains("cannot ") || line.contains("failed") || line.contains("Exception"))
                .toList();
    }

    /** What is left of one sandbox: its processes, files and rows ({@code status}: the one row expected, or null for none). */
    private List<String> leftBehind(SandboxPids pids, SandboxLayout layout, String status) {
        List<String> left = new ArrayList<>();
        if (SandboxPids.alive(pids.vmmPid())) {
            left.add("QEMU (pid " + pids.vmmPid() + ") still runs");
        }
        if (SandboxPids.alive(pids.supervisorPid())) {
            left.add("the supervisor (pid " + pids.supervisorPid() + ") still runs");
        }
        if (Files.exists(layout.runDir())) {
            left.add("run dir " + home.relativize(layout.runDir()) + " left with " + files(layout.runDir()));
        }
        List<String> rows = dbRows(layout.name());
        if (status == null) {
            if (Files.exists(layout.dir())) {
                left.add("state dir " + home.relativize(layout.dir()) + " left with " + files(layout.dir()));
            }
            if (!rows.isEmpty()) {
                left.add("database rows left: " + rows);
            }
        } else if (rows.stream().noneMatch(r -> r.equals("sandbox " + layout.name() + " " + status))) {
            left.add("database rows are " + rows + ", expected the sandbox " + status);
        }
        return left;
    }

    // ---- what the host holds ----

    private record HostProcess(long pid, long parentPid, String commandLine) {
        @Override
        public String toString() {
            String cmd = commandLine.length() > 300 ? commandLine.substring(0, 300) + "..." : commandLine;
            return "pid " + pid + " (parent " + parentPid + "): " + cmd;
        }
    }

    /**
     * Processes that mention the home on their command line, but for this JVM, its ancestors,
     * the idle spare supervisor and the VM it pre-booted.
     */
    private List<HostProcess> leftoverProcesses(Set<Long> before) {
        List<HostProcess> all = processesMentioning(home.toString());
        Set<Long> spares = all.stream().filter(this::isIdleSpareSupervisor).map(HostProcess::pid).collect(Collectors.toSet());
        return all.stream()
                .filter(p -> !before.contains(p.pid()))
                .filter(p -> !spares.contains(p.pid()))
                .filter(p -> !(spares.contains(p.parentPid()) && p.commandLine().contains(prebootDir(p.parentPid()).toString())))
                .toList();
    }

    /** Files under run/ that were not there before, but for the idle spare's pre-booted VM's. */
    private Set<String> runFilesLeft(Set<String> before) {
        List<HostProcess> spares = processesMentioning(home.toString()).stream().filter(this::isIdleSpareSupervisor).toList();
        Set<String> spareDirs = spares.stream().map(p -> "run/" + prebootDir(p.pid()).getFileName() + "/").collect(Collectors.toSet());
        Set<String> spareLocks = spares.stream().map(p -> "run/" + prebootLock(p.pid()).getFileName()).collect(Collectors.toSet());
        Set<String> left = difference(files(home.resolve("run")), before);
        left.removeIf(f -> spareDirs.stream().anyMatch(f::startsWith) || spareLocks.contains(f));
        return left;
    }

    /** Where a spare supervisor keeps the VM it boots while it waits (PreBoot). */
    private Path prebootDir(long sparePid) {
        return home.resolve("run").resolve("spare-" + sparePid);
    }

    /** The lock file that makes that directory the spare's while it lives (PreBoot). */
    private Path prebootLock(long sparePid) {
        return home.resolve("run").resolve(".spare-" + sparePid + ".lock");
    }

    private static List<HostProcess> processesMentioning(String text) {
        Set<Long> excluded = new HashSet<>();
        for (ProcessHandle p = ProcessHandle.current(); p != null; p = p.parent().orElse(null)) {
            excluded.add(p.pid());
        }
        List<HostProcess> found = new ArrayList<>();
        try (Stream<Path> entries = Files.list(Path.of("/proc"))) {
            for (Path entry : entries.toList()) {
                String pidText = entry.getFileName().toString();
                if (!pidText.chars().allMatch(Character::isDigit) || excluded.contains(Long.parseLong(pidText))) {
                    continue;
                }
                try {
                    String cmdline = new String(Files.readAllBytes(entry.resolve("cmdline")), StandardCharsets.UTF_8).replace('\0', ' ').strip();
                    if (!cmdline.contains(text)) {
                        continue;
                    }
                    String stat = Files.readString(entry.resolve("stat"));
                    long parent = Long.parseLong(stat.substring(stat.lastIndexOf(')') + 2).split(" ")[1]);
                    found.add(new HostProcess(Long.parseLong(pidText), parent, cmdline));
                } catch (IOException | RuntimeException e) {
                    // it ended while we looked
                }
            }
        } catch (IOException e) {
            throw new AssertionError("cannot list /proc", e);
        }
        return found;
    }

    /**
     * The supervisor JVM the runtime keeps ready for the next creation: a child of this JVM
     * that holds nothing under the home's sandboxes/ or run/ but its pre-booted VM's directory.
     * It exits with this JVM.
     */
    private boolean isIdleSpareSupervisor(HostProcess p) {
        if (p.parentPid() != ProcessHandle.current().pid() || !p.commandLine().endsWith(Supervisor.class.getName())) {
            return false;
        }
        String own = prebootDir(p.pid()) + "/";
        String lock = prebootLock(p.pid()).toString();
        try (Stream<Path> fds = Files.list(Path.of("/proc", Long.toString(p.pid()), "fd"))) {
            return fds.map(SandboxSoakIT::readLink).noneMatch(target -> !target.startsWith(own) && !target.equals(lock)
                    && (target.startsWith(home.resolve("sandboxes").toString()) || target.startsWith(home.resolve("run").toString())));
        } catch (IOException e) {
            return false;
        }
    }

    /** This JVM's open file descriptors, counted by kind (socket, pipe, anon_inode:...) or path. */
    private static Map<String, Integer> openFileDescriptors() {
        Map<String, Integer> counts = new TreeMap<>();
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            for (Path fd : fds.toList()) {
                String target = readLink(fd);
                String kind = target.startsWith("socket:") ? "socket" : target.startsWith("pipe:") ? "pipe" : target;
                if (!kind.equals("/proc/" + ProcessHandle.current().pid() + "/fd") && !kind.isEmpty()) {
                    counts.merge(kind, 1, Integer::sum);
                }
            }
        } catch (IOException e) {
            throw new AssertionError("cannot list /proc/self/fd", e);
        }
        return counts;
    }

    private static Map<String, Integer> grown(Map<String, Integer> now, Map<String, Integer> before) {
        Map<String, Integer> grown = new TreeMap<>();
        now.forEach((kind, count) -> {
            int more = count - before.getOrDefault(kind, 0);
            if (more > 0) {
                grown.put(kind, more);
            }
        });
        return grown;
    }

    private static int sum(Map<String, Integer> counts) {
        return counts.values().stream().mapToInt(Integer::intValue).sum();
    }

    private static String readLink(Path link) {
        try {
            return Files.readSymbolicLink(link).toString();
        } catch (IOException e) {
            return ""; // closed meanwhile
        }
    }

    /** Threads not in {@code before}, once the JDK's own idle pools are left aside; waits up to 10 s for them to end. */
    private static List<Thread> settleThreads(Set<Thread> before) {
        List<Thread> extra = List.of();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        do {
            extra = Thread.getAllStackTraces().keySet().stream()
                    .filter(t -> t.isAlive() && !before.contains(t) && t != Thread.currentThread())
                    .filter(t -> !isJdkPoolThread(t))
                    .toList();
            if (extra.isEmpty()) {
                return extra;
            }
            sleep(200);
        } while (System.nanoTime() < deadline);
        return extra;
    }

    /**
     * The JDK's process reapers (one per live child process, the spare supervisor's included,
     * and idle ones for 60 s) and the common pool's workers end by themselves; a process
     * they wait for is caught by the process check.
     */
    private static boolean isJdkPoolThread(Thread t) {
        return t.getName().equals("process reaper") || t.getName().startsWith("ForkJoinPool.commonPool-worker-");
    }

    private static String describe(List<Thread> threads) {
        return threads.stream().map(t -> {
            StackTraceElement[] stack = t.getStackTrace();
            String where = Arrays.stream(stack).filter(f -> f.getClassName().startsWith("io.microsandbox")).findFirst()
                    .or(() -> Arrays.stream(stack).findFirst()).map(StackTraceElement::toString).orElse("?");
            return "'" + t.getName() + "' (" + t.getState() + (t.isDaemon() ? ", daemon" : "") + ", at " + where + ")";
        }).collect(Collectors.joining(", "));
    }

    /** Heap in use after full collections, the lowest of a few. */
    private static long settledHeap() {
        long lowest = Long.MAX_VALUE;
        for (int i = 0; i < 4; i++) {
            System.gc();
            sleep(100);
            lowest = Math.min(lowest, ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed());
        }
        return lowest;
    }

    // ---- what the home holds ----

    /** Every file and directory under {@code dir}, relative to the home. */
    private Set<String> files(Path dir) {
        for (int attempt = 0; ; attempt++) {
            if (!Files.isDirectory(dir)) {
                return Set.of();
            }
            try (Stream<Path> walk = Files.walk(dir)) {
                return walk.filter(p -> !p.equals(dir)).map(p -> home.relativize(p) + (Files.isDirectory(p) ? "/" : ""))
                        .collect(Collectors.toCollection(TreeSet::new));
            } catch (IOException | java.io.UncheckedIOException e) {
                if (attempt == 5) {
                    throw new AssertionError("cannot list " + dir, e);
                }
                sleep(100); // something went away while we walked: look again
            }
        }
    }

    /** Files under the home outside sandboxes/, run/ and db/ (kernel caches, root disks, natives). */
    private Set<String> otherHomeFiles() {
        Set<String> all = new TreeSet<>(files(home));
        // runtime/cds: the supervisors' class-data archive, made once per class path in the
        // background after a supervisor first runs it (after a rebuild: during the first sandboxes)
        all.removeIf(f -> f.startsWith("sandboxes/") || f.startsWith("run/") || f.startsWith("db/") || f.startsWith("runtime/cds/"));
        return all;
    }

    private static Set<String> difference(Set<String> now, Set<String> before) {
        Set<String> more = new TreeSet<>(now);
        more.removeAll(before);
        return more;
    }

    /** Rows of the sandbox database, as "table name detail", for one sandbox or (null) all of them. */
    private List<String> dbRows(String name) {
        Path db = home.resolve("db").resolve("msb.db");
        if (!Files.exists(db)) {
            return List.of();
        }
        String sql = "SELECT 'sandbox ' || name || ' ' || status AS row, name AS owner FROM sandbox"
                + " UNION ALL SELECT 'label ' || sandbox || ' ' || key, sandbox FROM label"
                + " UNION ALL SELECT 'run ' || sandbox || ' #' || id || ' ' || coalesce(status, 'open'), sandbox FROM run";
        org.sqlite.SQLiteConfig config = new org.sqlite.SQLiteConfig();
        config.setBusyTimeout(10_000);
        try (Connection c = DriverManager.getConnection("jdbc:sqlite:" + db, config.toProperties());
             PreparedStatement ps = c.prepareStatement("SELECT row FROM (" + sql + ") WHERE ? IS NULL OR owner = ?")) {
            ps.setString(1, name);
            ps.setString(2, name);
            List<String> rows = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    rows.add(rs.getString(1));
                }
            }
            return rows;
        } catch (SQLException e) {
            throw new AssertionError("cannot read " + db + ": " + e.getMessage(), e);
        }
    }

    // ---- helpers ----

    private static String text(List<LogEntry> logs, LogSource source) {
        return logs.stream().filter(e -> e.source() == source).map(LogEntry::text).collect(Collectors.joining());
    }

    /** Polls {@code condition} until it holds or {@code timeout} passes; tells whether it held. */
    private static boolean waitFor(BooleanSupplier condition, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                return false;
            }
            sleep(100);
        }
        return true;
    }

    private static long ms(long nanos) {
        return TimeUnit.NANOSECONDS.toMillis(nanos);
    }

    private static String mib(long bytes) {
        return String.format("%.1f MiB", bytes / 1024.0 / 1024.0);
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }
}

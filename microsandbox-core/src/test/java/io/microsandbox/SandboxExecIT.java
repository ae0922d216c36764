package io.microsandbox;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.agent.FrameLink;
import io.microsandbox.runtime.agent.Protocol;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Exec against one real VM shared by every test of the class. */
class SandboxExecIT {
    private static Sandbox sandbox;

    @BeforeAll
    static void boot() {
        sandbox = Sandbox.create(TestSandboxes.uniqueName("exec"), TestSandboxes.config()
                .env(Map.of("GREETING", "hi", "SHADOWED", "sandbox"))
                .build());
    }

    @AfterAll
    static void shutdown() {
        if (sandbox != null) {
            sandbox.close();
            Sandbox.remove(sandbox.name());
        }
    }

    /**
     * A command name too long to run, of characters of several bytes, fails by itself: the
     * agent's message, cut mid-character, was text the host refused, and the sandbox ended.
     */
    @Test
    void aLongNonAsciiCommandNameFailsWithoutEndingTheSandbox() {
        String name = "\u00fc".repeat(300);
        assertThatThrownBy(() -> sandbox.exec(name, List.of())).isInstanceOf(MicrosandboxException.class);
        assertThat(sandbox.exec("true", List.of()).exitCode()).isZero();
    }

    /** The guest's account files are read only when they are regular files: a fifo at /etc/passwd cannot hold the agent. */
    @Test
    void aFifoAtEtcPasswdCannotHoldTheAgent() {
        ExecOptions asRoot = ExecOptions.builder().user("root").build();
        assertThat(sandbox.exec("sh", List.of("-c", "mv /etc/passwd /etc/passwd.real && mkfifo /etc/passwd"), asRoot).exitCode()).isZero();
        try {
            // a named user is looked up there; root is root without it
            assertThatThrownBy(() -> sandbox.exec("true", List.of(), ExecOptions.builder().user("sandbox").timeout(java.time.Duration.ofSeconds(30)).build()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.getMessage()).contains("sandbox"));
            assertThat(sandbox.exec("true", List.of(), asRoot).exitCode()).isZero();
        } finally {
            sandbox.exec("sh", List.of("-c", "rm -f /etc/passwd && mv /etc/passwd.real /etc/passwd"), asRoot);
        }
    }

    /**
     * The agent's log never blocks it: with the console's output stopped (tcflow TCOOFF, as
     * root in the guest may), lines it logs are dropped and requests are still served.
     */
    @Test
    void aStoppedConsoleCannotHoldTheAgent() {
        ExecOptions asRoot = ExecOptions.builder().user("root").build();
        String flow = "import os, sys, termios; fd = os.open('/dev/console', os.O_WRONLY | os.O_NOCTTY); termios.tcflow(fd, getattr(termios, sys.argv[1]))";
        assertThat(sandbox.exec("python3", List.of("-c", flow, "TCOOFF"), asRoot).exitCode()).isZero();
        try {
            ExecOptions unknownUser = ExecOptions.builder().user("nosuch").timeout(Duration.ofSeconds(30)).build();
            for (int i = 0; i < 200; i++) { // each refusal is a line of the agent's log
                assertThatThrownBy(() -> sandbox.exec("true", List.of(), unknownUser)).isInstanceOf(MicrosandboxException.class);
            }
            assertThat(sandbox.exec("true", List.of(), ExecOptions.builder().user("root").timeout(Duration.ofSeconds(30)).build()).exitCode()).isZero();
        } finally {
            sandbox.exec("python3", List.of("-c", flow, "TCOON"), asRoot);
        }
    }

    @Test
    void runsPython() {
        ExecOutput out = sandbox.exec("python3", List.of("-c", "print(2+2)"));
        assertThat(out.stdout()).isEqualTo("4\n");
        assertThat(out.exitCode()).isZero();
        assertThat(out.success()).isTrue();
    }

    @Test
    void separatesStdoutStderrAndExitCode() {
        ExecOutput out = sandbox.shell("echo out; echo err >&2; exit 3");
        assertThat(out.stdout()).isEqualTo("out\n");
        assertThat(out.stderr()).isEqualTo("err\n");
        assertThat(out.exitCode()).isEqualTo(3);
        assertThat(out.success()).isFalse();
    }

    @Test
    void appliesSandboxAndCallEnvironment() {
        ExecOutput out = sandbox.shell("echo $GREETING $SHADOWED $EXTRA",
                ExecOptions.builder().env(Map.of("SHADOWED", "call", "EXTRA", "x")).build());
        assertThat(out.stdout()).isEqualTo("hi call x\n");
    }

    @Test
    void honoursCwdAndUser() {
        assertThat(sandbox.exec("pwd", List.of(), ExecOptions.builder().cwd("/tmp").build()).stdout()).isEqualTo("/tmp\n");
        ExecOutput id = sandbox.shell("id -u; id -g; echo $HOME", ExecOptions.builder().user("sandbox").build());
        assertThat(id.stdout()).isEqualTo("1000\n1000\n/home/sandbox\n");
        assertThat(sandbox.shell("id -u", ExecOptions.builder().user("1000:1000").build()).stdout()).isEqualTo("1000\n");
        assertThat(sandbox.shell("id -u").stdout()).isEqualTo("0\n");
    }

    @Test
    void keepsOwnersModesAndSymlinksOfTheImage() {
        ExecOutput out = sandbox.shell("stat -c '%U:%G %a' /home/sandbox; stat -c '%a' /usr/bin/chsh; readlink /bin");
        assertThat(out.stdout()).isEqualTo("sandbox:sandbox 755\n4755\nusr/bin\n");
    }

    @Test
    void setsHostnameFromName() {
        assertThat(sandbox.exec("cat", List.of("/proc/sys/kernel/hostname")).stdout().strip())
                .isEqualTo(sandbox.name().toLowerCase());
    }

    @Test
    void roundTripsBinaryStdin() {
        byte[] input = new byte[300_000];
        new Random(1).nextBytes(input);
        ExecOutput out = sandbox.exec("cat", List.of(), ExecOptions.builder().stdin(input).build());
        assertThat(out.stdoutBytes()).isEqualTo(input);
    }

    @Test
    void streamsStdinThroughAPipe() throws Exception {
        try (ExecHandle cat = sandbox.execStream("cat", List.of(), ExecOptions.builder().stdinPipe().build())) {
            assertThat(cat.recv()).isInstanceOf(ExecEvent.Started.class);
            OutputStream stdin = cat.takeStdin().orElseThrow();
            assertThat(cat.takeStdin()).as("the sink is taken once").isEmpty();
            stdin.write("ping\n".getBytes(StandardCharsets.UTF_8));
            stdin.flush();
            ExecEvent echoed = cat.recv(Duration.ofSeconds(20));
            assertThat(echoed).isInstanceOfSatisfying(ExecEvent.Stdout.class, e -> assertThat(e.text()).isEqualTo("ping\n"));
            stdin.close();
            assertThat(cat.collect().exitCode()).isZero();
        }
    }

    /** Stdin larger than the stdin window, given up front and through the pipe, arrives whole. */
    @Test
    void feedsStdinLargerThanItsWindow() throws Exception {
        byte[] data = new byte[5 * 1024 * 1024 + 123];
        new Random(5).nextBytes(data);
        ExecOutput upFront = sandbox.exec("sha256sum", List.of(), ExecOptions.builder().stdin(data).build());
        String expected = java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256").digest(data));
        assertThat(upFront.stdout()).startsWith(expected);
        try (ExecHandle sum = sandbox.execStream("sha256sum", List.of(), ExecOptions.builder().stdinPipe().build())) {
            try (OutputStream stdin = sum.takeStdin().orElseThrow()) {
                stdin.write(data);
            }
            assertThat(sum.collect().stdout()).startsWith(expected);
        }
    }

    @Test
    void carriesLargeOutput() {
        ExecOutput out = sandbox.shell("head -c 5000000 /dev/zero | tr '\\0' 'a'");
        assertThat(out.stdoutBytes()).hasSize(5_000_000);
    }

    @Test
    void deliversSignals() {
        try (ExecHandle sleep = sandbox.execStream("sleep", List.of("100"), ExecOptions.defaults())) {
            ExecEvent started = sleep.recv();
            assertThat(started).isInstanceOfSatisfying(ExecEvent.Started.class, s -> assertThat(s.pid()).isPositive());
            sleep.signal(ExecHandle.SIGTERM);
            List<ExecEvent> rest = drain(sleep);
            assertThat(rest).contains(new ExecEvent.Exited(128 + 15, 15));
            assertThat(rest.get(rest.size() - 1)).isInstanceOf(ExecEvent.Done.class);
            assertThat(sleep.recv()).isNull();
        }
    }

    @Test
    void killsOnTimeoutAndStaysUsable() {
        long start = System.nanoTime();
        assertThatThrownBy(() -> sandbox.exec("sleep", List.of("100"), ExecOptions.builder().timeout(Duration.ofSeconds(1)).build()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.EXEC_TIMEOUT);
                    assertThat(e.getMessage()).contains("sleep").contains("PT1S");
                });
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(30));
        assertThat(sandbox.shell("pgrep -x sleep || echo none").stdout()).isEqualTo("none\n");
    }

    /**
     * Finding 4: a daemon that keeps the command's output open must not stretch the call
     * past its timeout: it returns within the grace, with EXEC_TIMEOUT.
     */
    @Test
    void aTimeoutBoundsTheCallEvenWhenADaemonHoldsTheOutput() {
        long start = System.nanoTime();
        assertThatThrownBy(() -> sandbox.shell("setsid sleep 25 & echo started",
                ExecOptions.builder().timeout(Duration.ofSeconds(3)).build()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.EXEC_TIMEOUT));
        // well under the daemon's 25 s, with room for a loaded host
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(3).plus(ExecHandle.TIMEOUT_GRACE).plusSeconds(8));
        sandbox.shell("pkill -x sleep || true");
        assertThat(sandbox.exec("echo", List.of("usable")).stdout()).isEqualTo("usable\n");
    }

    /** Finding 7: collected output has a limit; the command is killed past it and the JVM is fine. */
    @Test
    void collectedOutputIsBoundedByMaxOutputBytes() {
        assertThatThrownBy(() -> sandbox.exec("head", List.of("-c", "3G", "/dev/zero")))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.EXEC_FAILED);
                    assertThat(e.getMessage()).contains("maxOutputBytes");
                });
        ExecOutput small = sandbox.exec("head", List.of("-c", "2000000", "/dev/zero"),
                ExecOptions.builder().maxOutputBytes(2_000_000).build());
        assertThat(small.stdoutBytes()).hasSize(2_000_000);
        assertThat(sandbox.shell("pgrep -x head || echo none").stdout()).isEqualTo("none\n");
    }

    /** Finding 7: an unread stream slows the command down instead of filling the heap. */
    @Test
    void anUnreadStreamHoldsOnlyItsWindow() throws Exception {
        long before = TestSandboxes.usedHeapAfterGc();
        try (ExecHandle yes = sandbox.execStream("yes", List.of(), ExecOptions.defaults())) {
            Thread.sleep(5000);
            assertThat(TestSandboxes.usedHeapAfterGc() - before).as("heap growth").isLessThan(32L << 20);
            long received = 0;
            ExecEvent event;
            while (received < 10_000_000 && (event = yes.recv(Duration.ofSeconds(10))) != null) {
                if (event instanceof ExecEvent.Stdout out) {
                    received += out.data().length;
                }
            }
            assertThat(received).as("the stream still flows once read").isGreaterThanOrEqualTo(10_000_000);
        }
    }

    /** A detached command runs on after its client's connection is gone, its output still logged and never held up. */
    @Test
    void aDetachedCommandOutlivesItsClient() throws Exception {
        Sandbox client = Sandbox.connect(sandbox.name());
        ExecHandle command = client.execStream("sh", List.of("-c",
                "head -c 10000000 /dev/zero | tr '\\0' x; sleep 2; echo finished > /tmp/detached.txt"), ExecOptions.defaults());
        assertThat(command.recv(Duration.ofSeconds(10))).isInstanceOf(ExecEvent.Started.class);
        command.detach();
        client.detach();
        assertThat(awaitFileEndingWith("/tmp/detached.txt", "finished\n", Duration.ofSeconds(60)))
                .as("what the detached command wrote after its 10 MB of output").isEqualTo("finished\n");
    }

    /** A detached command keeps its timeout: its supervisor kills it when the time runs out, its client long gone. */
    @Test
    void aDetachedCommandIsStillKilledAtItsTimeout() throws Exception {
        Sandbox client = Sandbox.connect(sandbox.name());
        ExecHandle command = client.execStream("sh", List.of("-c", "echo $$ > /tmp/timed.pid; exec sleep 300"),
                ExecOptions.builder().timeout(Duration.ofSeconds(15)).build());
        assertThat(command.recv(Duration.ofSeconds(10))).isInstanceOf(ExecEvent.Started.class);
        command.detach();
        client.detach();
        String probe = "p=$(cat /tmp/timed.pid 2>/dev/null); [ -n \"$p\" ] && kill -0 $p 2>/dev/null && echo alive || echo gone";
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        String state = sandbox.shell(probe).stdout().strip();
        while (state.equals("gone") && System.nanoTime() < deadline) {
            Thread.sleep(100); // the pid file may not be written yet
            state = sandbox.shell(probe).stdout().strip();
        }
        assertThat(state).as("running once detached, before its timeout").isEqualTo("alive");
        deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
        while (state.equals("alive") && System.nanoTime() < deadline) {
            Thread.sleep(250);
            state = sandbox.shell(probe).stdout().strip();
        }
        assertThat(state).as("killed at its timeout by the supervisor").isEqualTo("gone");
    }

    /** The guest file's content once it ends with {@code end}, or as it is after {@code timeout}. */
    private String awaitFileEndingWith(String path, String end, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        String content = "";
        while (System.nanoTime() < deadline && !content.endsWith(end)) {
            Thread.sleep(200);
            content = sandbox.shell("cat " + path + " 2>/dev/null || true").stdout();
        }
        return content;
    }

    /** Nobody can write to a detached command's stdin any more, so it reaches its end after what was written. */
    @Test
    void aDetachedCommandGetsTheEndOfItsInput() throws Exception {
        ExecHandle command = sandbox.execStream("sh", List.of("-c", "cat > /tmp/detached-input.txt; echo ended >> /tmp/detached-input.txt"),
                ExecOptions.builder().stdinPipe().build());
        assertThat(command.recv(Duration.ofSeconds(10))).isInstanceOf(ExecEvent.Started.class);
        command.stdin().write("written before\n".getBytes(StandardCharsets.UTF_8));
        command.detach();
        assertThat(awaitFileEndingWith("/tmp/detached-input.txt", "ended\n", Duration.ofSeconds(30))).isEqualTo("written before\nended\n");
    }

    /** PID 1 starts at 1024 open files, too few for the sessions and connections the agent serves. */
    @Test
    void commandsAndTheAgentMayOpenManyFiles() {
        assertThat(sandbox.shell("ulimit -n; ulimit -Hn").stdout()).isEqualTo("65536\n65536\n");
        // 400 commands at once hold 1200 of the agent's descriptors
        List<ExecHandle> running = new java.util.ArrayList<>();
        try {
            for (int i = 0; i < 400; i++) {
                running.add(sandbox.execStream("sleep", List.of("30"), ExecOptions.builder().stdinPipe().build()));
            }
            for (ExecHandle h : running) {
                assertThat(h.recv(Duration.ofSeconds(60))).isInstanceOf(ExecEvent.Started.class);
            }
        } finally {
            running.forEach(ExecHandle::close);
        }
    }

    /** Finding 6: a process left behind by a client that went away never writes to a later client. */
    @Test
    void aNewClientNeverReceivesOutputOfAnEarlierClientsLeftoverProcess() {
        Sandbox first = Sandbox.connect(sandbox.name());
        ExecHandle leftover = first.execStream("sh", List.of("-c",
                "setsid sh -c 'while :; do echo SECRET-OF-A; sleep 0.05; done' & echo started"), ExecOptions.defaults());
        assertThat(leftover.recv(Duration.ofSeconds(10))).isInstanceOf(ExecEvent.Started.class);
        first.detach();
        try {
            for (int i = 0; i < 10; i++) {
                Sandbox next = Sandbox.connect(sandbox.name());
                try {
                    ExecOutput out = next.exec("sh", List.of("-c", "sleep 0.2; echo mine-" + i));
                    assertThat(out.stdout()).isEqualTo("mine-" + i + "\n");
                } finally {
                    next.detach();
                }
            }
        } finally {
            sandbox.shell("pkill -f SECRET-OF-A || true");
        }
    }

    /** A terminal's EOF (^D) waits behind input the full terminal has not taken yet, and ends the input whole. */
    @Test
    void aTerminalsEndOfInputFollowsInputThatFilledIt() {
        byte[] lines = "x\n".repeat(20_000).getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        ExecOutput out = sandbox.shell("stty -echo; wc -l", ExecOptions.builder().tty(24, 80).stdin(lines)
                .timeout(Duration.ofSeconds(120)).build());
        // input that came before stty took echo off is echoed first, the last of it without its newline
        List<String> printed = out.stdout().strip().lines().toList();
        assertThat(printed.get(printed.size() - 1).strip().replaceFirst("^x*", "")).isEqualTo("20000");
    }

    /** Finding 12: an interrupt cancels the one call; the handle and the sandbox keep working. */
    @Test
    void interruptingAThreadCancelsOnlyItsCall() throws Exception {
        java.util.concurrent.atomic.AtomicReference<Throwable> failure = new java.util.concurrent.atomic.AtomicReference<>();
        Thread caller = new Thread(() -> {
            try {
                sandbox.exec("sleep", List.of("30"));
            } catch (Throwable e) {
                failure.set(e);
            }
        });
        caller.start();
        Thread.sleep(1500);
        caller.interrupt();
        caller.join(10_000);
        assertThat(failure.get()).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.CANCELLED));
        assertThat(sandbox.exec("echo", List.of("after")).stdout()).isEqualTo("after\n");
        // the cancelled command was killed
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        String left;
        do {
            left = sandbox.shell("pgrep -x sleep || true").stdout();
        } while (!left.isEmpty() && System.nanoTime() < deadline);
        assertThat(left).isEmpty();
        // closing a metrics stream interrupts its sampler: same rule
        try (MetricsStream metrics = sandbox.metricsStream(Duration.ofMillis(50))) {
            assertThat(metrics.recv(Duration.ofSeconds(10))).isNotNull();
        }
        Thread.sleep(200);
        assertThat(sandbox.exec("echo", List.of("still")).stdout()).isEqualTo("still\n");
    }

    @Test
    void runsOnATerminal() {
        ExecOutput out = sandbox.shell("tty; stty size", ExecOptions.builder().tty(30, 100).build());
        assertThat(out.stdout().replace("\r", "")).matches("(?s)/dev/pts/\\d+\n30 100\n");
    }

    @Test
    void resizesTheTerminal() {
        try (ExecHandle sh = sandbox.shellStream("read line; stty size", ExecOptions.builder().tty(24, 80).stdinPipe().build())) {
            assertThat(sh.recv()).isInstanceOf(ExecEvent.Started.class);
            sh.resize(40, 120);
            sh.stdin().write("go\n".getBytes(StandardCharsets.UTF_8));
            ExecOutput out = sh.collect();
            assertThat(out.stdout().replace("\r", "")).endsWith("40 120\n");
        } catch (java.io.IOException e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void reportsMissingBinary() {
        assertThatThrownBy(() -> sandbox.exec("/no/such/binary", List.of()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.EXEC_FAILED);
                    assertThat(e.getMessage()).contains("not_found").contains("/no/such/binary");
                });
        try (ExecHandle h = sandbox.execStream("no-such-command", List.of(), ExecOptions.defaults())) {
            ExecEvent first = h.recv();
            assertThat(first).isInstanceOfSatisfying(ExecEvent.Failed.class, f -> {
                assertThat(f.kind()).isEqualTo("not_found");
                assertThat(f.errno()).isEqualTo(2);
            });
            assertThat(h.recv()).isInstanceOf(ExecEvent.Done.class);
        }
    }

    @Test
    void reportsBadCwdAndUnknownUser() {
        assertThatThrownBy(() -> sandbox.exec("true", List.of(), ExecOptions.builder().cwd("/nope").build()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.getMessage()).contains("bad_cwd"));
        assertThatThrownBy(() -> sandbox.exec("true", List.of(), ExecOptions.builder().user("nobody-here").build()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.getMessage()).contains("user_setup_failed"));
    }

    @Test
    void runsManyCommandsConcurrently() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(8);
        try {
            List<Future<String>> results = new ArrayList<>();
            for (int i = 0; i < 24; i++) {
                int n = i;
                results.add(pool.submit(() -> sandbox.shell("sleep 0.2; echo " + n).stdout()));
            }
            for (int i = 0; i < results.size(); i++) {
                assertThat(results.get(i).get()).isEqualTo(i + "\n");
            }
        } finally {
            pool.shutdownNow();
        }
    }

    /**
     * A client that grants itself a huge output window and never reads: its queue in the
     * supervisor hits the per-client limit, it is dropped (never the supervisor), everyone
     * else is served throughout, and its command is killed once it is gone.
     */
    @Test
    void aClientThatStopsReadingIsDroppedAndDelaysNoOtherClient() throws Exception {
        Path socket = SandboxLayout.of(RuntimeFiles.defaultHome(), sandbox.name()).agentSocket();
        Path supervisorLog = SandboxLayout.of(RuntimeFiles.defaultHome(), sandbox.name()).supervisorLog();
        try (FrameLink stuck = new FrameLink(java.nio.channels.SocketChannel.open(java.net.UnixDomainSocketAddress.of(socket)))) {
            stuck.write(Frame.of(0, 0, Protocol.SUP_HELLO));
            stuck.read(); // welcome
            ObjectNode request = Json.object();
            request.put("cmd", "sh");
            request.putArray("args").add("-c").add("while :; do head -c 1000000 /dev/zero; done");
            request.put("window", 1 << 30);
            stuck.write(new Frame(1, Protocol.FLAG_SESSION_START, Protocol.EXEC_REQUEST, request));
            // the stuck client never reads again; its output piles up in the supervisor until it is dropped
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            while (!java.nio.file.Files.readString(supervisorLog).contains("dropping client")
                    && System.nanoTime() < deadline) {
                ExecOutput out = sandbox.exec("echo", List.of("still served"),
                        ExecOptions.builder().timeout(Duration.ofSeconds(30)).build());
                assertThat(out.stdout()).isEqualTo("still served\n");
            }
            assertThat(java.nio.file.Files.readString(supervisorLog)).contains("dropping client");
        }
        // once the stuck client is gone, its command is killed
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        String left;
        do {
            // [w]hile: the pattern must not match the shell that runs this check
            left = sandbox.shell("ps -eo pid,args | grep '[w]hile :' || true").stdout();
        } while (!left.isEmpty() && System.nanoTime() < deadline);
        assertThat(left).isEmpty();
        assertThat(sandbox.shell("echo fine").stdout()).isEqualTo("fine\n");
    }

    /** A connection that never says hello is closed after the hello timeout instead of holding a thread for ever. */
    @Test
    void aConnectionThatNeverSaysHelloIsClosed() throws Exception {
        Path socket = SandboxLayout.of(RuntimeFiles.defaultHome(), sandbox.name()).agentSocket();
        java.util.concurrent.ExecutorService reader = java.util.concurrent.Executors.newSingleThreadExecutor();
        try (java.nio.channels.SocketChannel silent = java.nio.channels.SocketChannel.open(java.net.UnixDomainSocketAddress.of(socket))) {
            long start = System.nanoTime();
            int read = reader.submit(() -> silent.read(java.nio.ByteBuffer.allocate(64))).get(60, java.util.concurrent.TimeUnit.SECONDS);
            assertThat(read).isEqualTo(-1);
            assertThat(Duration.ofNanos(System.nanoTime() - start))
                    .isGreaterThanOrEqualTo(Duration.ofMillis(io.microsandbox.runtime.supervisor.Supervisor.CLIENT_HELLO_TIMEOUT_MS - 500));
        } finally {
            reader.shutdownNow();
        }
        assertThat(sandbox.exec("echo", List.of("served")).stdout()).isEqualTo("served\n");
    }

    @Test
    void recordsOutputInTheExecLog() {
        sandbox.shell("echo log-marker-out; echo log-marker-err >&2");
        sandbox.shell("echo log-marker-tty", ExecOptions.builder().tty(24, 80).build());

        List<LogEntry> entries = sandbox.logs(LogOptions.builder()
                .sources(LogSource.STDOUT, LogSource.STDERR, LogSource.OUTPUT, LogSource.SYSTEM).build());
        LogEntry out = entries.stream().filter(e -> e.text().equals("log-marker-out\n")).findFirst().orElseThrow();
        LogEntry err = entries.stream().filter(e -> e.text().equals("log-marker-err\n")).findFirst().orElseThrow();
        assertThat(out.source()).isEqualTo(LogSource.STDOUT);
        assertThat(err.source()).isEqualTo(LogSource.STDERR);
        assertThat(err.sessionId()).isEqualTo(out.sessionId());
        assertThat(entries).anySatisfy(e -> {
            assertThat(e.source()).isEqualTo(LogSource.OUTPUT);
            assertThat(e.text()).contains("log-marker-tty");
        });
        // the first entry of the run is the start marker; only guest console lines ("console: ...") come before it
        List<LogEntry> lifecycle = entries.stream().filter(e -> !e.text().startsWith("console: ")).toList();
        assertThat(lifecycle.get(0).source()).isEqualTo(LogSource.SYSTEM);
        assertThat(lifecycle.get(0).text()).isEqualTo("sandbox started");

        assertThat(sandbox.logs()).noneMatch(e -> e.source() == LogSource.SYSTEM || e.source() == LogSource.OUTPUT);
        List<LogEntry> lastErr = sandbox.logs(LogOptions.builder().sources(LogSource.STDERR).tail(1).build());
        assertThat(lastErr).hasSize(1);
    }

    @Test
    void reportsMetrics() throws Exception {
        Metrics before = sandbox.metrics();
        assertThat(before.memoryLimitBytes()).isEqualTo(256L << 20);
        assertThat(before.memoryBytes()).isPositive().isLessThan(before.memoryLimitBytes());
        assertThat(before.memoryAvailableBytes()).isPositive();
        assertThat(before.memoryHostResidentBytes()).isGreaterThan(16L << 20);
        assertThat(before.vcpuTimeNs()).isPositive();
        assertThat(before.cpuPercent()).isGreaterThanOrEqualTo(0);
        assertThat(before.diskReadBytes()).isPositive();
        assertThat(before.upperFreeBytes()).isPositive();
        assertThat(before.uptime()).isPositive();

        sandbox.shell("head -c 20000000 /dev/urandom > /root/metrics.bin && sync");
        // disk figures are the supervisor's once-a-second sample's
        Metrics after = sandbox.metrics();
        for (long end = System.nanoTime() + 10_000_000_000L; after.diskWriteBytes() - before.diskWriteBytes() < 20_000_000
                && System.nanoTime() < end; after = sandbox.metrics()) {
            Thread.sleep(100);
        }
        assertThat(after.diskWriteBytes() - before.diskWriteBytes()).isGreaterThanOrEqualTo(20_000_000);
        assertThat(after.upperUsedBytes() - before.upperUsedBytes()).isGreaterThanOrEqualTo(19_000_000);
        assertThat(after.vcpuTimeNs()).isGreaterThan(before.vcpuTimeNs());
        assertThat(after.uptime()).isGreaterThan(before.uptime());
        sandbox.shell("rm /root/metrics.bin");
    }

    @Test
    void streamsMetricsAndListsThemForAllSandboxes() {
        try (MetricsStream stream = sandbox.metricsStream(Duration.ofMillis(200))) {
            Metrics first = stream.recv(Duration.ofSeconds(10));
            Metrics second = stream.recv(Duration.ofSeconds(10));
            assertThat(first).isNotNull();
            assertThat(second).isNotNull();
            assertThat(second.uptime()).isGreaterThan(first.uptime());
        }
        assertThat(Sandbox.allMetrics()).containsKey(sandbox.name());
    }

    @Test
    void keepsWritesInTheUpperLayer() {
        sandbox.shell("echo data > /root/file.txt && sync");
        assertThat(sandbox.exec("cat", List.of("/root/file.txt")).stdout()).isEqualTo("data\n");
        assertThat(sandbox.shell("findmnt -n -o FSTYPE / || awk '$2==\"/\"{print $3}' /proc/mounts").stdout()).contains("overlay");
    }

    private static List<ExecEvent> drain(ExecHandle handle) {
        List<ExecEvent> events = new ArrayList<>();
        ExecEvent e;
        while ((e = handle.recv(Duration.ofSeconds(30))) != null) {
            events.add(e);
        }
        return events;
    }
}

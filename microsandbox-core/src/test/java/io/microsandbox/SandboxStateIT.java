package io.microsandbox;

import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Persistent state and the full lifecycle, against real VMs and the real database. */
class SandboxStateIT {
    /** A label unique to this JVM, so listings ignore sandboxes of other runs. */
    private static final String RUN = Long.toString(ProcessHandle.current().pid());

    @Test
    void restartKeepsFilesWrittenBeforeTheStopAndTheConfiguration() {
        String name = TestSandboxes.uniqueName("restart");
        SandboxConfig config = TestSandboxes.config().workdir("/home/sandbox").user("sandbox").hostname("restarted-box").build();
        try (Sandbox sb = Sandbox.create(name, config)) {
            assertThat(sb.shell("pwd; id -un; hostname").stdout()).isEqualTo("/home/sandbox\nsandbox\nrestarted-box\n");
            sb.shell("echo kept > persist.txt");
        }
        SandboxHandle stopped = Sandbox.get(name);
        assertThat(stopped.status()).isEqualTo(SandboxStatus.STOPPED);
        assertThat(stopped.lastStop()).hasValueSatisfying(r -> assertThat(r.reason()).isEqualTo("shutdown-requested"));

        assertThat(stopped.config()).isEqualTo(config);
        try (Sandbox again = stopped.start()) {
            assertThat(again.shell("cat persist.txt; id -un; hostname").stdout()).isEqualTo("kept\nsandbox\nrestarted-box\n");
            assertThat(Sandbox.get(name).status()).isEqualTo(SandboxStatus.RUNNING);
            assertThatThrownBy(() -> Sandbox.start(name))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_STILL_RUNNING));
        }
        List<LogEntry> logs = Sandbox.get(name).logs(LogOptions.builder().sources(LogSource.STDOUT, LogSource.SYSTEM).build());
        String stdout = logs.stream().filter(e -> e.source() == LogSource.STDOUT).map(LogEntry::text)
                .collect(java.util.stream.Collectors.joining());
        assertThat(stdout).endsWith("kept\nsandbox\nrestarted-box\n");
        // lifecycle markers; the guest console's lines are system entries too
        assertThat(logs).filteredOn(e -> e.source() == LogSource.SYSTEM && !e.text().startsWith("console: ")).extracting(LogEntry::text)
                .containsExactly("sandbox started", "sandbox stopped: shutdown-requested", "sandbox started",
                        "sandbox stopped: shutdown-requested");
        assertThat(Sandbox.find(name)).hasValueSatisfying(h -> assertThat(h.logs()).isEqualTo(Sandbox.get(name).logs(LogOptions.defaults())));
        Sandbox.remove(name);
        assertThatThrownBy(() -> Sandbox.get(name))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_FOUND));
        assertThat(Sandbox.find(name)).isEmpty();
    }

    @Test
    void listsNewestFirstAndFiltersByAllLabels() {
        String first = TestSandboxes.uniqueName("list-a");
        String second = TestSandboxes.uniqueName("list-b");
        try (Sandbox a = Sandbox.create(first, TestSandboxes.config().labels(Map.of("run", RUN, "team", "x", "role", "worker")).build())) {
            a.requestStop();
            a.waitUntilStopped();
        }
        try (Sandbox b = Sandbox.create(second, TestSandboxes.config().labels(Map.of("run", RUN, "team", "x")).build())) {
            assertThat(Sandbox.list(SandboxFilter.labels(Map.of("run", RUN, "team", "x"))))
                    .extracting(SandboxHandle::name).containsExactly(second, first);
            assertThat(Sandbox.list(SandboxFilter.labels(Map.of("run", RUN)).withLabels(Map.of("role", "worker"))))
                    .extracting(SandboxHandle::name).containsExactly(first);
            assertThat(Sandbox.list()).extracting(SandboxHandle::name).contains(first, second);
            SandboxHandle handle = Sandbox.get(second);
            assertThat(handle.labels()).containsEntry("team", "x");
            assertThat(handle.config().image()).isEqualTo(TestSandboxes.rootfs());
            assertThat(handle.createdAt()).isAfter(Sandbox.get(first).createdAt());
            assertThatThrownBy(() -> Sandbox.remove(second))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_STILL_RUNNING));
        }
        Sandbox.remove(first);
        Sandbox.remove(second);
        assertThat(Sandbox.list(SandboxFilter.labels(Map.of("run", RUN, "team", "x")))).isEmpty();
    }

    @Test
    void reservedLabelPrefixesAreRejected() {
        for (String key : List.of("sandbox.id", "microsandbox.x", "service.name")) {
            assertThatThrownBy(() -> TestSandboxes.config().label(key, "v").build())
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                        assertThat(e.getMessage()).contains(key);
                    });
        }
    }

    /**
     * The running command waits for a line on its stdin, sent once the checks are done: with a
     * fixed sleep instead, a slow host could let it end (and the drain stop the sandbox) before
     * the test saw DRAINING.
     */
    @Test
    void drainLetsRunningCommandsFinishRefusesNewOnesThenStops() throws Exception {
        String name = TestSandboxes.uniqueName("drain");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().build());
        try (ExecHandle running = sb.shellStream("read go; echo finished", ExecOptions.builder().stdinPipe().build())) {
            assertThat(running.recv()).isInstanceOf(ExecEvent.Started.class);
            sb.requestDrain();

            assertThat(Sandbox.get(name).status()).isEqualTo(SandboxStatus.DRAINING);
            assertThatThrownBy(() -> sb.exec("true", List.of()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_RUNNING);
                        assertThat(e.getMessage()).contains("draining");
                    });
            assertThat(Sandbox.get(name).status()).as("still draining: the command runs on").isEqualTo(SandboxStatus.DRAINING);
            running.stdin().write("go\n".getBytes(java.nio.charset.StandardCharsets.UTF_8));
            running.stdin().close();
            ExecOutput out = running.collect();
            assertThat(out.stdout()).isEqualTo("finished\n");
            assertThat(out.exitCode()).isZero();
        }
        SandboxStopResult result = sb.waitUntilStopped(Duration.ofSeconds(30));
        assertThat(result.status()).isEqualTo(SandboxStatus.STOPPED);
        assertThat(result.reason()).isEqualTo("drain-requested");
        assertThat(Sandbox.get(name).status()).isEqualTo(SandboxStatus.STOPPED);
        Sandbox.remove(name);
    }

    /**
     * Neither half depends on the test thread's timing: a running command keeps the sandbox
     * busy for twice the timeout, and touches come at an eighth of it, so a stalled test JVM
     * has seven seconds of slack.
     */
    @Test
    void idleTimeoutStopsAnUnusedSandboxAndTouchKeepsItAlive() throws Exception {
        String name = TestSandboxes.uniqueName("idle");
        Duration idle = Duration.ofSeconds(8);
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().idleTimeout(idle).build());
        sb.exec("sleep", List.of(Long.toString(idle.toSeconds() * 2)));
        assertThat(Sandbox.get(name).status()).as("busy: a running command is activity").isEqualTo(SandboxStatus.RUNNING);
        for (int i = 0; i < 12; i++) {
            Thread.sleep(idle.toMillis() / 8);
            sb.touch();
        }
        assertThat(Sandbox.get(name).status()).as("touched").isEqualTo(SandboxStatus.RUNNING);
        SandboxStopResult result = sb.waitUntilStopped(Duration.ofSeconds(60));
        assertThat(result.status()).isEqualTo(SandboxStatus.STOPPED);
        assertThat(result.reason()).isEqualTo("idle-timeout");
        Sandbox.remove(name);
    }

    @Test
    void watchingASandboxDoesNotKeepItFromIdling() throws Exception {
        String name = TestSandboxes.uniqueName("watched");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().idleTimeout(Duration.ofSeconds(4)).build());
        sb.exec("true", List.of());
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (Sandbox.get(name).status() == SandboxStatus.RUNNING && System.nanoTime() < deadline) {
            try {
                sb.metrics();
            } catch (MicrosandboxException e) {
                break; // stopped between the status and the request
            }
            Thread.sleep(500);
        }
        assertThat(System.nanoTime()).as("stopped while its metrics were read every half second").isLessThan(deadline);
        SandboxStopResult result = sb.waitUntilStopped(Duration.ofSeconds(30));
        assertThat(result.reason()).isEqualTo("idle-timeout");
        Sandbox.remove(name);
    }

    /** A command closed with its output unread ends in the guest too, so it keeps nothing running. */
    @Test
    void aClosedCommandWithUnreadOutputLetsTheSandboxIdle() throws Exception {
        idlesOutAfter(sb -> {
            ExecHandle yes = sb.execStream("yes", List.of(), ExecOptions.builder().build());
            assertThat(yes.recv(Duration.ofSeconds(30))).isInstanceOf(ExecEvent.Started.class);
            Thread.sleep(1000); // its output window and the pipe behind it fill up
            yes.close();
        });
    }

    @Test
    void anAbandonedFileReadLetsTheSandboxIdle() throws Exception {
        idlesOutAfter(sb -> {
            sb.shell("head -c 64M /dev/zero > /tmp/big");
            try (java.io.InputStream in = sb.fs().readStream("/tmp/big")) {
                assertThat(in.read()).isZero();
                Thread.sleep(1000); // its window and the worker's pipe fill up
            }
        });
    }

    private interface SandboxUse {
        void accept(Sandbox sb) throws Exception;
    }

    /** Runs {@code use} in a sandbox with an idle timeout of 4 s, which must then stop for being idle. */
    private static void idlesOutAfter(SandboxUse use) throws Exception {
        String name = TestSandboxes.uniqueName("idle-after");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().idleTimeout(Duration.ofSeconds(4)).build());
        use.accept(sb);
        SandboxStopResult result = sb.waitUntilStopped(Duration.ofSeconds(60));
        assertThat(result.reason()).isEqualTo("idle-timeout");
        Sandbox.remove(name);
    }

    @Test
    void maxDurationStopsTheSandbox() {
        String name = TestSandboxes.uniqueName("maxdur");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().maxDuration(Duration.ofMillis(2500)).build());
        assertThat(sb.config().maxDuration()).isEqualTo(Duration.ofSeconds(3));
        SandboxStopResult result = sb.waitUntilStopped(Duration.ofSeconds(30));
        assertThat(result.status()).isEqualTo(SandboxStatus.STOPPED);
        assertThat(result.reason()).isEqualTo("max-duration");
        assertThat(Sandbox.get(name).lastStop()).hasValueSatisfying(r -> assertThat(r.reason()).isEqualTo("max-duration"));
        Sandbox.remove(name);
    }

    /** As the reference: at its maximum duration a sandbox drains (a running command may finish within the grace), then stops. */
    @Test
    void maxDurationDrainsTheSandbox() throws Exception {
        String name = TestSandboxes.uniqueName("maxdrain");
        // started well before the drain (a loaded host may take seconds to answer), ending within its grace
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().maxDuration(Duration.ofSeconds(6)).build());
        ExecHandle running = sb.execStream("sh", List.of("-c", "sleep 9; echo finished"), ExecOptions.defaults());
        assertThat(running.recv(Duration.ofSeconds(5))).isInstanceOf(ExecEvent.Started.class);
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (Sandbox.get(name).status() != SandboxStatus.DRAINING && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertThat(Sandbox.get(name).status()).isEqualTo(SandboxStatus.DRAINING);
        assertThatThrownBy(() -> sb.exec("true", List.of())).isInstanceOf(MicrosandboxException.class);
        ExecOutput out = running.collect();
        assertThat(out.stdout()).isEqualTo("finished\n");
        assertThat(out.exitCode()).isZero();
        assertThat(sb.waitUntilStopped(Duration.ofSeconds(30)).reason()).isEqualTo("max-duration");
        Sandbox.remove(name);
    }

    @Test
    void killedVmIsRecordedAsCrashedWithItsSignal() {
        String name = TestSandboxes.uniqueName("crashdb");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().build());
        ProcessHandle.of(SandboxPids.of(name).vmmPid()).orElseThrow().destroyForcibly();
        sb.waitUntilStopped(Duration.ofSeconds(30));

        SandboxHandle handle = Sandbox.get(name);
        assertThat(handle.status()).isEqualTo(SandboxStatus.CRASHED);
        assertThat(handle.lastStop()).hasValueSatisfying(r -> {
            assertThat(r.signal()).isEqualTo(9);
            assertThat(r.reason()).isEqualTo("signal");
            assertThat(r.source()).isEqualTo("supervisor");
        });
        Sandbox.remove(name);
    }

    @Test
    void crashOfADetachedSandboxIsRecordedWithNoClientConnected() throws Exception {
        String name = TestSandboxes.uniqueName("crashalone");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().detached().build());
        SandboxPids pids = SandboxPids.of(name);
        sb.detach();

        ProcessHandle.of(pids.vmmPid()).orElseThrow().destroyForcibly();
        ProcessHandle.of(pids.supervisorPid()).ifPresent(p -> p.onExit().join());

        SandboxHandle handle = Sandbox.get(name);
        assertThat(handle.status()).isEqualTo(SandboxStatus.CRASHED);
        assertThat(handle.lastStop()).hasValueSatisfying(r -> {
            assertThat(r.signal()).isEqualTo(9);
            assertThat(r.source()).isEqualTo("supervisor");
        });
        Sandbox.remove(name);
    }

    @Test
    void killedSupervisorIsDetectedAsCrashedAndTakesItsVmAlong() throws Exception {
        String name = TestSandboxes.uniqueName("supkill");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().build());
        SandboxPids pids = SandboxPids.of(name);
        ProcessHandle.of(pids.supervisorPid()).orElseThrow().destroyForcibly();
        ProcessHandle.of(pids.supervisorPid()).ifPresent(p -> p.onExit().join());
        long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
        while (SandboxPids.alive(pids.vmmPid()) && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertThat(SandboxPids.alive(pids.vmmPid())).as("QEMU outlived its supervisor").isFalse();

        SandboxHandle handle = Sandbox.get(name);
        assertThat(handle.status()).isEqualTo(SandboxStatus.CRASHED);
        assertThat(handle.lastStop()).hasValueSatisfying(r -> {
            assertThat(r.reason()).isEqualTo("internal");
            assertThat(r.source()).isEqualTo("client");
        });
        assertThat(sb.waitUntilStopped(Duration.ofSeconds(10)).status()).isEqualTo(SandboxStatus.CRASHED);
        Sandbox.remove(name);
    }

    @Test
    void replaceStopsRemovesAndRecreates() {
        String name = TestSandboxes.uniqueName("replace");
        Sandbox old = Sandbox.create(name, TestSandboxes.config().build());
        old.shell("echo old > /root/marker");
        assertThatThrownBy(() -> Sandbox.create(name, TestSandboxes.config().build()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_ALREADY_EXISTS));

        try (Sandbox fresh = Sandbox.create(name, TestSandboxes.config().replaceTimeout(Duration.ofSeconds(5)).build())) {
            assertThat(fresh.shell("cat /root/marker 2>/dev/null || echo absent").stdout()).isEqualTo("absent\n");
            assertThat(old.waitUntilStopped(Duration.ofSeconds(10)).status()).isEqualTo(SandboxStatus.STOPPED);
        }
        Sandbox.remove(name);
    }

    @Test
    void ephemeralSandboxLeavesNoTrace() {
        String name = TestSandboxes.uniqueName("ephemeral");
        SandboxLayout layout = SandboxLayout.of(RuntimeFiles.defaultHome(), name);
        SandboxHandle handle;
        CompletableFuture<SandboxStopResult> waiting;
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().ephemeral(true).build())) {
            assertThat(sb.shell("echo hi").stdout()).isEqualTo("hi\n");
            assertThat(layout.dir()).exists();
            handle = Sandbox.get(name);
            waiting = CompletableFuture.supplyAsync(() -> handle.waitUntilStopped(Duration.ofSeconds(60)));
        }
        // a waiter on the record sees the end, though the record is gone with it
        assertThat(waiting.join().status()).isEqualTo(SandboxStatus.STOPPED);
        assertThat(handle.waitUntilStopped().status()).isEqualTo(SandboxStatus.STOPPED);
        assertThat(layout.dir()).doesNotExist();
        assertThat(layout.runDir()).doesNotExist();
        assertThatThrownBy(() -> Sandbox.get(name))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_FOUND));
    }

    @Test
    void pauseAndResume() {
        String name = TestSandboxes.uniqueName("pause");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().build())) {
            // a first figure from the guest, sampled by the supervisor once a second
            sb.shell("sleep 1.5");
            sb.pause();
            assertThat(Sandbox.get(name).status()).isEqualTo(SandboxStatus.PAUSED);
            // a paused guest cannot answer: its last figures come from the supervisor's sample
            Metrics paused = sb.metrics();
            assertThat(paused.memoryHostResidentBytes()).isPositive();
            assertThat(paused.memoryBytes()).isPositive();
            assertThat(paused.memoryLimitBytes()).isEqualTo(256L << 20);
            try (MetricsStream stream = sb.metricsStream(Duration.ofMillis(100))) {
                assertThat(stream.recv(Duration.ofSeconds(5))).isNotNull();
                assertThat(stream.recv(Duration.ofSeconds(5))).isNotNull();
            }
            sb.resume();
            assertThat(Sandbox.get(name).status()).isEqualTo(SandboxStatus.RUNNING);
            assertThat(sb.shell("echo awake").stdout()).isEqualTo("awake\n");
        }
        Sandbox.remove(name);
    }

    @Test
    void createsSandboxesInParallel() throws Exception {
        List<String> names = List.of(TestSandboxes.uniqueName("par"), TestSandboxes.uniqueName("par"), TestSandboxes.uniqueName("par"));
        List<CompletableFuture<Sandbox>> creating = names.stream()
                .map(n -> CompletableFuture.supplyAsync(() -> Sandbox.create(n, TestSandboxes.config().ephemeral(true).build())))
                .toList();
        List<Sandbox> sandboxes = creating.stream().map(CompletableFuture::join).toList();
        try {
            for (Sandbox sb : sandboxes) {
                assertThat(sb.shell("hostname").stdout().strip()).isEqualTo(sb.name().toLowerCase());
            }
        } finally {
            sandboxes.forEach(Sandbox::close);
        }
        for (String name : names) {
            assertThatThrownBy(() -> Sandbox.get(name))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_FOUND));
        }
    }

    @Test
    void twoJvmsShareOneHome() throws Exception {
        String mine = TestSandboxes.uniqueName("jvm-a");
        String theirs = TestSandboxes.uniqueName("jvm-b");
        Process child = ChildJvm.start("attached", theirs);
        try {
            CompletableFuture<long[]> childReady = CompletableFuture.supplyAsync(() -> {
                try {
                    return ChildJvm.awaitReady(child);
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            });
            try (Sandbox sb = Sandbox.create(mine, TestSandboxes.config().label("run", RUN).build())) {
                childReady.get();
                assertThat(Sandbox.list()).extracting(SandboxHandle::name).contains(mine, theirs);
                assertThat(Sandbox.get(theirs).status()).isEqualTo(SandboxStatus.RUNNING);
                try (Sandbox theirsHere = Sandbox.connect(theirs)) {
                    assertThat(theirsHere.shell("echo shared").stdout()).isEqualTo("shared\n");
                }
            }
            assertThat(Sandbox.get(theirs).status()).isEqualTo(SandboxStatus.STOPPED);
        } finally {
            child.destroyForcibly().waitFor();
        }
        Sandbox.remove(mine);
        Sandbox.remove(theirs);
    }
}

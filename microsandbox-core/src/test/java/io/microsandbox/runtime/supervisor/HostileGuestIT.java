package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.ErrorKind;
import io.microsandbox.ExecOutput;
import io.microsandbox.ExecHandle;
import io.microsandbox.ExecOptions;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxHandle;
import io.microsandbox.SandboxStatus;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import java.nio.file.Files;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * A real supervisor against a {@link HostileAgent}: whatever the "guest" sends or stops
 * doing, the supervisor records what happened, stays within its memory, and stop and kill
 * keep working. Each test names the finding of the hardening issue it covers.
 */
class HostileGuestIT {

    /** Finding 1: a frame that decodes but cannot be re-encoded (a float) must not wedge the relay. */
    @Test
    void aFrameThatCannotBeForwardedEndsTheSandboxWithARecordedReason() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("float")) {
            long start = System.nanoTime();
            assertThatThrownBy(() -> booted.sandbox().exec("anything", List.of()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_RUNNING));
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(15));
            SandboxHandle handle = awaitTerminal(booted.name());
            assertThat(handle.status()).isEqualTo(SandboxStatus.CRASHED);
            assertThat(handle.lastStop().orElseThrow().reason()).isEqualTo("agent-unresponsive");
            assertThat(handle.lastStop().orElseThrow().source()).isEqualTo("supervisor");
            assertThat(execLog(booted.name())).contains("agent sent an invalid frame").contains("floating-point");
        }
    }

    /** Finding 2: a 4 MiB frame of empty maps must not run the supervisor out of heap. */
    @Test
    void aFrameOfMillionsOfTinyItemsCannotExhaustTheSupervisor() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("tiny-items")) {
            assertThatThrownBy(() -> booted.sandbox().exec("anything", List.of()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_RUNNING));
            SandboxHandle handle = awaitTerminal(booted.name());
            // recorded by the supervisor itself: it did not die of OutOfMemoryError
            assertThat(handle.lastStop().orElseThrow().reason()).isEqualTo("agent-unresponsive");
            assertThat(handle.lastStop().orElseThrow().source()).isEqualTo("supervisor");
            assertThat(supervisorLog(booted.name())).doesNotContain("OutOfMemoryError").contains("items in one frame");
        }
    }

    /**
     * Findings 2 and 7: a guest that ignores the output window is cut off at the window by
     * the supervisor; an unread stream costs neither JVM more than the window.
     */
    @Test
    void outputBeyondTheWindowIsDroppedAndAnUnreadStreamDoesNotGrowTheHeap() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("flood")) {
            long before = io.microsandbox.TestSandboxes.usedHeapAfterGc();
            ExecHandle stream = booted.sandbox().execStream("yes", List.of(), ExecOptions.defaults());
            Thread.sleep(4000);
            long grown = io.microsandbox.TestSandboxes.usedHeapAfterGc() - before;
            assertThat(grown).as("heap growth with an unread flooding stream").isLessThan(32L << 20);
            awaitExecLog(booted.name(), "guest sent more output than the client allowed");
            // the supervisor is still in charge: it welcomes a new client and obeys a kill
            Sandbox.connect(booted.name()).detach();
            stream.close();
            booted.sandbox().kill();
            assertThat(awaitTerminal(booted.name()).status()).isEqualTo(SandboxStatus.STOPPED);
        }
    }

    /** The same for file data: a guest that ignores a read's window is cut off at it. */
    @Test
    void fileDataBeyondTheWindowIsDroppedAndAnUnreadStreamDoesNotGrowTheHeap() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("flood")) {
            long before = io.microsandbox.TestSandboxes.usedHeapAfterGc();
            java.io.InputStream in = booted.sandbox().fs().readStream("/big");
            Thread.sleep(4000);
            long grown = io.microsandbox.TestSandboxes.usedHeapAfterGc() - before;
            assertThat(grown).as("heap growth with an unread flooding file stream").isLessThan(32L << 20);
            awaitExecLog(booted.name(), "guest sent more output than the client allowed");
            in.close();
            booted.sandbox().kill();
            assertThat(awaitTerminal(booted.name()).status()).isEqualTo(SandboxStatus.STOPPED);
        }
    }

    /**
     * Frames no window meters (an unknown type in a file session, a command's start again and
     * again), sent to a client that is not reading, would pile up in its heap: the supervisor
     * drops them and says so in the log.
     */
    @Test
    void framesNoWindowMetersAreDroppedBeforeTheyReachAClient() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("junk")) {
            long before = io.microsandbox.TestSandboxes.usedHeapAfterGc();
            java.io.InputStream in = booted.sandbox().fs().readStream("/junk");
            io.microsandbox.ExecHandle exec = booted.sandbox().execStream("junk", java.util.List.of(), io.microsandbox.ExecOptions.defaults());
            Thread.sleep(4000);
            long grown = io.microsandbox.TestSandboxes.usedHeapAfterGc() - before;
            assertThat(grown).as("heap growth with unread streams of unmetered frames").isLessThan(32L << 20);
            awaitExecLog(booted.name(), "guest sent an unexpected fs.progress");
            awaitExecLog(booted.name(), "guest sent an unexpected exec.started");
            assertThat(in.readAllBytes()).isEmpty();
            in.close();
            ExecOutput out = exec.collect();
            assertThat(out.exitCode()).isZero();
            assertThat(out.stdout()).isEqualTo("ok\n");
            booted.sandbox().kill();
        }
    }

    /**
     * A guest that describes an endless tree, each directory listing thousands of entries,
     * cannot make {@code copyToHost} fill the heap or the disk: it stops at a bound on what the
     * open directories' listings hold. A name that would leave its directory is refused.
     */
    @Test
    void copyToHostBoundsATreeTheGuestMakesUp(@org.junit.jupiter.api.io.TempDir java.nio.file.Path tmp) throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("wide-deep")) {
            assertThatThrownBy(() -> booted.sandbox().fs().copyToHost("/tree", tmp.resolve("tree")))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.FILESYSTEM))
                    .hasMessageContaining("listings of the directories being copied hold more than");
            booted.sandbox().kill();
        }
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("bad-name")) {
            assertThatThrownBy(() -> booted.sandbox().fs().list("/dir"))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.FILESYSTEM))
                    .hasMessageContaining("invalid name");
            assertThatThrownBy(() -> booted.sandbox().fs().copyToHost("/dir", tmp.resolve("dir")))
                    .hasMessageContaining("invalid name");
            assertThat(tmp.resolve("escaped")).doesNotExist();
            booted.sandbox().kill();
        }
    }

    /** A file read whose data falls short of the size the guest reports fails; it never passes off part of a file as all of it. */
    @Test
    void aReadShorterThanItsReportedSizeFails() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("short-read")) {
            assertThatThrownBy(() -> booted.sandbox().fs().read("/etc/hostname"))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.FILESYSTEM))
                    .hasMessageContaining("ended after 9 bytes, but the guest reported 1000000");
            booted.sandbox().kill();
        }
    }

    /**
     * Finding 3: a guest that stops reading its port. Queued frames pile up; stop still ends
     * the sandbox within its grace, and a kill from another process's handle is prompt.
     */
    @Test
    void stopAndKillWorkWhenTheGuestStopsReading() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("deaf")) {
            fillTheGuestPort(booted.sandbox());
            long start = System.nanoTime();
            booted.sandbox().stop(Duration.ofSeconds(2));
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(15));
            assertThat(awaitTerminal(booted.name()).lastStop().orElseThrow().reason()).isEqualTo("shutdown-requested");
        }
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("deaf")) {
            fillTheGuestPort(booted.sandbox());
            long start = System.nanoTime();
            Sandbox.get(booted.name()).kill();
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(15));
            assertThat(awaitTerminal(booted.name()).status()).isEqualTo(SandboxStatus.STOPPED);
        }
    }

    /**
     * Finding 5 again: the once-a-second metrics sample asks QEMU's monitor; one that never
     * answers keeps the sample waiting (5 s) but never the timer that kills a guest which
     * ignores the stop.
     */
    @Test
    void aMonitorThatNeverAnswersDelaysNoStop() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("mute-monitor")) {
            Thread.sleep(1_500); // the first sample (after 1 s) now waits on the monitor
            long start = System.nanoTime();
            booted.sandbox().stop(Duration.ofMillis(500));
            // about 1 s; behind a sample that waits 5 s, about 4.5 s
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(4));
            assertThat(awaitTerminal(booted.name()).lastStop().orElseThrow().reason()).isEqualTo("shutdown-requested");
        }
    }

    /**
     * A boot records its run once the agent says hello; a boot that fails after that (here the
     * agent's set-up) ends the run it recorded, so a start that failed reads as one.
     */
    @Test
    void aBootThatFailsAfterTheHelloEndsTheRunItRecorded() throws Exception {
        HostileSandboxes.Failed failed = HostileSandboxes.bootFailingKeepingRecord("setup-error");
        try {
            assertThat(failed.failure().kind()).isEqualTo(ErrorKind.BOOT_FAILED);
            assertThat(failed.failure().getMessage()).contains("guest setup failed at stage mount: hostile says no");
            SandboxHandle handle = Sandbox.get(failed.name());
            assertThat(handle.status()).isEqualTo(SandboxStatus.CRASHED);
            assertThat(handle.lastStop().orElseThrow().reason()).isEqualTo("agent-unresponsive");
        } finally {
            Sandbox.remove(failed.name());
        }
    }

    /** A VM that ends by itself during the set-up: its run ends the way the VM did. */
    @Test
    void aVmThatDiesDuringTheSetUpEndsItsRunAsItDied() throws Exception {
        HostileSandboxes.Failed failed = HostileSandboxes.bootFailingKeepingRecord("setup-exit");
        try {
            assertThat(failed.failure().kind()).isEqualTo(ErrorKind.BOOT_FAILED);
            SandboxHandle handle = Sandbox.get(failed.name());
            assertThat(handle.status()).isEqualTo(SandboxStatus.CRASHED);
            assertThat(handle.lastStop().orElseThrow().reason()).isEqualTo("failed");
            assertThat(handle.lastStop().orElseThrow().exitCode()).isEqualTo(3);
        } finally {
            Sandbox.remove(failed.name());
        }
    }

    /**
     * A VM that dies the moment its guest says it is ready, while the supervisor finishes the
     * boot: the boot fails or the run ends as the VM did, never a supervisor that serves a
     * VM that is gone and waits for its end for ever.
     */
    @Test
    void aVmThatDiesAsItBecomesReadyEndsItsRun() throws Exception {
        for (int attempt = 0; attempt < 3; attempt++) {
            String name = HostileSandboxes.bootKeepingRecord("ready-exit");
            try {
                SandboxHandle handle = awaitTerminal(name);
                assertThat(handle.status()).isEqualTo(SandboxStatus.CRASHED);
                assertThat(handle.lastStop().orElseThrow().exitCode()).isEqualTo(3);
            } finally {
                try {
                    Sandbox.remove(name);
                } catch (io.microsandbox.MicrosandboxException stillRunning) {
                    // the assertion above failed and says why
                }
            }
        }
    }

    /** Finding 3: an attached sandbox whose guest stopped reading still stops when its creator goes. */
    @Test
    void anAttachedSandboxWithADeafGuestStopsWhenItsCreatorGoes() throws Exception {
        HostileSandboxes.Booted booted = HostileSandboxes.boot("deaf");
        fillTheGuestPort(booted.sandbox());
        booted.sandbox().detach();
        booted.supervisor().release(); // the creator pipe closes, as when the creating JVM dies
        SandboxHandle handle = awaitTerminal(booted.name());
        assertThat(handle.status()).isEqualTo(SandboxStatus.STOPPED);
        assertThat(handle.lastStop().orElseThrow().reason()).isEqualTo("creator-exited");
        Sandbox.remove(booted.name());
    }

    /** Finding 4: the call returns soon after its timeout, whatever the guest does. */
    @Test
    void anExecTimeoutBoundsTheCallWhenTheGuestNeverAnswers() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("deaf")) {
            long start = System.nanoTime();
            assertThatThrownBy(() -> booted.sandbox().exec("sleep", List.of("100"),
                    ExecOptions.builder().timeout(Duration.ofSeconds(1)).build()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.EXEC_TIMEOUT));
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(10));
            booted.sandbox().kill();
        }
    }

    /** A guest that never gives its figures does not take the host's with it: metrics come, the guest's part empty. */
    @Test
    void metricsOfAGuestThatKeepsItsFiguresStillCome() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("stats-mute")) {
            long start = System.nanoTime();
            io.microsandbox.Metrics metrics = booted.sandbox().metrics();
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(8));
            assertThat(metrics.uptime()).isPositive();
            assertThat(metrics.memoryAvailableBytes()).as("the guest's part").isNull();
            try (io.microsandbox.MetricsStream stream = booted.sandbox().metricsStream(Duration.ofMillis(100))) {
                assertThat(stream.recv(Duration.ofSeconds(10))).as("a stream goes on").isNotNull();
                assertThat(stream.recv(Duration.ofSeconds(10))).isNotNull();
            }
            booted.sandbox().kill();
        }
    }

    /** Finding 5: one sandbox that does not read delays no other sandbox's timeouts. */
    @Test
    void aStuckSandboxDelaysNoOtherSandboxsTimeouts() throws Exception {
        try (HostileSandboxes.Booted stuck = HostileSandboxes.boot("deaf");
             HostileSandboxes.Booted other = HostileSandboxes.boot("deaf")) {
            fillTheGuestPort(stuck.sandbox());
            CompletableFuture<Long> stuckCall = CompletableFuture.supplyAsync(() -> timedOutAfter(stuck.sandbox(), 1));
            CompletableFuture<Long> otherCall = CompletableFuture.supplyAsync(() -> timedOutAfter(other.sandbox(), 1));
            assertThat(otherCall.get(30, TimeUnit.SECONDS)).isLessThan(10_000);
            assertThat(stuckCall.get(30, TimeUnit.SECONDS)).isLessThan(10_000);
            stuck.sandbox().kill();
            other.sandbox().kill();
        }
    }

    /**
     * A cancel of a command whose request still waits in a full guest queue withdraws the
     * request: the guest never hears of it. (A cancel sent ahead of its request, as one was
     * after 10 s, left the guest a command nobody ended.)
     */
    @Test
    void aCancelledRequestStillQueuedNeverReachesTheGuest() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("deaf-spell")) {
            Sandbox sandbox = booted.sandbox();
            ExecOptions megabyteOfInput = ExecOptions.builder().stdin(new byte[1 << 20]).build();
            List<ExecHandle> fillers = new java.util.ArrayList<>();
            // the guest reads nothing: the first fills the socket, so the request waits in the queue
            fillers.add(sandbox.execStream("cat", List.of(), megabyteOfInput));
            Thread.sleep(1_000);
            ExecHandle cancelled = sandbox.execStream("never-heard-of", List.of(), ExecOptions.builder().build());
            for (int i = 0; i < 8; i++) {
                fillers.add(sandbox.execStream("cat", List.of(), megabyteOfInput)); // the queue full
            }
            for (int i = 0; i < 5_000; i++) {
                fillers.get(0).signal(28); // small frames that fill what room the chunks left
            }
            Thread.sleep(1_000);
            cancelled.close();
            Thread.sleep(11_000); // past the 10 s a cancel waited for room before it went ahead
            Files.createFile(SandboxLayout.of(RuntimeFiles.defaultHome(), booted.name()).vmSocket().resolveSibling("hear-again"));

            ExecOutput answer = null;
            for (long deadline = System.nanoTime() + 30_000_000_000L; answer == null; ) {
                try {
                    answer = sandbox.exec("anything", List.of());
                } catch (MicrosandboxException e) {
                    if (e.kind() != ErrorKind.RESOURCE_LIMIT || System.nanoTime() > deadline) {
                        throw e;
                    }
                    Thread.sleep(100); // the stand-in still reads what was queued
                }
            }
            assertThat(answer.stdout()).as("the stand-in reads again and never got the cancelled request").isEqualTo("ok\n");
            assertThat(Sandbox.get(booted.name()).status()).isEqualTo(SandboxStatus.RUNNING);
            fillers.forEach(ExecHandle::close);
            sandbox.kill();
        }
    }

    /** Finding 6: frames for ids the guest was never given, and sup.* frames from the guest, reach nobody. */
    @Test
    void forgedFramesNeverReachAClient() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("forge")) {
            for (int i = 0; i < 3; i++) {
                var out = booted.sandbox().exec("anything", List.of());
                assertThat(out.stdout()).isEqualTo("ok\n");
                assertThat(out.exitCode()).isZero();
            }
            assertThat(Sandbox.get(booted.name()).status()).isEqualTo(SandboxStatus.RUNNING);
            booted.sandbox().kill();
        }
    }

    /** An oversized length field ends the sandbox with a recorded reason, before anything is allocated. */
    @Test
    void anOversizedFrameEndsTheSandboxWithARecordedReason() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("oversized")) {
            assertThatThrownBy(() -> booted.sandbox().exec("anything", List.of()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_RUNNING));
            SandboxHandle handle = awaitTerminal(booted.name());
            assertThat(handle.lastStop().orElseThrow().reason()).isEqualTo("agent-unresponsive");
            assertThat(execLog(booted.name())).contains("exceeds the 4194304 byte limit");
        }
    }

    /** Frames out of order: the first end counts, what follows it for that session reaches nobody. */
    @Test
    void framesOutOfOrderCannotConfuseAClient() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("disorder")) {
            for (int i = 0; i < 3; i++) {
                var out = booted.sandbox().exec("anything", List.of());
                assertThat(out.exitCode()).isEqualTo(3);
                assertThat(out.stdout()).isEmpty();
            }
            assertThat(Sandbox.get(booted.name()).status()).isEqualTo(SandboxStatus.RUNNING);
            booted.sandbox().kill();
        }
    }

    /** Whatever the VMM is made to print, its log on the host stays bounded. */
    @Test
    void theVmmLogOnTheHostIsBounded() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("noisy")) {
            SandboxLayout layout = SandboxLayout.of(RuntimeFiles.defaultHome(), booted.name());
            java.nio.file.Path previous = layout.vmmLog().resolveSibling("vmm.log.1");
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!Files.exists(previous) && System.nanoTime() < deadline) {
                Thread.sleep(100);
            }
            Thread.sleep(2500); // the noise ends at 3 MiB; let the last rotation happen
            assertThat(Files.size(layout.vmmLog())).isLessThanOrEqualTo(ConsoleRecorder.ROTATE_BYTES + (64 << 10));
            assertThat(Files.size(previous)).isPositive().isLessThanOrEqualTo(ConsoleRecorder.ROTATE_BYTES);
            assertThat(booted.sandbox().exec("anything", List.of()).stdout()).isEqualTo("ok\n");
            booted.sandbox().kill();
        }
    }

    /** What the guest says in its hello reaches the supervisor's log and its clients cut short. */
    @Test
    void aHugeHelloIsLoggedCutShort() throws Exception {
        try (HostileSandboxes.Booted booted = HostileSandboxes.boot("big-hello")) {
            assertThat(booted.sandbox().exec("anything", List.of()).stdout()).isEqualTo("ok\n");
            String hello = supervisorLog(booted.name()).lines().filter(l -> l.contains("agent says hello")).findFirst().orElseThrow();
            assertThat(hello).hasSizeLessThan(1024).endsWith(" characters)");
            // and clients are handed a short version of it
            assertThat(booted.sandbox().runtimeVersion().agent())
                    .isEqualTo("x".repeat(Supervisor.GUEST_TEXT_CHARS) + "... (" + (1 << 20) + " characters)");
            booted.sandbox().kill();
        }
    }

    /** The boot timeout, with an agent that really never answers (not merely a slow boot). */
    @Test
    void anAgentThatNeverSaysHelloFailsTheBootAtItsTimeout() {
        long start = System.nanoTime();
        assertThatThrownBy(() -> HostileSandboxes.boot("silent", 3000))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
                    assertThat(e.getMessage()).contains("did not become ready within 3000 ms");
                });
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(20));
    }

    /** Queues more than the supervisor's guest queue holds: requests and stdin nobody reads. */
    private static void fillTheGuestPort(Sandbox sandbox) {
        byte[] chunk = new byte[64 * 1024];
        for (int i = 0; i < 16; i++) {
            ExecHandle h = sandbox.execStream("cat", List.of(), ExecOptions.builder().stdinPipe().build());
            try {
                // within the stdin window: these writes do not wait for credit
                for (int j = 0; j < 15; j++) {
                    h.stdin().write(chunk);
                }
            } catch (java.io.IOException e) {
                throw new AssertionError(e);
            }
        }
    }

    private static long timedOutAfter(Sandbox sandbox, int seconds) {
        long start = System.nanoTime();
        try {
            sandbox.exec("sleep", List.of("100"), ExecOptions.builder().timeout(Duration.ofSeconds(seconds)).build());
            throw new AssertionError("no timeout");
        } catch (MicrosandboxException e) {
            assertThat(e.kind()).isEqualTo(ErrorKind.EXEC_TIMEOUT);
            return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        }
    }

    static SandboxHandle awaitTerminal(String name) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        SandboxHandle handle = Sandbox.get(name);
        while (!handle.status().isTerminal() && System.nanoTime() < deadline) {
            Thread.sleep(100);
            handle = Sandbox.get(name);
        }
        assertThat(handle.status().isTerminal()).as("sandbox %s ended", name).isTrue();
        return handle;
    }

    /**
     * Waits up to 30 s for {@code text} in the exec log: on a loaded host the stand-in may not
     * have overrun the window yet when a fixed pause ends.
     */
    private static void awaitExecLog(String name, String text) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!execLog(name).contains(text) && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertThat(execLog(name)).contains(text);
    }

    private static String execLog(String name) throws java.io.IOException {
        return Files.readString(SandboxLayout.of(RuntimeFiles.defaultHome(), name).execLog());
    }

    private static String supervisorLog(String name) throws java.io.IOException {
        return Files.readString(SandboxLayout.of(RuntimeFiles.defaultHome(), name).supervisorLog());
    }
}

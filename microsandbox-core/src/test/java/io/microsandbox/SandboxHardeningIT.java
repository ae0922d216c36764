package io.microsandbox;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxLock;
import io.microsandbox.store.SandboxStore;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * A real guest misbehaving as root, and local callers racing the lifecycle: stop, kill and
 * remove keep working, and nothing is left behind. Each test names the finding of the
 * hardening issue it covers.
 */
class SandboxHardeningIT {

    /**
     * Finding 3: PID 1 blocked (a FIFO placed at /etc/passwd, which the agent opens on the
     * next exec) with stdin pending. Stop ends the sandbox within its grace; a kill from a
     * handle in the same JVM is prompt.
     */
    @Test
    void stopAndKillWorkWhilePid1IsBlocked() throws Exception {
        for (boolean kill : new boolean[] {false, true}) {
            String name = TestSandboxes.uniqueName(kill ? "blocked-kill" : "blocked-stop");
            Sandbox sb = Sandbox.create(name, TestSandboxes.config().build());
            SandboxPids pids = SandboxPids.of(name);
            sb.shell("mkfifo /tmp/trap && mv /tmp/trap /etc/passwd");
            // this exec blocks PID 1 in open(); its stdin stays pending
            ExecHandle stuck = sb.execStream("cat", List.of(), ExecOptions.builder().stdinPipe().build());
            stuck.stdin().write(new byte[256 * 1024]);
            long start = System.nanoTime();
            if (kill) {
                Sandbox.get(name).kill();
            } else {
                sb.stop(Duration.ofSeconds(2));
            }
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(12));
            awaitGone(pids);
            SandboxHandle handle = Sandbox.get(name);
            assertThat(handle.status()).isEqualTo(SandboxStatus.STOPPED);
            assertThat(handle.lastStop().orElseThrow().reason()).isEqualTo(kill ? "signal" : "shutdown-requested");
            sb.close();
            Sandbox.remove(name);
        }
    }

    /** Finding 8: remove refuses a sandbox that another thread is starting, and the start is unharmed. */
    @Test
    void removeRefusesASandboxThatIsBeingStarted() throws Exception {
        String name = TestSandboxes.uniqueName("remove-race");
        Sandbox.create(name, TestSandboxes.config().build()).close();
        SandboxLayout layout = SandboxLayout.of(RuntimeFiles.defaultHome(), name);
        CompletableFuture<Sandbox> starting = CompletableFuture.supplyAsync(() -> Sandbox.start(name));
        awaitLockHeld(layout);
        assertThatThrownBy(() -> Sandbox.remove(name))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_STILL_RUNNING));
        try (Sandbox sb = starting.get(60, TimeUnit.SECONDS)) {
            assertThat(sb.exec("echo", List.of("intact")).stdout()).isEqualTo("intact\n");
        }
        Sandbox.remove(name);
    }

    /**
     * Finding 8: the record vanishing while the VM boots (a local user deleting it behind the
     * API) fails the boot cleanly: QEMU is stopped and nothing is left running.
     */
    @Test
    void aRecordDeletedDuringTheBootFailsItWithoutLeavingAVm() throws Exception {
        String name = TestSandboxes.uniqueName("vanish");
        Sandbox.create(name, TestSandboxes.config().build()).close();
        SandboxLayout layout = SandboxLayout.of(RuntimeFiles.defaultHome(), name);
        CompletableFuture<Sandbox> starting = CompletableFuture.supplyAsync(() -> Sandbox.start(name));
        awaitLockHeld(layout);
        SandboxStore.open(RuntimeFiles.defaultHome()).delete(name);
        assertThat(starting).failsWithin(Duration.ofSeconds(60)).withThrowableOfType(java.util.concurrent.ExecutionException.class)
                .satisfies(e -> {
                    assertThat(e.getCause()).isInstanceOf(MicrosandboxException.class);
                    assertThat(((MicrosandboxException) e.getCause()).kind()).isEqualTo(ErrorKind.BOOT_FAILED);
                    assertThat(e.getCause().getMessage()).contains("cannot record the run");
                });
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        while (SandboxLock.isOwned(layout) && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertThat(SandboxLock.isOwned(layout)).as("a supervisor still holds the sandbox").isFalse();
        assertThat(ProcessHandle.current().descendants()
                .filter(p -> p.info().commandLine().orElse("").contains(layout.dir().toString())))
                .as("processes left for the sandbox").isEmpty();
        layout.deleteFiles();
    }

    /** Finding 9: a metrics stream whose reader fell behind still ends when the sandbox does. */
    @Test
    void aFullMetricsStreamStillEndsWithTheSandbox() throws Exception {
        String name = TestSandboxes.uniqueName("metrics-end");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().ephemeral(true).build());
        MetricsStream stream = sb.metricsStream(Duration.ofMillis(1));
        Thread.sleep(3000); // more snapshots than the stream's queue holds
        sb.kill();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        Metrics m;
        do {
            m = stream.recv(Duration.ofSeconds(5));
        } while (m != null && System.nanoTime() < deadline);
        assertThat(m).as("the stream ended").isNull();
        assertThat(stream.isEnded()).isTrue();
    }

    /** A guest writing to its console without end keeps at most two rotations of it on the host. */
    @Test
    void theConsoleLogOnTheHostIsBounded() throws Exception {
        String name = TestSandboxes.uniqueName("console");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().ephemeral(true).build())) {
            sb.shell("head -c 2500000 /dev/zero | tr '\\0' x > /dev/console",
                    ExecOptions.builder().timeout(Duration.ofMinutes(3)).build());
            SandboxLayout layout = SandboxLayout.of(RuntimeFiles.defaultHome(), name);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!java.nio.file.Files.exists(layout.consoleLog().resolveSibling("kernel.log.1")) && System.nanoTime() < deadline) {
                Thread.sleep(100);
            }
            long current = java.nio.file.Files.size(layout.consoleLog());
            long previous = java.nio.file.Files.size(layout.consoleLog().resolveSibling("kernel.log.1"));
            assertThat(current).isLessThanOrEqualTo(1L << 20);
            assertThat(previous).isLessThanOrEqualTo(1L << 20).isPositive();
            assertThat(sb.exec("echo", List.of("alive")).stdout()).isEqualTo("alive\n");
        }
    }

    /** A full upper disk: ENOSPC inside, the agent keeps serving, stop is clean. */
    @Test
    void aFullDiskLeavesTheSandboxServingAndStoppable() throws Exception {
        String name = TestSandboxes.uniqueName("full-disk");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().upperSizeMib(64).ephemeral(true).build());
        SandboxPids pids = SandboxPids.of(name);
        ExecOutput fill = sb.shell("dd if=/dev/zero of=/fill bs=1M 2>&1; echo rc=$?",
                ExecOptions.builder().timeout(Duration.ofMinutes(2)).build());
        assertThat(fill.stdout()).contains("No space left on device");
        assertThat(sb.exec("echo", List.of("still serving")).stdout()).isEqualTo("still serving\n");
        assertThat(sb.metrics().upperFreeBytes()).isNotNull();
        sb.stop(Duration.ofSeconds(10));
        awaitGone(pids);
    }

    /** A fork bomb as root: the guest may drown, but kill ends it at once and stop within its grace. */
    @Test
    void aForkBombCannotPreventKillOrStop() throws Exception {
        for (boolean kill : new boolean[] {true, false}) {
            String name = TestSandboxes.uniqueName(kill ? "forkbomb-kill" : "forkbomb-stop");
            Sandbox sb = Sandbox.create(name, TestSandboxes.config().ephemeral(true).build());
            SandboxPids pids = SandboxPids.of(name);
            sb.execStream("sh", List.of("-c", "b() { b | b & }; b"), ExecOptions.defaults());
            Thread.sleep(3000);
            long start = System.nanoTime();
            if (kill) {
                sb.kill();
            } else {
                sb.stop(Duration.ofSeconds(3));
            }
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(12));
            awaitGone(pids);
        }
    }

    /**
     * Waits until the start holds the sandbox's creation lock. {@link SandboxLock#isHeld} tests
     * the lock without taking it, so probing never turns the start away.
     */
    private static void awaitLockHeld(SandboxLayout layout) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!SandboxLock.isHeld(SandboxLock.createLockFile(layout)) && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertThat(SandboxLock.isHeld(SandboxLock.createLockFile(layout))).as("the start took its lock").isTrue();
    }

    private static void awaitGone(SandboxPids pids) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        while ((SandboxPids.alive(pids.supervisorPid()) || SandboxPids.alive(pids.vmmPid())) && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertThat(SandboxPids.alive(pids.vmmPid())).as("QEMU still running").isFalse();
        assertThat(SandboxPids.alive(pids.supervisorPid())).as("supervisor still running").isFalse();
    }
}

package io.microsandbox;

import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.agent.AgentClient;
import io.microsandbox.runtime.agent.Protocol;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Creation, shutdown and ownership of real VMs. */
class SandboxLifecycleIT {

    /**
     * A creation runs none of its blocking steps on the common pool: an application that keeps
     * that pool busy (parallel streams, async tasks) does not stall or fail its boots.
     * A handle's bounded wait gives up when its time passes.
     */
    @Test
    void aBusyCommonPoolDoesNotHoldUpACreation() {
        java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
        java.util.concurrent.ForkJoinPool common = java.util.concurrent.ForkJoinPool.commonPool();
        for (int i = 0; i < common.getParallelism() + 2; i++) {
            common.execute(() -> {
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
        }
        String name = TestSandboxes.uniqueName("busy-pool");
        java.util.concurrent.FutureTask<String> creation = new java.util.concurrent.FutureTask<>(() -> {
            try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().ephemeral(true).build())) {
                assertThatThrownBy(() -> Sandbox.get(name).waitUntilStopped(java.time.Duration.ofMillis(300)))
                        .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.CANCELLED));
                return sb.shell("echo up").stdout();
            }
        });
        new Thread(creation, "creator").start();
        try {
            // a step queued behind the blocked pool would wait until released below
            assertThat(creation.get(120, java.util.concurrent.TimeUnit.SECONDS)).isEqualTo("up\n");
        } catch (java.util.concurrent.TimeoutException e) {
            throw new AssertionError("the creation waited for the busy common pool", e);
        } catch (Exception e) {
            throw new AssertionError(e);
        } finally {
            release.countDown();
        }
    }

    @Test
    void stopShutsDownGracefullyAndLeavesNoProcessOrSocket() {
        String name = TestSandboxes.uniqueName("stop");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().build());
        SandboxPids pids = SandboxPids.of(name);
        assertThat(sb.ownsLifecycle()).isTrue();

        sb.stop();
        SandboxStopResult result = sb.waitUntilStopped();

        assertThat(result.status()).isEqualTo(SandboxStatus.STOPPED);
        assertThat(result.reason()).isEqualTo("shutdown-requested");
        assertThat(result.exitCode()).isZero();
        assertGone(name, pids);
        assertThat(sb.waitUntilStopped()).isEqualTo(result);
        assertThatThrownBy(() -> sb.exec("true", List.of())).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
            assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_RUNNING);
            assertThat(e.getMessage()).contains("has stopped (stopped, shutdown-requested)");
        });
        sb.close();
        sb.close();
        assertThatThrownBy(() -> sb.exec("true", List.of()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_HANDLE));
        Sandbox.remove(name);
        assertThat(SandboxLayout.of(RuntimeFiles.defaultHome(), name).dir()).doesNotExist();
        assertThatThrownBy(() -> Sandbox.remove(name))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_FOUND));
    }

    @Test
    void killEndsTheVmAtOnce() {
        String name = TestSandboxes.uniqueName("kill");
        Sandbox sb = Sandbox.create(name, TestSandboxes.config().build());
        SandboxPids pids = SandboxPids.of(name);
        java.util.concurrent.CompletableFuture<SandboxStopResult> otherWaiter =
                java.util.concurrent.CompletableFuture.supplyAsync(() -> sb.waitUntilStopped());

        sb.kill();

        SandboxStopResult result = sb.waitUntilStopped();
        assertThat(otherWaiter.join()).as("one result for every thread that saw the end").isSameAs(result);
        assertThat(result.status()).isEqualTo(SandboxStatus.STOPPED);
        assertThat(result.signal()).isEqualTo(9);
        assertGone(name, pids);
        Sandbox.remove(name);
    }

    /**
     * A supervisor that stops answering (frozen here, as a hung one would be): a stop still
     * ends the sandbox, through a connection made before it froze and through a
     * {@link SandboxHandle}, whose connection it no longer welcomes, and leaves no process,
     * socket or run file behind.
     */
    @Test
    void stopEndsASandboxWhoseSupervisorStoppedAnswering() {
        String connected = TestSandboxes.uniqueName("frozen");
        Sandbox sb = Sandbox.create(connected, TestSandboxes.config().build());
        SandboxPids pids = SandboxPids.of(connected);
        try {
            signal(pids.supervisorPid(), Posix.SIGSTOP);
            sb.stop(Duration.ofSeconds(1));
            assertGone(connected, pids);
            assertThat(Sandbox.get(connected).status()).isEqualTo(SandboxStatus.STOPPED);
        } finally {
            forceRemove(connected, pids);
        }

        String byHandle = TestSandboxes.uniqueName("frozen");
        Sandbox.create(byHandle, TestSandboxes.config().build()).detach();
        SandboxPids handlePids = SandboxPids.of(byHandle);
        try {
            signal(handlePids.supervisorPid(), Posix.SIGSTOP);
            Sandbox.get(byHandle).stop(Duration.ofSeconds(1));
            assertGone(byHandle, handlePids);
            assertThat(Sandbox.get(byHandle).status()).isEqualTo(SandboxStatus.STOPPED);
        } finally {
            forceRemove(byHandle, handlePids);
        }
    }

    /**
     * A supervisor whose 255 client slots are taken refuses the next client with
     * {@link ErrorKind#RESOURCE_LIMIT} (it is running, not gone), and still takes a stop, on a
     * control connection, instead of being killed as if it were hung.
     */
    @Test
    void aStopGetsThroughWhenClientsHoldEverySlot() throws Exception {
        String name = TestSandboxes.uniqueName("full");
        Sandbox.create(name, TestSandboxes.config().build()).detach();
        SandboxPids pids = SandboxPids.of(name);
        Path socket = SandboxLayout.of(RuntimeFiles.defaultHome(), name).agentSocket();
        List<AgentClient> clients = new java.util.ArrayList<>();
        try {
            for (int i = 0; i < 255; i++) {
                clients.add(AgentClient.connect(name, socket));
            }
            assertThatThrownBy(() -> AgentClient.connect(name, socket).close())
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.RESOURCE_LIMIT);
                        assertThat(e.getMessage()).contains("too many clients (255)");
                    });
            try (AgentClient control = AgentClient.connectForControl(name, socket, Duration.ofSeconds(10))) {
                assertThatThrownBy(() -> control.request(Protocol.EXEC_REQUEST, Json.object().put("cmd", "true"), Duration.ofSeconds(10)))
                        .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.getMessage()).contains("a control connection may only send"));
            }

            // a wait with every slot taken waits for the end instead of returning at once
            java.util.concurrent.CompletableFuture<SandboxStopResult> waited =
                    java.util.concurrent.CompletableFuture.supplyAsync(() -> Sandbox.get(name).waitUntilStopped());
            Thread.sleep(1000);
            assertThat(waited).isNotDone();

            Sandbox.get(name).stop();

            assertThat(waited.get(30, java.util.concurrent.TimeUnit.SECONDS).reason()).isEqualTo("shutdown-requested");
            SandboxStopResult result = Sandbox.get(name).lastStop().orElseThrow();
            assertThat(result.reason()).isEqualTo("shutdown-requested");
            assertThat(result.exitCode()).isZero();
            assertGone(name, pids);
            assertThat(clients).allSatisfy(c -> assertThat(c.exited()).succeedsWithin(Duration.ofSeconds(10)));
        } finally {
            clients.forEach(AgentClient::close);
            forceRemove(name, pids);
        }
    }

    private static void signal(long pid, int signal) {
        try {
            Posix.kill((int) pid, signal);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /** Whatever a failed assertion left of a sandbox whose supervisor was frozen. */
    private static void forceRemove(String name, SandboxPids pids) {
        if (SandboxPids.alive(pids.supervisorPid())) {
            signal(pids.supervisorPid(), Posix.SIGKILL);
            signal(pids.vmmPid(), Posix.SIGKILL);
            ProcessHandle.of(pids.supervisorPid()).ifPresent(p -> p.onExit().join());
        }
        Sandbox.remove(name);
    }

    @Test
    void guestKernelPanicFailsTheBootWithTheConsoleTail() {
        String name = TestSandboxes.uniqueName("panic");
        // An initramfs init that does not exist makes the kernel panic: "No working init found".
        withProperty("microsandbox.kernel.extraParams", "rdinit=/no-such-init init=/no-such-init", () ->
                assertThatThrownBy(() -> Sandbox.create(name, TestSandboxes.config().build()))
                        .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                            assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
                            assertThat(e.getMessage()).contains("before the guest agent was ready").contains("Kernel panic");
                        }));
        assertNoState(name);
    }

    @Test
    void requestStopReturnsAtOnceAndWaitObservesTheEnd() {
        String name = TestSandboxes.uniqueName("request");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().build())) {
            MetricsStream metrics = sb.metricsStream(Duration.ofMillis(100));
            assertThat(metrics.recv(Duration.ofSeconds(10))).isNotNull();
            sb.requestStop();
            SandboxStopResult result = sb.waitUntilStopped(Duration.ofSeconds(30));
            Metrics last;
            do {
                last = metrics.recv(Duration.ofSeconds(10));
            } while (last != null);
            assertThat(metrics.isEnded()).as("the metrics stream ends with the sandbox").isTrue();
            assertThat(result.status()).isEqualTo(SandboxStatus.STOPPED);
            assertThat(result.name()).isEqualTo(name);
        }
        Sandbox.remove(name);
    }

    @Test
    void refusesADuplicateNameWhileRunning() {
        String name = TestSandboxes.uniqueName("dup");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().build())) {
            assertThatThrownBy(() -> Sandbox.create(name, TestSandboxes.config().build()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_ALREADY_EXISTS);
                        assertThat(e.getMessage()).contains(name);
                    });
            assertThat(sb.exec("true", List.of()).success()).isTrue();
            assertThatThrownBy(() -> Sandbox.remove(name))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_STILL_RUNNING));
        }
        Sandbox.remove(name);
    }

    @Test
    void attachedSandboxDiesWithItsJvmEvenOnKill9() throws Exception {
        String name = TestSandboxes.uniqueName("attached");
        Process child = ChildJvm.start("attached", name);
        try {
            long[] pids = ChildJvm.awaitReady(child);
            assertThat(SandboxPids.alive(pids[0])).isTrue();
            assertThat(SandboxPids.alive(pids[1])).isTrue();

            child.destroyForcibly().waitFor();

            assertGone(name, new SandboxPids(pids[0], pids[1]));
            assertThat(Sandbox.get(name).lastStop().orElseThrow().reason()).isEqualTo("creator-exited");
            Sandbox.remove(name);
        } finally {
            child.destroyForcibly();
        }
    }

    @Test
    void detachedSandboxOutlivesItsJvmAndReconnectsByName() throws Exception {
        String name = TestSandboxes.uniqueName("detached");
        Process child = ChildJvm.start("detached", name);
        long[] pids = ChildJvm.awaitReady(child);
        assertThat(child.waitFor()).isZero();
        assertThat(SandboxPids.alive(pids[0])).isTrue();

        Sandbox sb = Sandbox.connect(name);
        assertThat(sb.ownsLifecycle()).isFalse();
        assertThat(sb.shell("echo reconnected").stdout()).isEqualTo("reconnected\n");
        sb.detach();
        assertThatThrownBy(() -> sb.shell("true"))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_HANDLE));
        // the sandbox runs on: a wait on the released handle is no wait (it reported a crash)
        assertThatThrownBy(() -> sb.waitUntilStopped(Duration.ofSeconds(10)))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_HANDLE));
        assertThat(SandboxPids.alive(pids[1])).isTrue();

        Sandbox again = Sandbox.connect(name);
        assertThat(again.shell("echo still here").stdout()).isEqualTo("still here\n");
        again.stop();
        // a connected handle after its stop: not running (not a closed handle), and its end again
        assertThatThrownBy(() -> again.shell("true"))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_RUNNING));
        assertThat(again.waitUntilStopped().reason()).isEqualTo("shutdown-requested");
        again.close();
        assertGone(name, new SandboxPids(pids[0], pids[1]));
        Sandbox.remove(name);
    }

    @Test
    void connectToUnknownSandboxFails() {
        assertThatThrownBy(() -> Sandbox.connect(TestSandboxes.uniqueName("ghost")))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_FOUND));
    }

    @Test
    void rejectsBadNames() {
        for (String bad : new String[] {"", "a/b", "..", ".hidden", "tab\there", "x".repeat(129), "é".repeat(65)}) {
            assertThatThrownBy(() -> Sandbox.create(bad, TestSandboxes.config().build()))
                    .as("name '%s'", bad)
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_ARGUMENT));
        }
        Sandbox.validateName("é".repeat(64));
        Sandbox.validateName("x".repeat(128));
    }

    @Test
    void missingImageFailsWithoutLeavingState() {
        String name = TestSandboxes.uniqueName("noimage");
        assertThatThrownBy(() -> Sandbox.create(name, SandboxConfig.builder().image("/no/such/rootfs").build()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_NOT_FOUND);
                    assertThat(e.getMessage()).contains("/no/such/rootfs");
                });
        assertNoState(name);
    }

    @Test
    void missingQemuFailsClearly() {
        String name = TestSandboxes.uniqueName("noqemu");
        withProperty("microsandbox.qemu", "/no/such/qemu", () ->
                assertThatThrownBy(() -> Sandbox.create(name, TestSandboxes.config().build()))
                        .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                            assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
                            assertThat(e.getMessage()).contains("/no/such/qemu");
                        }));
        assertNoState(name);
    }

    @Test
    void missingKernelFailsClearly(@TempDir Path empty) {
        String name = TestSandboxes.uniqueName("nokernel");
        withProperty("microsandbox.kernel.dir", empty.toString(), () ->
                assertThatThrownBy(() -> Sandbox.create(name, TestSandboxes.config().build()))
                        .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                            assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
                            assertThat(e.getMessage()).contains("no guest kernel").contains("setup.sh");
                        }));
        assertNoState(name);
    }

    @Test
    void vmmThatDiesDuringBootIsReportedWithItsOutput(@TempDir Path dir) throws Exception {
        Path fakeQemu = dir.resolve("qemu-that-fails");
        Files.writeString(fakeQemu, "#!/bin/sh\necho 'qemu: could not open disk' >&2\nexit 1\n");
        Files.setPosixFilePermissions(fakeQemu, PosixFilePermissions.fromString("rwxr-xr-x"));
        String name = TestSandboxes.uniqueName("vmmfail");
        withProperty("microsandbox.qemu", fakeQemu.toString(), () ->
                assertThatThrownBy(() -> Sandbox.create(name, TestSandboxes.config().build()))
                        .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                            assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
                            assertThat(e.getMessage()).contains("exit code 1").contains("could not open disk");
                        }));
        assertNoState(name);
    }

    /**
     * A boot slower than its timeout; an agent that never answers at all is in HostileGuestIT.
     * microsandbox's kernel boots to ready in well under 1.5 s even under TCG, so the timeout
     * is one no boot meets: QEMU's start alone takes longer.
     */
    @Test
    void aBootThatOutlastsItsTimeoutFailsWithTheConsoleTail() {
        String name = TestSandboxes.uniqueName("slowboot");
        long start = System.nanoTime();
        // a memory size no other test uses: a VM a spare booted ahead for another creation
        // is adopted ready within 150 ms
        assertThatThrownBy(() -> Sandbox.create(name, TestSandboxes.config().memoryMib(264).bootTimeout(Duration.ofMillis(150)).build()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
                    assertThat(e.getMessage()).contains("did not become ready within 150 ms");
                });
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(30));
        assertNoState(name);
    }

    private static void assertGone(String name, SandboxPids pids) {
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while ((SandboxPids.alive(pids.supervisorPid()) || SandboxPids.alive(pids.vmmPid())) && System.nanoTime() < deadline) {
            sleep(100);
        }
        assertThat(SandboxPids.alive(pids.vmmPid())).as("QEMU still running").isFalse();
        assertThat(SandboxPids.alive(pids.supervisorPid())).as("supervisor still running").isFalse();
        assertThat(SandboxLayout.of(RuntimeFiles.defaultHome(), name).runDir()).doesNotExist();
    }

    private static void assertNoState(String name) {
        SandboxLayout layout = SandboxLayout.of(RuntimeFiles.defaultHome(), name);
        assertThat(layout.dir()).doesNotExist();
        assertThat(layout.runDir()).doesNotExist();
        assertThat(ProcessHandle.current().descendants().filter(p -> p.info().commandLine().orElse("").contains(name)))
                .isEmpty();
    }

    private static void withProperty(String key, String value, Runnable body) {
        String old = System.getProperty(key);
        System.setProperty(key, value);
        try {
            body.run();
        } finally {
            if (old == null) {
                System.clearProperty(key);
            } else {
                System.setProperty(key, old);
            }
        }
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}

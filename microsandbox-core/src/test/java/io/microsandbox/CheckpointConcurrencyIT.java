package io.microsandbox;

import io.microsandbox.runtime.SandboxPreparer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Checkpoints of one name taken and removed at the same time, against a real VM: one take
 * wins, the others get a typed error and leave the winner's directory alone, removes during the
 * take find nothing to remove, and what is left is either a whole checkpoint that restores or
 * nothing at all.
 */
class CheckpointConcurrencyIT {
    @Test
    void concurrentTakesAndRemovesOfOneNameLeaveOneWholeCheckpointOrNone() throws Exception {
        Path base = Files.createTempDirectory("msb-cp-race");
        Microsandbox runtime = runtimeIn(base);
        ExecutorService pool = Executors.newFixedThreadPool(3);
        try {
            try (Sandbox sb = runtime.create("race-src", TestSandboxes.config().build())) {
                sb.fs().writeString("/root/mark.txt", "mark");
                for (int round = 0; round < 3; round++) {
                    CyclicBarrier start = new CyclicBarrier(3);
                    AtomicBoolean taking = new AtomicBoolean(true);
                    List<Future<String>> takes = new ArrayList<>();
                    for (int t = 0; t < 2; t++) {
                        takes.add(pool.submit(() -> {
                            start.await();
                            try {
                                sb.checkpoint("same");
                                return "taken";
                            } catch (MicrosandboxException e) {
                                return e.kind() == ErrorKind.IO ? e.getMessage() : e.kind().name();
                            }
                        }));
                    }
                    Future<List<String>> removes = pool.submit(() -> {
                        start.await();
                        List<String> outcomes = new ArrayList<>();
                        while (taking.get()) {
                            try {
                                runtime.checkpoints().remove("same");
                                outcomes.add("removed");
                            } catch (MicrosandboxException e) {
                                outcomes.add(e.kind() == ErrorKind.IO ? e.getMessage() : e.kind().name());
                            }
                        }
                        return outcomes;
                    });
                    List<String> results = new ArrayList<>();
                    for (Future<String> take : takes) {
                        results.add(take.get(180, TimeUnit.SECONDS));
                    }
                    taking.set(false);
                    List<String> removed = removes.get(30, TimeUnit.SECONDS);

                    // a loser lost to the claim (the name) or to the supervisor (one checkpoint at a time);
                    // a second take wins only once a remove took the first one away
                    assertThat(results).contains("taken");
                    assertThat(results).allMatch(r -> r.equals("taken") || r.equals("SNAPSHOT_ALREADY_EXISTS")
                            || r.equals("UNSUPPORTED_OPERATION"), "typed outcomes");
                    assertThat(removed).allMatch(r -> r.equals("removed") || r.equals("SNAPSHOT_NOT_FOUND"), "typed outcomes");
                    assertThat(results.stream().filter("taken"::equals).count())
                            .isLessThanOrEqualTo(1 + removed.stream().filter("removed"::equals).count());
                    Path dir = runtime.checkpoints().directory().resolve("same");
                    if (Files.exists(dir)) {
                        Checkpoint cp = runtime.checkpoints().get("same");
                        assertThat(Files.size(cp.memoryFile())).isEqualTo(cp.memoryBytes());
                        assertThat(dir.resolve(SnapshotDirectories.WRITING_LOCK)).doesNotExist();
                        runtime.checkpoints().remove("same");
                    }
                    try (var left = Files.list(runtime.checkpoints().directory())) {
                        assertThat(left.toList()).as("nothing half written or half removed").isEmpty();
                    }
                }
                // the source ran through it all
                assertThat(sb.shell("cat /root/mark.txt").stdout()).isEqualTo("mark");
                Checkpoint last = sb.checkpoint("last");
                try (Sandbox restored = runtime.restore("race-restored", last, RestoreOptions.defaults())) {
                    assertThat(restored.shell("cat /root/mark.txt").stdout()).isEqualTo("mark");
                }
            }
        } finally {
            pool.shutdownNow();
            removeAll(runtime, base, "race-src", "race-restored");
        }
    }

    /**
     * A network connection open through a published port: the guest could be writing its data
     * as the VM stops, cutting a frame in two inside the checkpoint, so the checkpoint is
     * refused, saying why; once the connection is closed it is taken and restores. A restore
     * can publish the guest's port on another host port (the source still holds its own), and
     * forks, which cannot all publish one, are refused unless they publish none.
     */
    @Test
    void aCheckpointWaitsForTheSandboxsNetworkConnectionsToCloseAndRestoresPublishPortsOfTheirOwn() throws Exception {
        Path base = Files.createTempDirectory("msb-cp-net");
        Microsandbox runtime = runtimeIn(base);
        int published = TestSandboxes.freePort();
        try {
            Checkpoint cp = null;
            try (Sandbox sb = runtime.create("net-src", TestSandboxes.config().ports(java.util.Map.of(published, 8000)).build())) {
                sb.shell("setsid python3 -m http.server 8000 > /dev/null 2>&1 < /dev/null &");
                awaitServing(published);
                try (java.net.Socket held = new java.net.Socket("127.0.0.1", published)) {
                    // the relay opens the guest's side when the host's connection is accepted
                    Thread.sleep(1000);
                    assertThatThrownBy(() -> sb.checkpoint("with-connection"))
                            .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                                assertThat(e.kind()).isEqualTo(ErrorKind.UNSUPPORTED_OPERATION);
                                assertThat(e.getMessage()).contains("1 network connection(s) or UDP flow(s) are open");
                            });
                }
                for (long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30); cp == null; Thread.sleep(200)) {
                    try {
                        cp = sb.checkpoint("closed");
                    } catch (MicrosandboxException e) {
                        if (e.kind() != ErrorKind.UNSUPPORTED_OPERATION || System.nanoTime() > end) {
                            throw e;
                        }
                    }
                }
                // the agent kept the guest's traffic quiet from the checkpoint's ping: it flows again
                // at once (a quiet spell left on would hold the answer back for 10 s)
                assertThat(fetch(published)).startsWith("HTTP/1.0 200");

                // the source holds its port: a restore publishes the guest's server on another
                int moved = TestSandboxes.freePort();
                try (Sandbox restored = runtime.restore("net-moved", cp,
                        RestoreOptions.builder().portBindings(List.of(PortBinding.tcp(moved, 8000))).build())) {
                    assertThat(restored.config().ports()).containsExactly(PortBinding.tcp(moved, 8000));
                    assertThat(fetch(moved)).startsWith("HTTP/1.0 200");
                }
                // forks would publish the source's port twice: refused before any of them starts
                Checkpoint taken = cp;
                assertThatThrownBy(() -> runtime.fork(taken, "net-fork", 2, RestoreOptions.defaults()))
                        .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                            assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_ARGUMENT);
                            assertThat(e.getMessage()).contains("127.0.0.1:" + published + "/tcp", "portBindings");
                        });
                assertThat(runtime.find("net-fork-1")).isEmpty();
            }
            // once the source has given its published port back; the restored agent's quiet spell
            // ends with the restore
            try (Sandbox restored = runtime.restore("net-restored", cp, RestoreOptions.defaults())) {
                assertThat(restored.exec("echo", List.of("restored")).stdout()).isEqualTo("restored\n");
                assertThat(fetch(published)).startsWith("HTTP/1.0 200");
            }
            List<Sandbox> forks = runtime.fork(cp, "net-fork", 2, RestoreOptions.builder().portBindings(List.of()).build());
            for (Sandbox fork : forks) {
                try (fork) {
                    assertThat(fork.config().ports()).isEmpty();
                    assertThat(fork.exec("echo", List.of("forked")).stdout()).isEqualTo("forked\n");
                }
            }
        } finally {
            removeAll(runtime, base, "net-src", "net-moved", "net-restored", "net-fork-1", "net-fork-2");
        }
    }

    /**
     * A pause asked for while a checkpoint is taken waits for it (the guest must not change
     * state while its memory is copied, nor the checkpoint's own resume undo the pause): it
     * either comes first, and the checkpoint is refused as the sandbox is paused, or it ends
     * after the checkpoint, and the sandbox is then paused for real.
     */
    @Test
    void aPauseDuringACheckpointWaitsForIt() throws Exception {
        Path base = Files.createTempDirectory("msb-cp-pause");
        Microsandbox runtime = runtimeIn(base);
        ExecutorService pool = Executors.newFixedThreadPool(1);
        try (Sandbox sb = runtime.create("pause-src", TestSandboxes.config().build())) {
            // memory worth copying, so that the checkpoint takes a while
            sb.shell("head -c 100000000 /dev/urandom > /dev/shm/fill");
            Future<Long> checkpointEnd = pool.submit(() -> {
                sb.checkpoint("paused-or-not");
                return System.nanoTime();
            });
            Thread.sleep(100);
            // from a second client: one client's requests are served one after another anyway
            long pauseEnd;
            try (Sandbox other = runtime.connect("pause-src")) {
                other.pause();
                pauseEnd = System.nanoTime();
                other.detach();
            }
            long taken;
            try {
                taken = checkpointEnd.get(180, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException e) {
                // the pause came first
                assertThat(e.getCause()).isInstanceOfSatisfying(MicrosandboxException.class,
                        m -> assertThat(m.getMessage()).contains("paused"));
                taken = -1;
            }
            if (taken > 0) {
                assertThat(pauseEnd).as("the pause ended after the checkpoint").isGreaterThan(taken);
            }
            assertThat(runtime.find("pause-src").orElseThrow().status()).isEqualTo(SandboxStatus.PAUSED);
            sb.resume();
            assertThat(sb.exec("echo", List.of("running")).stdout()).isEqualTo("running\n");
        } finally {
            pool.shutdownNow();
            removeAll(runtime, base, "pause-src");
        }
    }

    /** One GET to the guest's server through its published port, given 5 s to answer. */
    private static String fetch(int port) throws java.io.IOException {
        try (java.net.Socket s = new java.net.Socket()) {
            s.connect(new java.net.InetSocketAddress("127.0.0.1", port), 5000);
            s.setSoTimeout(5000);
            s.getOutputStream().write("GET / HTTP/1.0\r\n\r\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
            return new String(s.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.ISO_8859_1);
        }
    }

    /**
     * A fork reads its checkpoint's files restore after restore: a remove, and a new checkpoint
     * of the name, in between would give the later forks other files. The remove is refused
     * while the fork runs, and goes once it is over; a checkpoint read before it was removed
     * and taken again is not restored.
     */
    @Test
    void aRemoveDuringAForkIsRefusedAndAReplacedCheckpointIsNotRestored() throws Exception {
        Path base = Files.createTempDirectory("msb-cp-fork-pin");
        Microsandbox runtime = runtimeIn(base);
        ExecutorService pool = Executors.newSingleThreadExecutor();
        List<String> names = new ArrayList<>(List.of("pin-src"));
        Future<List<Sandbox>> fork = null;
        try {
            Checkpoint cp;
            try (Sandbox sb = runtime.create("pin-src", TestSandboxes.config().build())) {
                sb.fs().writeString("/root/mark.txt", "first");
                cp = sb.checkpoint("pinned");
            }
            int count = 2;
            for (int i = 1; i <= count; i++) {
                names.add("pin-fork-" + i);
            }
            fork = pool.submit(() -> runtime.fork(cp, "pin-fork", count, RestoreOptions.defaults()));
            // the first restore's sandbox directory comes after the fork's hold on the files
            Path firstFork = runtime.home().resolve("sandboxes").resolve("pin-fork-1");
            for (long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(120); !Files.exists(firstFork) && !fork.isDone(); Thread.sleep(5)) {
                assertThat(System.nanoTime()).as("a fork began").isLessThan(end);
            }
            assertThat(fork.isDone()).as("the fork still runs").isFalse();
            assertThatThrownBy(() -> runtime.checkpoints().remove("pinned")).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND);
                assertThat(e.getMessage()).contains("restored from");
            });
            List<Sandbox> forks = fork.get(300, TimeUnit.SECONDS);
            try {
                for (Sandbox f : forks) {
                    assertThat(f.shell("cat /root/mark.txt").stdout()).isEqualTo("first");
                }
            } finally {
                forks.forEach(Sandbox::close);
            }
            runtime.checkpoints().remove("pinned");
            assertThat(runtime.checkpoints().list()).isEmpty();

            // the files at its path are another checkpoint's now: restoring the one read before is refused
            try (Sandbox sb = runtime.start("pin-src")) {
                sb.fs().writeString("/root/mark.txt", "second");
                sb.checkpoint("pinned");
            }
            names.add("pin-stale");
            assertThatThrownBy(() -> runtime.restore("pin-stale", cp, RestoreOptions.defaults()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND);
                        assertThat(e.getMessage()).contains("taken again");
                    });
            runtime.checkpoints().remove("pinned");
        } finally {
            if (fork != null) {
                // a failed assertion leaves it running: its sandboxes cannot be removed while they boot
                try {
                    fork.get(300, TimeUnit.SECONDS).forEach(Sandbox::close);
                } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException failedToo) {
                    // the assertion's failure is the one to report
                }
            }
            pool.shutdownNow();
            removeAll(runtime, base, names.toArray(String[]::new));
        }
    }

    /** Waits until a whole HTTP answer comes through the published port. */
    private static void awaitServing(int port) throws Exception {
        for (long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(60); ; Thread.sleep(250)) {
            try (java.net.Socket s = new java.net.Socket("127.0.0.1", port)) {
                s.setSoTimeout(5000);
                s.getOutputStream().write("GET / HTTP/1.0\r\n\r\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
                if (new String(s.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.ISO_8859_1).startsWith("HTTP/1.0 200")) {
                    return;
                }
            } catch (java.io.IOException notYet) {
                if (System.nanoTime() > end) {
                    throw notYet;
                }
            }
            if (System.nanoTime() > end) {
                throw new AssertionError("nothing served on port " + port);
            }
        }
    }

    /** A runtime of its own under {@code base}, with the kernel the suite set up. */
    /**
     * A fork one of whose restores fails removes the forks it started, also when its caller was
     * interrupted meanwhile (the interrupt is put back after the clean-up, which it would fail).
     */
    @Test
    void aFailedForkOfAnInterruptedCallerLeavesNoForkRunning() throws Exception {
        Path base = Files.createTempDirectory("msb-cp-fork-fail");
        Microsandbox runtime = runtimeIn(base);
        List<String> names = new ArrayList<>(List.of("ff-src", "ff-1", "ff-2", "ff-3"));
        try {
            Checkpoint cp;
            try (Sandbox sb = runtime.create("ff-src", TestSandboxes.config().build())) {
                cp = sb.checkpoint("ff");
            }
            // the third fork's name is taken: its restore fails
            runtime.create("ff-3", TestSandboxes.config().build()).close();
            java.util.concurrent.atomic.AtomicReference<Object> outcome = new java.util.concurrent.atomic.AtomicReference<>();
            AtomicBoolean interruptedAfter = new AtomicBoolean();
            Thread caller = new Thread(() -> {
                try {
                    outcome.set(runtime.fork(cp, "ff", 3, RestoreOptions.defaults()));
                } catch (MicrosandboxException e) {
                    outcome.set(e);
                }
                interruptedAfter.set(Thread.currentThread().isInterrupted());
            });
            caller.start();
            Thread.sleep(200);
            caller.interrupt();
            caller.join(TimeUnit.SECONDS.toMillis(300));
            assertThat(outcome.get()).isInstanceOfSatisfying(MicrosandboxException.class,
                    e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_ALREADY_EXISTS));
            assertThat(interruptedAfter.get()).as("the caller's interrupt is put back").isTrue();
            assertThat(runtime.list()).extracting(SandboxHandle::name).as("no fork left").doesNotContain("ff-1", "ff-2");
            runtime.checkpoints().remove("ff");
        } finally {
            removeAll(runtime, base, names.toArray(String[]::new));
        }
    }

    private static Microsandbox runtimeIn(Path base) {
        return Microsandbox.builder().home(base.resolve("home"))
                .kernelDir(io.microsandbox.runtime.vmm.KernelBundle.locate(io.microsandbox.runtime.RuntimeFiles.defaultHome()).dir()).build();
    }

    /** Kills and removes {@code names}, then deletes the runtime's home. */
    private static void removeAll(Microsandbox runtime, Path base, String... names) {
        for (String name : names) {
            runtime.find(name).ifPresent(h -> {
                h.kill();
                h.remove();
            });
        }
        // a spare supervisor started for this home would write into it while it is deleted
        io.microsandbox.runtime.supervisor.SpareSupervisors.release(runtime.home());
        SandboxPreparer.deleteTree(base);
    }
}

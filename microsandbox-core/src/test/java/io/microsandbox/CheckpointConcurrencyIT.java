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
        Microsandbox runtime = Microsandbox.builder().home(base.resolve("home"))
                .kernelDir(io.microsandbox.runtime.vmm.KernelBundle.locate(io.microsandbox.runtime.RuntimeFiles.defaultHome()).dir()).build();
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
            for (String name : List.of("race-src", "race-restored")) {
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
}

package io.microsandbox.bench;

import io.microsandbox.Checkpoint;
import io.microsandbox.Microsandbox;
import io.microsandbox.RestoreOptions;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.runtime.Posix;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import static io.microsandbox.bench.BenchStats.loadAverage;
import static io.microsandbox.bench.BenchStats.median;
import static io.microsandbox.bench.BenchStats.millisSince;
import static io.microsandbox.bench.BenchStats.testImage;

/** The checkpoint benchmark behind bench/checkpoint.sh; see that script for what it measures. */
public final class CheckpointBench {
    private static final long SETTLE_MILLIS = 1500;

    private CheckpointBench() {
    }

    public static void main(String[] args) throws Exception {
        int rounds = Integer.parseInt(args[0]);
        Path output = Path.of(args[1]);
        Microsandbox runtime = Microsandbox.defaultRuntime();
        String image = testImage();
        // replace(): a bench run killed midway leaves its sandboxes recorded
        SandboxConfig config = SandboxConfig.builder().image(image).memoryMib(512).ephemeral(true).replace().build();
        String load = loadAverage();

        List<Double> checkpointMillis = new ArrayList<>();
        List<Long> memoryBytes = new ArrayList<>();
        List<Long> ramAllocated = new ArrayList<>();
        List<Long> upperAllocated = new ArrayList<>();
        List<Long> paused = new ArrayList<>();
        List<Checkpoint> checkpoints = new ArrayList<>();
        try (Sandbox source = Sandbox.create("bench-cp-source", config)) {
            // a warmed sandbox: Python has run once, as a pool member would have
            source.exec("python3", List.of("-c", "print(1)"));
            for (int i = 0; i < rounds; i++) {
                Thread.sleep(SETTLE_MILLIS);
                long start = System.nanoTime();
                Checkpoint cp = source.checkpoint("bench-cp-" + i);
                checkpointMillis.add(millisSince(start));
                checkpoints.add(cp);
                memoryBytes.add(cp.memoryBytes());
                ramAllocated.add(Posix.allocatedBytes(cp.ramFile()));
                upperAllocated.add(Posix.allocatedBytes(cp.upperDisk()));
                paused.add(cp.pausedMillis());
            }
        }
        Checkpoint cp = checkpoints.get(0);
        try {
            // cold create and restore alternate, each on a settled machine, so drift weighs on both alike;
            // cold means a real boot: no spare boots a VM ahead (bench/run.sh measures that as (b))
            System.setProperty(io.microsandbox.runtime.supervisor.SpareSupervisors.PREBOOT_PROPERTY, "false");
            try (Sandbox warm = Sandbox.create("bench-cp-warmup", config)) {
                warm.exec("true", List.of());
            }
            List<Double> cold = new ArrayList<>();
            List<Double> restored = new ArrayList<>();
            long coldRss = 0;
            long restoredRss = 0;
            for (int i = 0; i < rounds; i++) {
                Thread.sleep(SETTLE_MILLIS);
                long start = System.nanoTime();
                try (Sandbox sb = Sandbox.create("bench-cold-" + i, config)) {
                    sb.exec("true", List.of());
                    cold.add(millisSince(start));
                    if (i == rounds - 1) {
                        Thread.sleep(SETTLE_MILLIS);
                        coldRss = sb.metrics().memoryHostResidentBytes();
                    }
                }
                Thread.sleep(SETTLE_MILLIS);
                start = System.nanoTime();
                try (Sandbox sb = runtime.restore("bench-restored-" + i, cp, RestoreOptions.builder().ephemeral(true).build())) {
                    sb.exec("true", List.of());
                    restored.add(millisSince(start));
                    if (i == rounds - 1) {
                        Thread.sleep(SETTLE_MILLIS);
                        restoredRss = sb.metrics().memoryHostResidentBytes();
                    }
                }
            }
            // (r'): restores in a row, as a pool refills, each finding QEMU started ahead by the
            // spare with this checkpoint's memory (the first one starts it), 3 s apart: time for
            // the spare's deferred start (1 s after the restore's first command) and QEMU's
            System.setProperty(io.microsandbox.runtime.supervisor.SpareSupervisors.PREBOOT_PROPERTY, "true");
            List<Double> ahead = new ArrayList<>();
            for (int i = -1; i < rounds; i++) {
                Thread.sleep(3000);
                long start = System.nanoTime();
                try (Sandbox sb = runtime.restore("bench-ahead-" + (i + 1), cp, RestoreOptions.builder().ephemeral(true).build())) {
                    sb.exec("true", List.of());
                    if (i >= 0) {
                        ahead.add(millisSince(start));
                    }
                }
            }
            String loadAfter = loadAverage();
            double coldMedian = median(cold);
            double restoreMedian = median(restored);
            StringBuilder md = new StringBuilder();
            md.append("Measured ").append(Instant.now()).append(" on ").append(Runtime.getRuntime().availableProcessors())
                    .append(" cores, accelerator ").append(runtime.resolvedAccelerator().name().toLowerCase(java.util.Locale.ROOT))
                    .append(", 512 MiB, 1 vCPU, ").append(rounds).append(" rounds; load average (1, 5, 15 min) ")
                    .append(load).append(" before, ").append(loadAfter).append(" after.\n\n");
            md.append("| measurement | result |\n|---|---|\n");
            md.append(String.format(java.util.Locale.ROOT, "| (k) `checkpoint` of a running 512 MiB sandbox, median | %.0f ms (guest paused %d ms) |%n",
                    median(checkpointMillis), medianLong(paused)));
            md.append(String.format(java.util.Locale.ROOT,
                    "| (k) checkpoint size: guest memory allocated, device state, upper copy allocated | %.1f MiB, %.2f MiB, %.1f MiB |%n",
                    medianLong(ramAllocated) / 1048576.0, medianLong(memoryBytes) / 1048576.0, medianLong(upperAllocated) / 1048576.0));
            md.append(String.format(java.util.Locale.ROOT, "| (b) cold `create` to first `exec` result, median | %.0f ms |%n", coldMedian));
            md.append(String.format(java.util.Locale.ROOT, "| (r) `restore` to first `exec` result, median | %.0f ms (%.2fx of (b), goal 0.3x) |%n",
                    restoreMedian, restoreMedian / coldMedian));
            md.append(String.format(java.util.Locale.ROOT,
                    "| (r') the same, restores in a row (QEMU started ahead by the spare with the checkpoint's memory), median | %.0f ms (%.2fx of (b)) |%n",
                    median(ahead), median(ahead) / coldMedian));
            md.append(String.format(java.util.Locale.ROOT, "| (m) QEMU RSS of the last cold-booted / restored sandbox, after the first `exec` | %d MiB / %d MiB |%n",
                    coldRss >> 20, restoredRss >> 20));
            md.append("\nSamples (ms), in run order: (k) ").append(join(checkpointMillis)).append("; (b) ").append(join(cold))
                    .append("; (r) ").append(join(restored)).append("; (r') ").append(join(ahead)).append('\n');
            Files.createDirectories(output.toAbsolutePath().getParent());
            Files.writeString(output, md.toString());
            System.out.print(md);
        } finally {
            for (Checkpoint c : checkpoints) {
                Checkpoint.remove(c.path().toString());
            }
        }
    }

    private static long medianLong(List<Long> values) {
        List<Long> sorted = new ArrayList<>(values);
        Collections.sort(sorted);
        return sorted.get(sorted.size() / 2);
    }

    static String join(List<Double> values) {
        StringBuilder s = new StringBuilder();
        for (double v : values) {
            s.append(s.length() == 0 ? "" : " ").append(Math.round(v));
        }
        return s.toString();
    }
}

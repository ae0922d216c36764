package io.microsandbox.bench;

import io.microsandbox.Microsandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.spring.MicrosandboxProperties;
import io.microsandbox.spring.pool.PoolMemberView;
import io.microsandbox.spring.pool.SandboxPool;
import io.microsandbox.spring.pool.WarmStartStats;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import static io.microsandbox.bench.BenchStats.loadAverage;
import static io.microsandbox.bench.BenchStats.median;
import static io.microsandbox.bench.BenchStats.millisSince;
import static io.microsandbox.bench.BenchStats.testImage;

/**
 * The refill benchmark behind bench/pool.sh: the time a pool of {@code n} members takes to
 * refill after every member was drained ({@code evictAll}), with {@code warm-start=boot} (cold
 * boots, each running the warm-up command) and {@code warm-start=checkpoint} (restores from
 * the checkpoint of the first warmed member), plus each pool's first fill.
 */
public final class PoolRefillBench {
    /** A typical warm-up: the imports a Python sandbox's first command would otherwise pay for. */
    static final String WARM_UP = "python3 -c 'import json, decimal, email.parser, http.client, urllib.request'";

    private PoolRefillBench() {
    }

    public static void main(String[] args) throws Exception {
        int n = Integer.parseInt(args[0]);
        int rounds = Integer.parseInt(args[1]);
        Path output = Path.of(args[2]);
        Microsandbox runtime = Microsandbox.defaultRuntime();
        String image = testImage();
        SandboxConfig config = SandboxConfig.builder().image(image).memoryMib(256).build();
        String loadBefore = loadAverage();

        List<String> rows = new ArrayList<>();
        List<String> samples = new ArrayList<>();
        double coldRefill = 0;
        for (MicrosandboxProperties.WarmStart mode : MicrosandboxProperties.WarmStart.values()) {
            MicrosandboxProperties.Pool settings = new MicrosandboxProperties.Pool();
            settings.setName("refill-" + mode.name().toLowerCase());
            settings.setMinIdle(n);
            settings.setMaxSize(n);
            settings.setMaxUses(0);
            settings.setHousekeepingPeriod(java.time.Duration.ofMillis(200));
            settings.setWarmStart(mode);
            settings.setWarmUpCommand(WARM_UP);
            List<Double> refills = new ArrayList<>();
            double firstFill;
            WarmStartStats stats;
            try (SandboxPool pool = new SandboxPool(runtime, config, settings, "bench-" + ProcessHandle.current().pid())) {
                long t = System.nanoTime();
                pool.start();
                awaitFresh(pool, n, Set.of());
                firstFill = millisSince(t);
                for (int r = 0; r < rounds; r++) {
                    Thread.sleep(3000);
                    Set<String> old = pool.members().stream().map(PoolMemberView::name).collect(Collectors.toSet());
                    t = System.nanoTime();
                    pool.evictAll();
                    awaitFresh(pool, n, old);
                    refills.add(millisSince(t));
                }
                stats = pool.warmStartStats();
            }
            double median = median(refills);
            String label = mode == MicrosandboxProperties.WarmStart.BOOT ? "cold boots" : "restores from the checkpoint";
            String ratio = "";
            if (mode == MicrosandboxProperties.WarmStart.BOOT) {
                coldRefill = median;
            } else {
                ratio = String.format(" (%.2fx of cold)", median / coldRefill);
            }
            rows.add(String.format("| `warm-start=%s`: refill %d members (%s), median | %.0f ms%s |",
                    mode.name().toLowerCase(), n, label, median, ratio));
            rows.add(String.format("| `warm-start=%s`: first fill of %d members | %.0f ms |", mode.name().toLowerCase(), n, firstFill));
            samples.add(mode.name().toLowerCase() + " refills " + CheckpointBench.join(refills) + " (members booted "
                    + stats.booted() + ", restored " + stats.restored() + ")");
        }

        StringBuilder table = new StringBuilder();
        table.append("Measured ").append(Instant.now()).append(" on ").append(Runtime.getRuntime().availableProcessors())
                .append(" cores, accelerator ").append(runtime.resolvedAccelerator().name().toLowerCase())
                .append(", 256 MiB, 1 vCPU, ").append(n).append(" members, 2 creator threads, ").append(rounds)
                .append(" refills per mode, warm-up `").append(WARM_UP).append("`; load average (1, 5, 15 min) ")
                .append(loadBefore).append(" before, ").append(loadAverage()).append(" after.\n\n");
        table.append("| measurement | result |\n|---|---|\n");
        rows.forEach(r -> table.append(r).append('\n'));
        table.append("\nSamples (ms): ").append(String.join("; ", samples)).append(".\n");
        System.out.print(table);
        Files.createDirectories(output.toAbsolutePath().getParent());
        Files.writeString(output, table.toString());
    }

    /** Waits until the pool holds {@code n} idle members, none of them in {@code old}; 10 minutes at most. */
    private static void awaitFresh(SandboxPool pool, int n, Set<String> old) throws InterruptedException {
        long deadline = System.nanoTime() + java.time.Duration.ofMinutes(10).toNanos();
        while (pool.stats().idle() < n || pool.members().stream().anyMatch(m -> old.contains(m.name()))) {
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("pool " + pool.name() + " did not refill: " + pool.stats());
            }
            Thread.sleep(20);
        }
    }
}

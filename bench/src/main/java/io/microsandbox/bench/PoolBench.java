package io.microsandbox.bench;

import io.microsandbox.ExecOutput;
import io.microsandbox.Microsandbox;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.spring.MicrosandboxProperties;
import io.microsandbox.spring.SandboxTemplate;
import io.microsandbox.spring.pool.ExecObserver;
import io.microsandbox.spring.pool.SandboxPool;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import static io.microsandbox.bench.BenchStats.millisSince;
import static io.microsandbox.bench.BenchStats.percentile;
import static io.microsandbox.bench.BenchStats.testImage;

/**
 * The pool benchmark behind bench/pool.sh: in one run, (e) borrow + run {@code print(1)} +
 * return through SandboxTemplate from a warm pool, (f) the same with {@code true}, beside
 * (g) the core's exec round trip of {@code python3 -c print(1)} and of {@code true} on one
 * sandbox, and (h) a cold create + exec {@code print(1)} + close.
 */
public final class PoolBench {
    private PoolBench() {
    }

    public static void main(String[] args) throws Exception {
        int n = Integer.parseInt(args[0]);
        int cold = Integer.parseInt(args[1]);
        Path output = Path.of(args[2]);
        Microsandbox runtime = Microsandbox.defaultRuntime();
        String image = testImage();
        SandboxConfig config = SandboxConfig.builder().image(image).memoryMib(256).build();
        SandboxConfig throwaway = config.toBuilder().ephemeral(true).build();

        // (g) the core's round trips on one sandbox
        List<Double> corePy = new ArrayList<>();
        List<Double> coreTrue = new ArrayList<>();
        try (Sandbox sb = runtime.create("bench-core-" + ProcessHandle.current().pid(), throwaway)) {
            for (int i = 0; i < 10; i++) {
                sb.exec("python3", List.of("-c", "print(1)"));
                sb.exec("true", List.of());
            }
            for (int i = 0; i < n; i++) {
                long t = System.nanoTime();
                sb.exec("python3", List.of("-c", "print(1)"));
                corePy.add(millisSince(t));
                t = System.nanoTime();
                sb.exec("true", List.of());
                coreTrue.add(millisSince(t));
            }
        }

        // (e), (f) through a warm pool
        MicrosandboxProperties.Pool settings = new MicrosandboxProperties.Pool();
        settings.setName("bench");
        settings.setMinIdle(1);
        settings.setMaxSize(1);
        settings.setMaxUses(0);
        List<Double> poolPy = new ArrayList<>();
        List<Double> poolTrue = new ArrayList<>();
        try (SandboxPool pool = new SandboxPool(runtime, config, settings, "bench-" + ProcessHandle.current().pid())) {
            pool.start();
            SandboxTemplate template = new SandboxTemplate(pool, ExecObserver.NOOP, Duration.ofSeconds(30));
            for (int i = 0; i < 10; i++) {
                template.run("python", "print(1)");
                template.exec("true");
            }
            for (int i = 0; i < n; i++) {
                long t = System.nanoTime();
                ExecOutput out = template.run("python", "print(1)");
                poolPy.add(millisSince(t));
                if (!out.stdout().equals("1\n")) {
                    throw new IllegalStateException("unexpected output " + out);
                }
                t = System.nanoTime();
                template.exec("true");
                poolTrue.add(millisSince(t));
            }
        }

        // (h) cold: create + exec + close
        List<Double> coldPy = new ArrayList<>();

        for (int i = 0; i < cold; i++) {
            Thread.sleep(1500);
            long t = System.nanoTime();
            try (Sandbox sb = runtime.create("bench-cold-" + i, throwaway)) {
                sb.exec("python3", List.of("-c", "print(1)"));
            }
            coldPy.add(millisSince(t));
        }

        StringBuilder table = new StringBuilder();
        table.append("Measured ").append(Instant.now()).append(" on ").append(Runtime.getRuntime().availableProcessors())
                .append(" cores, accelerator ").append(runtime.resolvedAccelerator().name().toLowerCase())
                .append(", 256 MiB, 1 vCPU, ").append(n).append(" round trips per row, ").append(cold).append(" cold boots.\n\n");
        table.append("| measurement | p50 | p99 |\n|---|---|---|\n");
        row(table, "(e) warm pool: borrow + `run(\"python\", \"print(1)\")` + return", poolPy);
        row(table, "(f) warm pool: borrow + `exec(\"true\")` + return", poolTrue);
        row(table, "(g) core: `exec python3 -c print(1)` on one sandbox", corePy);
        row(table, "(g') core: `exec true` on one sandbox", coreTrue);
        row(table, "(h) cold: `create` + exec `print(1)` + `close`", coldPy);
        table.append(String.format("%nWarm pool over the core's round trip, p50: %.2fx for print(1), %.2fx for true.%n",
                percentile(poolPy, 50) / percentile(corePy, 50), percentile(poolTrue, 50) / percentile(coreTrue, 50)));
        System.out.print(table);
        Files.createDirectories(output.toAbsolutePath().getParent());
        Files.writeString(output, table.toString());
    }

    private static void row(StringBuilder table, String name, List<Double> values) {
        table.append(String.format("| %s | %.1f ms | %.1f ms |%n", name, percentile(values, 50), percentile(values, 99)));
    }

}

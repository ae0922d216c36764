package io.microsandbox.bench;

import io.microsandbox.Accelerator;
import io.microsandbox.ExecOptions;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxPreparer;
import io.microsandbox.runtime.vmm.Accelerators;
import io.microsandbox.runtime.vmm.KernelBundle;
import io.microsandbox.runtime.vmm.QemuCommand;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** The boot benchmark behind bench/run.sh; see that script for what it measures. */
public final class BootBench {
    private static final long SETTLE_MILLIS = 1500;
    private BootBench() {
    }

    public static void main(String[] args) throws Exception {
        int rounds = Integer.parseInt(args[0]);
        Path output = Path.of(args[1]);
        Path home = RuntimeFiles.defaultHome();
        String image = home.resolve("test-images").resolve("debian-python").toString();
        KernelBundle kernel = KernelBundle.locate(home);
        Path agent = RuntimeFiles.extract("msb-agent");
        Path initramfs = kernel.initramfs(agent, agent.getParent());
        String qemu = SandboxPreparer.findQemu();
        Accelerator accel = Accelerators.resolve(Accelerator.AUTO, qemu, kernel, initramfs, agent.getParent());

        SandboxConfig config = SandboxConfig.builder().image(image).memoryMib(512).ephemeral(true).build();
        // One untimed create warms the lower-disk cache and the JIT, as a long-running service would be.
        try (Sandbox warm = Sandbox.create("bench-warmup", config)) {
            warm.exec("true", List.of());
        }
        // (a) and (b) alternate, so that drift in the machine's speed weighs on both alike, and
        // each starts on a settled machine (the previous VM's teardown and the spare supervisor's
        // start-up done).
        List<Double> bare = new ArrayList<>();
        List<Double> createToExec = new ArrayList<>();
        List<Double> roundTrips = new ArrayList<>();
        long rssKib = 0;
        for (int i = 0; i < rounds; i++) {
            Thread.sleep(SETTLE_MILLIS);
            bare.add(bareBootMillis(qemu, kernel, initramfs, accel));
            Thread.sleep(SETTLE_MILLIS);
            long start = System.nanoTime();
            try (Sandbox sb = Sandbox.create("bench-" + i, config)) {
                sb.exec("true", List.of());
                createToExec.add(millisSince(start));
                if (i == rounds - 1) {
                    for (int j = 0; j < 20; j++) {
                        sb.exec("true", List.of());
                    }
                    for (int j = 0; j < 100; j++) {
                        long t = System.nanoTime();
                        sb.exec("true", List.of(), ExecOptions.defaults());
                        roundTrips.add(millisSince(t));
                    }
                    Thread.sleep(2000);
                    rssKib = idleRssKib(sb.name());
                }
            }
        }

        double bareMedian = percentile(bare, 50);
        double createMedian = percentile(createToExec, 50);
        StringBuilder table = new StringBuilder();
        table.append("Measured ").append(Instant.now()).append(" on ").append(host()).append(", accelerator ")
                .append(accel.name().toLowerCase()).append(", ").append(rounds).append(" boots per row, 512 MiB, 1 vCPU.\n\n");
        table.append("| measurement | result |\n|---|---|\n");
        table.append(String.format("| (a) bare QEMU boot to a trivial init that powers off, median | %.0f ms |%n", bareMedian));
        table.append(String.format("| (b) `create` to first `exec` result, median | %.0f ms (%.2fx of (a), target 1.3x) |%n",
                createMedian, createMedian / bareMedian));
        table.append(String.format("| (c) exec round trip of `true`, p50 / p99 over 100 | %.1f ms / %.1f ms |%n",
                percentile(roundTrips, 50), percentile(roundTrips, 99)));
        table.append(String.format("| (d) host RSS of QEMU + supervisor, idle sandbox | %.0f MiB |%n", rssKib / 1024.0));
        table.append(String.format("%nSamples (ms), in run order: (a) %s; (b) %s%n", rounded(bare), rounded(createToExec)));
        System.out.print(table);
        Files.createDirectories(output.toAbsolutePath().getParent());
        Files.writeString(output, table.toString());
    }

    private static double bareBootMillis(String qemu, KernelBundle kernel, Path initramfs, Accelerator accel) throws Exception {
        Path console = Files.createTempFile("msb-bench-console", ".log");
        try {
            List<String> argv = new QemuCommand().qemuBinary(qemu).accelerator(accel).memoryMib(512)
                    .kernel(kernel.vmlinux(), initramfs).kernelParam(QemuCommand.PROBE_PARAM)
                    .consoleLog(console).argv();
            long start = System.nanoTime();
            Process vmm = new ProcessBuilder(argv).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            if (!vmm.waitFor(60, TimeUnit.SECONDS)) {
                vmm.destroyForcibly();
                throw new IllegalStateException("bare boot did not power off within 60 s");
            }
            double millis = millisSince(start);
            if (!Files.readString(console).contains(QemuCommand.PROBE_MARKER)) {
                throw new IllegalStateException("bare boot did not reach the init: " + Files.readString(console));
            }
            return millis;
        } finally {
            Files.deleteIfExists(console);
        }
    }

    private static long idleRssKib(String name) throws IOException {
        Path pidFile = io.microsandbox.runtime.SandboxLayout.of(RuntimeFiles.defaultHome(), name).pidFile();
        long supervisor = Long.parseLong(Files.readString(pidFile).strip());
        long total = rssKib(supervisor);
        for (ProcessHandle child : ProcessHandle.of(supervisor).orElseThrow().children().toList()) {
            total += rssKib(child.pid());
        }
        return total;
    }

    private static long rssKib(long pid) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return 0;
    }

    private static double percentile(List<Double> values, int p) {
        List<Double> sorted = new ArrayList<>(values);
        Collections.sort(sorted);
        int index = (int) Math.ceil(p / 100.0 * sorted.size()) - 1;
        return sorted.get(Math.max(0, Math.min(sorted.size() - 1, index)));
    }

    private static String rounded(List<Double> values) {
        return values.stream().map(v -> Long.toString(Math.round(v))).collect(java.util.stream.Collectors.joining(" "));
    }

    private static double millisSince(long startNanos) {
        return (System.nanoTime() - startNanos) / 1e6;
    }

    private static String host() {
        return Runtime.getRuntime().availableProcessors() + " cores, " + System.getProperty("os.name") + " " + System.getProperty("os.version");
    }
}

package io.microsandbox.bench;

import io.microsandbox.Accelerator;
import io.microsandbox.ExecOptions;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxPreparer;
import io.microsandbox.runtime.supervisor.SpareSupervisors;
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
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import static io.microsandbox.bench.BenchStats.millisSince;
import static io.microsandbox.bench.BenchStats.percentile;
import static io.microsandbox.bench.BenchStats.testImage;

/** The boot benchmark behind bench/run.sh; see that script for what it measures. */
public final class BootBench {
    private static final long SETTLE_MILLIS = 1500;
    private BootBench() {
    }

    public static void main(String[] args) throws Exception {
        int rounds = Integer.parseInt(args[0]);
        Path output = Path.of(args[1]);
        int density = args.length > 2 ? Integer.parseInt(args[2]) : 20;
        int parallel = args.length > 3 ? Integer.parseInt(args[3]) : 10;
        Path home = RuntimeFiles.defaultHome();
        String image = testImage();
        KernelBundle ours = KernelBundle.bundled(home);
        KernelBundle debian = KernelBundle.debian(home);
        Path agent = RuntimeFiles.extract("msb-agent");
        Path oursInitramfs = ours.initramfs(agent, agent.getParent());
        Path debianInitramfs = debian.initramfs(agent, agent.getParent());
        String qemu = SandboxPreparer.findQemu();
        Accelerator accel = Accelerators.resolve(Accelerator.AUTO, qemu, ours, oursInitramfs, agent.getParent());

        // replace(): a bench run killed midway leaves its sandboxes recorded
        SandboxConfig config = SandboxConfig.builder().image(image).memoryMib(512).ephemeral(true).replace().build();
        // One untimed create warms the lower-disk cache and the JIT, as a long-running service would be.
        System.setProperty(SpareSupervisors.PREBOOT_PROPERTY, "true");
        try (Sandbox warm = Sandbox.create("bench-warmup", config)) {
            warm.exec("true", List.of());
        }
        // (a0), (a) and (b) alternate, so that drift in the machine's speed weighs on all alike,
        // and each starts on a settled machine (the previous VM's teardown and the spare
        // supervisor's start-up done).
        List<Double> bareDebian = new ArrayList<>();
        List<Double> bare = new ArrayList<>();
        List<Double> createToExec = new ArrayList<>();
        List<Double> createToExecCold = new ArrayList<>();
        List<Double> roundTrips = new ArrayList<>();
        long[] idle = null;
        long[] cacheReclaim = null;
        String timeline = "";
        for (int i = 0; i < rounds; i++) {
            Thread.sleep(SETTLE_MILLIS);
            bareDebian.add(bareBootMillis(qemu, debian, debianInitramfs, accel));
            Thread.sleep(SETTLE_MILLIS);
            bare.add(bareBootMillis(qemu, ours, oursInitramfs, accel));
            Thread.sleep(SETTLE_MILLIS);
            // (b') next, with a spare that boots no VM: the one this creation's first command starts
            System.setProperty(SpareSupervisors.PREBOOT_PROPERTY, "false");
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
                    Thread.sleep(3000);
                    idle = idleRssKib(sb.name());
                    timeline = bootTimeline(sb.name());
                    cacheReclaim = cacheThenIdleRssKib(sb, config.cacheReclaimAfter());
                }
            }
            Thread.sleep(SETTLE_MILLIS);
            // and the spare this one's first command starts pre-boots for the next round's (b)
            System.setProperty(SpareSupervisors.PREBOOT_PROPERTY, "true");
            long coldStart = System.nanoTime();
            try (Sandbox sb = Sandbox.create("bench-cold-" + i, config)) {
                sb.exec("true", List.of());
                createToExecCold.add(millisSince(coldStart));
            }
        }

        // (e) density: sandboxes started one after the other and left idle, then measured
        Thread.sleep(SETTLE_MILLIS);
        List<Sandbox> fleet = new ArrayList<>();
        long[] fleetRss = new long[5];
        long densityStart = System.nanoTime();
        double densityMillis;
        try {
            for (int i = 0; i < density; i++) {
                Sandbox sb = Sandbox.create("bench-idle-" + i, config);
                fleet.add(sb);
                sb.exec("true", List.of());
            }
            densityMillis = millisSince(densityStart);
            Thread.sleep(5000);
            for (Sandbox sb : fleet) {
                long[] rss = idleRssKib(sb.name());
                for (int k = 0; k < fleetRss.length; k++) {
                    fleetRss[k] += rss[k];
                }
            }
        } finally {
            closeAll(fleet);
        }
        // ... and created all at once
        Thread.sleep(3 * SETTLE_MILLIS);
        List<Sandbox> burst = Collections.synchronizedList(new ArrayList<>());
        double parallelMillis;
        ExecutorService pool = Executors.newFixedThreadPool(parallel);
        try {
            long t = System.nanoTime();
            List<Future<?>> done = new ArrayList<>();
            for (int i = 0; i < parallel; i++) {
                String name = "bench-burst-" + i;
                done.add(pool.submit(() -> {
                    Sandbox sb = Sandbox.create(name, config);
                    burst.add(sb);
                    sb.exec("true", List.of());
                    return null;
                }));
            }
            for (Future<?> f : done) {
                f.get();
            }
            parallelMillis = millisSince(t);
        } finally {
            pool.shutdown();
            closeAll(burst);
        }

        double a0 = percentile(bareDebian, 50);
        double a = percentile(bare, 50);
        double b = percentile(createToExec, 50);
        double bCold = percentile(createToExecCold, 50);
        long total = fleetRss[0] + fleetRss[1];
        StringBuilder table = new StringBuilder();
        table.append("Measured ").append(Instant.now()).append(" on ").append(host()).append(", accelerator ")
                .append(accel.name().toLowerCase()).append(", ").append(rounds).append(" boots per row, 512 MiB, 1 vCPU.\n\n");
        table.append("| measurement | result |\n|---|---|\n");
        table.append(String.format("| (a0) bare QEMU boot of Debian's kernel to a trivial init that powers off, median | %.0f ms |%n", a0));
        table.append(String.format("| (a) bare QEMU boot of microsandbox's kernel, the same, median | %.0f ms (%.2fx of (a0)) |%n", a, a / a0));
        table.append(String.format("| (b) `create` to first `exec` result, median | %.0f ms (%.2fx of (a), goal 1.3x; %.2fx of (a0), goal 0.6x) |%n",
                b, b / a, b / a0));
        table.append(String.format("| (b') the same when the spare supervisor has booted no VM ahead (`-Dmicrosandbox.supervisor.preboot=false`), median | %.0f ms (%.2fx of (a)) |%n",
                bCold, bCold / a));
        table.append(String.format("| (c) exec round trip of `true`, p50 / p99 over 100 | %.1f ms / %.1f ms |%n",
                percentile(roundTrips, 50), percentile(roundTrips, 99)));
        table.append(String.format("| (d) host RSS of QEMU + supervisor, idle sandbox | %.0f MiB (QEMU %.0f, of which TCG's translation buffer %.0f, + supervisor %.0f; goal 160) |%n",
                (idle[0] + idle[1]) / 1024.0, idle[0] / 1024.0, idle[4] / 1024.0, idle[1] / 1024.0));
        table.append(String.format("| (d') the same sandbox's QEMU after its guest wrote and read 200 MB, then %d s idle (`cacheReclaimAfter`) | %.0f MiB, then %.0f MiB |%n",
                config.cacheReclaimAfter().toSeconds() + CACHE_RECLAIM_GRACE_SECONDS, cacheReclaim[0] / 1024.0, cacheReclaim[1] / 1024.0));
        table.append(String.format("| (e) %d idle 512 MiB sandboxes started in sequence: total host RSS, per sandbox | %.0f MiB, %.0f MiB per sandbox (QEMU %.0f, of which TCG's translation buffer %.0f, + supervisor %.0f; goal 160); started in %.1f s |%n",
                density, total / 1024.0, total / 1024.0 / density, fleetRss[0] / 1024.0 / density, fleetRss[4] / 1024.0 / density,
                fleetRss[1] / 1024.0 / density, densityMillis / 1000));
        table.append(String.format("| (e) the same, proportional set size (shared pages split among their users), per sandbox | %.0f MiB (QEMU %.0f + supervisor %.0f) |%n",
                (fleetRss[2] + fleetRss[3]) / 1024.0 / density, fleetRss[2] / 1024.0 / density, fleetRss[3] / 1024.0 / density));
        table.append(String.format("| (e) %d sandboxes created in parallel, wall time to all first `exec` results | %.1f s |%n",
                parallel, parallelMillis / 1000));
        table.append(String.format("%nSamples (ms), in run order: (a0) %s; (a) %s; (b) %s; (b') %s%n", rounded(bareDebian), rounded(bare),
                rounded(createToExec), rounded(createToExecCold)));
        table.append(String.format("%nBoot timeline of the last (b) sandbox (supervisor log): %s%n", timeline));
        System.out.print(table);
        Files.createDirectories(output.toAbsolutePath().getParent());
        Files.writeString(output, table.toString());
    }

    private static void closeAll(List<Sandbox> sandboxes) throws InterruptedException {
        List<Thread> closers = new ArrayList<>();
        for (Sandbox sb : new ArrayList<>(sandboxes)) {
            Thread t = new Thread(sb::close);
            t.start();
            closers.add(t);
        }
        for (Thread t : closers) {
            t.join();
        }
    }

    private static String bootTimeline(String name) throws IOException {
        Path log = io.microsandbox.runtime.SandboxLayout.of(RuntimeFiles.defaultHome(), name).supervisorLog();
        return Files.readAllLines(log).stream().filter(l -> l.contains("boot timeline: "))
                .map(l -> l.substring(l.indexOf("boot timeline: ") + 15)).findFirst().orElse("(not logged)");
    }

    private static double bareBootMillis(String qemu, KernelBundle kernel, Path initramfs, Accelerator accel) throws Exception {
        Path console = Files.createTempFile("msb-bench-console", ".log");
        try {
            List<String> argv = new QemuCommand().qemuBinary(qemu).accelerator(accel).memoryMib(512).balloon(false)
                    .kernel(kernel, initramfs).kernelParam(QemuCommand.PROBE_PARAM)
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

    /** Time beyond {@code cacheReclaimAfter} for the next metrics sample, the guest's drop and free page reporting. */
    private static final long CACHE_RECLAIM_GRACE_SECONDS = 10;

    /**
     * QEMU's RSS in KiB after the guest wrote and read back 200 MB (its page cache), and again
     * once it has been idle for {@code reclaimAfter} and a grace period.
     */
    private static long[] cacheThenIdleRssKib(Sandbox sb, java.time.Duration reclaimAfter) throws Exception {
        sb.shell("head -c 200000000 /dev/zero > /root/cached && sync && cat /root/cached > /dev/null && rm /root/cached");
        long filled = idleRssKib(sb.name())[0];
        Thread.sleep(reclaimAfter.toMillis() + CACHE_RECLAIM_GRACE_SECONDS * 1000);
        return new long[] {filled, idleRssKib(sb.name())[0]};
    }

    /**
     * In KiB, of a running sandbox: QEMU's and the supervisor's RSS, their PSS, and the part of
     * QEMU's RSS that is TCG's translation buffer (which KVM does not have).
     */
    private static long[] idleRssKib(String name) throws IOException {
        Path pidFile = io.microsandbox.runtime.SandboxLayout.of(RuntimeFiles.defaultHome(), name).pidFile();
        long supervisor = Long.parseLong(Files.readString(pidFile).strip());
        long vmm = 0;
        long vmmPss = 0;
        long translated = 0;
        for (ProcessHandle child : ProcessHandle.of(supervisor).orElseThrow().children().toList()) {
            vmm += rssKib(child.pid());
            vmmPss += pssKib(child.pid());
            translated += translationBufferKib(child.pid());
        }
        return new long[] {vmm, rssKib(supervisor), vmmPss, pssKib(supervisor), translated};
    }

    /** The resident part of TCG's translation buffer: QEMU's one anonymous mapping that is writable and executable. */
    private static long translationBufferKib(long pid) throws IOException {
        long kib = 0;
        boolean inBuffer = false;
        for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "smaps"))) {
            String[] fields = line.trim().split("\\s+");
            if (fields.length >= 5 && fields[0].matches("[0-9a-f]+-[0-9a-f]+")) {
                inBuffer = fields[1].equals("rwxp") && fields.length == 5;
            } else if (inBuffer && line.startsWith("Rss:")) {
                kib += Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return kib;
    }

    /** Proportional set size: shared pages (libjvm, the CDS archive, QEMU's libraries) split among their users. */
    private static long pssKib(long pid) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "smaps_rollup"))) {
            if (line.startsWith("Pss:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return 0;
    }

    private static long rssKib(long pid) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return 0;
    }

    private static String rounded(List<Double> values) {
        return values.stream().map(v -> Long.toString(Math.round(v))).collect(java.util.stream.Collectors.joining(" "));
    }

    private static String host() {
        return Runtime.getRuntime().availableProcessors() + " cores, " + System.getProperty("os.name") + " " + System.getProperty("os.version");
    }
}

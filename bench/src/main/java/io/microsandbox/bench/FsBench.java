package io.microsandbox.bench;

import io.microsandbox.ExecOutput;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.SandboxFs;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import static io.microsandbox.bench.BenchStats.median;
import static io.microsandbox.bench.BenchStats.testImage;

/**
 * The file transfer benchmark behind bench/fs.sh: write and read of a 64 MiB file through
 * {@link SandboxFs} streams (MB/s, 10^6 bytes), beside the same file handled by commands inside
 * the guest (dd with fsync for the write, cat after dropping the page cache for the read), so
 * the cost of the channel shows. Median of the rounds.
 */
public final class FsBench {
    private static final int MIB = 64;

    private FsBench() {
    }

    public static void main(String[] args) throws Exception {
        int rounds = Integer.parseInt(args[0]);
        Path output = Path.of(args[1]);
        String image = testImage();
        SandboxConfig config = SandboxConfig.builder().image(image).memoryMib(512).upperSizeMib(1024).ephemeral(true).build();
        byte[] data = new byte[MIB << 20];
        new Random(1).nextBytes(data);
        List<Double> apiWrite = new ArrayList<>();
        List<Double> apiRead = new ArrayList<>();
        List<Double> guestWrite = new ArrayList<>();
        List<Double> guestRead = new ArrayList<>();
        try (Sandbox sb = Sandbox.create("bench-fs", config)) {
            SandboxFs fs = sb.fs();
            byte[] buf = new byte[1 << 20];
            for (int i = 0; i <= rounds; i++) {
                long t0 = System.nanoTime();
                try (OutputStream out = fs.writeStream("/tmp/api.bin")) {
                    for (int off = 0; off < data.length; off += buf.length) {
                        out.write(data, off, buf.length);
                    }
                }
                double w = mbps(System.nanoTime() - t0);
                dropCaches(sb);
                long t1 = System.nanoTime();
                long total = 0;
                try (InputStream in = fs.readStream("/tmp/api.bin")) {
                    int n;
                    while ((n = in.read(buf)) > 0) {
                        total += n;
                    }
                }
                double r = mbps(System.nanoTime() - t1);
                if (total != data.length) {
                    throw new IllegalStateException("read " + total + " bytes");
                }
                double gw = mbps(guestNanos(sb, "dd if=/tmp/api.bin of=/tmp/guest.bin bs=1M conv=fsync 2>/dev/null", true));
                double gr = mbps(guestNanos(sb, "cat /tmp/api.bin > /dev/null", true));
                fs.remove("/tmp/guest.bin");
                if (i > 0) { // round 0 warms up the JIT and the guest
                    apiWrite.add(w);
                    apiRead.add(r);
                    guestWrite.add(gw);
                    guestRead.add(gr);
                }
                System.out.printf("round %d: api write %.1f, api read %.1f, guest dd %.1f, guest cat %.1f MB/s%n", i, w, r, gw, gr);
            }
        }
        String table = String.format("""
                Measured %s on %d cores, %s, %d rounds of a %d MiB file (median), 512 MiB, 1 vCPU.

                | measurement | MB/s |
                |---|---|
                | write through `fs().writeStream` (fsynced on close) | %.1f |
                | read through `fs().readStream` (guest page cache dropped first) | %.1f |
                | in the guest: `dd` copy of the file with `conv=fsync` (read + write) | %.1f |
                | in the guest: `cat` of the file to /dev/null (page cache dropped first) | %.1f |

                Samples (MB/s), in run order: api write %s; api read %s; guest dd %s; guest cat %s
                """, Instant.now(), Runtime.getRuntime().availableProcessors(), System.getProperty("msb.bench.accel", "accelerator as Accelerator.AUTO resolves it"),
                rounds, MIB, median(apiWrite), median(apiRead), median(guestWrite), median(guestRead),
                fmt(apiWrite), fmt(apiRead), fmt(guestWrite), fmt(guestRead));
        System.out.print(table);
        Files.writeString(output, table);
    }

    private static void dropCaches(Sandbox sb) {
        sb.shell("sync; echo 3 > /proc/sys/vm/drop_caches");
    }

    /** Nanoseconds a shell command takes inside the guest, timed there. */
    private static long guestNanos(Sandbox sb, String command, boolean drop) {
        if (drop) {
            dropCaches(sb);
        }
        ExecOutput out = sb.shell("s=$(date +%s%N); " + command + "; e=$(date +%s%N); echo $((e-s))");
        return Long.parseLong(out.stdout().trim());
    }

    private static double mbps(long nanos) {
        return (MIB * 1048576.0 / 1e6) / (nanos / 1e9);
    }

    private static String fmt(List<Double> values) {
        return String.join(" ", values.stream().map(v -> String.format("%.1f", v)).toList());
    }

}

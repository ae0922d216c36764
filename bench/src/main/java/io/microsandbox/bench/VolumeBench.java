package io.microsandbox.bench;

import io.microsandbox.Microsandbox;
import io.microsandbox.Mount;
import io.microsandbox.MountOptions;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.Volumes;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import static io.microsandbox.bench.BenchStats.testImage;

/**
 * The volume benchmark behind bench/volumes.sh: sequential write (dd with fsync) and read
 * (cat after dropping the guest page cache) of a 64 MiB file, and the rate of creating small
 * files (1 KiB each, Python in the guest, timed there), in a bind mount (virtio-9p), beside
 * the upper disk (the overlay root), an ext4 disk volume and a tmpfs. Median of the rounds.
 */
public final class VolumeBench {
    private static final int MIB = 64;
    private static final int SMALL_FILES = 500;
    /** Creates SMALL_FILES files of 1 KiB in the directory argv[1]; prints files/s. */
    private static final String CREATE = "import os,sys,time\n"
            + "d=sys.argv[1]; os.makedirs(d, exist_ok=True); b=b'x'*1024; t=time.perf_counter()\n"
            + "for i in range(" + SMALL_FILES + "):\n"
            + "    with open(os.path.join(d, 'f%d' % i), 'wb') as f: f.write(b)\n"
            + "print(" + SMALL_FILES + "/(time.perf_counter()-t))\n";

    private VolumeBench() {
    }

    public static void main(String[] args) throws Exception {
        int rounds = Integer.parseInt(args[0]);
        Path output = Path.of(args[1]);
        String image = testImage();
        Path share = Files.createTempDirectory("msb-volume-bench");
        // a home of its own, removed at the end: the volume and the sandbox leave nothing in the default one
        Path home = Files.createTempDirectory("msb-volume-bench-home");
        Microsandbox runtime = Microsandbox.builder().home(home).build();
        Volumes volumes = runtime.volumes();
        String disk = "bench-volume-disk";
        volumes.createDisk(disk, 512);
        Map<String, String> dirs = new LinkedHashMap<>();
        dirs.put("bind mount (virtio-9p)", "/mnt/bind");
        dirs.put("upper disk (overlay root, ext4 on virtio-blk)", "/root/bench");
        dirs.put("disk volume (ext4 on virtio-blk)", "/mnt/disk");
        dirs.put("tmpfs", "/mnt/tmp");
        Map<String, List<double[]>> samples = new LinkedHashMap<>();
        SandboxConfig config = SandboxConfig.builder().image(image).memoryMib(512).upperSizeMib(1024).ephemeral(true)
                .mount("/mnt/bind", Mount.bind(share, MountOptions.defaults()))
                .mount("/mnt/disk", Mount.disk(disk, "ext4", MountOptions.defaults()))
                .mount("/mnt/tmp", Mount.tmpfs(256, MountOptions.defaults()))
                .build();
        try (Sandbox sb = runtime.create("bench-volumes", config)) {
            sb.shell("mkdir -p /root/bench && cat > /root/create.py <<'EOF'\n" + CREATE + "EOF");
            for (int i = 0; i <= rounds; i++) {
                for (Map.Entry<String, String> e : dirs.entrySet()) {
                    String dir = e.getValue();
                    double write = mbps(guestNanos(sb, "dd if=/dev/zero of=" + dir + "/seq.bin bs=1M count=" + MIB + " conv=fsync 2>/dev/null"));
                    dropCaches(sb);
                    double read = mbps(guestNanos(sb, "cat " + dir + "/seq.bin > /dev/null"));
                    double create = Double.parseDouble(sb.shell("python3 /root/create.py " + dir + "/small.$$ && sync").stdout().trim());
                    sb.shell("rm -rf " + dir + "/seq.bin " + dir + "/small.*");
                    if (i > 0) { // round 0 warms up the guest and the host caches
                        samples.computeIfAbsent(e.getKey(), k -> new ArrayList<>()).add(new double[] {write, read, create});
                    }
                    System.out.printf("round %d %s: write %.1f MB/s, read %.1f MB/s, create %.0f files/s%n", i, e.getKey(), write, read, create);
                }
            }
            sb.stop();
        } finally {
            volumes.remove(disk);
            deleteTree(share);
            deleteTree(home);
        }
        StringBuilder table = new StringBuilder(String.format("""
                Measured %s on %d cores, %d rounds (median), 512 MiB, 1 vCPU; sequential: a %d MiB file
                (dd bs=1M conv=fsync; cat after dropping the guest page cache); small files: %d files of 1 KiB
                created by Python in the guest (timed there), then sync.

                | where | seq write MB/s | seq read MB/s | small-file creates/s |
                |---|---|---|---|
                """, Instant.now(), Runtime.getRuntime().availableProcessors(), rounds, MIB, SMALL_FILES));
        StringBuilder raw = new StringBuilder("\nSamples (write/read/creates), in run order:\n");
        for (Map.Entry<String, List<double[]>> e : samples.entrySet()) {
            table.append(String.format("| %s | %.1f | %.1f | %.0f |%n", e.getKey(),
                    median(e.getValue(), 0), median(e.getValue(), 1), median(e.getValue(), 2)));
            raw.append("- ").append(e.getKey()).append(":");
            for (double[] s : e.getValue()) {
                raw.append(String.format(" %.1f/%.1f/%.0f", s[0], s[1], s[2]));
            }
            raw.append('\n');
        }
        String text = table.append(raw).toString();
        System.out.print(text);
        Files.writeString(output, text);
    }

    private static void deleteTree(Path dir) throws java.io.IOException {
        try (Stream<Path> walk = Files.walk(dir)) {
            for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    private static void dropCaches(Sandbox sb) {
        sb.shell("sync; echo 3 > /proc/sys/vm/drop_caches");
    }

    /** Nanoseconds a shell command takes inside the guest, timed there. */
    private static long guestNanos(Sandbox sb, String command) {
        return Long.parseLong(sb.shell("s=$(date +%s%N); " + command + "; e=$(date +%s%N); echo $((e-s))").stdout().trim());
    }

    private static double mbps(long nanos) {
        return (MIB * 1048576.0 / 1e6) / (nanos / 1e9);
    }

    private static double median(List<double[]> values, int column) {
        List<Double> sorted = new ArrayList<>(values.stream().map(v -> v[column]).toList());
        Collections.sort(sorted);
        return sorted.get(sorted.size() / 2);
    }
}

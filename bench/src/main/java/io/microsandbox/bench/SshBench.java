package io.microsandbox.bench;

import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.ssh.SandboxSshClient;
import io.microsandbox.ssh.SshServerEndpoint;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import static io.microsandbox.bench.BenchStats.median;
import static io.microsandbox.bench.BenchStats.percentile;
import static io.microsandbox.bench.BenchStats.testImage;

/**
 * The SSH benchmark behind bench/ssh.sh: OpenSSH's {@code ssh ... true} (a new connection,
 * key exchange and login each time), the in-process client's exec round trip on an open
 * session beside {@link Sandbox#exec}, and {@code scp} of a 64 MiB file both ways beside the
 * same file through {@code fs()} streams (MB/s, 10^6 bytes). Medians of the rounds.
 */
public final class SshBench {
    private static final int MIB = 64;
    private static final int SSH_ROUNDS = 10;
    private static final int EXEC_ROUNDS = 100;

    private SshBench() {
    }

    public static void main(String[] args) throws Exception {
        int rounds = Integer.parseInt(args[0]);
        Path output = Path.of(args[1]);
        String image = testImage();
        SandboxConfig config = SandboxConfig.builder().image(image).memoryMib(512).upperSizeMib(1024).ephemeral(true).build();
        Path dir = Files.createTempDirectory("msb-ssh-bench");
        Path local = dir.resolve("data.bin");
        byte[] data = new byte[MIB << 20];
        new Random(1).nextBytes(data);
        Files.write(local, data);
        List<Double> sshTrue = new ArrayList<>();
        List<Double> clientExec = new ArrayList<>();
        List<Double> sdkExec = new ArrayList<>();
        List<Double> scpUp = new ArrayList<>();
        List<Double> scpDown = new ArrayList<>();
        List<Double> fsUp = new ArrayList<>();
        List<Double> fsDown = new ArrayList<>();
        try (Sandbox sb = Sandbox.create("bench-ssh", config)) {
            SshServerEndpoint ep = sb.ssh().server();
            String key = ep.clientKeyFile().orElseThrow().toString();
            List<String> opts = List.of("-i", key, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
                    "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR");
            for (int i = 0; i <= SSH_ROUNDS; i++) {
                long t = System.nanoTime();
                run(concat(List.of("ssh", "-p", Integer.toString(ep.port())), opts, List.of("root@127.0.0.1", "true")));
                if (i > 0) {
                    sshTrue.add(ms(System.nanoTime() - t));
                }
            }
            try (SandboxSshClient client = sb.ssh().openClient()) {
                for (int i = 0; i < EXEC_ROUNDS + 10; i++) {
                    long t = System.nanoTime();
                    if (client.exec("true").exitStatus() != 0) {
                        throw new IllegalStateException("true failed over SSH");
                    }
                    long t2 = System.nanoTime();
                    sb.exec("true", List.of());
                    if (i >= 10) { // the first ten warm up the JIT
                        clientExec.add(ms(t2 - t));
                        sdkExec.add(ms(System.nanoTime() - t2));
                    }
                }
            }
            byte[] buf = new byte[1 << 20];
            for (int i = 0; i <= rounds; i++) {
                long t0 = System.nanoTime();
                run(concat(List.of("scp", "-P", Integer.toString(ep.port())), opts, List.of(local.toString(), "root@127.0.0.1:/tmp/scp.bin")));
                double up = mbps(System.nanoTime() - t0);
                sb.shell("sync; echo 3 > /proc/sys/vm/drop_caches");
                long t1 = System.nanoTime();
                run(concat(List.of("scp", "-P", Integer.toString(ep.port())), opts, List.of("root@127.0.0.1:/tmp/scp.bin", dir.resolve("back.bin").toString())));
                double down = mbps(System.nanoTime() - t1);
                if (Files.size(dir.resolve("back.bin")) != data.length) {
                    throw new IllegalStateException("scp brought back " + Files.size(dir.resolve("back.bin")) + " bytes");
                }
                long t2 = System.nanoTime();
                try (OutputStream out = sb.fs().writeStream("/tmp/fs.bin")) {
                    for (int off = 0; off < data.length; off += buf.length) {
                        out.write(data, off, buf.length);
                    }
                }
                double fup = mbps(System.nanoTime() - t2);
                sb.shell("sync; echo 3 > /proc/sys/vm/drop_caches");
                long t3 = System.nanoTime();
                try (InputStream in = sb.fs().readStream("/tmp/fs.bin")) {
                    while (in.read(buf) > 0) {
                        // counted by the size check of the scp copy; this one only times the stream
                    }
                }
                double fdown = mbps(System.nanoTime() - t3);
                if (i > 0) {
                    scpUp.add(up);
                    scpDown.add(down);
                    fsUp.add(fup);
                    fsDown.add(fdown);
                }
                System.out.printf("round %d: scp up %.1f, scp down %.1f, fs up %.1f, fs down %.1f MB/s%n", i, up, down, fup, fdown);
            }
        } finally {
            Files.deleteIfExists(local);
            Files.deleteIfExists(dir.resolve("back.bin"));
            Files.deleteIfExists(dir);
        }
        String table = String.format("""
                Measured %s on %d cores, %s, 512 MiB, 1 vCPU; OpenSSH client, server Apache MINA SSHD 2.20.0 in the JVM.

                | measurement | result |
                |---|---|
                | `ssh -p PORT root@127.0.0.1 true` (new connection, key exchange, login, command), median of %d | %.0f ms |
                | in-process client `exec("true")` on an open session, p50 / p99 of %d | %.1f ms / %.1f ms |
                | `Sandbox.exec("true")` in the same loop, p50 / p99 | %.1f ms / %.1f ms |
                | `scp` of a %d MiB file to the guest, median of %d | %.1f MB/s |
                | `scp` of it back (guest page cache dropped first) | %.1f MB/s |
                | `fs().writeStream` of the same file (fsynced on close) | %.1f MB/s |
                | `fs().readStream` of it (page cache dropped first) | %.1f MB/s |

                Samples: ssh true (ms) %s; scp up %s; scp down %s; fs up %s; fs down %s
                """, Instant.now(), Runtime.getRuntime().availableProcessors(), System.getProperty("msb.bench.accel", "accelerator as Accelerator.AUTO resolves it"),
                SSH_ROUNDS, median(sshTrue), EXEC_ROUNDS, median(clientExec), percentile(clientExec, 99),
                median(sdkExec), percentile(sdkExec, 99), MIB, rounds, median(scpUp), median(scpDown), median(fsUp), median(fsDown),
                fmt(sshTrue, "%.0f"), fmt(scpUp, "%.1f"), fmt(scpDown, "%.1f"), fmt(fsUp, "%.1f"), fmt(fsDown, "%.1f"));
        System.out.print(table);
        Files.writeString(output, table);
    }

    private static List<String> concat(List<String> a, List<String> b, List<String> c) {
        List<String> all = new ArrayList<>(a);
        all.addAll(b);
        all.addAll(c);
        return all;
    }

    private static void run(List<String> cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[] output = p.getInputStream().readAllBytes();
        if (!p.waitFor(5, TimeUnit.MINUTES)) {
            p.destroyForcibly();
            throw new IllegalStateException(cmd + " did not finish in 5 minutes");
        }
        if (p.exitValue() != 0) {
            throw new IllegalStateException(cmd + " exited with " + p.exitValue() + ": " + new String(output, java.nio.charset.StandardCharsets.UTF_8));
        }
    }

    private static double ms(long nanos) {
        return nanos / 1e6;
    }

    private static double mbps(long nanos) {
        return (MIB * 1048576.0 / 1e6) / (nanos / 1e9);
    }

    private static String fmt(List<Double> values, String format) {
        return String.join(" ", values.stream().map(v -> String.format(format, v)).toList());
    }

}

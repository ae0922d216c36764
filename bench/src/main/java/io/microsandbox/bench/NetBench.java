package io.microsandbox.bench;

import com.sun.net.httpserver.HttpServer;
import io.microsandbox.ExecOptions;
import io.microsandbox.ExecOutput;
import io.microsandbox.NetworkPolicy;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import java.io.OutputStream;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.NetworkInterface;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import static io.microsandbox.bench.BenchStats.testImage;

/**
 * The network benchmark behind bench/net.sh. One HTTP server on this host (all addresses)
 * serves a 64 MiB body and an empty one. The same Python client in the guest downloads the
 * body (MB/s, 10^6 bytes) and opens and closes N connections one after the other (the time of
 * connect() plus the first response byte of a tiny request, p50/p99), through:
 * (1) microsandbox's network: the guest connects to the host's address, the agent carries the
 * connection, the supervisor checks the policy (HOST profile) and opens the real socket;
 * (2) QEMU's user-mode network (-netdev user with a virtio-net device), the guest configured
 * as 10.0.2.15 with gateway 10.0.2.2, which QEMU maps to the host's 127.0.0.1.
 */
public final class NetBench {
    private static final int MIB = 64;
    private static final String CLIENT = """
            import socket, sys, time
            host, port, rounds, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
            def get(path):
                s = socket.create_connection((host, port), timeout=60)
                s.sendall(("GET %s HTTP/1.0\\r\\nHost: b\\r\\n\\r\\n" % path).encode())
                n = 0
                while True:
                    b = s.recv(1 << 20)
                    if not b:
                        break
                    n += len(b)
                s.close()
                return n
            for r in range(rounds + 1):
                t = time.perf_counter(); n = get("/big"); d = time.perf_counter() - t
                print("throughput", r, n, "%.1f" % (n / d / 1e6))
            # the guest clock ticks in 4 ms steps under TCG: the mean over all connections is the figure
            lat = []
            start = time.perf_counter()
            for i in range(conns):
                t = time.perf_counter()
                s = socket.create_connection((host, port), timeout=60)
                s.sendall(b"GET /small HTTP/1.0\\r\\n\\r\\n")
                s.recv(1)
                lat.append((time.perf_counter() - t) * 1000)
                s.close()
            total = (time.perf_counter() - start) * 1000
            lat.sort()
            print("latency %.2f %.0f" % (total / conns, lat[min(len(lat) - 1, int(len(lat) * 0.99))]))
            """;
    /** Configures eth0 for QEMU's user-mode network with ioctls (the image has no ip tool). */
    private static final String SLIRP_SETUP = """
            import fcntl, socket, struct
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            def addr(ip): return struct.pack("16sH2s4s8s", b"eth0", socket.AF_INET, b"\\0\\0", socket.inet_aton(ip), b"\\0" * 8)
            fcntl.ioctl(s, 0x8916, addr("10.0.2.15"))      # SIOCSIFADDR
            fcntl.ioctl(s, 0x891c, addr("255.255.255.0"))  # SIOCSIFNETMASK
            flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"eth0", 0)))[1]
            fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"eth0", flags | 1))  # SIOCSIFFLAGS IFF_UP
            def sa(ip): return struct.pack("HH4s8s", socket.AF_INET, 0, socket.inet_aton(ip), b"\\0" * 8)
            rt = struct.pack("L", 0) + sa("0.0.0.0") + sa("10.0.2.2") + sa("0.0.0.0") + struct.pack("HhLPLLH", 0x3, 0, 0, 0, 0, 0, 0)
            fcntl.ioctl(s, 0x890B, rt.ljust(120, b"\\0"))  # SIOCADDRT, RTF_UP|RTF_GATEWAY
            print("eth0 up")
            """;

    private NetBench() {
    }

    public static void main(String[] args) throws Exception {
        int rounds = Integer.parseInt(args[0]);
        int conns = Integer.parseInt(args[1]);
        Path output = Path.of(args[2]);
        byte[] big = new byte[MIB << 20];
        HttpServer server = HttpServer.create(new InetSocketAddress("0.0.0.0", 0), 64);
        server.createContext("/big", ex -> {
            ex.sendResponseHeaders(200, big.length);
            try (OutputStream out = ex.getResponseBody()) {
                out.write(big);
            }
        });
        server.createContext("/small", ex -> {
            ex.sendResponseHeaders(200, 2);
            try (OutputStream out = ex.getResponseBody()) {
                out.write("ok".getBytes());
            }
        });
        java.util.concurrent.ExecutorService handlers = java.util.concurrent.Executors.newFixedThreadPool(4);
        server.setExecutor(handlers);
        server.start();
        int port = server.getAddress().getPort();
        String hostAddress = hostAddress();
        String image = testImage();
        SandboxConfig.Builder base = SandboxConfig.builder().image(image).memoryMib(512).ephemeral(true);
        String ours;
        String slirp;
        try {
            try (Sandbox sb = Sandbox.create("bench-net", base.network(NetworkPolicy.fromProfiles(NetworkPolicy.Profile.HOST)).build())) {
                ours = run(sb, hostAddress, port, rounds, conns);
            }
            System.setProperty("microsandbox.qemu.extraArgs", "-netdev user,id=bench0 -device virtio-net-device,netdev=bench0");
            try (Sandbox sb = Sandbox.create("bench-net-slirp", base.network(NetworkPolicy.none()).build())) {
                System.clearProperty("microsandbox.qemu.extraArgs");
                ExecOutput up = sb.exec("python3", List.of("-c", SLIRP_SETUP));
                if (!up.success()) {
                    throw new IllegalStateException("eth0 set-up failed: " + up.stderr());
                }
                slirp = run(sb, "10.0.2.2", port, rounds, conns);
            }
        } finally {
            System.clearProperty("microsandbox.qemu.extraArgs");
            server.stop(0);
            // its threads are not daemons: left running, they keep the JVM from exiting
            handlers.shutdownNow();
        }
        String table = String.format("""
                Measured %s on %d cores, accelerator as Accelerator.AUTO resolves it, 512 MiB, 1 vCPU; %d downloads of %d MiB (median after a warm-up), %d connections.

                | measurement | microsandbox (policy-checked, no NIC) | QEMU user-mode network (slirp) |
                |---|---|---|
                | HTTP download into the guest, MB/s | %s | %s |
                | connection set-up (connect + first byte of a tiny response + close), mean / p99 ms (guest clock in 4 ms steps) | %s | %s |

                Samples: microsandbox %s; slirp %s
                """, Instant.now(), Runtime.getRuntime().availableProcessors(), rounds, MIB, conns,
                field(ours, "mbps"), field(slirp, "mbps"), field(ours, "latency"), field(slirp, "latency"),
                field(ours, "samples"), field(slirp, "samples"));
        System.out.print(table);
        Files.writeString(output, table);
    }

    /** Runs the client; returns "mbps=..;latency=..;samples=..". */
    private static String run(Sandbox sb, String host, int port, int rounds, int conns) {
        ExecOutput out = sb.exec("python3", List.of("-c", CLIENT, host, Integer.toString(port), Integer.toString(rounds),
                Integer.toString(conns)), ExecOptions.builder().timeout(Duration.ofMinutes(10)).build());
        if (!out.success()) {
            throw new IllegalStateException("the client failed: " + out.stderr());
        }
        System.out.print(out.stdout());
        List<Double> mbps = new ArrayList<>();
        String latency = "";
        for (String line : out.stdout().split("\n")) {
            String[] f = line.split(" ");
            if (f[0].equals("throughput") && !f[1].equals("0")) {
                if (Long.parseLong(f[2]) < (long) MIB << 20) { // the body and its headers
                    throw new IllegalStateException("short download: " + line);
                }
                mbps.add(Double.parseDouble(f[3]));
            } else if (f[0].equals("latency")) {
                latency = f[1] + " / " + f[2];
            }
        }
        List<Double> sorted = new ArrayList<>(mbps);
        Collections.sort(sorted);
        return "mbps=" + String.format("%.1f", sorted.get(sorted.size() / 2)) + ";latency=" + latency + ";samples=" + mbps;
    }

    private static String field(String result, String name) {
        for (String part : result.split(";")) {
            if (part.startsWith(name + "=")) {
                return part.substring(name.length() + 1);
            }
        }
        return "?";
    }

    /** A non-loopback IPv4 address of this host: the guest reaches the host there (HOST profile). */
    private static String hostAddress() throws Exception {
        for (NetworkInterface ni : Collections.list(NetworkInterface.getNetworkInterfaces())) {
            for (InetAddress a : Collections.list(ni.getInetAddresses())) {
                if (a instanceof Inet4Address && !a.isLoopbackAddress()) {
                    return a.getHostAddress();
                }
            }
        }
        throw new IllegalStateException("no IPv4 address on this host");
    }
}

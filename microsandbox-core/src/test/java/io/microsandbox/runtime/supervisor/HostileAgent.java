package io.microsandbox.runtime.supervisor;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameLink;
import io.microsandbox.runtime.agent.Protocol;
import java.io.IOException;
import java.io.OutputStream;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * A stand-in for QEMU and the guest agent, started by a real supervisor in place of the VMM
 * (see {@link HostileSandboxes}): it connects to the supervisor's VM socket, speaks the
 * protocol well enough to boot, and then misbehaves the way a guest that took over PID 1
 * could. {@code core.shutdown} makes it exit like a powered-off VM, unless the scenario
 * ignores it.
 *
 * <p>Scenarios: {@code honest} (answers exec with "ok"), {@code float} (answers exec with a
 * float in its payload), {@code tiny-items} (answers exec with a 4 MiB frame of empty maps),
 * {@code flood} (answers exec with endless output, ignoring the window), {@code short-read}
 * (answers a file read with 9 bytes and a result claiming a million), {@code deaf} (stops
 * reading its port after the boot), {@code wide-deep} (describes every directory as holding
 * another and 12,000 other entries, without end), {@code bad-name} (lists a {@code ..} name), {@code junk} (answers a file request and exec each with 64
 * MiB of frames no window meters, file progress and repeated starts, then honestly), {@code forge} (sends output for ids it was never given
 * and {@code sup.*} frames, then answers honestly), {@code disorder} (answers exec out of
 * order: the end first, then output and a start for the ended session, and a second
 * {@code core.ready}), {@code oversized} (answers exec with a frame whose length field is
 * 2 GiB), {@code deaf-spell} (reads nothing after the boot until a file
 * {@code hear-again} appears beside its VM socket, then answers honestly, but exits with status 5
 * when a request comes after its own cancel), {@code noisy} (honest, but writes megabytes to its stderr, which is the VMM's
 * log), {@code big-hello} (honest, but says hello with a 1 MiB agent name), {@code silent} (never says hello), {@code setup-error} (says hello, then answers
 * {@code core.configure} with {@code core.error}), {@code setup-exit} (says hello, then exits
 * with status 3 during the set-up), {@code ready-exit} (exits with status 3 right after saying it is ready), {@code mute-monitor} (honest, but its two QMP sockets
 * (its third and fourth arguments) accept connections and never answer, as a stuck QEMU's would, and it ignores
 * {@code core.shutdown}, so only the supervisor's kill ends it). Resumed from a checkpoint (its third argument is
 * the QMP socket it serves, as QEMU would, saying the VM runs): {@code restore-silent} (never
 * answers core.restore), {@code restore-wrong} (answers it with core.ready),
 * {@code restore-error} (answers it with core.error).
 */
public final class HostileAgent {
    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    public static void main(String[] args) throws Exception {
        String scenario = args[0];
        SocketChannel channel = SocketChannel.open(UnixDomainSocketAddress.of(Path.of(args[1])));
        FrameLink link = new FrameLink(channel);
        if (scenario.startsWith("restore-")) {
            restored(scenario, link, Path.of(args[2]));
            return;
        }
        if (scenario.equals("silent")) {
            Thread.sleep(Long.MAX_VALUE);
        }
        if (scenario.equals("mute-monitor")) {
            muteMonitor(Path.of(args[2]));
            muteMonitor(Path.of(args[3]));
        }
        String agent = scenario.equals("big-hello") ? "x".repeat(1 << 20) : "hostile";
        link.write(new Frame(0, 0, Protocol.CORE_HELLO, NODES.objectNode().put("v", Protocol.VERSION).put("agent", agent)));
        link.read(); // core.configure
        if (scenario.equals("setup-exit")) {
            System.exit(3); // as a VM whose guest died during its set-up
        }
        if (scenario.equals("setup-error")) {
            link.write(new Frame(0, 0, Protocol.CORE_ERROR,
                    NODES.objectNode().put("stage", "mount").put("message", "hostile says no").put("errno", 5)));
            Thread.sleep(Long.MAX_VALUE);
        }
        link.write(new Frame(0, 0, Protocol.CORE_READY, NODES.objectNode().put("boot_time_ns", 1).put("init_time_ns", 2).put("ready_time_ns", 3)));
        if (scenario.equals("ready-exit")) {
            Runtime.getRuntime().halt(3); // as a VM that dies the moment its guest is ready
        }
        if (scenario.equals("noisy")) {
            Thread noise = new Thread(() -> {
                byte[] line = ("qemu: a device error the guest can provoke again and again " + "x".repeat(960) + "\n").getBytes();
                for (int i = 0; i < 3 * 1024; i++) {
                    System.err.write(line, 0, line.length);
                }
                System.err.flush();
            });
            noise.setDaemon(true);
            noise.start();
        }
        if (scenario.equals("deaf")) {
            // Never reads again: the supervisor's writes to the port fill the socket buffer and block.
            Thread.sleep(Long.MAX_VALUE);
        }
        if (scenario.equals("deaf-spell")) {
            Path hearAgain = Path.of(args[1]).resolveSibling("hear-again");
            while (!java.nio.file.Files.exists(hearAgain)) {
                Thread.sleep(50);
            }
        }
        OutputStream raw = Channels.newOutputStream(channel);
        java.util.Set<Integer> cancelled = new java.util.HashSet<>();
        Frame frame;
        while ((frame = link.read()) != null) {
            if (scenario.equals("deaf-spell")) {
                if (Protocol.EXEC_CANCEL.equals(frame.type())) {
                    cancelled.add(frame.id());
                } else if (Protocol.EXEC_REQUEST.equals(frame.type()) && cancelled.contains(frame.id())) {
                    System.exit(5); // a cancel overtook its request: the test sees it as the VM's end
                }
            }
            switch (frame.type()) {
                case Protocol.CORE_SHUTDOWN -> {
                    if (!scenario.equals("mute-monitor")) {
                        System.exit(0);
                    }
                }
                case Protocol.CORE_PING, Protocol.CORE_TOUCH -> link.write(new Frame(frame.id(), Protocol.FLAG_TERMINAL, Protocol.CORE_PONG, null));
                case Protocol.CORE_STATS -> {
                    if (!scenario.equals("stats-mute")) { // stats-mute: answers everything but its figures
                        link.write(new Frame(frame.id(), Protocol.FLAG_TERMINAL, Protocol.CORE_STATS,
                                NODES.objectNode().put("mem_total_bytes", 1 << 29).put("mem_available_bytes", 1 << 28)));
                    }
                }
                case Protocol.EXEC_REQUEST -> exec(scenario, frame.id(), link, raw);
                case Protocol.FS_REQUEST -> fs(scenario, frame.id(), frame.payload().path("op").asText(), link);
                default -> {
                    // signals, stdin, windows: ignored
                }
            }
        }
    }

    /** A QMP socket whose connections are accepted, kept open and never greeted. */
    private static void muteMonitor(Path qmpSocket) throws IOException {
        ServerSocketChannel qmp = ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX);
        qmp.bind(UnixDomainSocketAddress.of(qmpSocket));
        java.util.List<SocketChannel> held = new java.util.ArrayList<>();
        Thread monitor = new Thread(() -> {
            try {
                while (true) {
                    held.add(qmp.accept());
                }
            } catch (IOException e) {
                // the stand-in is ending
            }
        }, "mute-qmp");
        monitor.setDaemon(true);
        monitor.start();
    }

    /** A guest resumed from a checkpoint that answers core.restore wrongly, or never. */
    private static void restored(String scenario, FrameLink link, Path qmpSocket) throws Exception {
        ServerSocketChannel qmp = ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX);
        qmp.bind(UnixDomainSocketAddress.of(qmpSocket));
        Thread monitor = new Thread(() -> {
            while (true) {
                try (SocketChannel c = qmp.accept();
                     java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(Channels.newInputStream(c)));
                     java.io.PrintStream out = new java.io.PrintStream(Channels.newOutputStream(c), true)) {
                    out.println("{\"QMP\":{}}");
                    // capabilities, then whatever the supervisor asks: "running" answers all it needs
                    while (in.readLine() != null) {
                        out.println("{\"return\":{\"status\":\"running\",\"running\":true}}");
                    }
                } catch (IOException e) {
                    return;
                }
            }
        }, "qmp");
        monitor.setDaemon(true);
        monitor.start();
        Frame restore = link.read();
        if (restore == null || !restore.type().equals(Protocol.CORE_RESTORE)) {
            System.exit(2);
        }
        switch (scenario) {
            case "restore-wrong" -> link.write(new Frame(0, 0, Protocol.CORE_READY, NODES.objectNode().put("boot_time_ns", 1)));
            case "restore-error" -> link.write(new Frame(0, 0, Protocol.CORE_ERROR,
                    NODES.objectNode().put("stage", "restore").put("message", "hostile says no").put("errno", 1)));
            default -> {
                // restore-silent: the supervisor's boot watchdog must end it
            }
        }
        Thread.sleep(Long.MAX_VALUE);
    }

    private static void exec(String scenario, int id, FrameLink link, OutputStream raw) throws IOException {
        switch (scenario) {
            case "float" -> {
                // {v:2, t:"exec.stdout", p:{data: 1.5}}: decodes with a generic CBOR parser, cannot be re-encoded
                raw.write(frameBytes(id, 0, new byte[] {(byte) 0xA3, 0x61, 'v', 0x02, 0x61, 't', 0x6B,
                        'e', 'x', 'e', 'c', '.', 's', 't', 'd', 'o', 'u', 't', 0x61, 'p', (byte) 0xA1,
                        0x64, 'd', 'a', 't', 'a', (byte) 0xF9, 0x3E, 0x00}));
                raw.flush();
                return;
            }
            case "tiny-items" -> {
                int n = Protocol.MAX_FRAME_BYTES - 64;
                byte[] prefix = {(byte) 0xA3, 0x61, 'v', 0x02, 0x61, 't', 0x6B, 'e', 'x', 'e', 'c', '.', 's', 't', 'd', 'o', 'u', 't',
                        0x61, 'p', (byte) 0xA1, 0x61, 'x', (byte) 0x9A, (byte) (n >>> 24), (byte) (n >>> 16), (byte) (n >>> 8), (byte) n};
                byte[] body = Arrays.copyOf(prefix, prefix.length + n);
                Arrays.fill(body, prefix.length, body.length, (byte) 0xA0);
                raw.write(frameBytes(id, 0, body));
                raw.flush();
                return;
            }
            case "flood" -> {
                byte[] chunk = new byte[Protocol.CHUNK_BYTES];
                Arrays.fill(chunk, (byte) 'x');
                while (true) {
                    link.write(new Frame(id, 0, Protocol.EXEC_STDOUT, NODES.objectNode().put("data", chunk)));
                }
            }
            case "oversized" -> {
                raw.write(new byte[] {0x7F, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, 0, 0, 0, 1, 0});
                raw.flush();
                return;
            }
            case "disorder" -> {
                ObjectNode exited = NODES.objectNode().put("code", 3);
                exited.putNull("signal");
                link.write(new Frame(id, Protocol.FLAG_TERMINAL, Protocol.EXEC_EXITED, exited));
                link.write(new Frame(id, 0, Protocol.EXEC_STDOUT, NODES.objectNode().put("data", "late".getBytes())));
                link.write(new Frame(id, 0, Protocol.EXEC_STARTED, NODES.objectNode().put("pid", 7)));
                link.write(new Frame(0, 0, Protocol.CORE_READY, NODES.objectNode().put("boot_time_ns", 1)));
                link.write(new Frame(0, 0, Protocol.CORE_HELLO, NODES.objectNode().put("v", Protocol.VERSION)));
                return;
            }
            case "forge" -> {
                // ids the supervisor never gave this guest, or gave for requests that are over
                for (int forged : new int[] {id - 1, id + 1, id + 1000, 1 << 24, -1}) {
                    if (forged == 0) {
                        continue;
                    }
                    link.write(new Frame(forged, 0, Protocol.EXEC_STDOUT, NODES.objectNode().put("data", "forged".getBytes())));
                    link.write(new Frame(forged, Protocol.FLAG_TERMINAL, Protocol.EXEC_EXITED, NODES.objectNode().put("code", 66)));
                }
                link.write(new Frame(id, Protocol.FLAG_TERMINAL, Protocol.SUP_EXITED, NODES.objectNode().put("status", "crashed")));
                link.write(new Frame(0, Protocol.FLAG_TERMINAL, Protocol.SUP_EXITED, NODES.objectNode().put("status", "crashed")));
                honest(id, link);
                return;
            }
            case "junk" -> {
                for (int i = 0; i < JUNK_FRAMES; i++) {
                    link.write(new Frame(id, 0, Protocol.EXEC_STARTED, NODES.objectNode().put("pid", 7).put("pad", new byte[1 << 20])));
                }
                honest(id, link);
            }
            default -> honest(id, link);
        }
    }

    /** Frames of 1 MiB the {@code junk} scenario sends that no window meters, before its honest answer. */
    private static final int JUNK_FRAMES = 64;

    private static void fs(String scenario, int id, String op, FrameLink link) throws IOException {
        if (scenario.equals("wide-deep") || scenario.equals("bad-name")) {
            if (op.equals("stat")) {
                link.write(new Frame(id, Protocol.FLAG_TERMINAL, Protocol.FS_RESULT, NODES.objectNode().put("kind", "directory").put("mode", 0755)));
                return;
            }
            var entries = NODES.arrayNode();
            if (scenario.equals("bad-name")) {
                entries.addObject().put("name", "../escaped".getBytes()).put("kind", "file").put("mode", 0644);
            } else {
                // one directory to go down into, and thousands of entries to hold at every level
                entries.addObject().put("name", "ddddddddddddddd".getBytes()).put("kind", "directory").put("mode", 0755);
                for (int i = 0; i < 12_000; i++) {
                    entries.addObject().put("name", ("x" + i).getBytes()).put("kind", "other");
                }
            }
            ObjectNode result = NODES.objectNode();
            result.set("entries", entries);
            link.write(new Frame(id, Protocol.FLAG_TERMINAL, Protocol.FS_RESULT, result));
            return;
        }
        if (scenario.equals("short-read")) {
            link.write(new Frame(id, 0, Protocol.FS_DATA, NODES.objectNode().put("data", "only this".getBytes())));
            link.write(new Frame(id, Protocol.FLAG_TERMINAL, Protocol.FS_RESULT, NODES.objectNode().put("size", 1_000_000)));
            return;
        }
        if (scenario.equals("junk")) {
            for (int i = 0; i < JUNK_FRAMES; i++) {
                link.write(new Frame(id, 0, "fs.progress", NODES.objectNode().put("pad", new byte[1 << 20])));
            }
        }
        if (scenario.equals("flood")) {
            byte[] chunk = new byte[Protocol.FS_CHUNK_BYTES];
            while (true) {
                link.write(new Frame(id, 0, Protocol.FS_DATA, NODES.objectNode().put("data", chunk)));
            }
        }
        link.write(new Frame(id, Protocol.FLAG_TERMINAL, Protocol.FS_RESULT, NODES.objectNode().put("size", 0)));
    }

    private static void honest(int id, FrameLink link) throws IOException {
        link.write(new Frame(id, 0, Protocol.EXEC_STARTED, NODES.objectNode().put("pid", 42)));
        link.write(new Frame(id, 0, Protocol.EXEC_STDOUT, NODES.objectNode().put("data", "ok\n".getBytes())));
        ObjectNode exited = NODES.objectNode().put("code", 0);
        exited.putNull("signal");
        link.write(new Frame(id, Protocol.FLAG_TERMINAL, Protocol.EXEC_EXITED, exited));
    }

    private static byte[] frameBytes(int id, int flags, byte[] body) {
        ByteBuffer buf = ByteBuffer.allocate(4 + Protocol.HEADER_BYTES + body.length);
        buf.putInt(Protocol.HEADER_BYTES + body.length).putInt(id).put((byte) flags).put(body);
        return buf.array();
    }

    private HostileAgent() {
    }
}

package io.microsandbox.runtime.agent;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Protocol version 2 against a real agent, driven at the frame level through an
 * {@link AgentClient}: output credit ({@code window}, {@code exec.window}), stdin credit
 * ({@code exec.stdin_window}), TERMINAL replies and refused over-long arguments.
 */
class AgentFlowControlIT {
    private static final Duration WAIT = Duration.ofSeconds(30);
    /** How long the test watches for output that must not come. */
    private static final Duration QUIET = Duration.ofMillis(1500);

    private static Sandbox sandbox;
    private AgentClient client;

    @BeforeAll
    static void boot() {
        String name = "it-flow-" + ProcessHandle.current().pid();
        sandbox = Sandbox.create(name, SandboxConfig.builder().image(io.microsandbox.TestSandboxes.rootfs()).memoryMib(256).build());
    }

    @AfterAll
    static void shutdown() {
        if (sandbox != null) {
            sandbox.close();
            Sandbox.remove(sandbox.name());
        }
    }

    @BeforeEach
    void connect() {
        Path socket = SandboxLayout.of(RuntimeFiles.defaultHome(), sandbox.name()).agentSocket();
        client = AgentClient.connect(sandbox.name(), socket);
    }

    @AfterEach
    void disconnect() {
        client.close();
    }

    @Test
    void outputStopsAtTheWindowAndResumesWithCredit() throws Exception {
        Session s = exec(request("head", List.of("-c", "1000000", "/dev/zero")).put("window", 65536));
        assertThat(s.next().type()).isEqualTo(Protocol.EXEC_STARTED);

        s.awaitOutput(65536);
        s.expectQuiet();
        assertThat(s.output).isEqualTo(65536);

        s.grant(100_000);
        s.awaitOutput(165_536);
        s.expectQuiet();
        assertThat(s.output).isEqualTo(165_536);

        s.grant(2_000_000);
        Frame end = s.awaitEnd();
        assertThat(s.output).isEqualTo(1_000_000);
        assertThat(end.type()).isEqualTo(Protocol.EXEC_EXITED);
        assertThat(end.isTerminal()).isTrue();
        assertThat(end.number("code")).isZero();
        assertThat(s.maxChunk).isLessThanOrEqualTo(Protocol.CHUNK_BYTES);
    }

    @Test
    void aProcessThatExitedWhileStalledEndsOnceCreditComes() throws Exception {
        // 100000 bytes: 65536 go out, the rest waits in the pipe while the process exits
        Session s = exec(request("sh", List.of("-c", "head -c 100000 /dev/zero; exit 3")).put("window", 65536));
        assertThat(s.next().type()).isEqualTo(Protocol.EXEC_STARTED);
        s.awaitOutput(65536);
        s.expectQuiet();

        s.grant(65536);
        Frame end = s.awaitEnd();
        assertThat(s.output).isEqualTo(100_000);
        assertThat(end.type()).isEqualTo(Protocol.EXEC_EXITED);
        assertThat(end.number("code")).isEqualTo(3);
    }

    @Test
    void outputOfExactlyTheWindowEndsWithoutMoreCredit() throws Exception {
        Session s = exec(request("head", List.of("-c", "65536", "/dev/zero")).put("window", 65536));
        assertThat(s.next().type()).isEqualTo(Protocol.EXEC_STARTED);
        Frame end = s.awaitEnd();
        assertThat(s.output).isEqualTo(65536);
        assertThat(end.type()).isEqualTo(Protocol.EXEC_EXITED);
        assertThat(end.number("code")).isZero();
    }

    @Test
    void aTerminalSessionHonoursTheWindowToo() throws Exception {
        // the process exits with output left in the pty: it must come out once credit comes
        Session s = exec(request("sh", List.of("-c", "head -c 20000 /dev/zero | tr '\\0' a"))
                .put("tty", true).put("window", 4096));
        assertThat(s.next().type()).isEqualTo(Protocol.EXEC_STARTED);
        s.awaitOutput(4096);
        s.expectQuiet();
        s.grant(1 << 20);
        Frame end = s.awaitEnd();
        assertThat(end.type()).isEqualTo(Protocol.EXEC_EXITED);
        assertThat(end.number("code")).isZero();
        assertThat(s.output).isEqualTo(20_000);
    }

    @Test
    void theDefaultWindowApplies() throws Exception {
        Session s = exec(request("head", List.of("-c", "1000000", "/dev/zero")));
        assertThat(s.next().type()).isEqualTo(Protocol.EXEC_STARTED);
        s.awaitOutput(Protocol.DEFAULT_OUTPUT_WINDOW);
        s.expectQuiet();
        s.grant(1_000_000);
        assertThat(s.awaitEnd().number("code")).isZero();
        assertThat(s.output).isEqualTo(1_000_000);
    }

    @Test
    void stdinCreditComesBackAsTheProcessConsumesIt() throws Exception {
        int total = 3 << 20;
        Session s = exec(request("sh", List.of("-c", "cat > /dev/null")).put("stdin", true));
        assertThat(s.next().type()).isEqualTo(Protocol.EXEC_STARTED);

        byte[] chunk = new byte[Protocol.CHUNK_BYTES];
        long sent = 0;
        int waits = 0;
        while (sent < total) {
            while (sent - s.stdinAcked + chunk.length > Protocol.STDIN_WINDOW) {
                // the window is full: only exec.stdin_window lets us go on
                Frame f = s.next();
                assertThat(f.type()).isEqualTo(Protocol.EXEC_STDIN_WINDOW);
                waits++;
            }
            ObjectNode p = Json.object().put("data", chunk);
            client.send(new Frame(s.id, 0, Protocol.EXEC_STDIN, p));
            sent += chunk.length;
        }
        while (s.stdinAcked < total) {
            assertThat(s.next().type()).isEqualTo(Protocol.EXEC_STDIN_WINDOW);
        }
        assertThat(s.stdinAcked).isEqualTo(total);
        assertThat(waits).isPositive();
        assertThat(s.stdinWindowFrames).isGreaterThanOrEqualTo(3);
        assertThat(s.stdinWindowTerminal).isFalse();

        client.send(new Frame(s.id, 0, Protocol.EXEC_STDIN, Json.object().put("data", new byte[0])));
        Frame end = s.awaitEnd();
        assertThat(end.type()).isEqualTo(Protocol.EXEC_EXITED);
        assertThat(end.number("code")).isZero();
    }

    @Test
    void stdinClosedByTheProcessReturnsAllOutstandingCredit() throws Exception {
        // the pipe takes 64 KiB; the rest stays buffered in the agent until the process
        // closes its stdin, and then comes back with closed: true. The process closes it only
        // once the gate file exists: a fixed delay would let a slow host deliver the last
        // stdin frames after the close, and the agent drops (and never credits) those.
        String gate = "/tmp/flow-close-stdin-" + ProcessHandle.current().pid();
        Session s = exec(request("sh", List.of("-c", "while [ ! -e " + gate + " ]; do sleep 0.1; done; exec 0<&-; sleep 1"))
                .put("stdin", true));
        assertThat(s.next().type()).isEqualTo(Protocol.EXEC_STARTED);
        int sent = 0;
        for (int i = 0; i < 4; i++) {
            ObjectNode p = Json.object().put("data", new byte[50_000]);
            client.send(new Frame(s.id, 0, Protocol.EXEC_STDIN, p));
            sent += 50_000;
        }
        // the agent takes frames in the order they were sent: by the time it runs this
        // command it holds every stdin byte above
        assertThat(exec(request("touch", List.of(gate))).awaitEnd().number("code")).isZero();
        Frame f;
        do {
            f = s.next();
            assertThat(f.type()).isEqualTo(Protocol.EXEC_STDIN_WINDOW);
        } while (!f.payload().path("closed").asBoolean());
        assertThat(s.stdinAcked).isEqualTo(sent);
        assertThat(s.awaitEnd().number("code")).isZero();
        assertThat(exec(request("rm", List.of(gate))).awaitEnd().number("code")).isZero();
    }

    @Test
    void refusesALongCwdInsteadOfTruncatingIt() throws Exception {
        Frame f = exec(request("true", List.of()).put("cwd", "/" + "a".repeat(4999))).awaitEnd();
        assertThat(f.type()).isEqualTo(Protocol.EXEC_FAILED);
        assertThat(f.isTerminal()).isTrue();
        assertThat(f.text("kind")).isEqualTo("bad_args");
        assertThat(f.text("stage")).isEqualTo("cwd");
        assertThat(f.text("message")).contains("cwd").contains("5000");
    }

    @Test
    void refusesALongUserAndBadEnvNames() throws Exception {
        Frame user = exec(request("true", List.of()).put("user", "u".repeat(300))).awaitEnd();
        assertThat(user.text("kind")).isEqualTo("bad_args");
        assertThat(user.text("stage")).isEqualTo("user");
        assertThat(user.text("message")).contains("user").contains("300");

        // a user that is not text used to mean the default user (root)
        ObjectNode numeric = request("id", List.of("-u")).put("user", 1000);
        Frame notText = exec(numeric).awaitEnd();
        assertThat(notText.type()).isEqualTo(Protocol.EXEC_FAILED);
        assertThat(notText.text("kind")).isEqualTo("bad_args");
        assertThat(notText.text("stage")).isEqualTo("user");

        for (String name : new String[] {"A=B", ""}) {
            ObjectNode r = request("true", List.of());
            r.putObject("env").put(name, "x");
            Frame env = exec(r).awaitEnd();
            assertThat(env.type()).isEqualTo(Protocol.EXEC_FAILED);
            assertThat(env.text("kind")).isEqualTo("bad_args");
            assertThat(env.text("message")).contains("env");
        }
    }

    @Test
    void readsLongPasswdAndGroupLinesWhole() throws Exception {
        // a 2000-byte GECOS field, and a group whose member list is over 4 KiB: read in
        // fixed buffers, their tails were parsed as lines of their own
        String setup = "printf 'longuser:x:1234:1234:%s:/tmp:/bin/sh\\n' \"$(head -c 2000 /dev/zero | tr '\\0' g)\" >> /etc/passwd;"
                + " printf 'biggroup:x:4321:%ssandbox\\n' \"$(for i in $(seq 1 600); do printf 'member%d,' $i; done)\" >> /etc/group;"
                + " printf 'farhome:x:1235:1235::/%s:/bin/sh\\n' \"$(head -c 5000 /dev/zero | tr '\\0' h)\" >> /etc/passwd";
        Frame done = exec(request("sh", List.of("-c", setup))).awaitEnd();
        assertThat(done.number("code")).isZero();

        Session longUser = exec(request("id", List.of("-u")).put("user", "longuser"));
        assertThat(longUser.next().type()).isEqualTo(Protocol.EXEC_STARTED);
        Frame out = longUser.next();
        assertThat(new String(out.bytes("data"), java.nio.charset.StandardCharsets.UTF_8)).isEqualTo("1234\n");
        assertThat(longUser.awaitEnd().number("code")).isZero();

        Session groups = exec(request("id", List.of("-G")).put("user", "sandbox"));
        assertThat(groups.next().type()).isEqualTo(Protocol.EXEC_STARTED);
        assertThat(new String(groups.next().bytes("data"), java.nio.charset.StandardCharsets.UTF_8)).contains("4321");
        groups.awaitEnd();

        Frame farHome = exec(request("true", List.of()).put("user", "farhome")).awaitEnd();
        assertThat(farHome.type()).isEqualTo(Protocol.EXEC_FAILED);
        assertThat(farHome.text("kind")).isEqualTo("user_setup_failed");
        assertThat(farHome.text("message")).contains("home").contains("5001");
    }

    @Test
    void repliesOnAClientIdAreTerminal() throws Exception {
        Session ping = send(Protocol.CORE_PING, Json.object());
        Frame pong = ping.next();
        assertThat(pong.type()).isEqualTo(Protocol.CORE_PONG);
        assertThat(pong.isTerminal()).isTrue();

        // types clients may not start are refused by the supervisor, terminally
        Session unknown = send("core.no_such_type", Json.object());
        Frame error = unknown.next();
        assertThat(error.type()).isEqualTo(Protocol.SUP_ERROR);
        assertThat(error.isTerminal()).isTrue();
    }

    /** A checkpoint's save time out of range is refused before the VM is touched (a huge one overflowed after the save began). */
    @Test
    void aCheckpointTimeoutOutOfRangeIsRefused() throws Exception {
        for (long timeout : new long[] {Long.MAX_VALUE, 0, -5}) {
            ObjectNode p = Json.object();
            p.put("memory_file", "/nonexistent/memory.bin");
            p.put("ram_file", "/nonexistent/ram.bin");
            p.put("upper_file", "/nonexistent/upper.ext4");
            p.put("timeout_ms", timeout);
            Frame error = send(Protocol.SUP_CHECKPOINT, p).next();
            assertThat(error.type()).isEqualTo(Protocol.SUP_ERROR);
            assertThat(error.text("kind")).isEqualTo("invalid_argument");
            assertThat(error.text("message")).contains("timeout_ms");
        }
        assertThat(send(Protocol.CORE_PING, Json.object()).next().type()).isEqualTo(Protocol.CORE_PONG);
    }

    // ---- helpers ----

    private static ObjectNode request(String cmd, List<String> args) {
        ObjectNode r = Json.object();
        r.put("cmd", cmd);
        ArrayNode a = r.putArray("args");
        args.forEach(a::add);
        return r;
    }

    private Session exec(ObjectNode request) {
        return send(Protocol.EXEC_REQUEST, request);
    }

    private Session send(String type, ObjectNode payload) {
        Session s = new Session(client.newId());
        client.register(s.id, s);
        client.send(new Frame(s.id, Protocol.FLAG_SESSION_START, type, payload));
        return s;
    }

    /** The frames of one id; output and stdin credit are counted as they are taken. */
    private final class Session implements AgentClient.SessionListener {
        final int id;
        final BlockingQueue<Frame> frames = new LinkedBlockingQueue<>();
        long output;
        int maxChunk;
        long stdinAcked;
        int stdinWindowFrames;
        boolean stdinWindowTerminal;
        final List<Frame> seen = new ArrayList<>();

        Session(int id) {
            this.id = id;
        }

        @Override
        public void onFrame(Frame frame) {
            frames.add(frame);
        }

        @Override
        public void onConnectionLost(String reason) {
            frames.add(Frame.of(id, Protocol.FLAG_TERMINAL, "test.lost"));
        }

        Frame next() throws InterruptedException {
            return next(WAIT);
        }

        Frame next(Duration timeout) throws InterruptedException {
            Frame f = frames.poll(timeout.toMillis(), TimeUnit.MILLISECONDS);
            if (f == null) {
                return null;
            }
            seen.add(f);
            switch (f.type()) {
                case Protocol.EXEC_STDOUT, Protocol.EXEC_STDERR -> {
                    int n = f.bytes("data").length;
                    output += n;
                    maxChunk = Math.max(maxChunk, n);
                }
                case Protocol.EXEC_STDIN_WINDOW -> {
                    stdinAcked += f.number("bytes");
                    stdinWindowFrames++;
                    stdinWindowTerminal |= f.isTerminal();
                }
                default -> {
                }
            }
            return f;
        }

        void awaitOutput(long bytes) throws InterruptedException {
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (output < bytes) {
                Frame f = next(Duration.ofNanos(Math.max(1, deadline - System.nanoTime())));
                assertThat(f).as("output after %d of %d bytes; frames %s", output, bytes, seen).isNotNull();
                assertThat(f.isTerminal()).as("unexpected end %s %s", f, f.payload()).isFalse();
            }
            assertThat(output).isEqualTo(bytes);
        }

        /** Nothing may arrive for a while: the session waits for credit. */
        void expectQuiet() throws InterruptedException {
            Frame f = next(QUIET);
            assertThat(f).as("a frame beyond the window after %d bytes", output).isNull();
        }

        void grant(long bytes) {
            client.send(new Frame(id, 0, Protocol.EXEC_WINDOW, Json.object().put("bytes", bytes)));
        }

        /** Frames until the TERMINAL one, which it returns. */
        Frame awaitEnd() throws InterruptedException {
            while (true) {
                Frame f = next();
                assertThat(f).as("end of session %d after %d bytes; frames %s", id, output, seen.size()).isNotNull();
                if (f.isTerminal()) {
                    client.unregister(id);
                    return f;
                }
            }
        }
    }
}

package io.microsandbox.runtime.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

/**
 * Fuzzer of the host's frame decoder, {@link FrameCodec#read(InputStream)}, which reads what
 * a hostile guest sends.
 *
 * <pre>
 *   java -cp ... io.microsandbox.runtime.agent.FrameFuzz ITERATIONS [SEED] [--no-large]
 * </pre>
 *
 * <p>The contract checked on every input: {@code read} returns a frame, returns null at a
 * clean end, or throws {@link ProtocolException}; any other exception or error
 * (IllegalArgumentException, OutOfMemoryError, StackOverflowError, ...) is a finding. Every
 * frame it returns must encode again with {@link FrameCodec#encode(Frame)}, and decoding
 * that encoding must give an equal frame (id, flags, type, payload; numbers compare by
 * value). Inputs: a corpus of valid frames, mutated (bit flips, CBOR heads with huge
 * lengths, indefinite lengths, tags, floats, truncation, length-field edits, splices),
 * random bytes, generated trees with every CBOR feature, and first a fixed set of frames of
 * up to the 4 MiB limit made of many tiny items, whose decoding time and heap use are
 * reported (run it with the supervisor's heap, {@code -Xmx64m -Xss512k -XX:+UseSerialGC},
 * as scripts/fuzz.sh does). Deterministic for a given seed. Exit status 1 on any finding.
 */
public final class FrameFuzz {

    /** What a run found: counts, findings by class with a sample, and the large cases. */
    public static final class Report {
        public long inputs;
        public long frames;
        public long cleanEnds;
        public long protocolErrors;
        public long bytes;
        public double seconds;
        public final Map<String, Finding> findings = new TreeMap<>();
        public final List<String> large = new ArrayList<>();

        public long findingCount() {
            return findings.values().stream().mapToLong(f -> f.count).sum();
        }

        public void print(PrintStream out) {
            out.printf("FrameFuzz: %d inputs, %.1f MiB, %.1f s, %.0f inputs/s%n", inputs, bytes / 1048576.0, seconds,
                    inputs / Math.max(seconds, 1e-9));
            out.printf("  frames decoded %d, clean ends %d, ProtocolException %d%n", frames, cleanEnds, protocolErrors);
            if (!large.isEmpty()) {
                out.printf("  large frames (heap max %d MiB):%n", Runtime.getRuntime().maxMemory() >> 20);
                large.forEach(l -> out.println("    " + l));
            }
            out.printf("  findings: %d%s%n", findingCount(), findings.isEmpty() ? "" : " in " + findings.size() + " classes");
            findings.forEach((k, f) -> {
                out.printf("    %-60s x%d%n", k, f.count);
                out.printf("      e.g. %s%n", f.message);
                out.printf("      input (%d bytes): %s%n", f.inputLength, f.hex);
            });
        }
    }

    /** One class of failure: how often, and the first input that showed it. */
    public static final class Finding {
        public long count;
        public final String message;
        public final String hex;
        public final int inputLength;

        Finding(String message, byte[] input) {
            this.message = message;
            this.inputLength = input.length;
            this.hex = hex(input, 96);
        }
    }

    private final SplittableRandom rnd;
    private final Report report = new Report();
    private final List<byte[]> corpus = new ArrayList<>();
    private final AtomicLong progress = new AtomicLong();
    private volatile byte[] current = new byte[0];
    private String lastFinding;

    private FrameFuzz(long seed) {
        this.rnd = new SplittableRandom(seed);
        buildCorpus();
    }

    public static void main(String[] args) {
        long iterations = args.length > 0 ? Long.parseLong(args[0].replace("_", "")) : 1_000_000;
        long seed = args.length > 1 ? Long.parseLong(args[1]) : 1;
        boolean large = !Arrays.asList(args).contains("--no-large");
        Report report = run(iterations, seed, large);
        report.print(System.out);
        System.exit(report.findingCount() == 0 ? 0 : 1);
    }

    /** Runs {@code iterations} inputs (the large cases count among them when included). */
    public static Report run(long iterations, long seed, boolean large) {
        FrameFuzz fuzz = new FrameFuzz(seed);
        Thread watchdog = fuzz.watchdog();
        long start = System.nanoTime();
        try {
            if (large) {
                fuzz.runLarge(iterations);
            }
            while (fuzz.report.inputs < iterations) {
                fuzz.check(fuzz.next());
                if (fuzz.report.inputs % 1_000_000 == 0) {
                    System.err.printf("  %d inputs, %d findings%n", fuzz.report.inputs, fuzz.report.findingCount());
                }
            }
        } finally {
            watchdog.interrupt();
        }
        fuzz.report.seconds = (System.nanoTime() - start) / 1e9;
        return fuzz.report;
    }

    /** An input that runs for a minute is a finding too: print it and stop. */
    private Thread watchdog() {
        Thread t = new Thread(() -> {
            long last = -1;
            int stuck = 0;
            try {
                while (true) {
                    Thread.sleep(10_000);
                    long now = progress.get();
                    stuck = now == last ? stuck + 1 : 0;
                    last = now;
                    if (stuck >= 6) {
                        byte[] in = current;
                        System.out.println("FINDING: one input has run for over a minute (" + in.length + " bytes): " + hex(in, 256));
                        System.exit(3);
                    }
                }
            } catch (InterruptedException e) {
                // the run ended
            }
        }, "frame-fuzz-watchdog");
        t.setDaemon(true);
        t.start();
        return t;
    }

    // ---- the contract ----

    private void check(byte[] input) {
        current = input;
        progress.incrementAndGet();
        report.inputs++;
        report.bytes += input.length;
        InputStream in = new ByteArrayInputStream(input);
        for (int i = 0; i < 1000; i++) {
            Frame frame;
            try {
                frame = FrameCodec.read(in);
            } catch (ProtocolException e) {
                report.protocolErrors++;
                return;
            } catch (Throwable t) {
                finding("read threw " + t.getClass().getSimpleName(), t, input);
                return;
            }
            if (frame == null) {
                report.cleanEnds++;
                return;
            }
            report.frames++;
            if (!roundTrips(frame, input)) {
                return;
            }
        }
    }

    private boolean roundTrips(Frame frame, byte[] input) {
        byte[] encoded;
        try {
            encoded = FrameCodec.encode(frame);
        } catch (Throwable t) {
            finding("encode threw " + t.getClass().getSimpleName() + reason(t), t, input);
            return false;
        }
        Frame again;
        try {
            InputStream in = new ByteArrayInputStream(encoded);
            again = FrameCodec.read(in);
            if (again != null && FrameCodec.read(in) != null) {
                finding("re-encoding holds more than one frame", null, input);
                return false;
            }
        } catch (Throwable t) {
            finding("decoding the re-encoding threw " + t.getClass().getSimpleName(), t, input);
            return false;
        }
        if (again == null || again.id() != frame.id() || again.flags() != frame.flags()
                || !again.type().equals(frame.type()) || !same(frame.payload(), again.payload())) {
            finding("re-encoding decodes to another frame", new IllegalStateException(frame + " " + frame.payload()
                    + " became " + again + (again != null ? " " + again.payload() : "")), input);
            return false;
        }
        return true;
    }

    /** A short hint that splits a finding class by its cause. */
    private static String reason(Throwable t) {
        String m = String.valueOf(t.getMessage());
        if (m.contains("frame limit")) {
            return " (over the frame limit)";
        }
        if (m.contains("only integers")) {
            return m.contains(".") || m.contains("E") || m.contains("NaN") || m.contains("Infinity")
                    ? " (a float)" : " (an integer beyond long)";
        }
        return "";
    }

    private void finding(String kind, Throwable t, byte[] input) {
        lastFinding = kind;
        String message = escape(t == null ? kind : t.getClass().getName() + ": " + t.getMessage());
        if (message.length() > 300) {
            message = message.substring(0, 300) + "...";
        }
        String m = message;
        report.findings.computeIfAbsent(kind, k -> new Finding(m, input)).count++;
    }

    /** Payload equality by value: numbers compare numerically, whatever node class holds them. */
    static boolean same(JsonNode a, JsonNode b) {
        if (a == null || b == null) {
            return a == b;
        }
        if (a.isNumber() && b.isNumber()) {
            if (a.isIntegralNumber() && b.isIntegralNumber()) {
                return a.bigIntegerValue().equals(b.bigIntegerValue());
            }
            if (a.isFloatingPointNumber() && b.isFloatingPointNumber()) {
                return Double.compare(a.doubleValue(), b.doubleValue()) == 0;
            }
            return false;
        }
        if (a.getNodeType() != b.getNodeType()) {
            return false;
        }
        if (a.isObject()) {
            if (a.size() != b.size()) {
                return false;
            }
            for (Iterator<Map.Entry<String, JsonNode>> it = a.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                if (!same(e.getValue(), b.get(e.getKey()))) {
                    return false;
                }
            }
            return true;
        }
        if (a.isArray()) {
            if (a.size() != b.size()) {
                return false;
            }
            for (int i = 0; i < a.size(); i++) {
                if (!same(a.get(i), b.get(i))) {
                    return false;
                }
            }
            return true;
        }
        if (a.isBinary()) {
            try {
                return Arrays.equals(a.binaryValue(), b.binaryValue());
            } catch (IOException e) {
                return false;
            }
        }
        return a.equals(b);
    }

    // ---- large frames, with time and heap ----

    private void runLarge(long iterations) {
        List<Map.Entry<String, Supplier<byte[]>>> cases = new ArrayList<>();
        int limit = Protocol.MAX_FRAME_BYTES - Protocol.HEADER_BYTES;
        cases.add(Map.entry("array of empty maps", () -> manyItems(limit, new byte[] {(byte) 0xA0})));
        cases.add(Map.entry("array of nulls", () -> manyItems(limit, new byte[] {(byte) 0xF6})));
        cases.add(Map.entry("array of small ints", () -> manyItems(limit, new byte[] {0x01})));
        cases.add(Map.entry("array of empty texts", () -> manyItems(limit, new byte[] {0x60})));
        cases.add(Map.entry("array of empty arrays", () -> manyItems(limit, new byte[] {(byte) 0x80})));
        cases.add(Map.entry("array of half floats", () -> manyItems(limit, new byte[] {(byte) 0xF9, 0x3C, 0x00})));
        cases.add(Map.entry("array of [[[[]]]] (depth 5)", () -> manyItems(limit, new byte[] {(byte) 0x81, (byte) 0x81, (byte) 0x81, (byte) 0x81, (byte) 0x80})));
        cases.add(Map.entry("map of int keys to nulls", () -> manyPairs(limit)));
        cases.add(Map.entry("one 4 MiB byte string", () -> oneString(limit, 0x40)));
        cases.add(Map.entry("one 4 MiB text", () -> oneString(limit, 0x60)));
        cases.add(Map.entry("indefinite array of nulls", () -> indefinite(limit)));
        // built one at a time: with the supervisor's 64 MiB heap they do not all fit at once
        for (Map.Entry<String, Supplier<byte[]>> c : cases) {
            if (report.inputs >= iterations) {
                return;
            }
            report.large.add(measure(c.getKey(), c.getValue().get()));
        }
    }

    private String measure(String name, byte[] input) {
        List<MemoryPoolMXBean> heap = ManagementFactory.getMemoryPoolMXBeans().stream()
                .filter(p -> p.getType() == MemoryType.HEAP).toList();
        long findingsBefore = report.findingCount();
        long errorsBefore = report.protocolErrors;
        System.gc();
        long base = heap.stream().mapToLong(p -> p.getUsage().getUsed()).sum();
        heap.forEach(MemoryPoolMXBean::resetPeakUsage);
        long allocatedBefore = allocated();
        long t0 = System.nanoTime();
        check(input);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        long peak = heap.stream().mapToLong(p -> p.getPeakUsage().getUsed()).sum() - base;
        long alloc = allocated() - allocatedBefore;
        String outcome = report.findingCount() > findingsBefore ? "FINDING (" + lastFinding + ")"
                : report.protocolErrors > errorsBefore ? "rejected" : "decoded";
        int frame = input.length - 4;
        return String.format("%-28s %4.2f MiB frame, %5d ms, heap peak +%3d MiB (%4.1fx the frame), allocated %4d MiB: %s",
                name, frame / 1048576.0, ms, peak >> 20, (double) peak / frame, alloc >> 20, outcome);
    }

    private static long allocated() {
        java.lang.management.ThreadMXBean t = ManagementFactory.getThreadMXBean();
        if (t instanceof com.sun.management.ThreadMXBean s) {
            return s.getThreadAllocatedBytes(Thread.currentThread().getId());
        }
        return 0;
    }

    /** {v, t, p: {a: [item, item, ...]}} filling a frame of exactly the limit. */
    private static byte[] manyItems(int bodyLimit, byte[] item) {
        Cbor prefix = new Cbor().map(3).text("v").uint(Protocol.VERSION).text("t").text("exec.stdout")
                .text("p").map(1).text("a");
        int n = (bodyLimit - prefix.size() - 5) / item.length;
        Cbor body = prefix.head(4, n);
        for (int i = 0; i < n; i++) {
            body.raw(item);
        }
        return frame(7, 0, body.bytes());
    }

    /** {a: {0: null, 1: null, ... 65535: null, 0: null, ...}}: int keys, 4 bytes a pair, many duplicates. */
    private static byte[] manyPairs(int bodyLimit) {
        Cbor prefix = new Cbor().map(3).text("v").uint(Protocol.VERSION).text("t").text("exec.stdout")
                .text("p").map(1).text("a");
        int n = (bodyLimit - prefix.size() - 5) / 4;
        Cbor body = prefix.head(5, n);
        for (int i = 0; i < n; i++) {
            body.raw(new byte[] {0x19, (byte) (i >>> 8), (byte) i, (byte) 0xF6});
        }
        return frame(7, 0, body.bytes());
    }

    private static byte[] oneString(int bodyLimit, int major) {
        Cbor prefix = new Cbor().map(3).text("v").uint(Protocol.VERSION).text("t").text("exec.stdout")
                .text("p").map(1).text("data");
        int n = bodyLimit - prefix.size() - 5;
        byte[] data = new byte[n];
        Arrays.fill(data, (byte) 'a');
        return frame(7, 0, prefix.head(major >> 5, n).raw(data).bytes());
    }

    private static byte[] indefinite(int bodyLimit) {
        Cbor body = new Cbor().map(3).text("v").uint(Protocol.VERSION).text("t").text("exec.stdout")
                .text("p").map(1).text("a").raw(new byte[] {(byte) 0x9F});
        int n = bodyLimit - body.size() - 1;
        byte[] nulls = new byte[n];
        Arrays.fill(nulls, (byte) 0xF6);
        return frame(7, 0, body.raw(nulls).raw(new byte[] {(byte) 0xFF}).bytes());
    }

    // ---- inputs ----

    private static byte[] frame(int id, int flags, byte[] body) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(body.length + 9);
        int len = body.length + Protocol.HEADER_BYTES;
        out.write(len >>> 24);
        out.write(len >>> 16);
        out.write(len >>> 8);
        out.write(len);
        out.write(id >>> 24);
        out.write(id >>> 16);
        out.write(id >>> 8);
        out.write(id);
        out.write(flags);
        out.writeBytes(body);
        return out.toByteArray();
    }

    private void buildCorpus() {
        ObjectNode hello = Json.object().put("v", Protocol.VERSION).put("agent", "0.1.0");
        corpus.add(FrameCodec.encode(new Frame(0, 0, Protocol.CORE_HELLO, hello)));
        corpus.add(FrameCodec.encode(new Frame(0, 0, Protocol.CORE_READY, Json.object()
                .put("boot_time_ns", 123456789L).put("init_time_ns", 223456789L).put("ready_time_ns", 9_000_000_000L))));
        corpus.add(FrameCodec.encode(new Frame(0x10001, 0, Protocol.EXEC_STARTED, Json.object().put("pid", 42))));
        corpus.add(FrameCodec.encode(new Frame(0x10001, 0, Protocol.EXEC_STDOUT, Json.object()
                .put("data", "hello\nworld\u00e9".getBytes(StandardCharsets.UTF_8)))));
        corpus.add(FrameCodec.encode(new Frame(0x10001, 0, Protocol.EXEC_STDERR, Json.object().put("data", new byte[300]))));
        corpus.add(FrameCodec.encode(new Frame(0x10001, Protocol.FLAG_TERMINAL, Protocol.EXEC_EXITED, Json.object()
                .put("code", 137).put("signal", 9))));
        ObjectNode exited = Json.object().put("code", 0);
        exited.putNull("signal");
        corpus.add(FrameCodec.encode(new Frame(0x10001, Protocol.FLAG_TERMINAL, Protocol.EXEC_EXITED, exited)));
        corpus.add(FrameCodec.encode(new Frame(0x10001, Protocol.FLAG_TERMINAL, Protocol.EXEC_FAILED, Json.object()
                .put("kind", "not_found").put("errno", 2).put("message", "x: No such file").put("stage", "exec"))));
        corpus.add(FrameCodec.encode(new Frame(3, Protocol.FLAG_TERMINAL, Protocol.CORE_STATS, Json.object()
                .put("mem_total_bytes", 268435456L).put("mem_available_bytes", 200000000L)
                .put("upper_used_bytes", -1L).put("upper_free_bytes", Long.MAX_VALUE))));
        corpus.add(FrameCodec.encode(new Frame(0x10001, 0, Protocol.EXEC_STDIN_WINDOW, Json.object()
                .put("bytes", 65536).put("closed", true))));
        corpus.add(FrameCodec.encode(new Frame(0, Protocol.FLAG_SHUTDOWN, Protocol.CORE_SHUTDOWN, null)));
        ObjectNode request = Json.object().put("cmd", "sh").put("tty", false).put("window", 65536);
        request.putArray("args").add("-c").add("echo hi");
        request.putObject("env").put("A", "1").put("PATH", "/bin");
        request.putNull("cwd");
        corpus.add(FrameCodec.encode(new Frame(0x10002, Protocol.FLAG_SESSION_START, Protocol.EXEC_REQUEST, request)));
        // bodies the Java encoder never writes but a peer may
        corpus.add(frame(1, 0, new Cbor().map(3).text("t").text("exec.stdout").text("v").uint(Protocol.VERSION)
                .text("p").raw(new byte[] {(byte) 0xF6}).bytes()));
        corpus.add(frame(1, 0, new Cbor().map(2).text("v").uint(Protocol.VERSION).text("t").text("core.pong").bytes()));
        corpus.add(frame(1, 0, new Cbor().map(3).text("v").raw(new byte[] {0x1B, 0, 0, 0, 0, 0, 0, 0, 2})
                .text("t").text("x").text("p").map(1).text("k").raw(new byte[] {(byte) 0xFB, 0x7F, (byte) 0xF8, 0, 0, 0, 0, 0, 0}).bytes()));
    }

    private byte[] next() {
        int kind = rnd.nextInt(100);
        if (kind < 8) {
            return randomBytes();
        }
        if (kind < 40) {
            return generated();
        }
        byte[] base = corpus.get(rnd.nextInt(corpus.size()));
        byte[] out = rnd.nextInt(10) == 0 ? base.clone() : mutate(base);
        if (rnd.nextInt(8) == 0) {
            // several frames in one stream
            byte[] second = mutate(corpus.get(rnd.nextInt(corpus.size())));
            byte[] both = Arrays.copyOf(out, out.length + second.length);
            System.arraycopy(second, 0, both, out.length, second.length);
            out = both;
        }
        return out;
    }

    private byte[] randomBytes() {
        byte[] b = new byte[rnd.nextInt(rnd.nextInt(20) == 0 ? 4096 : 64)];
        rnd.nextBytes(b);
        if (rnd.nextBoolean() && b.length >= 9) {
            // a plausible header, so the body gets decoded
            int len = b.length - 4;
            b[0] = (byte) (len >>> 24);
            b[1] = (byte) (len >>> 16);
            b[2] = (byte) (len >>> 8);
            b[3] = (byte) len;
            b[9 < b.length ? 9 : 8] = (byte) (0xA0 | rnd.nextInt(4));
        }
        return b;
    }

    /** {v, t, p} with random trees that use every CBOR feature. */
    private byte[] generated() {
        Cbor c = new Cbor();
        int pairs = rnd.nextInt(5);
        boolean extraTop = rnd.nextInt(10) == 0;
        c.map(3 + (extraTop ? 1 : 0));
        c.text("v");
        if (rnd.nextInt(20) == 0) {
            item(c, 3);
        } else {
            c.uint(Protocol.VERSION);
        }
        c.text("t").text(TYPES[rnd.nextInt(TYPES.length)]);
        c.text("p");
        if (rnd.nextInt(15) == 0) {
            item(c, 0);
        } else {
            boolean indefinite = rnd.nextInt(10) == 0;
            if (indefinite) {
                c.raw(new byte[] {(byte) 0xBF});
            } else {
                c.map(pairs);
            }
            for (int i = 0; i < pairs; i++) {
                key(c);
                item(c, 1);
            }
            if (indefinite) {
                c.raw(new byte[] {(byte) 0xFF});
            }
        }
        if (extraTop) {
            key(c);
            item(c, 1);
        }
        byte[] body = c.bytes();
        byte[] f = frame(rnd.nextInt(), rnd.nextInt(256), body);
        return rnd.nextInt(5) == 0 ? mutate(f) : f;
    }

    private static final String[] TYPES = {"exec.stdout", "exec.stderr", "exec.exited", "exec.failed", "core.ready",
        "core.hello", "core.error", "exec.stdin_window", "sup.welcome", "x", "core.stats"};
    private static final String[] KEYS = {"data", "code", "signal", "pid", "kind", "message", "bytes", "closed", "a", "v", "t", "p"};

    private void key(Cbor c) {
        switch (rnd.nextInt(12)) {
            case 0 -> c.uint(rnd.nextInt(30));                          // int key
            case 1 -> c.head(1, rnd.nextInt(5));                        // negative int key
            case 2 -> c.head(2, 2).raw(new byte[] {1, 2});              // bytes key
            case 3 -> c.raw(new byte[] {(byte) 0xF9, 0x3C, 0x00});      // float key
            case 4 -> c.raw(new byte[] {(byte) 0xF6});                  // null key
            case 5 -> c.raw(new byte[] {(byte) 0x81, 0x01});            // array key
            case 6 -> c.raw(new byte[] {(byte) 0x7F, 0x61, 'a', 0x61, 'b', (byte) 0xFF}); // indefinite text key
            default -> c.text(KEYS[rnd.nextInt(KEYS.length)]);          // duplicates happen often
        }
    }

    private void item(Cbor c, int depth) {
        int choice = rnd.nextInt(depth > 8 ? 20 : 26);
        switch (choice) {
            case 0 -> c.uint(rnd.nextInt(100));
            case 1 -> c.uint(rnd.nextLong() >>> rnd.nextInt(64));
            case 2 -> c.raw(new byte[] {0x1B, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF});
            case 3 -> c.raw(new byte[] {0x3B, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF});
            case 4 -> c.head(1, rnd.nextLong() >>> rnd.nextInt(64));
            case 5 -> c.raw(new byte[] {(byte) 0xC2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0});     // bignum 2^64
            case 6 -> c.raw(new byte[] {(byte) 0xC3, 0x42, 0x01, 0x00});                   // negative bignum
            case 7 -> c.raw(FLOATS[rnd.nextInt(FLOATS.length)]);
            case 8 -> c.raw(new byte[] {(byte) 0xF7});                                     // undefined
            case 9 -> c.raw(SIMPLE[rnd.nextInt(SIMPLE.length)]);
            case 10 -> c.raw(new byte[] {(byte) 0xC0}).text("2024-01-01T00:00:00Z");       // tag 0
            case 11 -> c.raw(new byte[] {(byte) 0xD8, (byte) rnd.nextInt(256)});          // some tag, then an item
            case 12 -> c.raw(new byte[] {(byte) 0x5F, 0x41, 1, 0x42, 2, 3, (byte) 0xFF}); // indefinite bytes
            case 13 -> c.raw(new byte[] {(byte) 0x7F, 0x61, 'x', (byte) 0xFF});          // indefinite text
            case 14 -> c.raw(new byte[] {(byte) 0x62, (byte) 0xC3, 0x28});                // invalid UTF-8
            case 15 -> c.raw(new byte[] {(byte) 0xF5});
            case 16 -> c.raw(new byte[] {(byte) 0xF6});
            case 17 -> c.text("t".repeat(rnd.nextInt(40)));
            case 18 -> {
                byte[] b = new byte[rnd.nextInt(rnd.nextInt(50) == 0 ? 70000 : 40)];
                rnd.nextBytes(b);
                c.head(2, b.length).raw(b);
            }
            case 19 -> c.raw(new byte[] {(byte) 0xF9, 0x00, 0x00});
            case 20, 21 -> {
                int n = rnd.nextInt(4);
                boolean indefinite = rnd.nextInt(6) == 0;
                if (indefinite) {
                    c.raw(new byte[] {(byte) 0x9F});
                } else {
                    c.head(4, n);
                }
                for (int i = 0; i < n; i++) {
                    item(c, depth + 1);
                }
                if (indefinite) {
                    c.raw(new byte[] {(byte) 0xFF});
                }
            }
            case 22 -> {
                // deep nesting, past any sane limit sometimes
                int d = rnd.nextInt(rnd.nextInt(10) == 0 ? 3000 : 40);
                for (int i = 0; i < d; i++) {
                    c.raw(new byte[] {(byte) (rnd.nextBoolean() ? 0x81 : 0xA1)});
                    if ((c.last() & 0xFF) == 0xA1) {
                        c.text("k");
                    }
                }
                c.raw(new byte[] {(byte) 0xF6});
            }
            default -> {
                int n = rnd.nextInt(4);
                boolean indefinite = rnd.nextInt(6) == 0;
                if (indefinite) {
                    c.raw(new byte[] {(byte) 0xBF});
                } else {
                    c.map(n);
                }
                for (int i = 0; i < n; i++) {
                    key(c);
                    item(c, depth + 1);
                }
                if (indefinite) {
                    c.raw(new byte[] {(byte) 0xFF});
                }
            }
        }
    }

    private static final byte[][] FLOATS = {
        {(byte) 0xF9, 0x3C, 0x00},                                  // 1.0 half
        {(byte) 0xF9, 0x7C, 0x00},                                  // +Inf half
        {(byte) 0xF9, 0x7E, 0x00},                                  // NaN half
        {(byte) 0xF9, (byte) 0x80, 0x00},                           // -0.0 half
        {(byte) 0xFA, 0x47, (byte) 0xC3, 0x50, 0x00},               // 100000.0 single
        {(byte) 0xFA, 0x7F, (byte) 0x80, 0x00, 0x00},               // +Inf single
        {(byte) 0xFA, 0x7F, (byte) 0xC0, 0x00, 0x01},               // NaN single with payload
        {(byte) 0xFB, 0x3F, (byte) 0xF1, (byte) 0x99, (byte) 0x99, (byte) 0x99, (byte) 0x99, (byte) 0x99, (byte) 0x9A}, // 1.1
        {(byte) 0xFB, 0x7F, (byte) 0xF0, 0, 0, 0, 0, 0, 0},        // +Inf double
        {(byte) 0xFB, (byte) 0xFF, (byte) 0xF0, 0, 0, 0, 0, 0, 0}, // -Inf double
        {(byte) 0xFB, 0x7F, (byte) 0xF8, 0, 0, 0, 0, 0, 1},        // NaN double
        {(byte) 0xFB, 0x43, (byte) 0xE0, 0, 0, 0, 0, 0, 0},        // 2^63 as a double
    };

    private static final byte[][] SIMPLE = {
        {(byte) 0xE0}, {(byte) 0xF3}, {(byte) 0xF8, 0x20}, {(byte) 0xF8, (byte) 0xFF}, {(byte) 0xF8, 0x10},
        {(byte) 0xFC}, {(byte) 0xFD}, {(byte) 0xFE}, {(byte) 0xFF},
    };

    private static final byte[] HEADS = {
        0x1B, 0x3B, 0x5B, 0x7B, (byte) 0x9B, (byte) 0xBB, 0x5A, 0x7A, (byte) 0x9A, (byte) 0xBA,
        0x5F, 0x7F, (byte) 0x9F, (byte) 0xBF, (byte) 0xFF, 0x1C, 0x1D, 0x1E, 0x1F,
        (byte) 0xC0, (byte) 0xC2, (byte) 0xC3, (byte) 0xD8, (byte) 0xDB,
        (byte) 0xF7, (byte) 0xF8, (byte) 0xF9, (byte) 0xFA, (byte) 0xFB, (byte) 0xE0,
        (byte) 0x80, (byte) 0xA0, 0x40, 0x60, 0x00, 0x20,
    };

    private byte[] mutate(byte[] in) {
        byte[] b = in.clone();
        int len = b.length;
        int rounds = 1 + rnd.nextInt(rnd.nextInt(5) == 0 ? 8 : 2);
        for (int r = 0; r < rounds && len > 0; r++) {
            int pos = rnd.nextInt(len);
            switch (rnd.nextInt(12)) {
                case 0 -> b[pos] ^= (byte) (1 << rnd.nextInt(8));
                case 1 -> b[pos] = (byte) rnd.nextInt(256);
                case 2 -> b[pos] = HEADS[rnd.nextInt(HEADS.length)];
                case 3 -> {
                    if (pos + 9 <= len) {
                        b[pos] = HEADS[rnd.nextInt(6)];
                        for (int i = 1; i < 9; i++) {
                            b[pos + i] = rnd.nextBoolean() ? (byte) 0xFF : (byte) rnd.nextInt(256);
                        }
                    }
                }
                case 4 -> len = pos;
                case 5 -> {
                    int n = 1 + rnd.nextInt(8);
                    byte[] nb = new byte[len + n];
                    System.arraycopy(b, 0, nb, 0, pos);
                    for (int i = 0; i < n; i++) {
                        nb[pos + i] = rnd.nextBoolean() ? HEADS[rnd.nextInt(HEADS.length)] : (byte) rnd.nextInt(256);
                    }
                    System.arraycopy(b, pos, nb, pos + n, len - pos);
                    b = nb;
                    len += n;
                }
                case 6 -> {
                    int n = Math.min(1 + rnd.nextInt(8), len - pos);
                    System.arraycopy(b, pos + n, b, pos, len - pos - n);
                    len -= n;
                }
                case 7 -> {
                    int n = Math.min(1 + rnd.nextInt(32), len - pos);
                    byte[] nb = Arrays.copyOf(b, len + n);
                    System.arraycopy(b, pos, nb, len, n);
                    b = nb;
                    len += n;
                }
                case 8 -> b[pos] = (byte) ((b[pos] & 0xE0) | rnd.nextInt(28));
                case 9 -> {
                    byte[] o = corpus.get(rnd.nextInt(corpus.size()));
                    byte[] nb = Arrays.copyOf(b, len + o.length);
                    System.arraycopy(o, 0, nb, len, o.length);
                    b = nb;
                    len += o.length;
                }
                case 10 -> {
                    if (len >= 4) {
                        long[] lens = {0, 1, 4, 5, 6, Protocol.MAX_FRAME_BYTES, Protocol.MAX_FRAME_BYTES + 1L, 0xFFFFFFFFL, 0x80000000L};
                        long l = rnd.nextBoolean() ? lens[rnd.nextInt(lens.length)] : len - 4 + rnd.nextInt(5) - 2;
                        putLen(b, l);
                    }
                }
                default -> b[pos] = (byte) ((b[pos] & 0x1F) | (rnd.nextInt(8) << 5));
            }
        }
        b = Arrays.copyOf(b, len);
        if (len >= 9 && rnd.nextInt(10) < 6) {
            putLen(b, len - 4);
        }
        return b;
    }

    private static void putLen(byte[] b, long l) {
        b[0] = (byte) (l >>> 24);
        b[1] = (byte) (l >>> 16);
        b[2] = (byte) (l >>> 8);
        b[3] = (byte) l;
    }

    /** Non-ASCII and control characters as \\uXXXX, so that a finding shows what differs. */
    static String escape(String s) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c >= 0x20 && c < 0x7F) {
                b.append(c);
            } else {
                b.append(String.format("\\u%04x", (int) c));
            }
        }
        return b.toString();
    }

    static String hex(byte[] b, int max) {
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < Math.min(b.length, max); i++) {
            s.append(String.format("%02x", b[i] & 0xFF));
        }
        if (b.length > max) {
            s.append("...");
        }
        return s.toString();
    }

    /** A raw CBOR writer that can write what the codec's own writer refuses to. */
    private static final class Cbor {
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();
        private int last;

        Cbor head(int major, long v) {
            int m = major << 5;
            if (v >= 0 && v < 24) {
                write(m | (int) v);
            } else if (v >= 0 && v <= 0xFF) {
                write(m | 24);
                write((int) v);
            } else if (v >= 0 && v <= 0xFFFF) {
                write(m | 25);
                be(v, 2);
            } else if (v >= 0 && v <= 0xFFFFFFFFL) {
                write(m | 26);
                be(v, 4);
            } else {
                write(m | 27);
                be(v, 8);
            }
            return this;
        }

        Cbor map(int n) {
            return head(5, n);
        }

        Cbor uint(long v) {
            return head(0, v);
        }

        Cbor text(String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            return head(3, b.length).raw(b);
        }

        Cbor raw(byte[] b) {
            out.writeBytes(b);
            if (b.length > 0) {
                last = b[b.length - 1];
            }
            return this;
        }

        int last() {
            return last;
        }

        int size() {
            return out.size();
        }

        byte[] bytes() {
            return out.toByteArray();
        }

        private void write(int b) {
            out.write(b);
            last = b;
        }

        private void be(long v, int n) {
            for (int i = n - 1; i >= 0; i--) {
                write((int) (v >>> (8 * i)) & 0xFF);
            }
        }
    }
}

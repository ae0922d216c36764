package io.microsandbox.runtime.supervisor;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.OwnerOnly;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * A sandbox's {@code logs/exec.log}: one JSON object per line,
 * {@code {"t": RFC 3339 time (ms), "s": stdout|stderr|output|system, "d": text, "id": session, "n": seq}},
 * written by the supervisor for every exec session ({@code system} lines are lifecycle markers
 * and carry no id). At 10 MiB the file moves to {@code exec.log.1}, replacing the previous
 * generation, so a sandbox keeps at most about 20 MiB of output.
 *
 * <p>Output is stored byte for byte. A chunk that is UTF-8 goes to {@code "d"} as text; an
 * incomplete character at its end is held back and written with the next chunk of the same
 * session and stream, so a character split across chunks stays one character. A chunk that
 * is not UTF-8 (binary output) goes to {@code "b"}, base64, instead of {@code "d"}. Bytes
 * still held back when a session ends ({@link #endSession(long)}), when the log closes, or
 * when too many sessions hold some, are written as {@code "b"}. Concatenating the entries of
 * one session and stream gives back exactly what the process wrote.
 *
 * <p>{@code "n"} numbers the entries from 1 over the sandbox's whole life: across rotations
 * and restarts (a new writer continues after the last number it finds), so a reader's
 * position ({@code LogStream}'s cursor) is the number of the last entry it saw.
 */
public final class ExecLog implements AutoCloseable {
    /** Size at which the log rotates. */
    public static final long ROTATE_BYTES = 10L * 1024 * 1024;
    /** Most streams that may hold back an incomplete character at once; the oldest is written out beyond that. */
    static final int MAX_HELD = 256;

    private final Path file;
    private OutputStream out;
    private long size;
    /** Number of the last entry written. */
    private long seq;
    /** Incomplete trailing UTF-8 sequences (1 to 3 bytes) per session stream, oldest first. */
    private final Map<Stream, byte[]> held = new LinkedHashMap<>();

    private record Stream(long session, String source) {
    }

    private ExecLog(Path file) throws IOException {
        this.file = file;
        this.seq = lastSeq(file);
        open();
    }

    /** The number of the last entry of the log (either generation), 0 for none. */
    static long lastSeq(Path file) throws IOException {
        for (Path generation : List.of(file, rotated(file))) {
            if (!Files.isRegularFile(generation)) {
                continue;
            }
            long size = Files.size(generation);
            // entries are at most a few hundred KiB: the last complete one is in the last 1 MiB,
            // else the whole generation is read
            for (long window : new long[] {1 << 20, size}) {
                long n = lastSeqIn(generation, Math.max(0, size - window));
                if (n > 0) {
                    return n;
                }
                if (window >= size) {
                    break;
                }
            }
        }
        return 0;
    }

    private static long lastSeqIn(Path file, long from) throws IOException {
        long[] last = {0};
        try (var ch = Files.newByteChannel(file)) {
            ch.position(from);
            BufferedReader reader = new BufferedReader(new java.io.InputStreamReader(java.nio.channels.Channels.newInputStream(ch),
                    StandardCharsets.UTF_8));
            reader.lines().forEach(parseInto(l -> last[0] = Math.max(last[0], l.seq())));
        }
        return last[0];
    }

    /** Opens the log for appending, creating it if needed; it is its owner's only ({@code 0600}). */
    public static ExecLog append(Path file) throws IOException {
        return new ExecLog(file);
    }

    private void open() throws IOException {
        out = OwnerOnly.newOutputStream(file, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        size = Files.size(file);
    }

    /**
     * Appends a chunk of output; {@code session} is null for system lines. An incomplete
     * UTF-8 character at the end of a session's chunk waits for that stream's next chunk.
     */
    public synchronized void write(String source, Long session, byte[] data) throws IOException {
        Stream stream = session == null ? null : new Stream(session, source);
        byte[] bytes = data;
        byte[] carried = stream == null ? null : held.remove(stream);
        if (carried != null) {
            bytes = Arrays.copyOf(carried, carried.length + data.length);
            System.arraycopy(data, 0, bytes, carried.length, data.length);
        }
        CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        ByteBuffer in = ByteBuffer.wrap(bytes);
        CharBuffer text = CharBuffer.allocate(bytes.length); // never more UTF-16 units than UTF-8 bytes
        CoderResult result = decoder.decode(in, text, stream == null);
        if (result.isError()) {
            append(source, session, null, bytes);
            return;
        }
        // underflow: what remains is the start of a character that the next chunk completes
        if (in.hasRemaining()) {
            hold(stream, Arrays.copyOfRange(bytes, in.position(), bytes.length));
        }
        if (text.position() > 0) {
            append(source, session, text.flip().toString(), null);
        }
    }

    /** Writes out what the streams of {@code session} still hold back: the session has ended. */
    public synchronized void endSession(long session) throws IOException {
        Iterator<Map.Entry<Stream, byte[]>> it = held.entrySet().iterator();
        List<Map.Entry<Stream, byte[]>> ended = new ArrayList<>();
        while (it.hasNext()) {
            Map.Entry<Stream, byte[]> e = it.next();
            if (e.getKey().session() == session) {
                ended.add(e);
                it.remove();
            }
        }
        for (Map.Entry<Stream, byte[]> e : ended) {
            append(e.getKey().source(), e.getKey().session(), null, e.getValue());
        }
    }

    private void hold(Stream stream, byte[] tail) throws IOException {
        held.put(stream, tail);
        if (held.size() > MAX_HELD) {
            Iterator<Map.Entry<Stream, byte[]>> oldest = held.entrySet().iterator();
            Map.Entry<Stream, byte[]> e = oldest.next();
            oldest.remove();
            append(e.getKey().source(), e.getKey().session(), null, e.getValue());
        }
    }

    /** One line: {@code text} as "d", else {@code bytes} as base64 "b". */
    private void append(String source, Long session, String text, byte[] bytes) throws IOException {
        ObjectNode line = Json.object();
        line.put("t", Instant.now().truncatedTo(ChronoUnit.MILLIS).toString());
        line.put("s", source);
        if (text != null) {
            line.put("d", text);
        } else {
            line.put("b", Base64.getEncoder().encodeToString(bytes));
        }
        if (session != null) {
            line.put("id", session);
        }
        line.put("n", ++seq);
        byte[] encoded = (Json.toText(line) + "\n").getBytes(StandardCharsets.UTF_8);
        if (size > 0 && size + encoded.length > ROTATE_BYTES) {
            out.close();
            Files.move(file, rotated(file), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            open();
        }
        out.write(encoded);
        out.flush();
        size += encoded.length;
    }

    /** Writes out every held-back byte and closes the file. */
    @Override
    public synchronized void close() throws IOException {
        try {
            for (Map.Entry<Stream, byte[]> e : held.entrySet()) {
                append(e.getKey().source(), e.getKey().session(), null, e.getValue());
            }
            held.clear();
        } finally {
            out.close();
        }
    }

    /** The previous generation of {@code file}. */
    public static Path rotated(Path file) {
        return file.resolveSibling(file.getFileName() + ".1");
    }

    /**
     * One parsed entry.
     *
     * @param session null for system lines
     * @param data    the exact bytes: {@code "b"} decoded, or the UTF-8 of {@code "d"}
     * @param seq     the entry's number ({@code "n"}); 0 for entries of older versions
     */
    public record Line(Instant time, String source, Long session, byte[] data, long seq) {
        public Line(Instant time, String source, Long session, byte[] data) {
            this(time, source, session, data, 0);
        }

        /** The bytes as UTF-8 text, malformed ones replaced by U+FFFD. */
        public String text() {
            return new String(data, StandardCharsets.UTF_8);
        }
    }

    /**
     * Reads a log as it grows, across rotations: each {@link #poll()} returns the complete
     * entries written since the last one, each exactly once (an entry whose number is not above
     * the last one returned is skipped). Starts before the oldest entry kept, or after the entry
     * numbered {@code after}.
     */
    public static final class Follower {
        /** Longest line taken; a longer one (none is written) is skipped. */
        private static final int MAX_LINE = 8 << 20;
        private final Path file;
        private long last;
        private Object fileKey;
        private long offset;
        private final java.io.ByteArrayOutputStream partial = new java.io.ByteArrayOutputStream();
        private boolean started;

        public Follower(Path file, long after) {
            this.file = file;
            this.last = after;
        }

        /** The number of the last entry returned (or the starting point). */
        public long last() {
            return last;
        }

        /**
         * The entries written since the last poll. A failed poll (an interrupted read among
         * them) returns nothing and changes nothing: the next one reads the same entries again.
         */
        public List<Line> poll() throws IOException {
            long lastBefore = last;
            Object keyBefore = fileKey;
            long offsetBefore = offset;
            boolean startedBefore = started;
            try {
                return pollOnce();
            } catch (IOException | RuntimeException e) {
                last = lastBefore;
                fileKey = keyBefore;
                offset = offsetBefore;
                started = startedBefore;
                partial.reset();
                throw e;
            }
        }

        private List<Line> pollOnce() throws IOException {
            List<Line> out = new ArrayList<>();
            if (!started) {
                // the older generation first, as if it were the one being followed
                started = true;
                fileKey = key(rotated(file));
                offset = 0;
            }
            Object key = key(file);
            if (key == null) {
                return out; // between a rotation's move and the new file, or not written yet
            }
            if (!key.equals(fileKey)) {
                // rotated since the last poll: finish the generation we were reading (now .1),
                // or read all of a .1 we never saw; numbers filter out what was returned already
                Path old = rotated(file);
                Object oldKey = key(old);
                if (oldKey != null) {
                    readFrom(old, oldKey.equals(fileKey) ? offset : 0, out);
                }
                fileKey = key;
                offset = 0;
            }
            offset = readFrom(file, offset, out);
            return out;
        }

        private static Object key(Path p) {
            try {
                return Files.readAttributes(p, java.nio.file.attribute.BasicFileAttributes.class,
                        java.nio.file.LinkOption.NOFOLLOW_LINKS).fileKey();
            } catch (IOException e) {
                return null;
            }
        }

        /** Reads complete lines from {@code from}; returns the offset after the last complete line. */
        private long readFrom(Path p, long from, List<Line> out) throws IOException {
            long pos = from;
            try (var ch = Files.newByteChannel(p)) {
                if (ch.size() < from) {
                    return from; // not ours any more
                }
                ch.position(from);
                ByteBuffer buf = ByteBuffer.allocate(256 * 1024);
                int n;
                while ((n = ch.read(buf.clear())) > 0) {
                    byte[] a = buf.array();
                    int start = 0;
                    for (int i = 0; i < n; i++) {
                        if (a[i] == '\n') {
                            partial.write(a, start, i - start);
                            take(partial.toString(StandardCharsets.UTF_8), out);
                            partial.reset();
                            start = i + 1;
                        }
                    }
                    if (partial.size() + (n - start) > MAX_LINE) {
                        partial.reset();
                    } else {
                        partial.write(a, start, n - start);
                    }
                    pos += n;
                }
            }
            // the partial line's bytes are re-read next time, so keep the offset before them
            long end = pos - partial.size();
            partial.reset();
            return end;
        }

        private void take(String text, List<Line> out) {
            parseInto(l -> {
                if (l.seq() > last) {
                    last = l.seq();
                    out.add(l);
                }
            }).accept(text);
        }
    }

    /** Every entry of {@code file}, older generation first; unparsable lines are skipped. */
    public static List<Line> read(Path file) throws IOException {
        List<Line> lines = new ArrayList<>();
        for (Path generation : List.of(rotated(file), file)) {
            if (Files.isRegularFile(generation)) {
                // lenient decoding: a line torn inside a character must not make the whole file unreadable
                try (BufferedReader reader = new BufferedReader(new java.io.InputStreamReader(
                        Files.newInputStream(generation), StandardCharsets.UTF_8))) {
                    reader.lines().forEach(parseInto(lines::add));
                }
            }
        }
        return lines;
    }

    static Consumer<String> parseInto(Consumer<Line> sink) {
        return text -> {
            try {
                JsonNode n = Json.parse(text);
                JsonNode base64 = n.get("b");
                byte[] data = base64 != null && !base64.isNull()
                        ? Base64.getDecoder().decode(base64.asText())
                        : n.path("d").asText().getBytes(StandardCharsets.UTF_8);
                sink.accept(new Line(Instant.parse(n.path("t").asText()), n.path("s").asText(),
                        n.hasNonNull("id") ? n.get("id").asLong() : null, data, n.path("n").asLong(0)));
            } catch (IOException | RuntimeException e) {
                // a torn last line of a crashed writer: skip it
            }
        };
    }
}

package io.microsandbox.runtime.supervisor;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.OwnerOnly;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * A sandbox's {@code logs/exec.log}: one JSON object per line,
 * {@code {"t": RFC 3339 time (ms), "s": stdout|stderr|output|system, "d": text, "id": session}},
 * written by the supervisor for every exec session ({@code system} lines are lifecycle markers
 * and carry no id). At 10 MiB the file moves to {@code exec.log.1}, replacing the previous
 * generation, so a sandbox keeps at most about 20 MiB of output.
 */
public final class ExecLog implements AutoCloseable {
    /** Size at which the log rotates. */
    public static final long ROTATE_BYTES = 10L * 1024 * 1024;
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path file;
    private OutputStream out;
    private long size;

    private ExecLog(Path file) throws IOException {
        this.file = file;
        open();
    }

    /** Opens the log for appending, creating it if needed; it is its owner's only ({@code 0600}). */
    public static ExecLog append(Path file) throws IOException {
        return new ExecLog(file);
    }

    private void open() throws IOException {
        out = OwnerOnly.newOutputStream(file, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        size = Files.size(file);
    }

    /** Appends one entry; {@code session} is null for system lines. */
    public synchronized void write(String source, Long session, byte[] data) throws IOException {
        ObjectNode line = JSON.createObjectNode();
        line.put("t", Instant.now().truncatedTo(ChronoUnit.MILLIS).toString());
        line.put("s", source);
        line.put("d", new String(data, StandardCharsets.UTF_8));
        if (session != null) {
            line.put("id", session);
        }
        byte[] bytes = (line + "\n").getBytes(StandardCharsets.UTF_8);
        if (size > 0 && size + bytes.length > ROTATE_BYTES) {
            out.close();
            Files.move(file, rotated(file), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            open();
        }
        out.write(bytes);
        out.flush();
        size += bytes.length;
    }

    @Override
    public synchronized void close() throws IOException {
        out.close();
    }

    /** The previous generation of {@code file}. */
    public static Path rotated(Path file) {
        return file.resolveSibling(file.getFileName() + ".1");
    }

    /**
     * One parsed entry.
     *
     * @param session null for system lines
     */
    public record Line(Instant time, String source, Long session, String text) {
    }

    /** Every entry of {@code file}, older generation first; unparsable lines are skipped. */
    public static List<Line> read(Path file) throws IOException {
        List<Line> lines = new ArrayList<>();
        for (Path generation : List.of(rotated(file), file)) {
            if (Files.isRegularFile(generation)) {
                try (BufferedReader reader = Files.newBufferedReader(generation, StandardCharsets.UTF_8)) {
                    reader.lines().forEach(parseInto(lines::add));
                }
            }
        }
        return lines;
    }

    private static Consumer<String> parseInto(Consumer<Line> sink) {
        return text -> {
            try {
                JsonNode n = JSON.readTree(text);
                sink.accept(new Line(Instant.parse(n.path("t").asText()), n.path("s").asText(),
                        n.hasNonNull("id") ? n.get("id").asLong() : null, n.path("d").asText()));
            } catch (IOException | RuntimeException e) {
                // a torn last line of a crashed writer: skip it
            }
        };
    }
}

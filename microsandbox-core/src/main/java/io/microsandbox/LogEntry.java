package io.microsandbox;

import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.Arrays;
import java.util.Objects;

/**
 * One captured piece of output, from {@link Sandbox#logs(LogOptions)}.
 *
 * @param source    where it came from
 * @param sessionId the exec session, numbered from 1 per boot; null for system entries
 * @param timestamp when the host captured it
 * @param data      the captured bytes, exactly as the process wrote them (binary output too)
 * @param cursor    an opaque position: {@link LogStreamOptions.Builder#fromCursor(String)} resumes
 *                  right after this entry (across rotations and restarts); null for entries
 *                  of logs written before cursors existed
 */
public record LogEntry(LogSource source, Long sessionId, Instant timestamp, byte[] data, String cursor) {

    public LogEntry {
        data = Objects.requireNonNull(data, "data").clone();
    }

    /** An entry without a cursor. */
    public LogEntry(LogSource source, Long sessionId, Instant timestamp, byte[] data) {
        this(source, sessionId, timestamp, data, null);
    }

    /** An entry holding {@code text} as UTF-8. */
    public LogEntry(LogSource source, Long sessionId, Instant timestamp, String text) {
        this(source, sessionId, timestamp, text.getBytes(StandardCharsets.UTF_8), null);
    }

    /** The captured bytes, exactly as written; a copy. */
    @Override
    public byte[] data() {
        return data.clone();
    }

    /**
     * The captured output as UTF-8 text. A character split across the chunks the host
     * received is whole; bytes that are not UTF-8 (binary output) become U+FFFD, so use
     * {@link #data()} for those.
     */
    public String text() {
        return new String(data, StandardCharsets.UTF_8);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof LogEntry e && source == e.source && Objects.equals(sessionId, e.sessionId)
                && Objects.equals(timestamp, e.timestamp) && Arrays.equals(data, e.data);
    }

    @Override
    public int hashCode() {
        return Objects.hash(source, sessionId, timestamp) * 31 + Arrays.hashCode(data);
    }

    @Override
    public String toString() {
        return "LogEntry[source=" + source + ", sessionId=" + sessionId + ", timestamp=" + timestamp + ", text=" + text() + "]";
    }
}

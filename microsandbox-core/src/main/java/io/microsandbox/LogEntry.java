package io.microsandbox;

import java.nio.charset.StandardCharsets;
import java.time.Instant;

/**
 * One captured piece of output, from {@link Sandbox#logs(LogOptions)}.
 *
 * @param source    where it came from
 * @param sessionId the exec session, numbered from 1 per boot; null for system entries
 * @param timestamp when the host captured it
 * @param text      the captured output (UTF-8; malformed bytes were replaced)
 */
public record LogEntry(LogSource source, Long sessionId, Instant timestamp, String text) {

    /** The captured output as UTF-8 bytes. */
    public byte[] data() {
        return text.getBytes(StandardCharsets.UTF_8);
    }
}

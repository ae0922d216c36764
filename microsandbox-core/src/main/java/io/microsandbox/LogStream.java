package io.microsandbox;

import io.microsandbox.runtime.supervisor.ExecLog;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.function.BooleanSupplier;

/**
 * Entries of a sandbox's exec log as they are written, from
 * {@link Sandbox#logStream(LogStreamOptions)} or {@link SandboxHandle#logStream(LogStreamOptions)}.
 * Each entry carries a {@link LogEntry#cursor() cursor}; a stream opened with
 * {@link LogStreamOptions.Builder#fromCursor(String)} starts right after that entry, whether
 * the log rotated or the sandbox restarted meanwhile, with nothing lost or repeated (as long as
 * the entry's generation is still kept: about 20 MiB of log).
 *
 * <p>Reading happens in the caller's thread ({@link #recv()} polls the file); the stream holds
 * no thread and no open file between calls. Not for concurrent use by several threads.
 */
public final class LogStream implements AutoCloseable, Iterable<LogEntry> {
    /** How often a following stream looks for new entries. */
    static final Duration POLL = Duration.ofMillis(100);
    /** How often it asks whether the sandbox still runs. */
    static final Duration RUNNING_CHECK = Duration.ofSeconds(1);
    private static final String CURSOR_PREFIX = "msb1.";

    private final String name;
    private final LogStreamOptions options;
    private final ExecLog.Follower follower;
    private final BooleanSupplier running;
    private final ArrayDeque<LogEntry> ready = new ArrayDeque<>();
    private volatile boolean closed;
    private boolean ended;
    private boolean stopSeen;
    private long lastRunningCheck;

    LogStream(String name, Path execLog, LogStreamOptions options, BooleanSupplier running) {
        this.name = name;
        this.options = options;
        this.follower = new ExecLog.Follower(execLog, options.fromCursor() == null ? 0 : seqOf(options.fromCursor()));
        this.running = running;
    }

    /** The cursor of the entry numbered {@code seq}; null for 0 (an entry without a number). */
    static String cursorOf(long seq) {
        return seq <= 0 ? null : CURSOR_PREFIX + Long.toString(seq, 36);
    }

    static long seqOf(String cursor) {
        if (cursor != null && cursor.startsWith(CURSOR_PREFIX)) {
            try {
                long seq = Long.parseLong(cursor.substring(CURSOR_PREFIX.length()), 36);
                if (seq > 0) {
                    return seq;
                }
            } catch (NumberFormatException e) {
                // reported below
            }
        }
        throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "not a log cursor: " + cursor);
    }

    /**
     * The next entry, waiting for one in follow mode; null once the stream has ended (not
     * following and everything read, {@code until} reached, the sandbox stopped, or closed).
     *
     * @throws MicrosandboxException {@link ErrorKind#CANCELLED} when the thread is interrupted
     */
    public LogEntry recv() {
        return recv(null);
    }

    /** Like {@link #recv()}, returning null as well when nothing comes within {@code wait}. */
    public LogEntry recv(Duration wait) {
        long deadline = wait == null ? Long.MAX_VALUE : System.nanoTime() + wait.toNanos();
        while (true) {
            if (closed) {
                return null;
            }
            if (!ready.isEmpty()) {
                return ready.poll();
            }
            if (ended) {
                return null;
            }
            fill();
            if (!ready.isEmpty() || ended) {
                continue;
            }
            if (!options.follow()) {
                ended = true;
                continue;
            }
            if (options.until() != null && Instant.now().isAfter(options.until().plusSeconds(1))) {
                ended = true;
                continue;
            }
            if (!options.followAcrossRestarts()) {
                long now = System.nanoTime();
                if (stopSeen) {
                    ended = true; // stopped, and the read after noticing it found nothing more
                    continue;
                }
                if (now - lastRunningCheck >= RUNNING_CHECK.toNanos()) {
                    lastRunningCheck = now;
                    if (!running.getAsBoolean()) {
                        stopSeen = true;
                        continue; // one more read for what the supervisor wrote last
                    }
                }
            }
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return null;
            }
            try {
                Thread.sleep(Math.max(1, Math.min(POLL.toMillis(), left / 1_000_000)));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while following the logs of '" + name + "'");
            }
        }
    }

    private void fill() {
        try {
            for (ExecLog.Line l : follower.poll()) {
                if (options.until() != null && !l.time().isBefore(options.until())) {
                    ended = true;
                    return;
                }
                LogSource source;
                try {
                    source = LogSource.fromWireName(l.source());
                } catch (IllegalArgumentException e) {
                    continue;
                }
                if (!options.includes(source) || (options.since() != null && l.time().isBefore(options.since()))) {
                    continue;
                }
                ready.add(new LogEntry(source, l.session(), l.time(), l.data(), cursorOf(l.seq())));
            }
        } catch (java.nio.channels.ClosedByInterruptException | java.io.InterruptedIOException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while reading the logs of '" + name + "'", e);
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot read the logs of '" + name + "': " + e.getMessage(), e);
        }
    }

    /** Ends the stream; a {@link #recv()} in progress returns null at its next poll. */
    @Override
    public void close() {
        closed = true;
    }

    /** The entries, as {@link #recv()} returns them, until the stream ends. */
    @Override
    public Iterator<LogEntry> iterator() {
        return new Iterator<>() {
            private LogEntry next;

            @Override
            public boolean hasNext() {
                if (next == null) {
                    next = recv();
                }
                return next != null;
            }

            @Override
            public LogEntry next() {
                if (!hasNext()) {
                    throw new NoSuchElementException();
                }
                LogEntry e = next;
                next = null;
                return e;
            }
        };
    }
}

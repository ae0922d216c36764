package io.microsandbox;

import java.time.Instant;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

/**
 * Options of {@link Sandbox#logStream(LogStreamOptions)}. The defaults read the stdout,
 * stderr and tty output entries there are now, from the oldest kept, and end. {@code since} and
 * {@code fromCursor} are mutually exclusive.
 */
public final class LogStreamOptions {
    private final boolean follow;
    private final boolean followAcrossRestarts;
    private final Instant since;
    private final Instant until;
    private final String fromCursor;
    private final Set<LogSource> sources;

    private LogStreamOptions(Builder b) {
        if (b.since != null && b.fromCursor != null) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "since and fromCursor are mutually exclusive");
        }
        if (b.fromCursor != null) {
            LogStream.seqOf(b.fromCursor); // fails now for a malformed cursor
        }
        this.follow = b.follow || b.followAcrossRestarts;
        this.followAcrossRestarts = b.followAcrossRestarts;
        this.since = b.since;
        this.until = b.until;
        this.fromCursor = b.fromCursor;
        // what a watcher expects to see of a command, on a terminal or not (as the Go SDK's stream)
        this.sources = b.sources.isEmpty() ? EnumSet.of(LogSource.STDOUT, LogSource.STDERR, LogSource.OUTPUT) : EnumSet.copyOf(b.sources);
    }

    /** The entries there are now, of stdout, stderr and tty output, from the oldest kept; no follow. */
    public static LogStreamOptions defaults() {
        return builder().build();
    }

    /** A builder starting from {@link #defaults()}. */
    public static Builder builder() {
        return new Builder();
    }

    /** Keep the stream open past the current end, delivering entries as they are written. */
    public boolean follow() {
        return follow;
    }

    /** Follow on when the sandbox stops, into its next run, until closed. */
    public boolean followAcrossRestarts() {
        return followAcrossRestarts;
    }

    /** Start at the first entry at or after this time, or null. */
    public Instant since() {
        return since;
    }

    /** End before the first entry at or after this time (in follow mode also once the clock passes it), or null. */
    public Instant until() {
        return until;
    }

    /** Resume strictly after the entry with this {@link LogEntry#cursor()}, or null. */
    public String fromCursor() {
        return fromCursor;
    }

    /** The sources to include. */
    public Set<LogSource> sources() {
        return EnumSet.copyOf(sources);
    }

    /** Whether entries of {@code source} are wanted; asked for every entry, so it copies nothing. */
    boolean includes(LogSource source) {
        return sources.contains(source);
    }

    /** Builder of {@link LogStreamOptions}. */
    public static final class Builder {
        private boolean follow;
        private boolean followAcrossRestarts;
        private Instant since;
        private Instant until;
        private String fromCursor;
        private final Set<LogSource> sources = EnumSet.noneOf(LogSource.class);

        private Builder() {
        }

        /** Keep the stream open past the current end (see {@link LogStreamOptions#follow()}). */
        public Builder follow(boolean follow) {
            this.follow = follow;
            return this;
        }

        /** Implies {@link #follow(boolean)}: the stream does not end when the sandbox stops. */
        public Builder followAcrossRestarts(boolean follow) {
            this.followAcrossRestarts = follow;
            return this;
        }

        /** Start at the first entry at or after {@code since}; exclusive with {@link #fromCursor}. */
        public Builder since(Instant since) {
            this.since = since;
            return this;
        }

        /** End before the first entry at or after {@code until} (see {@link LogStreamOptions#until()}). */
        public Builder until(Instant until) {
            this.until = until;
            return this;
        }

        /** Resume strictly after the entry with this cursor; exclusive with {@link #since}. */
        public Builder fromCursor(String cursor) {
            this.fromCursor = cursor;
            return this;
        }

        /** Adds sources; none given means stdout, stderr and tty output. */
        public Builder sources(LogSource... sources) {
            this.sources.addAll(List.of(sources));
            return this;
        }

        /**
         * The options.
         *
         * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} when both {@code since} and
         *         {@code fromCursor} are set, or the cursor is malformed
         */
        public LogStreamOptions build() {
            return new LogStreamOptions(this);
        }
    }
}

package io.microsandbox;

import java.time.Instant;
import java.util.EnumSet;
import java.util.Set;

/**
 * Filters of {@link Sandbox#logs(LogOptions)}. The defaults return every stdout and stderr entry.
 */
public final class LogOptions {
    private static final LogOptions DEFAULTS = builder().build();

    private final long tail;
    private final Instant since;
    private final Instant until;
    private final Set<LogSource> sources;

    private LogOptions(Builder b) {
        this.tail = b.tail;
        this.since = b.since;
        this.until = b.until;
        this.sources = b.sources.isEmpty() ? EnumSet.of(LogSource.STDOUT, LogSource.STDERR) : EnumSet.copyOf(b.sources);
    }

    /** Every stdout and stderr entry. */
    public static LogOptions defaults() {
        return DEFAULTS;
    }

    /** A builder starting from {@link #defaults()}. */
    public static Builder builder() {
        return new Builder();
    }

    /** Keep only the last this many matching entries; 0 keeps all. */
    public long tail() {
        return tail;
    }

    /** Inclusive lower time bound, or null. */
    public Instant since() {
        return since;
    }

    /** Exclusive upper time bound, or null. */
    public Instant until() {
        return until;
    }

    /** The sources to include. */
    public Set<LogSource> sources() {
        return EnumSet.copyOf(sources);
    }

    boolean matches(LogEntry entry) {
        return sources.contains(entry.source())
                && (since == null || !entry.timestamp().isBefore(since))
                && (until == null || entry.timestamp().isBefore(until));
    }

    /** Builder of {@link LogOptions}. */
    public static final class Builder {
        private long tail;
        private Instant since;
        private Instant until;
        private final Set<LogSource> sources = EnumSet.noneOf(LogSource.class);

        private Builder() {
        }

        /** Keep only the last {@code tail} matching entries; 0 (the default) keeps all. */
        public Builder tail(long tail) {
            if (tail < 0) {
                throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "tail must not be negative, got " + tail);
            }
            this.tail = tail;
            return this;
        }

        /** Only entries at or after {@code since} (null: no bound). */
        public Builder since(Instant since) {
            this.since = since;
            return this;
        }

        /** Only entries before {@code until} (null: no bound). */
        public Builder until(Instant until) {
            this.until = until;
            return this;
        }

        /** Adds sources; none given means stdout and stderr. */
        public Builder sources(LogSource... sources) {
            this.sources.addAll(java.util.List.of(sources));
            return this;
        }

        /** The options. */
        public LogOptions build() {
            return new LogOptions(this);
        }
    }
}

package io.microsandbox;

/** Where a {@link LogEntry} came from. */
public enum LogSource {
    /** Standard output of a command run with pipes. */
    STDOUT,
    /** Standard error of a command run with pipes. */
    STDERR,
    /** The merged output of a command run on a terminal. */
    OUTPUT,
    /** Lifecycle markers written by the runtime (started, stopped and why). */
    SYSTEM;

    String wireName() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }

    static LogSource fromWireName(String name) {
        return valueOf(name.toUpperCase(java.util.Locale.ROOT));
    }
}

package io.microsandbox.runtime.supervisor;

import java.time.Instant;

/**
 * The supervisor's diagnostics, one timestamped line each, on stderr (its log file), filtered
 * by the sandbox's log level (SandboxConfig.logLevel / quietLogs, carried in the spec's
 * {@code log_level}).
 */
final class SupervisorLog {
    /** Lowest level written: trace 0, debug 1, info 2, warn 3, error 4, off 5 (as the agent counts). */
    private static volatile int threshold = 2;
    private static final java.util.List<String> LEVELS = java.util.List.of("trace", "debug", "info", "warn", "error", "off");

    private SupervisorLog() {
    }

    /** Applies a level name from the spec; null keeps the default (info). */
    static void level(Object name) {
        if (name != null) {
            int i = LEVELS.indexOf(name.toString());
            if (i < 0) {
                throw new IllegalArgumentException("unknown log level '" + name + "'");
            }
            threshold = i;
        }
    }

    /** A lifecycle milestone (info). */
    static void log(String message) {
        write(2, message);
    }

    /** Something went wrong (warn). */
    static void warn(String message) {
        write(3, message);
    }

    /** A failure of the supervisor itself: a boot that failed, a thread or task that died (error). */
    static void error(String message) {
        write(4, message);
    }

    /** Routine traffic: clients and sessions (debug). */
    static void debug(String message) {
        write(1, message);
    }

    /** Whether debug lines are written, so callers can skip building them. */
    static boolean debugEnabled() {
        return threshold <= 1;
    }

    private static void write(int level, String message) {
        if (level >= threshold) {
            System.err.println(Instant.now() + " " + LEVELS.get(level).toUpperCase(java.util.Locale.ROOT)
                    + " [" + Thread.currentThread().getName() + "] " + io.microsandbox.runtime.Printable.lines(message)); // may quote the guest
        }
    }

    /** A daemon thread whose unexpected failure is logged, then handed to {@code onFailure}. */
    static Thread daemon(String name, Runnable body, java.util.function.Consumer<Throwable> onFailure) {
        Thread t = new Thread(() -> {
            try {
                body.run();
            } catch (Throwable e) {
                error("thread " + Thread.currentThread().getName() + " failed: " + e);
                onFailure.accept(e);
            }
        }, "msb-supervisor-" + name);
        t.setDaemon(true);
        return t;
    }
}

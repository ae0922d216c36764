package io.microsandbox;

import java.util.Locale;

/**
 * How much a sandbox's own diagnostics say: the supervisor's log ({@code logs/supervisor.log})
 * and the guest agent's lines on the console (the {@link LogSource#SYSTEM} log). Set with
 * {@link SandboxConfig.Builder#logLevel(LogLevel)}; {@link SandboxConfig.Builder#quietLogs()}
 * silences both. The output of commands is not affected.
 */
public enum LogLevel {
    /** The most verbose level; today it writes the same lines as {@link #DEBUG}. */
    TRACE,
    /** What the sandbox does (clients, sessions started and ended) besides what goes wrong. */
    DEBUG,
    /** Lifecycle milestones and problems; the default. */
    INFO,
    /** Problems only. */
    WARN,
    /** Failures only. */
    ERROR;

    /** The lower-case name used in persisted configs and in the agent's {@code log_level}. */
    public String value() {
        return name().toLowerCase(Locale.ROOT);
    }

    /**
     * The level named {@code value}, case-insensitively.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_CONFIG} for an unknown name
     */
    public static LogLevel parse(String value) {
        for (LogLevel l : values()) {
            if (l.value().equalsIgnoreCase(value)) {
                return l;
            }
        }
        throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "unknown log level '" + value + "' (trace, debug, info, warn, error)");
    }
}

package io.microsandbox;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Per-command options for {@link Sandbox#exec(String, java.util.List, ExecOptions)} and
 * {@link Sandbox#execStream(String, java.util.List, ExecOptions)}.
 */
public final class ExecOptions {
    /** Output {@link Sandbox#exec} collects by default, stdout and stderr together. */
    public static final long DEFAULT_MAX_OUTPUT_BYTES = 16L << 20;
    private static final ExecOptions DEFAULTS = builder().build();

    private final String cwd;
    private final Map<String, String> env;
    private final String user;
    private final Duration timeout;
    private final byte[] stdin;
    private final boolean stdinPipe;
    private final boolean tty;
    private final int rows;
    private final int cols;
    private final long maxOutputBytes;

    private ExecOptions(Builder b) {
        this.cwd = b.cwd;
        this.env = Collections.unmodifiableMap(new LinkedHashMap<>(b.env));
        this.user = b.user;
        this.timeout = b.timeout;
        this.stdin = b.stdin;
        this.stdinPipe = b.stdinPipe;
        this.tty = b.tty;
        this.rows = b.rows;
        this.cols = b.cols;
        this.maxOutputBytes = b.maxOutputBytes;
    }

    /** No cwd, env, user, timeout or stdin; no tty; output collected up to 16 MiB. */
    public static ExecOptions defaults() {
        return DEFAULTS;
    }

    /** A builder starting from {@link #defaults()}. */
    public static Builder builder() {
        return new Builder();
    }

    /** The working directory in the guest, or null for the sandbox's workdir. */
    public String cwd() {
        return cwd;
    }

    /** Environment variables added to the sandbox's for this command. */
    public Map<String, String> env() {
        return env;
    }

    /** The guest user it runs as, or null for the sandbox's user. */
    public String user() {
        return user;
    }

    /** Time limit after which the host kills the process, or null for none. */
    public Duration timeout() {
        return timeout;
    }

    /** Bytes written to the process's stdin before it is closed, or null. */
    public byte[] stdin() {
        return stdin == null ? null : stdin.clone();
    }

    /** Whether stdin is a pipe the caller feeds through {@link ExecHandle#stdin()}. */
    public boolean stdinPipe() {
        return stdinPipe;
    }

    /** Whether it runs on a pseudo-terminal (stdout and stderr merged, as {@code output}). */
    public boolean tty() {
        return tty;
    }

    /** The terminal's rows when {@link #tty()}. */
    public int rows() {
        return rows;
    }

    /** The terminal's columns when {@link #tty()}. */
    public int cols() {
        return cols;
    }

    /** The most output a collecting call keeps, stdout and stderr together (see {@link Builder#maxOutputBytes}). */
    public long maxOutputBytes() {
        return maxOutputBytes;
    }

    /** Builder of {@link ExecOptions}. */
    public static final class Builder {
        private String cwd;
        private final Map<String, String> env = new LinkedHashMap<>();
        private String user;
        private Duration timeout;
        private byte[] stdin;
        private boolean stdinPipe;
        private boolean tty;
        private int rows = 24;
        private int cols = 80;
        private long maxOutputBytes = DEFAULT_MAX_OUTPUT_BYTES;

        private Builder() {
        }

        /** Working directory (absolute guest path, at most 4095 bytes). */
        public Builder cwd(String cwd) {
            this.cwd = cwd;
            return this;
        }

        /**
         * Adds environment variables on top of the sandbox's. Names are non-empty without '='
         * or NUL, values without NUL; each NAME=value at most 128 KiB, all of them at most 1 MiB.
         */
        public Builder env(Map<String, String> env) {
            this.env.putAll(env);
            return this;
        }

        public Builder env(String name, String value) {
            this.env.put(name, value);
            return this;
        }

        /** Guest user: a name, uid or uid:gid (at most 255 bytes). */
        public Builder user(String user) {
            this.user = user;
            return this;
        }

        /**
         * The most output {@link Sandbox#exec} and {@link ExecHandle#collect()} keep, stdout and
         * stderr together (default 16 MiB): past it the command is killed and the call fails
         * with {@link ErrorKind#EXEC_FAILED}, instead of filling the heap. Streams read with
         * {@link ExecHandle#recv()} have no such limit: they are flow-controlled.
         */
        public Builder maxOutputBytes(long maxOutputBytes) {
            if (maxOutputBytes <= 0) {
                throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "maxOutputBytes must be positive, got " + maxOutputBytes);
            }
            this.maxOutputBytes = maxOutputBytes;
            return this;
        }

        /**
         * Kill the process after this long and fail with {@link ErrorKind#EXEC_TIMEOUT} (a stream
         * then ends without an exit); null, the default, waits as long as it runs.
         *
         * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} when zero or negative
         */
        public Builder timeout(Duration timeout) {
            if (timeout != null && (timeout.isZero() || timeout.isNegative())) {
                throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "timeout must be positive (or null for none), got " + timeout);
            }
            this.timeout = timeout;
            return this;
        }

        /** Feed these bytes to stdin, then close it. */
        public Builder stdin(byte[] stdin) {
            this.stdin = stdin.clone();
            return this;
        }

        /** Feed this UTF-8 text to stdin, then close it. */
        public Builder stdin(String stdin) {
            return stdin(stdin.getBytes(StandardCharsets.UTF_8));
        }

        /** Give the process a stdin pipe the caller writes through {@link ExecHandle#stdin()}. */
        public Builder stdinPipe() {
            this.stdinPipe = true;
            return this;
        }

        /** Run the process on a pseudo terminal of the given size. */
        public Builder tty(int rows, int cols) {
            this.tty = true;
            this.rows = rows;
            this.cols = cols;
            return this;
        }

        public ExecOptions build() {
            // what the guest agent would drop or cut silently: the same checks as SandboxConfig's
            for (String problem : new String[] {
                    GuestLimits.directoryProblem("cwd", cwd),
                    GuestLimits.userProblem(user),
                    GuestLimits.envProblem(env)}) {
                if (problem != null) {
                    throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, problem);
                }
            }
            if (timeout != null && (timeout.isNegative() || timeout.isZero())) {
                throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "timeout must be positive, got " + timeout);
            }
            if (stdin != null && stdinPipe) {
                throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "stdin bytes and stdinPipe are mutually exclusive");
            }
            if (tty && (rows < 1 || cols < 1 || rows > 65535 || cols > 65535)) {
                throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "tty size must be 1..65535, got " + rows + "x" + cols);
            }
            return new ExecOptions(this);
        }
    }
}

package io.microsandbox.spring;

import io.microsandbox.ErrorKind;
import io.microsandbox.ExecOptions;
import io.microsandbox.ExecOutput;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.spring.pool.ExecObserver;
import io.microsandbox.spring.pool.Lease;
import io.microsandbox.spring.pool.SandboxSource;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.UUID;
import java.util.function.Function;

/**
 * The default {@link SandboxOperations}: borrows from a {@link SandboxSource} (the pool), runs,
 * translates core errors into {@link SandboxAccessException}s and observes every command.
 * Thread-safe; the {@code with...} copies are cheap.
 */
public class SandboxTemplate implements SandboxOperations {

    /** Longest run of the commands that write and remove the code file of {@link #run} with stdin: they only handle a file. */
    private static final Duration FILE_STEP_TIMEOUT = Duration.ofSeconds(10);

    private final SandboxSource source;
    private final ExecObserver observer;
    private final Duration timeout;
    private final Map<String, String> env;
    private final String cwd;
    private final String stdin;
    /** The most output a command's result may hold; 0 for the core's default. */
    private final long maxOutputBytes;
    /** The lease a callback works on, or null outside {@link #execute}. */
    private final Lease bound;

    /**
     * A template over {@code source} (a pool, or sandboxes booted on demand).
     *
     * @param observer told of every command (metrics, tracing); null for none
     * @param defaultTimeout the time limit of every command unless {@link #withTimeout} says
     *        otherwise; null or zero for none
     * @throws SandboxAccessException {@link ErrorKind#INVALID_ARGUMENT} when {@code defaultTimeout} is negative
     */
    public SandboxTemplate(SandboxSource source, ExecObserver observer, Duration defaultTimeout) {
        this(source, observer == null ? ExecObserver.NOOP : observer, checkedTimeout(defaultTimeout), Map.of(), null, null, 0, null);
    }

    private SandboxTemplate(SandboxSource source, ExecObserver observer, Duration timeout, Map<String, String> env,
                            String cwd, String stdin, long maxOutputBytes, Lease bound) {
        this.source = source;
        this.observer = observer;
        this.timeout = timeout;
        this.env = env;
        this.cwd = cwd;
        this.stdin = stdin;
        this.maxOutputBytes = maxOutputBytes;
        this.bound = bound;
    }

    /** Null for no limit; a negative one is refused: a typo must not lift the limit on untrusted code. */
    private static Duration checkedTimeout(Duration timeout) {
        if (timeout != null && timeout.isNegative()) {
            throw new SandboxAccessException(ErrorKind.INVALID_ARGUMENT, "a timeout must not be negative, got " + timeout.toMillis()
                    + " ms; zero or null means none", null);
        }
        return timeout == null || timeout.isZero() ? null : timeout;
    }

    @Override
    public SandboxTemplate withTimeout(Duration timeout) {
        return new SandboxTemplate(source, observer, checkedTimeout(timeout), env, cwd, stdin, maxOutputBytes, bound);
    }

    @Override
    public SandboxTemplate withMaxOutputBytes(long maxOutputBytes) {
        if (maxOutputBytes <= 0) {
            throw new SandboxAccessException(ErrorKind.INVALID_ARGUMENT, "maxOutputBytes must be positive, got " + maxOutputBytes, null);
        }
        return new SandboxTemplate(source, observer, timeout, env, cwd, stdin, maxOutputBytes, bound);
    }

    @Override
    public SandboxTemplate withEnv(Map<String, String> more) {
        Map<String, String> merged = new LinkedHashMap<>(env);
        merged.putAll(more);
        return new SandboxTemplate(source, observer, timeout, Map.copyOf(merged), cwd, stdin, maxOutputBytes, bound);
    }

    @Override
    public SandboxTemplate withCwd(String cwd) {
        return new SandboxTemplate(source, observer, timeout, env, cwd, stdin, maxOutputBytes, bound);
    }

    @Override
    public SandboxTemplate withStdin(String stdin) {
        return new SandboxTemplate(source, observer, timeout, env, cwd, stdin, maxOutputBytes, bound);
    }

    @Override
    public ExecOutput exec(String command, List<String> args) {
        return call("exec", (sb, opts) -> sb.exec(command, args, opts.build()));
    }

    @Override
    public ExecOutput shell(String script) {
        return call("shell", (sb, opts) -> sb.shell(script, opts.build()));
    }

    @Override
    public ExecOutput run(String language, String code) {
        String interpreter = interpreter(language);
        return call("run", (sb, opts) -> {
            if (stdin == null) {
                // the code is the interpreter's stdin: no quoting, no argument length limit
                return sb.exec(interpreter, List.of("-"), opts.stdin(code.getBytes(StandardCharsets.UTF_8)).build());
            }
            // stdin belongs to the program: write the code to a file first
            String file = "/tmp/msb-run-" + UUID.randomUUID() + extension(interpreter);
            ExecOutput written = sb.exec("sh", List.of("-c", "cat > \"$1\"", "sh", file),
                    ExecOptions.builder().stdin(code).timeout(fileStepTimeout()).build());
            if (written.exitCode() != 0) {
                throw new SandboxExecutionFailedException(ErrorKind.EXEC_FAILED,
                        "cannot write the code to " + file + ": " + written.stderr(), null);
            }
            boolean sandboxDiscarded = false;
            try {
                return sb.exec(interpreter, List.of(file), opts.build());
            } catch (MicrosandboxException e) {
                // the file goes with the sandbox; a removal would only wait on a sandbox that may not answer
                sandboxDiscarded = discardsTheSandbox(translate(e));
                throw e;
            } finally {
                if (!sandboxDiscarded) {
                    try {
                        sb.exec("rm", List.of("-f", file), ExecOptions.builder().timeout(fileStepTimeout()).build());
                    } catch (MicrosandboxException ignored) {
                        // the run's own error tells more
                    }
                }
            }
        });
    }

    /** The time limit of a code file step: {@link #FILE_STEP_TIMEOUT}, or the template's timeout when shorter. */
    private Duration fileStepTimeout() {
        return timeout != null && timeout.compareTo(FILE_STEP_TIMEOUT) < 0 ? timeout : FILE_STEP_TIMEOUT;
    }

    /** Whether a command's failure makes its sandbox unfit to lend again (timed out, lost). */
    private static boolean discardsTheSandbox(SandboxAccessException e) {
        return e instanceof SandboxTimeoutException || e instanceof SandboxLostException;
    }

    private static String interpreter(String language) {
        if (language == null) {
            throw new SandboxAccessException(ErrorKind.INVALID_ARGUMENT, "language must not be null", null);
        }
        return switch (language.toLowerCase(Locale.ROOT)) {
            case "python", "python3", "py" -> "python3";
            case "sh", "shell" -> "sh";
            case "bash" -> "bash";
            default -> throw new SandboxAccessException(ErrorKind.INVALID_ARGUMENT,
                    "unsupported language '" + language + "'; supported: python, sh, bash", null);
        };
    }

    private static String extension(String interpreter) {
        return interpreter.equals("python3") ? ".py" : ".sh";
    }

    @Override
    public <T> T execute(SandboxCallback<T> callback) {
        if (bound != null) {
            return onBound(() -> callback.doInSandbox(this));
        }
        Lease lease = borrow();
        try {
            return callback.doInSandbox(new SandboxTemplate(source, observer, timeout, env, cwd, stdin, maxOutputBytes, lease));
        } finally {
            source.giveBack(lease);
        }
    }

    /**
     * Runs a step of a template bound to a callback's sandbox: refused once the callback has
     * returned (the sandbox may be another borrower's by now).
     */
    private <T> T onBound(java.util.function.Supplier<T> step) {
        if (!bound.beginUse()) {
            throw new SandboxAccessException(ErrorKind.INVALID_HANDLE, "this template was bound to sandbox '" + bound.name()
                    + "' for one execute(...) callback, which has returned it to the pool; use the template outside the callback instead", null);
        }
        try {
            return step.get();
        } finally {
            bound.endUse();
        }
    }

    /** The sandbox a callback works on; null outside {@link #execute}. */
    public String sandboxName() {
        return bound == null ? null : bound.name();
    }

    private Lease borrow() {
        try {
            return source.borrow();
        } catch (MicrosandboxException e) {
            throw translate(e);
        }
    }

    private interface Step {
        ExecOutput run(Sandbox sandbox, ExecOptions.Builder options);
    }

    private ExecOutput call(String operation, Step step) {
        Function<Lease, ExecOutput> onLease = lease -> {
            ExecOptions.Builder opts = ExecOptions.builder().env(env);
            if (cwd != null) {
                opts.cwd(cwd);
            }
            if (timeout != null) {
                opts.timeout(timeout);
            }
            if (stdin != null) {
                opts.stdin(stdin);
            }
            if (maxOutputBytes > 0) {
                opts.maxOutputBytes(maxOutputBytes);
            }
            long t0 = System.nanoTime();
            ExecOutput out = null;
            RuntimeException error = null;
            try {
                out = step.run(lease.sandbox(), opts);
                return out;
            } catch (MicrosandboxException e) {
                SandboxAccessException translated = translate(e);
                if (discardsTheSandbox(translated)) {
                    lease.markBroken(translated instanceof SandboxTimeoutException ? "timeout" : "lost");
                }
                error = translated;
                throw translated;
            } catch (RuntimeException e) {
                error = e;
                throw e;
            } finally {
                source.recordExec(System.nanoTime() - t0, ExecObserver.outcome(out, error));
            }
        };
        return observer.observe(source.name(), operation, () -> {
            if (bound != null) {
                return onBound(() -> onLease.apply(bound));
            }
            Lease lease = borrow();
            try {
                return onLease.apply(lease);
            } finally {
                source.giveBack(lease);
            }
        });
    }

    /** The exception of the hierarchy that fits a core error. */
    public static SandboxAccessException translate(MicrosandboxException e) {
        ErrorKind kind = e.kind();
        return switch (kind) {
            case EXEC_TIMEOUT -> new SandboxTimeoutException(kind, e.getMessage()
                    + "; raise microsandbox.exec-timeout, or give this call more with withTimeout(...)", e);
            case EXEC_FAILED -> new SandboxExecutionFailedException(kind, e.getMessage(), e);
            case CANCELLED -> new SandboxInterruptedException(kind, e.getMessage(), e);
            case SANDBOX_NOT_RUNNING, SANDBOX_NOT_FOUND, INVALID_HANDLE, IO, INTERNAL, UNKNOWN, BOOT_FAILED ->
                    new SandboxLostException(kind, e.getMessage(), e);
            default -> new SandboxAccessException(kind, e.getMessage(), e);
        };
    }
}

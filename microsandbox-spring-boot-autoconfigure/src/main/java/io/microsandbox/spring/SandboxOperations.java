package io.microsandbox.spring;

import io.microsandbox.ExecOutput;
import java.time.Duration;
import java.util.List;
import java.util.Map;

/**
 * Runs commands in pooled sandboxes, in the spirit of {@code JdbcTemplate}: each call borrows a
 * sandbox, runs, and gives it back. {@link #execute(SandboxCallback)} keeps one sandbox for
 * several steps. The {@code with...} methods return a copy with per-call options:
 *
 * <pre>{@code
 * ExecOutput out = template.withTimeout(Duration.ofSeconds(5)).run("python", "print(6*7)");
 * }</pre>
 *
 * Errors are {@link SandboxAccessException}s.
 */
public interface SandboxOperations {

    /** Runs a program with arguments (no shell involved). */
    ExecOutput exec(String command, List<String> args);

    default ExecOutput exec(String command, String... args) {
        return exec(command, List.of(args));
    }

    /** Runs a script with the sandbox's shell ({@code sh -c script}). */
    ExecOutput shell(String script);

    /**
     * Runs source code in a language: {@code python} (python3) or {@code sh}/{@code bash}. The code
     * goes to the interpreter on stdin, or as a file when stdin is taken ({@link #withStdin}),
     * never spliced into a shell line.
     */
    ExecOutput run(String language, String code);

    /**
     * Lends one sandbox to the callback for several steps and always gives it back. The
     * operations passed to the callback are for the callback only: once it has returned they
     * refuse work ({@link io.microsandbox.ErrorKind#INVALID_HANDLE}), and a sandbox still in use
     * by work the callback started on another thread is discarded, never lent again.
     */
    <T> T execute(SandboxCallback<T> callback);

    /**
     * A copy whose commands are killed after {@code timeout} (then {@link SandboxTimeoutException});
     * null or zero: no time limit.
     *
     * @throws SandboxAccessException {@link io.microsandbox.ErrorKind#INVALID_ARGUMENT} when negative
     */
    SandboxOperations withTimeout(Duration timeout);

    /**
     * A copy whose commands may print up to {@code maxOutputBytes} (stdout and stderr together)
     * into their {@link ExecOutput}; one that prints more is killed and fails with
     * {@link SandboxExecutionFailedException}. The default is 16 MiB.
     *
     * @throws SandboxAccessException {@link io.microsandbox.ErrorKind#INVALID_ARGUMENT} when not positive;
     *         {@link io.microsandbox.ErrorKind#UNSUPPORTED_OPERATION} from an implementation that predates it
     */
    default SandboxOperations withMaxOutputBytes(long maxOutputBytes) {
        throw new SandboxAccessException(io.microsandbox.ErrorKind.UNSUPPORTED_OPERATION,
                getClass().getName() + " does not implement withMaxOutputBytes", null);
    }

    /** A copy that adds these environment variables to its commands. */
    SandboxOperations withEnv(Map<String, String> env);

    /** A copy whose commands run in this directory. */
    SandboxOperations withCwd(String cwd);

    /** A copy whose commands read this text on stdin. */
    SandboxOperations withStdin(String stdin);
}

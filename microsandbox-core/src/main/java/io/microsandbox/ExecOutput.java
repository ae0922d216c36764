package io.microsandbox;

import java.nio.charset.StandardCharsets;

/**
 * The collected result of a finished command.
 */
public final class ExecOutput {
    private final int exitCode;
    private final byte[] stdout;
    private final byte[] stderr;

    public ExecOutput(int exitCode, byte[] stdout, byte[] stderr) {
        this.exitCode = exitCode;
        this.stdout = stdout.clone();
        this.stderr = stderr.clone();
    }

    /** Exit code; 128 + n when the process was ended by signal n. */
    public int exitCode() {
        return exitCode;
    }

    /** Whether the exit code is 0. */
    public boolean success() {
        return exitCode == 0;
    }

    /** Standard output decoded as UTF-8 (malformed bytes are replaced). */
    public String stdout() {
        return new String(stdout, StandardCharsets.UTF_8);
    }

    /** Standard error decoded as UTF-8 (malformed bytes are replaced). */
    public String stderr() {
        return new String(stderr, StandardCharsets.UTF_8);
    }

    /** Raw standard output. */
    public byte[] stdoutBytes() {
        return stdout.clone();
    }

    /** Raw standard error. */
    public byte[] stderrBytes() {
        return stderr.clone();
    }

    @Override
    public String toString() {
        return "ExecOutput[exitCode=" + exitCode + ", stdout=" + stdout.length + " bytes, stderr="
                + stderr.length + " bytes]";
    }
}

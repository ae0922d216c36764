package io.microsandbox.ssh;

import java.nio.charset.StandardCharsets;

/**
 * What a command run through {@link SandboxSshClient#exec(String)} left: its exit status and output.
 *
 * @param exitStatus the status the server reported (128 + n for a command killed by signal n)
 * @param stdout     standard output
 * @param stderr     standard error
 */
public record SshExecResult(int exitStatus, byte[] stdout, byte[] stderr) {
    /** Standard output as UTF-8 text. */
    public String stdoutText() {
        return new String(stdout, StandardCharsets.UTF_8);
    }

    /** Standard error as UTF-8 text. */
    public String stderrText() {
        return new String(stderr, StandardCharsets.UTF_8);
    }
}

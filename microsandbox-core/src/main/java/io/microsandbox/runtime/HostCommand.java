package io.microsandbox.runtime;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Runs a host tool (mke2fs, debugfs, qemu-img, QEMU itself) to its end or its timeout. The
 * tools read files a guest or an image author made, so none may hang the caller: the output
 * goes to an owner-only temporary file rather than a pipe (reading a pipe to its end waits for
 * every process holding it, which a hung tool or a child it left never closes, so a timeout
 * checked after the read never comes), stdin is {@code /dev/null}, and a tool still running at
 * the timeout is killed.
 */
public final class HostCommand {

    /** How a command ended: its exit code and its output (stdout and stderr together). */
    public record Result(int exitCode, String output) {
        public boolean succeeded() {
            return exitCode == 0;
        }
    }

    private HostCommand() {
    }

    /** {@link #run(List, Map, Duration, int)} with the inherited environment. */
    public static Result run(List<String> command, Duration timeout, int maxOutputBytes) throws IOException {
        return run(command, Map.of(), timeout, maxOutputBytes);
    }

    /**
     * Runs {@code command} with {@code extraEnv} added to the environment.
     *
     * @throws IOException when it cannot start, runs past {@code timeout} (it is killed), writes
     *         more than {@code maxOutputBytes}, or the thread is interrupted (it is killed, and
     *         the interrupt flag is set again)
     */
    public static Result run(List<String> command, Map<String, String> extraEnv, Duration timeout, int maxOutputBytes)
            throws IOException {
        Path out = Files.createTempFile("msb-cmd-", ".out"); // rw------- on POSIX
        try {
            ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true)
                    .redirectOutput(out.toFile()).redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
            pb.environment().putAll(extraEnv);
            Process p = pb.start();
            try {
                if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                    p.destroyForcibly();
                    throw new IOException(command.get(0) + " did not finish within " + timeout);
                }
            } catch (InterruptedException e) {
                p.destroyForcibly();
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while running " + command.get(0), e);
            }
            byte[] bytes;
            try (InputStream in = Files.newInputStream(out)) {
                bytes = in.readNBytes(maxOutputBytes + 1);
            }
            if (bytes.length > maxOutputBytes) {
                throw new IOException(command.get(0) + " wrote more than " + maxOutputBytes + " bytes of output");
            }
            return new Result(p.exitValue(), new String(bytes, StandardCharsets.UTF_8));
        } finally {
            Files.deleteIfExists(out);
        }
    }
}

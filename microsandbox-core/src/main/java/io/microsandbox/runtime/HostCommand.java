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
 * the timeout, or past its output limit, is killed with the processes it started.
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
            long deadline = System.nanoTime() + timeout.toNanos();
            try {
                // the output is checked as it grows: a tool that writes without end fills the temporary
                // directory (often memory) long before its timeout
                while (!p.waitFor(Math.min(OUTPUT_CHECK_MS, Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime()))),
                        TimeUnit.MILLISECONDS)) {
                    if (Files.size(out) > maxOutputBytes) {
                        kill(p);
                        throw tooMuchOutput(command, maxOutputBytes);
                    }
                    if (System.nanoTime() - deadline >= 0) {
                        kill(p);
                        throw new IOException(command.get(0) + " did not finish within " + timeout);
                    }
                }
            } catch (InterruptedException e) {
                kill(p);
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while running " + command.get(0), e);
            }
            byte[] bytes;
            try (InputStream in = Files.newInputStream(out)) {
                bytes = in.readNBytes(maxOutputBytes + 1);
            }
            if (bytes.length > maxOutputBytes) {
                throw tooMuchOutput(command, maxOutputBytes);
            }
            return new Result(p.exitValue(), new String(bytes, StandardCharsets.UTF_8));
        } finally {
            Files.deleteIfExists(out);
        }
    }

    /** How often a running tool's output is measured. */
    private static final long OUTPUT_CHECK_MS = 200;
    /** How long a killed tool is given to be gone (a kill is not refused; the kernel may take a moment). */
    private static final long KILL_WAIT_MS = 5_000;

    private static IOException tooMuchOutput(List<String> command, int maxOutputBytes) {
        return new IOException(command.get(0) + " wrote more than " + maxOutputBytes + " bytes of output");
    }

    /**
     * Kills the tool and what it started (taken before the tool dies: its children are then
     * init's), and waits until the tool is gone, so that a disk it wrote is no longer being written.
     */
    private static void kill(Process p) {
        List<ProcessHandle> children = p.descendants().toList();
        p.destroyForcibly();
        children.forEach(ProcessHandle::destroyForcibly);
        try {
            p.onExit().get(KILL_WAIT_MS, TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
            // gone or not, the caller reports the failure that made it kill the tool
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}

package io.microsandbox.runtime;

import io.microsandbox.runtime.supervisor.ExecLog;
import io.microsandbox.runtime.supervisor.Supervisor;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * Where one sandbox keeps its state under the home directory:
 * {@code sandboxes/<name>/} for disks, config and logs, and {@code run/<hash>/} for its
 * sockets (a hash of the name keeps socket paths under the 108-byte limit). All of it is the
 * owner's only (see {@link #createDirectories(Path)}).
 *
 * @param name       sandbox name
 * @param dir        state directory
 * @param runDir     socket directory
 */
public record SandboxLayout(String name, Path dir, Path runDir) {

    /** The layout of sandbox {@code name} under {@code home}. */
    public static SandboxLayout of(Path home, String name) {
        return new SandboxLayout(name, home.resolve("sandboxes").resolve(name),
                home.resolve("run").resolve(shortHash(name)));
    }

    public Path upperDisk() {
        return dir.resolve("upper.ext4");
    }

    /**
     * The supervisor's latest metrics sample (JSON: {@code host} and {@code guest} figures),
     * rewritten every second while the sandbox runs; read by {@code SandboxHandle.metrics()}.
     */
    public Path metricsFile() {
        return runDir.resolve("metrics.json");
    }

    public Path specFile() {
        return dir.resolve("supervisor.json");
    }

    public Path logsDir() {
        return dir.resolve("logs");
    }

    /**
     * The guest serial console: kernel messages and agent diagnostics, at most
     * {@code ConsoleRecorder.ROTATE_BYTES} here and as much again in {@code kernel.log.1}.
     */
    public Path consoleLog() {
        return logsDir().resolve("kernel.log");
    }

    /** QEMU's own stdout and stderr. */
    public Path vmmLog() {
        return logsDir().resolve("vmm.log");
    }

    /** Output of every exec session, as JSON lines (see {@link ExecLog}). */
    public Path execLog() {
        return logsDir().resolve("exec.log");
    }

    public Path supervisorLog() {
        return logsDir().resolve("supervisor.log");
    }

    /** Socket the SDK clients connect to. */
    public Path agentSocket() {
        return runDir.resolve("agent.sock");
    }

    /** Socket QEMU's agent-port chardev connects to. */
    public Path vmSocket() {
        return runDir.resolve("vm.sock");
    }

    /** QEMU monitor (QMP) socket, for pause, resume and snapshots. */
    public Path qmpSocket() {
        return runDir.resolve("qmp.sock");
    }

    /** QEMU's second monitor socket, kept connected by the supervisor's statistics sampler. */
    public Path statsMonitorSocket() {
        return runDir.resolve("qmp-stats.sock");
    }

    /** Socket QEMU's serial console connects to; the supervisor writes what comes to {@link #consoleLog()}. */
    public Path consoleSocket() {
        return runDir.resolve("console.sock");
    }

    /** Supervisor pid, present while it runs. */
    public Path pidFile() {
        return runDir.resolve("supervisor.pid");
    }

    /**
     * Creates the state, logs and socket directories, and makes them, the directories between
     * them and {@code home}, and the logs a previous run left, accessible to their owner only
     * (directories {@code 0700}, files {@code 0600}), whatever the umask.
     */
    public void createDirectories(Path home) throws IOException {
        OwnerOnly.directories(home, logsDir());
        OwnerOnly.directories(home, runDir());
        for (Path log : new Path[] {consoleLog(), vmmLog(), execLog(), ExecLog.rotated(execLog()), supervisorLog()}) {
            OwnerOnly.restrictFileIfExists(log);
        }
    }

    /** Deletes every file of this sandbox: its state directory and its socket directory. */
    public void deleteFiles() {
        SandboxPreparer.deleteTree(runDir);
        ClaimedDirectory.delete(dir);
    }

    public static String shortHash(String name) {
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(name.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(digest, 0, 8);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}

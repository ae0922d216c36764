package io.microsandbox.runtime.supervisor;

import io.microsandbox.SandboxStatus;
import io.microsandbox.runtime.LogTail;
import io.microsandbox.runtime.Posix;
import java.nio.file.Path;
import java.util.Locale;

/** Decides how a run ended from what the supervisor saw, in the order that explains it best. */
final class RunRecorder {
    private RunRecorder() {
    }

    /**
     * How a run ended.
     *
     * @param status   stopped or crashed
     * @param reason   the termination reason recorded in the run table
     * @param exitCode the VMM's exit code, when it exited
     * @param signal   the signal that killed the VMM, when one did
     */
    record Outcome(SandboxStatus status, String reason, Integer exitCode, Integer signal) {
        String statusName() {
            return status.name().toLowerCase(Locale.ROOT);
        }
    }

    /**
     * @param waitStatus     the VMM's raw wait status
     * @param stopReason     the reason of the first stop request, or null when none was made
     * @param killRequested  whether a client asked for a kill
     * @param agentFailure   what went wrong with the agent, or null
     * @param consoleLog     the guest console, searched for a kernel panic
     */
    static Outcome decide(int waitStatus, String stopReason, boolean killRequested, String agentFailure, Path consoleLog) {
        boolean exitedNormally = waitStatus != -1 && Posix.exited(waitStatus);
        Integer exitCode = exitedNormally ? Posix.exitCode(waitStatus) : null;
        Integer signal = waitStatus != -1 && !exitedNormally ? Posix.termSignal(waitStatus) : null;
        if (stopReason != null) {
            return new Outcome(SandboxStatus.STOPPED, stopReason, exitCode, signal);
        }
        if (killRequested) {
            return new Outcome(SandboxStatus.STOPPED, "signal", exitCode, signal);
        }
        if (agentFailure != null) {
            return new Outcome(SandboxStatus.CRASHED, "agent-unresponsive", exitCode, signal);
        }
        if (exitedNormally && exitCode == 0 && !LogTail.of(consoleLog, 60).contains("Kernel panic")) {
            // the guest powered itself off (e.g. `poweroff` inside it)
            return new Outcome(SandboxStatus.STOPPED, "completed", exitCode, signal);
        }
        return new Outcome(SandboxStatus.CRASHED, signal != null ? "signal" : "failed", exitCode, signal);
    }
}

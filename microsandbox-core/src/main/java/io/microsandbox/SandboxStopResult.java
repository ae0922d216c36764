package io.microsandbox;

import java.time.Instant;

/**
 * How a sandbox ended, as observed by {@link Sandbox#waitUntilStopped()}.
 *
 * @param name       sandbox name
 * @param status     {@link SandboxStatus#STOPPED} or {@link SandboxStatus#CRASHED}
 * @param exitCode   exit code of the VMM process when it exited normally, else null
 * @param signal     signal that ended the VMM process, else null
 * @param reason     why it ended, e.g. {@code shutdown-requested}, {@code signal}, {@code failed}
 * @param observedAt when the end was observed
 * @param source     who observed it: {@code supervisor} or {@code client}
 */
public record SandboxStopResult(String name, SandboxStatus status, Integer exitCode, Integer signal,
                                String reason, Instant observedAt, String source) {
    /** The end the supervisor reported in {@code sup.exited}; null when it names no terminal status this SDK knows. */
    static SandboxStopResult reported(String name, io.microsandbox.runtime.agent.Frame exited) {
        String status = exited.text("status");
        SandboxStatus known = status == null ? null : java.util.Arrays.stream(SandboxStatus.values())
                .filter(s -> s.isTerminal() && s.name().equalsIgnoreCase(status)).findFirst().orElse(null);
        if (known == null) {
            return null;
        }
        return new SandboxStopResult(name, known, toInteger(exited.number("exit_code")), toInteger(exited.number("signal")),
                exited.text("reason"), Instant.now(), "supervisor");
    }

    /** An ephemeral sandbox that has ended: it left no record to read its end from. */
    static SandboxStopResult withoutRecord(String name) {
        return new SandboxStopResult(name, SandboxStatus.STOPPED, null, null, "completed", Instant.now(), "client");
    }

    private static Integer toInteger(Long value) {
        return value == null ? null : value.intValue();
    }
}

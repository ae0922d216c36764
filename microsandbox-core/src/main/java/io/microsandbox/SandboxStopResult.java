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
}

package io.microsandbox.store;

import java.time.Instant;

/**
 * One boot of a sandbox: who ran it and, once it ended, how.
 *
 * @param status   terminal status ({@code stopped}, {@code crashed}) or null while it runs
 * @param reason   termination reason, e.g. {@code shutdown-requested}, {@code idle-timeout}
 * @param source   who recorded the end: {@code supervisor} or {@code client}
 */
public record RunRecord(long id, Long supervisorPid, Long vmmPid, Instant startedAt, Instant terminatedAt,
                        String status, Integer exitCode, Integer signal, String reason, String source) {
}

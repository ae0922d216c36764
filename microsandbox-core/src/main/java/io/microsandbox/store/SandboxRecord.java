package io.microsandbox.store;

import java.time.Instant;
import java.util.Map;

/**
 * One row of the sandbox table with its labels and latest run.
 *
 * @param lastRun the latest run, or null when the sandbox never booted
 */
public record SandboxRecord(String name, String configJson, String status, boolean ephemeral,
                            Instant createdAt, Instant updatedAt, Map<String, String> labels, RunRecord lastRun) {
}

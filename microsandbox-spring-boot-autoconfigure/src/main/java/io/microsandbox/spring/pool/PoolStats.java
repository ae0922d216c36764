package io.microsandbox.spring.pool;

/**
 * Counts of a pool at one moment.
 *
 * @param idle                 booted, waiting to be lent
 * @param active               lent
 * @param pending              booting
 * @param waiting              borrowers waiting for a sandbox
 * @param consecutiveBootFailures failures since the last successful boot
 * @param totalBootFailures    failures since the pool started
 * @param lastBootError        the last boot failure's message, or null
 */
public record PoolStats(int idle, int active, int pending, int waiting, int minIdle, int maxSize,
                        long consecutiveBootFailures, long totalBootFailures, String lastBootError) {
}

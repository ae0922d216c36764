package io.microsandbox.spring.pool;

/**
 * Counts of a pool at one moment.
 *
 * @param idle                 booted, waiting to be lent
 * @param active               lent
 * @param pending              booting
 * @param stopping             out of the pool and still stopping (drained, discarded); their VMs still count toward max-size
 * @param waiting              borrowers waiting for a sandbox
 * @param consecutiveBootFailures failures since the last successful boot
 * @param totalBootFailures    failures since the pool started
 * @param lastBootError        the last boot failure's message, or null
 */
public record PoolStats(int idle, int active, int pending, int stopping, int waiting, int minIdle, int maxSize,
                        long consecutiveBootFailures, long totalBootFailures, String lastBootError) {
}

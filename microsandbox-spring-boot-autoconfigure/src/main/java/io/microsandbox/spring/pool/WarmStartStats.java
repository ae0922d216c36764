package io.microsandbox.spring.pool;

/**
 * How a pool has started its members, for health and the actuator endpoint.
 *
 * @param mode                 boot or checkpoint ({@code microsandbox.pool.warm-start})
 * @param booted               members booted cold since the pool started
 * @param restored             members restored from the checkpoint since the pool started
 * @param checkpoint           the checkpoint's directory while the pool has a usable one, else null
 * @param checkpointsTaken     checkpoints taken since the pool started (1 unless one became unusable)
 * @param checkpointRefreshes  checkpoints dropped because a restore from them failed (another QEMU or
 *                             kernel, missing or corrupt files); the next member then boots cold
 * @param lastCheckpointError  why the last checkpoint was dropped or could not be taken, or null
 */
public record WarmStartStats(String mode, long booted, long restored, String checkpoint, long checkpointsTaken,
                             long checkpointRefreshes, String lastCheckpointError) {
}

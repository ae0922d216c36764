package io.microsandbox;

/** What {@link Sandbox#checkpoint(String, AfterCheckpoint)} does with the sandbox once its state is saved. */
public enum AfterCheckpoint {
    /** It runs on, as if nothing happened (it was paused for the time the checkpoint took). */
    RESUME,
    /** It stops gracefully, as {@link Sandbox#stop()} would. */
    STOP
}

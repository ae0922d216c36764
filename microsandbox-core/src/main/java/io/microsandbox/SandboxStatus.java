package io.microsandbox;

/** Lifecycle status of a sandbox. */
public enum SandboxStatus {
    /** The guest agent is ready; exec works. */
    RUNNING,
    /** The VM shut down; its configuration and upper disk remain. */
    STOPPED,
    /** The VM ended without being asked to (kernel panic, VMM killed, supervisor lost). */
    CRASHED,
    /** Running commands finish, new ones are refused, then the sandbox stops. */
    DRAINING,
    /** The VM is paused. */
    PAUSED;

    /** The lower-case name used in the database and on the wire, e.g. {@code running}. */
    public String wireName() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }

    /** The status for a wire name. */
    public static SandboxStatus fromWireName(String name) {
        return valueOf(name.toUpperCase(java.util.Locale.ROOT));
    }

    /** Whether the sandbox has ended. */
    public boolean isTerminal() {
        return this == STOPPED || this == CRASHED;
    }
}

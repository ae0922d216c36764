package io.microsandbox;

/** Sandbox-wide in-guest security profile, see {@link SandboxConfig.Builder#securityProfile(SecurityProfile)}. */
public enum SecurityProfile {
    /** Normal guest-root semantics. */
    DEFAULT("default"),
    /**
     * Stronger hardening: every command runs with {@code no_new_privs} (set-user-id bits and
     * file capabilities do not elevate) and without {@code CAP_SYS_ADMIN} (no mounts) or
     * {@code CAP_SYS_PTRACE} (no way into the agent), and
     * the configured mounts are forced {@code nosuid,nodev}.
     */
    RESTRICTED("restricted");

    private final String value;

    SecurityProfile(String value) {
        this.value = value;
    }

    /** The wire and JSON form: {@code default} or {@code restricted}. */
    public String value() {
        return value;
    }

    /** The profile of a wire value; null or empty reads as {@link #DEFAULT}. */
    public static SecurityProfile parse(String value) {
        if (value == null || value.isEmpty()) {
            return DEFAULT;
        }
        for (SecurityProfile p : values()) {
            if (p.value.equals(value)) {
                return p;
            }
        }
        throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "unknown security profile '" + value + "' (default or restricted)");
    }
}

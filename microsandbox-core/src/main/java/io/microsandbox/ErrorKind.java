package io.microsandbox;

/**
 * What went wrong, as carried by {@link MicrosandboxException#kind()}. The names mirror the
 * error kinds of the microsandbox SDKs so that code can branch on them portably.
 */
public enum ErrorKind {
    UNKNOWN,
    SANDBOX_NOT_FOUND,
    SANDBOX_NOT_RUNNING,
    SANDBOX_ALREADY_EXISTS,
    SANDBOX_STILL_RUNNING,
    VOLUME_NOT_FOUND,
    VOLUME_ALREADY_EXISTS,
    /** A volume cannot be removed while a sandbox mounts it. */
    VOLUME_IN_USE,
    EXEC_TIMEOUT,
    EXEC_FAILED,
    FILESYSTEM,
    PATH_NOT_FOUND,
    IMAGE_NOT_FOUND,
    IMAGE_IN_USE,
    IMAGE_PULL_FAILED,
    SNAPSHOT_NOT_FOUND,
    SNAPSHOT_ALREADY_EXISTS,
    SNAPSHOT_SANDBOX_RUNNING,
    SNAPSHOT_IMAGE_MISSING,
    SNAPSHOT_INTEGRITY,
    /** A memory checkpoint made by another QEMU, machine, kernel or agent than the runtime restoring it. */
    SNAPSHOT_INCOMPATIBLE,
    PATCH_FAILED,
    NETWORK_POLICY,
    SECRET_VIOLATION,
    TLS,
    IO,
    INVALID_CONFIG,
    INVALID_ARGUMENT,
    INVALID_HANDLE,
    CANCELLED,
    LIBRARY_NOT_LOADED,
    METRICS_UNAVAILABLE,
    UNSUPPORTED_OPERATION,
    /** A limit of the runtime was reached, such as the 255 clients one sandbox serves at a time; try again later. */
    RESOURCE_LIMIT,
    /** The VM did not boot: missing VMM or kernel, guest panic, or no agent within the boot timeout. */
    BOOT_FAILED,
    INTERNAL;

    /** The snake_case wire name of this kind, e.g. {@code sandbox_not_found}. */
    public String wireName() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }

    /** The kind for a wire name; {@link #UNKNOWN} for names this version does not know. */
    public static ErrorKind fromWireName(String name) {
        if (name == null) {
            return UNKNOWN;
        }
        try {
            return valueOf(name.toUpperCase(java.util.Locale.ROOT));
        } catch (IllegalArgumentException e) {
            return UNKNOWN;
        }
    }
}

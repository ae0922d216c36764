package io.microsandbox;

/**
 * What went wrong, as carried by {@link MicrosandboxException#kind()}. The names mirror the
 * error kinds of the microsandbox SDKs so that code can branch on them portably.
 */
public enum ErrorKind {
    /** A kind a newer peer sent that this version does not know. */
    UNKNOWN,
    /** No sandbox of that name in this runtime's home. */
    SANDBOX_NOT_FOUND,
    /** The sandbox is stopped, stopping or draining, or its supervisor is gone. */
    SANDBOX_NOT_RUNNING,
    /** A sandbox of that name exists already (see {@code SandboxConfig.Builder.replace()}). */
    SANDBOX_ALREADY_EXISTS,
    /** The operation needs a stopped sandbox (remove, start, a disk snapshot). */
    SANDBOX_STILL_RUNNING,
    /** No volume of that name. */
    VOLUME_NOT_FOUND,
    /** A volume of that name exists already. */
    VOLUME_ALREADY_EXISTS,
    /** A volume cannot be removed while a sandbox mounts it. */
    VOLUME_IN_USE,
    /** A command ran past its {@code ExecOptions.timeout} and was killed. */
    EXEC_TIMEOUT,
    /** A command could not be started, or printed more than its {@code maxOutputBytes}. */
    EXEC_FAILED,
    /** A file operation in the guest failed; {@link FilesystemException} names the reason and the path. */
    FILESYSTEM,
    /** A path an operation needs does not exist: in the guest (a {@link FilesystemException}) or on the host. */
    PATH_NOT_FOUND,
    /** The image is not cached (and may not be pulled), or its directory, layout or archive is missing. */
    IMAGE_NOT_FOUND,
    /** A cached image cannot be removed while a sandbox uses it. */
    IMAGE_IN_USE,
    /** The registry refused or failed the pull, or what it served does not verify. */
    IMAGE_PULL_FAILED,
    /** No snapshot or checkpoint of that name. */
    SNAPSHOT_NOT_FOUND,
    /** A snapshot or checkpoint of that name exists already. */
    SNAPSHOT_ALREADY_EXISTS,
    /** A disk snapshot needs a stopped sandbox. */
    SNAPSHOT_SANDBOX_RUNNING,
    /** The image a snapshot was taken over is no longer cached. */
    SNAPSHOT_IMAGE_MISSING,
    /** A snapshot's or checkpoint's files are missing or do not match what was recorded. */
    SNAPSHOT_INTEGRITY,
    /** A memory checkpoint made by another QEMU, machine, kernel or agent than the runtime restoring it. */
    SNAPSHOT_INCOMPATIBLE,
    /** A patch of the root filesystem could not be applied. */
    PATCH_FAILED,
    /**
     * Kept for code shared with the other microsandbox SDKs; this runtime never throws it: a
     * connection the policy denies is reset in the guest and logged as a {@code system} entry.
     */
    NETWORK_POLICY,
    /**
     * Kept for code shared with the other microsandbox SDKs; this runtime never throws it: a
     * secret sent where it is not allowed resets the connection, or stops the sandbox with the
     * reason {@code secret-violation} ({@code Secret.Violation}).
     */
    SECRET_VIOLATION,
    /** TLS interception cannot start: its CA or its libraries. */
    TLS,
    /** An I/O error on the host. */
    IO,
    /** A configuration that cannot work; the message names the field. */
    INVALID_CONFIG,
    /** An argument out of its range; the message names it. */
    INVALID_ARGUMENT,
    /** The handle was closed or detached; connect again. */
    INVALID_HANDLE,
    /** The calling thread was interrupted; the sandbox is not affected. */
    CANCELLED,
    /** Kept for code shared with the other microsandbox SDKs, whose native library may fail to load; never thrown here. */
    LIBRARY_NOT_LOADED,
    /** No metrics sample of the sandbox is fresh enough. */
    METRICS_UNAVAILABLE,
    /** The operation does not apply here (a paused sandbox, no terminal, an open command during a checkpoint). */
    UNSUPPORTED_OPERATION,
    /**
     * A limit was reached, such as the 255 clients one sandbox serves at a time, or a command
     * that cannot start now (the guest out of processes or files, or not reading its channel);
     * try again later.
     */
    RESOURCE_LIMIT,
    /** The VM did not boot: missing VMM or kernel, guest panic, or no agent within the boot timeout. */
    BOOT_FAILED,
    /** A fault of the runtime itself, or a supervisor that answered nothing in time. */
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

package io.microsandbox.spring;

import io.microsandbox.ErrorKind;

/**
 * No sandbox became free within {@code microsandbox.pool.acquire-timeout} ({@code RESOURCE_LIMIT}),
 * or the pool has closed ({@code SANDBOX_NOT_RUNNING}: the application is shutting down).
 */
public class SandboxPoolExhaustedException extends SandboxAccessException {

    public SandboxPoolExhaustedException(ErrorKind kind, String message, Throwable cause) {
        super(kind, message, cause);
    }
}

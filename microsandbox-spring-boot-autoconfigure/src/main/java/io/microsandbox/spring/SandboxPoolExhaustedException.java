package io.microsandbox.spring;

import io.microsandbox.ErrorKind;

/** No sandbox became free within {@code microsandbox.pool.acquire-timeout}. */
public class SandboxPoolExhaustedException extends SandboxAccessException {

    public SandboxPoolExhaustedException(ErrorKind kind, String message, Throwable cause) {
        super(kind, message, cause);
    }
}

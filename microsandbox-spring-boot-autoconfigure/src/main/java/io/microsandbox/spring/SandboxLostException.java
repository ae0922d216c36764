package io.microsandbox.spring;

import io.microsandbox.ErrorKind;

/**
 * The sandbox stopped answering or crashed while lent (it is discarded and never lent again),
 * or one booted on demand for the call failed to boot ({@code BOOT_FAILED}).
 */
public class SandboxLostException extends SandboxAccessException {

    public SandboxLostException(ErrorKind kind, String message, Throwable cause) {
        super(kind, message, cause);
    }
}

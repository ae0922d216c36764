package io.microsandbox.spring;

import io.microsandbox.ErrorKind;

/** A command ran past its time limit and was killed; the sandbox it ran in is discarded. */
public class SandboxTimeoutException extends SandboxAccessException {

    public SandboxTimeoutException(ErrorKind kind, String message, Throwable cause) {
        super(kind, message, cause);
    }
}

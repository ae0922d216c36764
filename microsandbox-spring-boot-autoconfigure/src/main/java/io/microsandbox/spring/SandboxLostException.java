package io.microsandbox.spring;

import io.microsandbox.ErrorKind;

/** The sandbox stopped answering or crashed while lent; it is discarded and never lent again. */
public class SandboxLostException extends SandboxAccessException {

    public SandboxLostException(ErrorKind kind, String message, Throwable cause) {
        super(kind, message, cause);
    }
}

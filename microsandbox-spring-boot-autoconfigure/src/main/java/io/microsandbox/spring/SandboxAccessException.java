package io.microsandbox.spring;

import io.microsandbox.ErrorKind;

/**
 * Root of the exceptions {@link SandboxOperations} throws. It carries the core {@link ErrorKind}
 * (also when a subclass says more) and wraps the core
 * {@link io.microsandbox.MicrosandboxException} as its cause, when there is one.
 */
public class SandboxAccessException extends RuntimeException {

    private final ErrorKind kind;

    public SandboxAccessException(ErrorKind kind, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind == null ? ErrorKind.UNKNOWN : kind;
    }

    /** What went wrong, in the core's terms. */
    public ErrorKind getKind() {
        return kind;
    }
}

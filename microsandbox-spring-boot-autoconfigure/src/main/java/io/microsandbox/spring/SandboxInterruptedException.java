package io.microsandbox.spring;

import io.microsandbox.ErrorKind;

/**
 * The calling thread was interrupted while it waited for a sandbox or for a command; its
 * interrupt status is kept. The sandbox is not affected: the command is ended and the sandbox
 * goes back to the pool.
 */
public class SandboxInterruptedException extends SandboxAccessException {

    public SandboxInterruptedException(ErrorKind kind, String message, Throwable cause) {
        super(kind, message, cause);
    }
}

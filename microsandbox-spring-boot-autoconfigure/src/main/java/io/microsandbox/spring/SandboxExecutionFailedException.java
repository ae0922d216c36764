package io.microsandbox.spring;

import io.microsandbox.ErrorKind;

/** A command could not be run (program not found, bad working directory, unknown user...). The sandbox is fine and goes back to the pool. */
public class SandboxExecutionFailedException extends SandboxAccessException {

    public SandboxExecutionFailedException(ErrorKind kind, String message, Throwable cause) {
        super(kind, message, cause);
    }
}

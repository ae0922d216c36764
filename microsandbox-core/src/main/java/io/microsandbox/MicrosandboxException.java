package io.microsandbox;

/**
 * The one exception type of this library. {@link #kind()} tells what went wrong; the message
 * names the sandbox, path or command involved and, for boot failures, ends with the tail of
 * the guest console.
 */
public class MicrosandboxException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final ErrorKind kind;

    /** A failure of {@code kind}; the message names what failed and, where it can, what to do. */
    public MicrosandboxException(ErrorKind kind, String message) {
        super(message);
        this.kind = kind;
    }

    /** A failure of {@code kind} caused by {@code cause}. */
    public MicrosandboxException(ErrorKind kind, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
    }

    /** The kind of failure. */
    public ErrorKind kind() {
        return kind;
    }

    @Override
    public String toString() {
        return "MicrosandboxException[" + kind.wireName() + "]: " + getMessage();
    }
}

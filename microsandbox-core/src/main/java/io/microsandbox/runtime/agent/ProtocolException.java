package io.microsandbox.runtime.agent;

import java.io.IOException;

/** The peer sent bytes that are not a valid frame; the link that carried them must be closed. */
public final class ProtocolException extends IOException {
    private static final long serialVersionUID = 1L;

    public ProtocolException(String message) {
        super(message);
    }

    public ProtocolException(String message, Throwable cause) {
        super(message, cause);
    }
}

package io.microsandbox.spring.autoconfigure;

/**
 * Start-up failure caused by the {@code microsandbox.*} configuration or the host installation;
 * {@link MicrosandboxFailureAnalyzer} turns it into a description and an action.
 */
public class MicrosandboxConfigurationException extends RuntimeException {

    private final String action;

    public MicrosandboxConfigurationException(String description, String action, Throwable cause) {
        super(description, cause);
        this.action = action;
    }

    /** What to change. */
    public String getAction() {
        return action;
    }
}

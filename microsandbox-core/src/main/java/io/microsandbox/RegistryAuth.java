package io.microsandbox;

import java.util.Objects;

/**
 * Credentials for a private OCI registry: sent as HTTP basic auth, or exchanged for a bearer
 * token when the registry asks for one. Never persisted with the sandbox configuration.
 */
public record RegistryAuth(String username, String password) {
    public RegistryAuth {
        Objects.requireNonNull(username, "username");
        Objects.requireNonNull(password, "password");
    }

    @Override
    public String toString() {
        return "RegistryAuth[username=" + username + ", password=***]";
    }
}

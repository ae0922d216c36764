package io.microsandbox.ssh;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.nio.file.Path;
import java.security.PublicKey;
import java.util.ArrayList;
import java.util.List;

/**
 * How {@link SandboxSsh#server(SshServerOptions)} sets up an SSH endpoint. The endpoint always
 * listens on 127.0.0.1 and only takes public-key authentication: with no key given, a key
 * pair is generated under the sandbox's directory in the home and returned by
 * {@link SshServerEndpoint#clientKeyFile()}.
 *
 * <pre>{@code
 * SshServerOptions.builder().port(2222).authorizedKeys(Path.of(System.getProperty("user.home"), ".ssh/id_ed25519.pub")).build()
 * }</pre>
 */
public final class SshServerOptions {
    private final int port;
    private final List<PublicKey> authorizedKeys;
    private final List<Path> authorizedKeyFiles;

    private SshServerOptions(Builder b) {
        this.port = b.port;
        this.authorizedKeys = List.copyOf(b.authorizedKeys);
        this.authorizedKeyFiles = List.copyOf(b.authorizedKeyFiles);
    }

    /** Defaults: a free port, a generated key pair. */
    public static SshServerOptions defaults() {
        return builder().build();
    }

    /** A builder with the defaults. */
    public static Builder builder() {
        return new Builder();
    }

    /** The port on 127.0.0.1, 0 for a free one. */
    public int port() {
        return port;
    }

    /** Keys given directly. */
    public List<PublicKey> authorizedKeys() {
        return authorizedKeys;
    }

    /** {@code authorized_keys} or {@code .pub} files whose keys may log in. */
    public List<Path> authorizedKeyFiles() {
        return authorizedKeyFiles;
    }

    /** Whether the caller gave no key, so the endpoint generates a key pair. */
    public boolean generatesKeyPair() {
        return authorizedKeys.isEmpty() && authorizedKeyFiles.isEmpty();
    }

    /** Builder of {@link SshServerOptions}. */
    public static final class Builder {
        private int port;
        private final List<PublicKey> authorizedKeys = new ArrayList<>();
        private final List<Path> authorizedKeyFiles = new ArrayList<>();

        private Builder() {
        }

        /** Listen on this port of 127.0.0.1 (1-65535), or 0 (the default) for a free one. */
        public Builder port(int port) {
            if (port < 0 || port > 65535) {
                throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "SSH port " + port + " is not within 0-65535");
            }
            this.port = port;
            return this;
        }

        /** A public key that may log in; may be called several times. */
        public Builder authorizedKey(PublicKey key) {
            authorizedKeys.add(java.util.Objects.requireNonNull(key, "key"));
            return this;
        }

        /**
         * An OpenSSH {@code authorized_keys} file (or a single {@code .pub} file) whose keys may
         * log in; read when the endpoint starts. May be called several times. A key with options
         * ({@code command=}, {@code restrict}, ...) makes the start fail: they would not be enforced.
         */
        public Builder authorizedKeys(Path file) {
            authorizedKeyFiles.add(java.util.Objects.requireNonNull(file, "file"));
            return this;
        }

        /** The options; keys are checked when the endpoint starts. */
        public SshServerOptions build() {
            return new SshServerOptions(this);
        }
    }
}

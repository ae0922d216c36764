package io.microsandbox.ssh;

import io.microsandbox.Sandbox;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.security.PublicKey;
import java.util.List;
import java.util.Optional;
import org.apache.sshd.server.SshServer;

/**
 * A running SSH server on 127.0.0.1 whose sessions run in one sandbox (from
 * {@link SandboxSsh#server(SshServerOptions)}): {@code ssh -p PORT root@127.0.0.1 'uname -a'},
 * interactive logins with a pty, and SFTP (so {@code sftp} and {@code scp}, which speaks SFTP
 * since OpenSSH 9) with no sshd inside the guest. The login name is the guest user the
 * session runs as. Only public keys authenticate. It closes with the sandbox handle that made
 * it, or when the sandbox ends.
 */
public final class SshServerEndpoint implements AutoCloseable {
    /** The only address an endpoint listens on. */
    public static final String HOST = "127.0.0.1";

    private final SshServer server;
    private final List<PublicKey> authorizedKeys;
    private final PublicKey hostKey;
    private final Path clientKeyFile;

    /** The handle that closes this endpoint when it goes; told when the endpoint is closed first. */
    private final Sandbox owner;

    SshServerEndpoint(SshServer server, List<PublicKey> authorizedKeys, PublicKey hostKey, Path clientKeyFile, Sandbox owner) {
        this.owner = owner;
        this.server = server;
        this.authorizedKeys = List.copyOf(authorizedKeys);
        this.hostKey = hostKey;
        this.clientKeyFile = clientKeyFile;
    }

    /** {@value #HOST}. */
    public String host() {
        return HOST;
    }

    /** The port it listens on (the free one chosen, when the options asked for 0). */
    public int port() {
        return server.getPort();
    }

    /** The keys that may log in. */
    public List<PublicKey> authorizedKeys() {
        return authorizedKeys;
    }

    /**
     * The server's host key, kept (OpenSSH format, owner-only) in the sandbox's directory so
     * that it stays the same across endpoints of one sandbox.
     */
    public PublicKey hostKey() {
        return hostKey;
    }

    /**
     * The private key generated for this sandbox (OpenSSH format, {@code 0600}, public half
     * beside it as {@code .pub}) when the options named no key: pass it to {@code ssh -i}.
     * Empty when the caller's keys were used.
     */
    public Optional<Path> clientKeyFile() {
        return Optional.ofNullable(clientKeyFile);
    }

    /** Whether it still listens (false once closed, with its handle, or after the sandbox ended). */
    public boolean isOpen() {
        return server.isOpen();
    }

    /** Stops listening and ends every session (their guest processes are killed). Idempotent. */
    @Override
    public void close() {
        try {
            server.stop(true);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot stop the SSH server on port " + port(), e);
        } finally {
            owner.forget(this);
        }
    }

    @Override
    public String toString() {
        return "SshServerEndpoint[" + HOST + ":" + port() + "]";
    }
}

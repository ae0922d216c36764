package io.microsandbox.ssh;

import io.microsandbox.ErrorKind;
import io.microsandbox.ExecOptions;
import io.microsandbox.ExecOutput;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.runtime.SandboxLayout;
import java.io.IOException;
import java.nio.file.FileSystem;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.PublicKey;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.WeakHashMap;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.sshd.client.SshClient;
import org.apache.sshd.client.session.ClientSession;
import org.apache.sshd.common.config.keys.KeyUtils;
import org.apache.sshd.common.file.FileSystemFactory;
import org.apache.sshd.common.keyprovider.KeyPairProvider;
import org.apache.sshd.common.session.SessionContext;
import org.apache.sshd.core.CoreModuleProperties;
import org.apache.sshd.server.SshServer;
import org.apache.sshd.server.auth.pubkey.KeySetPublickeyAuthenticator;
import org.apache.sshd.server.auth.pubkey.UserAuthPublicKeyFactory;
import org.apache.sshd.server.forward.RejectAllForwardingFilter;
import org.apache.sshd.sftp.server.SftpSubsystemFactory;

/**
 * SSH for one running sandbox, from {@link Sandbox#ssh()}: a host-side SSH server bridged to
 * the guest agent ({@link #server(SshServerOptions)}), so the OpenSSH tools work with no sshd
 * in the guest, and an in-process client of such a server ({@link #openClient()}).
 *
 * <pre>{@code
 * SshServerEndpoint ep = sandbox.ssh().server();
 * // ssh -p ep.port() -i ep.clientKeyFile().get() root@127.0.0.1 'uname -a'
 * try (SandboxSshClient ssh = sandbox.ssh().openClient()) {
 *     SshExecResult r = ssh.exec("uname -a");
 * }
 * }</pre>
 */
public final class SandboxSsh {
    /** How long connecting, authenticating and opening a channel of the in-process client may take. */
    static final Duration CONNECT_TIMEOUT = Duration.ofSeconds(30);
    /** How long a command's output waits for an SSH client to read: for as long as the channel is open. */
    private static final Duration OUTPUT_WAIT = Duration.ofDays(365);
    /** How many users' homes are remembered. */
    private static final int KNOWN_HOMES = 64;

    private final Sandbox sandbox;
    /** Home directories of guest users, looked up once per user (SFTP starts there). */
    private final Map<String, String> homes = new ConcurrentHashMap<>();

    /** Usually obtained with {@link Sandbox#ssh()}. */
    public SandboxSsh(Sandbox sandbox) {
        this.sandbox = sandbox;
    }

    /** {@link #server(SshServerOptions)} with a free port and a generated key pair. */
    public SshServerEndpoint server() {
        return server(SshServerOptions.defaults());
    }

    /**
     * Starts an SSH server on 127.0.0.1 whose sessions run in this sandbox: exec requests
     * (with their exit status), shells (with a pty when asked), and the SFTP subsystem over
     * the guest's files. The login name is the guest user. Only the authorized keys (or the
     * generated pair, see {@link SshServerEndpoint#clientKeyFile()}) log in; passwords and
     * keyboard-interactive logins are not offered. The endpoint closes with this sandbox handle.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} when the given key files
     *         hold no key or cannot be read, {@link ErrorKind#IO} when the port cannot be bound
     */
    public SshServerEndpoint server(SshServerOptions options) {
        Path dir = SandboxLayout.of(sandbox.runtime().home(), sandbox.name()).dir().resolve("ssh");
        List<PublicKey> keys = new ArrayList<>(options.authorizedKeys());
        Path clientKey = null;
        KeyPair hostKey;
        try {
            for (Path file : options.authorizedKeyFiles()) {
                keys.addAll(SshKeys.readAuthorized(file));
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, e.getMessage(), e);
        }
        try {
            synchronized (SandboxSsh.class) {
                hostKey = SshKeys.loadOrCreate(dir.resolve("host_key"), "microsandbox host key of " + sandbox.name());
                if (options.generatesKeyPair()) {
                    clientKey = dir.resolve("id_ecdsa");
                    keys.add(SshKeys.loadOrCreate(clientKey, "microsandbox client key of " + sandbox.name()).getPublic());
                }
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot prepare the SSH keys in " + dir + ": " + e.getMessage(), e);
        }
        if (keys.isEmpty()) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "the authorized key files " + options.authorizedKeyFiles()
                    + " hold no key: nobody could log in");
        }
        SshServer server = SshServer.setUpDefaultServer();
        // interactive traffic on loopback: Nagle's algorithm against delayed ACKs costs ~40 ms a round trip
        CoreModuleProperties.TCP_NODELAY.set(server, true);
        // as OpenSSH's sshd: a silent command or an idle shell keeps its session (sshd's default
        // ends it after 10 minutes, killing the command), and output waits for a client that
        // reads slowly (sshd's default gives up after 30 s, which ended the command too)
        CoreModuleProperties.IDLE_TIMEOUT.set(server, Duration.ZERO);
        CoreModuleProperties.WAIT_FOR_SPACE_TIMEOUT.set(server, OUTPUT_WAIT);
        server.setHost(SshServerEndpoint.HOST);
        server.setPort(options.port());
        server.setKeyPairProvider(KeyPairProvider.wrap(hostKey));
        // public keys only: no password, keyboard-interactive, GSS or host-based logins
        server.setUserAuthFactories(List.of(UserAuthPublicKeyFactory.INSTANCE));
        server.setPasswordAuthenticator(null);
        server.setKeyboardInteractiveAuthenticator(null);
        server.setGSSAuthenticator(null);
        server.setHostBasedAuthenticator(null);
        server.setPublickeyAuthenticator(new KeySetPublickeyAuthenticator("sandbox " + sandbox.name(), keys));
        // the server runs on the host: forwarding would reach the host's network, not the guest's
        server.setForwardingFilter(RejectAllForwardingFilter.INSTANCE);
        server.setAgentFactory(null);
        server.setShellFactory(channel -> new GuestSession(sandbox, null));
        server.setCommandFactory((channel, command) -> new GuestSession(sandbox, command));
        SftpSubsystemFactory sftp = new SftpSubsystemFactory.Builder().withFileSystemAccessor(new GuestSftpAccessor()).build();
        sftp.addSftpEventListener(new GuestSftpAccessor.UnclosedWrites());
        server.setSubsystemFactories(List.of(sftp));
        server.setFileSystemFactory(new GuestFileSystems());
        startOrRelease(server, "sandbox " + sandbox.name());
        SshServerEndpoint endpoint = new SshServerEndpoint(server, keys, hostKey.getPublic(), clientKey, sandbox);
        sandbox.closeWith(endpoint);
        return endpoint;
    }

    /**
     * Starts {@code server}; when it cannot (the port is taken), closes it again, since a failed
     * start leaves its I/O threads and executors running.
     */
    static void startOrRelease(SshServer server, String forWhat) {
        try {
            server.start();
        } catch (IOException | RuntimeException e) {
            // close, not stop: stop() does nothing for a server whose start did not finish
            try {
                if (!server.close(true).await(CONNECT_TIMEOUT)) {
                    e.addSuppressed(new IOException("the SSH server's threads did not stop within " + CONNECT_TIMEOUT));
                }
            } catch (IOException | RuntimeException close) {
                e.addSuppressed(close);
            }
            throw new MicrosandboxException(ErrorKind.IO, "cannot start an SSH server on " + SshServerEndpoint.HOST + ":" + server.getPort()
                    + " for " + forWhat + ": " + e.getMessage(), e);
        }
    }

    /** {@link #openClient(String)} as the sandbox's configured user, or root. */
    public SandboxSshClient openClient() {
        String user = sandbox.config().user();
        return openClient(user == null ? "root" : user);
    }

    /**
     * An SSH client session, logged in as {@code user}, to a private endpoint of this sandbox
     * (its own key pair, kept in memory; the host key is checked against the endpoint's).
     * Closing the client closes the endpoint.
     *
     * @throws MicrosandboxException {@link ErrorKind#IO} when connecting or logging in fails
     */
    public SandboxSshClient openClient(String user) {
        KeyPair pair = SshKeys.generate();
        SshServerEndpoint endpoint = server(SshServerOptions.builder().authorizedKey(pair.getPublic()).build());
        SshClient client = SshClient.setUpDefaultClient();
        CoreModuleProperties.TCP_NODELAY.set(client, true);
        // a client held and used now and then stays open; exec has its own timeout
        CoreModuleProperties.IDLE_TIMEOUT.set(client, Duration.ZERO);
        client.setServerKeyVerifier((session, address, key) -> KeyUtils.compareKeys(key, endpoint.hostKey()));
        try {
            client.start();
            ClientSession session = client.connect(user, SshServerEndpoint.HOST, endpoint.port()).verify(CONNECT_TIMEOUT).getSession();
            session.addPublicKeyIdentity(pair);
            session.auth().verify(CONNECT_TIMEOUT);
            return new SandboxSshClient(client, session, endpoint);
        } catch (IOException | RuntimeException e) {
            client.stop();
            endpoint.close();
            throw new MicrosandboxException(ErrorKind.IO, "cannot open an SSH session to sandbox " + sandbox.name() + ": " + e.getMessage(), e);
        }
    }

    /** One guest file system per SFTP session, as its user, starting in the user's home. */
    private final class GuestFileSystems implements FileSystemFactory {
        private final GuestFileSystemProvider provider = new GuestFileSystemProvider(sandbox);
        private final Map<SessionContext, GuestFileSystem> bySession = new WeakHashMap<>();

        @Override
        public Path getUserHomeDir(SessionContext session) {
            return fileSystem(session).getDefaultDir();
        }

        @Override
        public FileSystem createFileSystem(SessionContext session) {
            return fileSystem(session);
        }

        private GuestFileSystem fileSystem(SessionContext session) {
            synchronized (this) {
                GuestFileSystem known = bySession.get(session);
                if (known != null) {
                    return known;
                }
            }
            // the home is a guest command (up to 30 s): looked up outside the lock, so one slow
            // guest answer never holds up other sessions' starts
            String home = home(session.getUsername());
            synchronized (this) {
                return bySession.computeIfAbsent(session, s -> provider.newFileSystem(s.getUsername(), home));
            }
        }
    }

    /**
     * The user's home as the guest sees it ($HOME of a command run as the user), or / when it
     * cannot be told. Remembered for up to {@link #KNOWN_HOMES} users (login names are the
     * client's choice); a lookup that failed (a busy guest) is tried again next time.
     */
    private String home(String user) {
        String known = homes.get(user);
        if (known != null) {
            return known;
        }
        String home;
        try {
            ExecOutput out = sandbox.exec("printenv", List.of("HOME"), ExecOptions.builder().user(user).timeout(Duration.ofSeconds(30)).build());
            String printed = out.stdout().strip();
            home = out.success() && printed.startsWith("/") ? printed : "/";
        } catch (MicrosandboxException e) {
            return "/";
        }
        if (homes.size() >= KNOWN_HOMES) {
            return home;
        }
        String raced = homes.putIfAbsent(user, home);
        return raced != null ? raced : home;
    }
}

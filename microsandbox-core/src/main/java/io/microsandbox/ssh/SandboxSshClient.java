package io.microsandbox.ssh;

import io.microsandbox.ErrorKind;
import io.microsandbox.ExecOptions;
import io.microsandbox.MicrosandboxException;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.time.Duration;
import java.util.EnumSet;
import java.util.Set;
import org.apache.sshd.client.SshClient;
import org.apache.sshd.client.channel.ChannelExec;
import org.apache.sshd.client.channel.ChannelShell;
import org.apache.sshd.client.channel.ClientChannelEvent;
import org.apache.sshd.client.session.ClientSession;
import org.apache.sshd.sftp.client.SftpClient;
import org.apache.sshd.sftp.client.SftpClientFactory;

/**
 * An in-process SSH session to a sandbox (from {@link SandboxSsh#openClient()}), a thin layer
 * over Apache MINA SSHD's client: {@link #exec(String)} with the exit status, {@link #shell}
 * with a pty, {@link #sftp()} for files, and {@link #session()} for anything else sshd offers.
 * Closing it ends the session and the private endpoint it was connected to.
 */
public final class SandboxSshClient implements AutoCloseable {
    /** How long {@link #exec(String)} waits for the command by default. */
    public static final Duration DEFAULT_EXEC_TIMEOUT = Duration.ofMinutes(10);

    private final SshClient client;
    private final ClientSession session;
    private final SshServerEndpoint endpoint;

    SandboxSshClient(SshClient client, ClientSession session, SshServerEndpoint endpoint) {
        this.client = client;
        this.session = session;
        this.endpoint = endpoint;
    }

    /** The authenticated sshd session. */
    public ClientSession session() {
        return session;
    }

    /** {@link #exec(String, Duration)} with {@link #DEFAULT_EXEC_TIMEOUT}. */
    public SshExecResult exec(String command) {
        return exec(command, DEFAULT_EXEC_TIMEOUT);
    }

    /**
     * Runs {@code command} (a shell command line, as with {@code ssh host 'command'}) and
     * collects its output, at most {@link ExecOptions#DEFAULT_MAX_OUTPUT_BYTES} of each stream.
     *
     * @throws MicrosandboxException {@link ErrorKind#EXEC_TIMEOUT} after {@code timeout} (the
     *         channel is closed, which kills the command), {@link ErrorKind#EXEC_FAILED} when
     *         the output is too long or no exit status came, {@link ErrorKind#IO} when the
     *         channel fails
     */
    public SshExecResult exec(String command, Duration timeout) {
        try (ChannelExec channel = session.createExecChannel(command)) {
            // past the output limit the command is ended at once, as Sandbox.exec does
            Runnable end = () -> channel.close(true);
            Bounded out = new Bounded(end);
            Bounded err = new Bounded(end);
            channel.setOut(out);
            channel.setErr(err);
            // stdin at its end, as with `ssh host 'command' </dev/null`: a command reading it ends instead of waiting
            channel.setIn(InputStream.nullInputStream());
            channel.open().verify(SandboxSsh.CONNECT_TIMEOUT);
            Set<ClientChannelEvent> events = channel.waitFor(EnumSet.of(ClientChannelEvent.CLOSED), timeout.toMillis());
            if (out.overflow || err.overflow) {
                throw new MicrosandboxException(ErrorKind.EXEC_FAILED, "'" + command + "' wrote more than "
                        + ExecOptions.DEFAULT_MAX_OUTPUT_BYTES + " bytes to a stream; it was ended");
            }
            if (events.contains(ClientChannelEvent.TIMEOUT)) {
                throw new MicrosandboxException(ErrorKind.EXEC_TIMEOUT, "'" + command + "' did not finish within " + timeout);
            }
            Integer status = channel.getExitStatus();
            if (status == null) {
                throw new MicrosandboxException(ErrorKind.EXEC_FAILED, "'" + command + "' ended without an exit status"
                        + (channel.getExitSignal() != null ? " (signal " + channel.getExitSignal() + ")" : ""));
            }
            return new SshExecResult(status, out.toByteArray(), err.toByteArray());
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "SSH exec of '" + command + "' failed: " + e.getMessage(), e);
        }
    }

    /**
     * Opens an interactive shell on a pty of {@code rows} x {@code cols} ({@code xterm}). The
     * channel's streams are inverted: write keys to {@link ChannelShell#getInvertedIn()}, read the
     * screen from {@link ChannelShell#getInvertedOut()}; {@link ChannelShell#sendWindowChange}
     * resizes it, {@link ChannelShell#getExitStatus()} tells how it ended. Close it when done.
     */
    public ChannelShell shell(int rows, int cols) {
        try {
            ChannelShell channel = session.createShellChannel();
            channel.setPtyType("xterm");
            channel.setPtyLines(rows);
            channel.setPtyColumns(cols);
            channel.open().verify(SandboxSsh.CONNECT_TIMEOUT);
            return channel;
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot open an SSH shell: " + e.getMessage(), e);
        }
    }

    /** An SFTP client on this session (sshd's {@link SftpClient}); close it when done. */
    public SftpClient sftp() {
        try {
            return SftpClientFactory.instance().createSftpClient(session);
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot open an SFTP session: " + e.getMessage(), e);
        }
    }

    /** Ends the session, the client and the endpoint. Idempotent. */
    @Override
    public void close() {
        try {
            session.close(true);
        } finally {
            try {
                client.stop();
            } finally {
                endpoint.close();
            }
        }
    }

    /** Collects up to the exec output limit; past it, the rest is dropped, the overflow noted and reported once. */
    private static final class Bounded extends ByteArrayOutputStream {
        private final Runnable onOverflow;
        volatile boolean overflow;

        Bounded(Runnable onOverflow) {
            this.onOverflow = onOverflow;
        }

        @Override
        public synchronized void write(byte[] b, int off, int len) {
            if (overflow) {
                return;
            }
            if (count + (long) len > ExecOptions.DEFAULT_MAX_OUTPUT_BYTES) {
                overflow = true;
                onOverflow.run();
                return;
            }
            super.write(b, off, len);
        }

        @Override
        public synchronized void write(int b) {
            write(new byte[] {(byte) b}, 0, 1);
        }
    }
}

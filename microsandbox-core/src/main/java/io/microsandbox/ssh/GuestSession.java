package io.microsandbox.ssh;

import io.microsandbox.ExecEvent;
import io.microsandbox.ExecHandle;
import io.microsandbox.ExecOptions;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.sshd.server.Environment;
import org.apache.sshd.server.ExitCallback;
import org.apache.sshd.server.Signal;
import org.apache.sshd.server.channel.ChannelSession;
import org.apache.sshd.server.command.Command;

/**
 * One SSH exec or shell request, run in the guest through the agent's exec sessions: the
 * channel's input feeds the process's stdin, its stdout and stderr go back on the channel,
 * its exit status ends it. A pty request makes it a tty session of the requested size, and
 * window changes resize it. The SSH user is the guest user the process runs as.
 */
final class GuestSession implements Command {
    /** Environment entries sshd sets from the pty request or the login, not for the guest. */
    private static final Set<String> NOT_PASSED = Set.of(Environment.ENV_USER, Environment.ENV_LINES, Environment.ENV_COLUMNS);
    /** What a shell reports when a command cannot be found or run. */
    private static final int NOT_FOUND = 127;
    private static final int CANNOT_RUN = 126;

    private final Sandbox sandbox;
    /** The command line for an exec request (run with the configured shell's -c); null for a login shell. */
    private final String commandLine;
    private InputStream in;
    private OutputStream out;
    private OutputStream err;
    private ExitCallback exit;
    private volatile ExecHandle handle;

    GuestSession(Sandbox sandbox, String commandLine) {
        this.sandbox = sandbox;
        this.commandLine = commandLine;
    }

    @Override
    public void setInputStream(InputStream in) {
        this.in = in;
    }

    @Override
    public void setOutputStream(OutputStream out) {
        this.out = out;
    }

    @Override
    public void setErrorStream(OutputStream err) {
        this.err = err;
    }

    @Override
    public void setExitCallback(ExitCallback callback) {
        this.exit = callback;
    }

    @Override
    public void start(ChannelSession channel, Environment env) throws IOException {
        Map<String, String> vars = env.getEnv();
        boolean pty = vars.containsKey(Environment.ENV_LINES) && vars.containsKey(Environment.ENV_COLUMNS);
        ExecOptions.Builder options = ExecOptions.builder().stdinPipe().user(channel.getSession().getUsername());
        vars.forEach((k, v) -> {
            if (!NOT_PASSED.contains(k)) {
                options.env(k, v);
            }
        });
        if (pty) {
            options.tty(size(vars, Environment.ENV_LINES, 24), size(vars, Environment.ENV_COLUMNS, 80));
        }
        String what = commandLine == null ? "a shell" : "'" + commandLine + "'";
        try {
            ExecOptions built = options.build();
            handle = commandLine == null
                    ? sandbox.execStream(sandbox.config().shell(), List.of(), built)
                    : sandbox.shellStream(commandLine, built);
        } catch (MicrosandboxException e) {
            report("msb: cannot run " + what + " in sandbox " + sandbox.name() + ": " + e.getMessage(), pty);
            exit.onExit(CANNOT_RUN, e.getMessage());
            return;
        }
        if (pty) {
            env.addSignalListener((ch, signal) -> {
                Map<String, String> now = env.getEnv();
                try {
                    handle.resize(size(now, Environment.ENV_LINES, 24), size(now, Environment.ENV_COLUMNS, 80));
                } catch (MicrosandboxException e) {
                    // the process has ended: nothing to resize
                }
            }, Signal.WINCH);
        }
        OutputStream stdin = handle.takeStdin().orElseThrow();
        thread("ssh-output-" + sandbox.name(), () -> pumpOutput(pty, what)).start();
        thread("ssh-input-" + sandbox.name(), () -> pumpInput(stdin)).start();
    }

    /** Events to the channel until the process has ended; then the exit status. */
    private void pumpOutput(boolean pty, String what) {
        int status = CANNOT_RUN;
        String message = null;
        ExecHandle h = handle;
        try {
            ExecEvent event;
            while ((event = h.recv()) != null) {
                if (event instanceof ExecEvent.Stdout o) {
                    out.write(o.data());
                    out.flush();
                } else if (event instanceof ExecEvent.Stderr e) {
                    err.write(e.data());
                    err.flush();
                } else if (event instanceof ExecEvent.Exited x) {
                    status = x.code();
                } else if (event instanceof ExecEvent.Failed f) {
                    status = "not_found".equals(f.kind()) ? NOT_FOUND : CANNOT_RUN;
                    message = f.message();
                    report("msb: cannot run " + what + ": " + f.kind() + " (" + f.message() + ")", pty);
                }
            }
        } catch (IOException e) {
            // the client went away: the process goes too (closing the handle kills it)
            message = "channel closed: " + e.getMessage();
        } catch (RuntimeException e) {
            // the sandbox went away (or anything else): the client still gets an end
            message = e.getMessage();
            report("msb: " + what + " ended without an exit status: " + e, pty);
        } finally {
            h.close();
            exit.onExit(status, message == null ? "" : message);
        }
    }

    /** The channel's input to the process's stdin; EOF from the client closes it. */
    private void pumpInput(OutputStream stdin) {
        byte[] buf = new byte[32 * 1024];
        try {
            int n;
            while ((n = in.read(buf)) >= 0) {
                stdin.write(buf, 0, n);
                stdin.flush();
            }
            stdin.close();
        } catch (IOException | RuntimeException e) {
            // the process closed its stdin or ended, the channel closed, or the sandbox went away:
            // nothing more to forward, and the output side reports how the process ended
        }
    }

    private void report(String message, boolean pty) {
        try {
            err.write((message + (pty ? "\r\n" : "\n")).getBytes(StandardCharsets.UTF_8));
            err.flush();
        } catch (IOException e) {
            // the client is gone; the exit status still says it failed
        }
    }

    @Override
    public void destroy(ChannelSession channel) {
        ExecHandle h = handle;
        if (h != null) {
            h.close();
        }
    }

    private static int size(Map<String, String> vars, String key, int fallback) {
        try {
            int v = Integer.parseInt(vars.getOrDefault(key, ""));
            return v > 0 && v <= 10_000 ? v : fallback;
        } catch (NumberFormatException e) {
            return fallback;
        }
    }

    /** A daemon thread; nothing it does may end it silently (its body catches what it expects). */
    private static Thread thread(String name, Runnable body) {
        Thread t = new Thread(body, "msb-" + name);
        t.setDaemon(true);
        return t;
    }
}

package io.microsandbox;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.agent.AgentClient;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.agent.Protocol;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.time.Duration;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * A running command, from {@link Sandbox#execStream}. Read its events with {@link #recv()},
 * feed its stdin through {@link #stdin()} (when started with
 * {@link ExecOptions.Builder#stdinPipe()}), signal it, or {@link #collect()} everything.
 * Closing the handle kills the process if it is still running.
 */
public final class ExecHandle implements AutoCloseable {
    /** Signal numbers of Linux, for {@link #signal(int)}. */
    public static final int SIGINT = 2;
    public static final int SIGKILL = 9;
    public static final int SIGTERM = 15;

    private final AgentClient client;
    private final int id;
    private final String command;
    private final BlockingQueue<ExecEvent> events = new LinkedBlockingQueue<>();
    private final ScheduledFuture<?> timeoutTask;
    private final Duration timeout;
    private final OutputStream stdin;
    private volatile boolean finished;
    private volatile boolean timedOut;
    private volatile String connectionLost;
    private boolean doneReturned;

    ExecHandle(AgentClient client, String command, ExecOptions options, ObjectNode request, ScheduledExecutorService timers) {
        this.client = client;
        this.id = client.newId();
        this.command = command;
        this.timeout = options.timeout();
        this.stdin = options.stdinPipe() ? new StdinStream() : null;
        client.register(id, new AgentClient.SessionListener() {
            @Override
            public void onFrame(Frame frame) {
                onAgentFrame(frame);
            }

            @Override
            public void onConnectionLost(String reason) {
                connectionLost = reason;
                finish();
            }
        });
        try {
            client.send(new Frame(id, Protocol.FLAG_SESSION_START, Protocol.EXEC_REQUEST, request));
            byte[] input = options.stdin();
            if (input != null) {
                writeStdin(input, 0, input.length);
                writeStdin(new byte[0], 0, 0);
            }
        } catch (RuntimeException e) {
            client.unregister(id);
            throw e;
        }
        this.timeoutTask = timeout == null ? null : timers.schedule(() -> {
            if (!finished) {
                timedOut = true;
                sendSignal(SIGKILL);
            }
        }, timeout.toMillis(), TimeUnit.MILLISECONDS);
    }

    /** Session id, unique among this client's live commands. */
    public int id() {
        return id;
    }

    /**
     * The next event, waiting as long as it takes; null once {@link ExecEvent.Done} has been
     * returned.
     */
    public ExecEvent recv() {
        if (doneReturned) {
            return null;
        }
        try {
            return track(events.take());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for '" + command + "'");
        }
    }

    /** The next event, or null when none arrives within {@code wait} or the stream is over. */
    public ExecEvent recv(Duration wait) {
        if (doneReturned) {
            return null;
        }
        try {
            return track(events.poll(wait.toMillis(), TimeUnit.MILLISECONDS));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for '" + command + "'");
        }
    }

    private ExecEvent track(ExecEvent event) {
        if (event instanceof ExecEvent.Done) {
            doneReturned = true;
        }
        return event;
    }

    /**
     * The process's stdin; closing it sends EOF.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} unless started with a stdin pipe
     */
    public OutputStream stdin() {
        if (stdin == null) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT,
                    "'" + command + "' was not started with ExecOptions.builder().stdinPipe()");
        }
        return stdin;
    }

    /** Sends a signal (Linux number) to the process group. */
    public void signal(int signal) {
        if (!finished) {
            sendSignal(signal);
        }
    }

    /** Sends SIGKILL. */
    public void kill() {
        signal(SIGKILL);
    }

    /** Changes the terminal size of a tty session. */
    public void resize(int rows, int cols) {
        ObjectNode p = FrameCodec.mapper().createObjectNode();
        p.put("rows", rows);
        p.put("cols", cols);
        client.send(new Frame(id, 0, Protocol.EXEC_RESIZE, p));
    }

    /**
     * Waits for the process to end and returns its exit code, discarding output not yet read.
     *
     * @throws MicrosandboxException {@link ErrorKind#EXEC_FAILED} when it never ran,
     *                               {@link ErrorKind#EXEC_TIMEOUT} when its timeout expired
     */
    public int waitFor() {
        return collect().exitCode();
    }

    /**
     * Reads the remaining events and returns the output and exit code.
     *
     * @throws MicrosandboxException {@link ErrorKind#EXEC_FAILED} when the process never ran,
     *                               {@link ErrorKind#EXEC_TIMEOUT} when its timeout expired,
     *                               {@link ErrorKind#SANDBOX_NOT_RUNNING} when the sandbox went away
     */
    public ExecOutput collect() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        Integer code = null;
        ExecEvent.Failed failed = null;
        ExecEvent event;
        while ((event = recv()) != null) {
            if (event instanceof ExecEvent.Stdout s) {
                out.writeBytes(s.data());
            } else if (event instanceof ExecEvent.Stderr s) {
                err.writeBytes(s.data());
            } else if (event instanceof ExecEvent.Exited e) {
                code = e.code();
            } else if (event instanceof ExecEvent.Failed f) {
                failed = f;
            }
        }
        if (timedOut) {
            throw new MicrosandboxException(ErrorKind.EXEC_TIMEOUT,
                    "'" + command + "' did not finish within " + timeout + " and was killed");
        }
        if (failed != null && "sandbox_draining".equals(failed.kind())) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "cannot run '" + command + "': " + failed.message());
        }
        if (failed != null) {
            throw new MicrosandboxException(ErrorKind.EXEC_FAILED,
                    "cannot run '" + command + "': " + failed.kind() + " (" + failed.message() + ")");
        }
        if (code == null) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING,
                    "sandbox went away while '" + command + "' ran: " + connectionLost);
        }
        return new ExecOutput(code, out.toByteArray(), err.toByteArray());
    }

    /** Kills the process if it still runs and releases the handle. */
    @Override
    public void close() {
        if (!finished) {
            try {
                sendSignal(SIGKILL);
            } catch (MicrosandboxException ignored) {
                // the sandbox is gone, and with it the process
            }
        }
        client.unregister(id);
        if (timeoutTask != null) {
            timeoutTask.cancel(false);
        }
    }

    private void onAgentFrame(Frame frame) {
        switch (frame.type()) {
            case Protocol.EXEC_STARTED -> events.add(new ExecEvent.Started(frame.number("pid") == null ? -1 : frame.number("pid").intValue()));
            case Protocol.EXEC_STDOUT -> events.add(new ExecEvent.Stdout(frame.bytes("data")));
            case Protocol.EXEC_STDERR -> events.add(new ExecEvent.Stderr(frame.bytes("data")));
            case Protocol.EXEC_EXITED -> {
                Long code = frame.number("code");
                Long signal = frame.number("signal");
                events.add(new ExecEvent.Exited(code == null ? -1 : code.intValue(), signal == null ? null : signal.intValue()));
            }
            case Protocol.EXEC_FAILED -> {
                Long errno = frame.number("errno");
                events.add(new ExecEvent.Failed(frame.text("kind"), errno == null ? 0 : errno.intValue(),
                        frame.text("message"), frame.text("stage")));
            }
            default -> {
                // a type this version does not know; newer agents may add some
            }
        }
        if (frame.isTerminal()) {
            finish();
        }
    }

    private void finish() {
        if (finished) {
            return;
        }
        finished = true;
        client.unregister(id);
        if (timeoutTask != null) {
            timeoutTask.cancel(false);
        }
        events.add(new ExecEvent.Done());
    }

    private void sendSignal(int signal) {
        ObjectNode p = FrameCodec.mapper().createObjectNode();
        p.put("signal", signal);
        client.send(new Frame(id, 0, Protocol.EXEC_SIGNAL, p));
    }

    private void writeStdin(byte[] data, int off, int len) {
        if (len == 0) {
            ObjectNode p = FrameCodec.mapper().createObjectNode();
            p.put("data", new byte[0]);
            client.send(new Frame(id, 0, Protocol.EXEC_STDIN, p));
            return;
        }
        for (int pos = off; pos < off + len; pos += Protocol.CHUNK_BYTES) {
            int n = Math.min(Protocol.CHUNK_BYTES, off + len - pos);
            ObjectNode p = FrameCodec.mapper().createObjectNode();
            p.put("data", java.util.Arrays.copyOfRange(data, pos, pos + n));
            client.send(new Frame(id, 0, Protocol.EXEC_STDIN, p));
        }
    }

    /** Stdin pipe: every write is sent at once; close sends EOF. */
    private final class StdinStream extends OutputStream {
        private boolean closed;

        @Override
        public void write(int b) throws IOException {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public synchronized void write(byte[] b, int off, int len) throws IOException {
            if (closed) {
                throw new IOException("stdin of '" + command + "' is closed");
            }
            if (len > 0) {
                send(b, off, len);
            }
        }

        @Override
        public synchronized void close() throws IOException {
            if (!closed) {
                closed = true;
                if (!finished) {
                    send(new byte[0], 0, 0);
                }
            }
        }

        private void send(byte[] b, int off, int len) throws IOException {
            try {
                writeStdin(b, off, len);
            } catch (MicrosandboxException e) {
                throw new IOException(e.getMessage(), e);
            }
        }
    }
}

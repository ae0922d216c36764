package io.microsandbox;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.agent.AgentClient;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.agent.Protocol;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.time.Duration;
import java.util.Arrays;
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
 *
 * <p>Output is flow-controlled: the guest sends at most {@link #OUTPUT_WINDOW} bytes that
 * have not been taken with {@link #recv()}, so a reader that stops reading slows the command
 * down (its writes block in the guest) instead of filling this JVM's heap. Stdin is
 * flow-controlled the same way: writes to {@link #stdin()} wait while the process has not
 * consumed what was sent.
 */
public final class ExecHandle implements AutoCloseable {
    /** Linux's SIGINT, for {@link #signal(int)}. */
    public static final int SIGINT = 2;
    /** Linux's SIGKILL, for {@link #signal(int)}. */
    public static final int SIGKILL = 9;
    /** Linux's SIGTERM, for {@link #signal(int)}. */
    public static final int SIGTERM = 15;
    /** Output the guest may send ahead of the reader. */
    public static final int OUTPUT_WINDOW = Protocol.DEFAULT_OUTPUT_WINDOW;
    /** How long a timed-out command may take to report its end before the call returns anyway. */
    static final Duration TIMEOUT_GRACE = Duration.ofSeconds(2);

    private final AgentClient client;
    private final int id;
    private final String command;
    private final BlockingQueue<ExecEvent> events = new LinkedBlockingQueue<>();
    private final ScheduledExecutorService timers;
    /** Null when there is no timeout; set once after the request is sent (see {@link #finish}). */
    private volatile ScheduledFuture<?> timeoutTask;
    private final Duration timeout;
    /** When the request was sent: a detach hands the supervisor what is left of the timeout. */
    private final long sentAt;
    private final long maxOutputBytes;
    private final OutputStream stdin;
    /** Guards the two windows below; never held while anything blocks. */
    private final Object credit = new Object();
    /** Output taken by the reader and not yet returned to the guest as credit. */
    private long consumedOutput;
    /** Stdin the guest will accept now. */
    private long stdinCredit = Protocol.STDIN_WINDOW;
    /** Stdin given up front ({@link ExecOptions#stdin()}) that is still to be sent, from {@link #pendingOffset}. */
    private byte[] pendingStdin;
    private int pendingOffset;
    /** Whether {@link #takeStdin()} has handed the sink out. */
    private boolean stdinTaken;
    /** The process closed its stdin (or the guest stopped taking it): writes fail. */
    private boolean stdinClosed;
    private volatile boolean finished;
    private volatile boolean timedOut;
    private volatile String connectionLost;
    /** The terminal frame that ended the session without an exit or a failure (a newer or broken agent); null otherwise. */
    private volatile String endedWithoutStatus;
    /** How the command ended, as the guest reported it; null while it runs or when it never ran. */
    private volatile ExecEvent.Exited exit;
    private volatile ExecEvent.Failed failure;
    /** Closed or detached by the caller before it ended. */
    private volatile boolean released;
    private volatile boolean doneReturned;

    ExecHandle(AgentClient client, String command, ExecOptions options, ObjectNode request, ScheduledExecutorService timers) {
        this.client = client;
        this.id = client.newId();
        this.command = command;
        this.timers = timers;
        this.timeout = options.timeout();
        this.maxOutputBytes = options.maxOutputBytes();
        this.stdin = options.stdinPipe() ? new StdinStream() : null;
        request.put("window", OUTPUT_WINDOW);
        this.sentAt = System.nanoTime();
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
                synchronized (credit) {
                    pendingStdin = input;
                }
                sendPendingStdin();
            }
        } catch (RuntimeException e) {
            client.unregister(id);
            throw e;
        }
        // The timer only queues frames: one sandbox that does not read can delay no other's timeouts.
        if (timeout != null) {
            timeoutTask = timers.schedule(this::timeoutExpired, timeout.toMillis(), TimeUnit.MILLISECONDS);
            if (finished) {
                timeoutTask.cancel(false); // it ended (or was released) while its request went out: finish() found no task yet
            }
        }
    }

    /**
     * Whether the command's timeout ({@link ExecOptions.Builder#timeout}) expired before it
     * ended: it was killed, and its stream may end with no {@link ExecEvent.Exited}.
     */
    public boolean timedOut() {
        return timedOut;
    }

    /** Session id, unique among this client's live commands. */
    public int id() {
        return id;
    }

    /**
     * The next event, waiting as long as it takes; null once {@link ExecEvent.Done} has been
     * returned. Several threads may wait: each gets the events none of the others took, and
     * every one of them gets {@link ExecEvent.Done} at the end.
     *
     * @throws MicrosandboxException {@link ErrorKind#CANCELLED} when the thread is interrupted;
     *         the command and the sandbox are not affected
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
            events.add(event); // for every other thread waiting on this stream
        } else if (event instanceof ExecEvent.Stdout s) {
            returnCredit(s.data().length);
        } else if (event instanceof ExecEvent.Stderr s) {
            returnCredit(s.data().length);
        }
        return event;
    }

    /** Gives output credit back to the guest once half the window has been read. */
    private void returnCredit(int bytes) {
        long grant = 0;
        synchronized (credit) {
            consumedOutput += bytes;
            if (consumedOutput >= OUTPUT_WINDOW / 2) {
                grant = consumedOutput;
                consumedOutput = 0;
            }
        }
        if (grant > 0 && !finished) {
            ObjectNode p = Json.object();
            p.put("bytes", grant);
            trySend(new Frame(id, 0, Protocol.EXEC_WINDOW, p));
        }
    }

    /**
     * The process's stdin; closing it sends EOF. Writes wait while the process has not
     * consumed earlier input.
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

    /**
     * Sends what the process's stdin credit allows now of {@code b[off, off+len)} (see
     * {@link #stdin()}), without waiting: {@link Attach} stays responsive to its detach keys
     * while the guest takes no input.
     *
     * @return the bytes sent, 0 when there is no credit
     */
    int offerStdin(byte[] b, int off, int len) throws IOException {
        return ((StdinStream) stdin()).offer(b, off, len);
    }

    /**
     * Takes the stdin sink, once: the first call returns it (when the command was started
     * with {@link ExecOptions.Builder#stdinPipe()}), later calls return nothing, so one owner
     * feeds it and closes it.
     */
    public java.util.Optional<OutputStream> takeStdin() {
        synchronized (credit) {
            if (stdinTaken || stdin == null) {
                return java.util.Optional.empty();
            }
            stdinTaken = true;
            return java.util.Optional.of(stdin);
        }
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
        ObjectNode p = Json.object();
        p.put("rows", rows);
        p.put("cols", cols);
        client.send(new Frame(id, 0, Protocol.EXEC_RESIZE, p));
    }

    /**
     * Waits for the process to end and returns its exit code, discarding output not yet read
     * (also when another thread reads the events).
     *
     * @throws MicrosandboxException {@link ErrorKind#EXEC_FAILED} when it never ran,
     *                               {@link ErrorKind#EXEC_TIMEOUT} when its timeout expired,
     *                               {@link ErrorKind#SANDBOX_NOT_RUNNING} when the sandbox refused it
     *                               (draining or stopping) or ended while it ran,
     *                               {@link ErrorKind#INVALID_HANDLE} when this handle or its sandbox
     *                               handle was closed or detached meanwhile,
     *                               {@link ErrorKind#CANCELLED} when the waiting thread is interrupted
     */
    public int waitFor() {
        return collect(Long.MAX_VALUE, false).exitCode();
    }

    /**
     * Reads the remaining events and returns the output and exit code, keeping at most
     * {@link ExecOptions#maxOutputBytes()} of output.
     *
     * @throws MicrosandboxException {@link ErrorKind#EXEC_FAILED} when the process never ran or
     *                               printed more than the limit (it is then killed),
     *                               {@link ErrorKind#EXEC_TIMEOUT} when its timeout expired,
     *                               {@link ErrorKind#SANDBOX_NOT_RUNNING} when the sandbox went away,
     *                               {@link ErrorKind#CANCELLED} when the thread is interrupted
     */
    public ExecOutput collect() {
        return collect(maxOutputBytes, true);
    }

    private ExecOutput collect(long limit, boolean keep) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        long total = 0;
        ExecEvent event;
        while ((event = recv()) != null) {
            byte[] data = event instanceof ExecEvent.Stdout s ? s.data() : event instanceof ExecEvent.Stderr s ? s.data() : null;
            if (data != null && keep) {
                total += data.length;
                if (total > limit) {
                    kill();
                    throw new MicrosandboxException(ErrorKind.EXEC_FAILED, "'" + command + "' printed more than "
                            + limit + " bytes and was killed; raise ExecOptions.builder().maxOutputBytes(...) (with Spring's SandboxTemplate,"
                            + " withMaxOutputBytes(...)) or read the "
                            + "output as it comes with execStream(...).recv()");
                }
                (event instanceof ExecEvent.Stdout ? out : err).writeBytes(data);
            }
        }
        if (timedOut) {
            throw new MicrosandboxException(ErrorKind.EXEC_TIMEOUT,
                    "'" + command + "' did not finish within " + timeout + " and was killed");
        }
        ExecEvent.Failed failed = failure;
        if (failed != null) {
            throw notRun(command, failed);
        }
        ExecEvent.Exited exited = exit;
        if (exited != null) {
            return new ExecOutput(exited.code(), out.toByteArray(), err.toByteArray());
        }
        if (released) {
            throw new MicrosandboxException(ErrorKind.INVALID_HANDLE, "'" + command + "' was closed or detached before it ended");
        }
        if (client.closedWhileRunning()) {
            throw new MicrosandboxException(ErrorKind.INVALID_HANDLE,
                    "the sandbox handle was closed or detached while '" + command + "' ran");
        }
        if (endedWithoutStatus != null) {
            throw new MicrosandboxException(ErrorKind.EXEC_FAILED, "'" + command + "' ended without an exit status: the guest ended its"
                    + " session with " + io.microsandbox.runtime.Printable.brief(endedWithoutStatus, 64) + "; its outcome is unknown");
        }
        throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "sandbox went away while '" + command + "' ran: " + connectionLost);
    }

    /**
     * Releases the handle and leaves the process running: its output is no longer delivered
     * here (it still goes to the exec log, {@link Sandbox#logs}, and is never held up), and it
     * ends on its own, also after this sandbox handle is closed or detached or this JVM exits.
     * A piped stdin ({@link ExecOptions.Builder#stdinPipe()}) reaches its end after what was
     * written to it; a terminal's input is left open. Its {@link ExecOptions.Builder#timeout
     * timeout} still holds: the sandbox's supervisor kills it when the time left runs out (that of a
     * sandbox started by an earlier version of this SDK does not). A detached command still counts as
     * running: the sandbox's idle timeout waits for it, a drain waits for it and a checkpoint is
     * refused while it runs.
     *
     * @throws MicrosandboxException {@link ErrorKind#UNSUPPORTED_OPERATION} while part of
     *         {@link ExecOptions.Builder#stdin(byte[]) the stdin given up front} is still to be
     *         sent (the command would get it cut short): wait for the command to take it;
     *         {@link ErrorKind#INVALID_HANDLE} when the sandbox handle was closed or detached
     *         first (its commands ended with it), {@link ErrorKind#SANDBOX_NOT_RUNNING} when
     *         the sandbox is gone
     */
    public void detach() {
        MicrosandboxException notSent = null;
        synchronized (credit) {
            // under the credit lock: no stdin chunk can follow the detach, which its route would drop
            if (!finished && pendingStdin != null) {
                throw new MicrosandboxException(ErrorKind.UNSUPPORTED_OPERATION, "cannot detach '" + command + "' yet: "
                        + (pendingStdin.length - pendingOffset) + " bytes of the stdin given up front are still to be sent");
            }
            released = true;
            if (!finished) {
                ObjectNode p = Json.object();
                if (timeout != null) {
                    // the timer here ends with this handle: the supervisor keeps the time
                    long left = timeout.toMillis() - TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - sentAt);
                    p.put("kill_after_ms", Math.max(1, left));
                }
                try {
                    client.send(new Frame(id, 0, Protocol.EXEC_DETACH, p));
                } catch (MicrosandboxException e) {
                    notSent = e;
                }
            } else if (exit == null && failure == null && connectionLost != null) {
                // ended with its connection, not on its own: it does not run on either
                notSent = client.closedWhileRunning()
                        ? new MicrosandboxException(ErrorKind.INVALID_HANDLE, "the sandbox handle was closed or detached first")
                        : new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "sandbox went away: " + connectionLost);
            }
        }
        finish(); // which unregisters and cancels the timeout, as it did if the command ended first
        if (notSent != null) {
            throw new MicrosandboxException(notSent.kind(), "cannot detach '" + command + "': " + notSent.getMessage()
                    + "; the command did not outlive it", notSent);
        }
    }

    /** Kills the process if it still runs, discards its unread output and releases the handle. */
    @Override
    public void close() {
        released = true;
        giveUp(); // finish() unregisters and cancels the timeout, now or when the command ended
    }

    private void onAgentFrame(Frame frame) {
        switch (frame.type()) {
            case Protocol.EXEC_STARTED -> events.add(new ExecEvent.Started(frame.number("pid") == null ? -1 : frame.number("pid").intValue()));
            case Protocol.EXEC_STDOUT -> events.add(new ExecEvent.Stdout(frame.bytes("data")));
            case Protocol.EXEC_STDERR -> events.add(new ExecEvent.Stderr(frame.bytes("data")));
            case Protocol.EXEC_STDIN_WINDOW -> {
                Long bytes = frame.number("bytes");
                boolean closed = frame.payload().path("closed").asBoolean(false);
                synchronized (credit) {
                    stdinCredit = Math.min(stdinCredit + (bytes == null ? 0 : Math.max(0, bytes)), Protocol.STDIN_WINDOW);
                    stdinClosed |= closed;
                    if (closed) {
                        pendingStdin = null;
                    }
                    credit.notifyAll();
                }
                try {
                    sendPendingStdin();
                } catch (MicrosandboxException e) {
                    // the connection is closing: the rest of the stdin has nowhere to go, and this
                    // reader thread must not fail for it (that would end every session on it)
                    synchronized (credit) {
                        pendingStdin = null;
                    }
                }
            }
            case Protocol.EXEC_EXITED -> {
                Long code = frame.number("code");
                Long signal = frame.number("signal");
                exit = new ExecEvent.Exited(code == null ? -1 : code.intValue(), signal == null ? null : signal.intValue());
                events.add(exit);
            }
            case Protocol.EXEC_FAILED -> {
                Long errno = frame.number("errno");
                failure = new ExecEvent.Failed(frame.text("kind"), errno == null ? 0 : errno.intValue(),
                        frame.text("message"), frame.text("stage"));
                events.add(failure);
            }
            default -> {
                // a type this version does not know; newer agents may add some
            }
        }
        if (frame.isTerminal()) {
            if (exit == null && failure == null) {
                endedWithoutStatus = frame.type();
            }
            finish();
        }
    }

    /**
     * The timeout: kill the command, and if its end has not been reported after a short grace
     * (a daemon it left may hold its output open), end the call anyway.
     */
    private void timeoutExpired() {
        // decided against finish(): a command whose end came first did not time out (its end is
        // recorded, and queued, a moment before finish() runs)
        synchronized (credit) {
            if (finished || exit != null || failure != null) {
                return;
            }
            timedOut = true;
        }
        trySend(signalFrame(SIGKILL));
        timers.schedule(this::giveUp, TIMEOUT_GRACE.toMillis(), TimeUnit.MILLISECONDS);
    }

    /** Ends the call, and the session with it (a closed handle, a timeout's grace): output nobody reads must not hold it open. */
    private void giveUp() {
        if (!finished) {
            trySend(cancelFrame());
            finish();
        }
    }

    private void finish() {
        synchronized (credit) {
            if (finished) {
                return;
            }
            finished = true;
            pendingStdin = null;
            credit.notifyAll();
        }
        client.unregister(id);
        ScheduledFuture<?> task = timeoutTask;
        if (task != null) {
            task.cancel(false);
        }
        events.add(new ExecEvent.Done());
    }

    private void sendSignal(int signal) {
        client.send(signalFrame(signal));
    }

    private Frame cancelFrame() {
        return new Frame(id, 0, Protocol.EXEC_CANCEL, Json.object());
    }

    private Frame signalFrame(int signal) {
        ObjectNode p = Json.object();
        p.put("signal", signal);
        return new Frame(id, 0, Protocol.EXEC_SIGNAL, p);
    }

    /** Sends when the connection still works; a gone sandbox has taken the process with it. */
    private void trySend(Frame frame) {
        try {
            client.send(frame);
        } catch (MicrosandboxException ignored) {
            // the sandbox or the handle is gone
        }
    }

    /**
     * Sends as much of the up-front stdin as the window allows, then EOF once it is all out.
     * Called by the constructor and by the reader thread; queuing under the lock keeps the
     * chunks in order (queuing never blocks).
     */
    private void sendPendingStdin() {
        synchronized (credit) {
            while (pendingStdin != null && !finished) {
                int left = pendingStdin.length - pendingOffset;
                int n = (int) Math.min(Math.min(left, Protocol.CHUNK_BYTES), stdinCredit);
                if (n == 0 && left > 0) {
                    return; // wait for the guest to return credit
                }
                if (n > 0) {
                    sendStdin(Arrays.copyOfRange(pendingStdin, pendingOffset, pendingOffset + n));
                    pendingOffset += n;
                    stdinCredit -= n;
                }
                if (pendingOffset == pendingStdin.length) {
                    pendingStdin = null;
                    sendStdin(new byte[0]);
                }
            }
        }
    }

    /**
     * What a call whose command never ran throws: a sandbox that refuses new commands is not
     * running, a limit reached (the guest out of processes, or not reading) or a checkpoint
     * being taken may pass, anything else is the command's failure.
     */
    static MicrosandboxException notRun(String command, ExecEvent.Failed failed) {
        return switch (failed.kind()) {
            case "sandbox_draining" -> new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "cannot run '" + command + "': " + failed.message());
            case "sandbox_checkpointing" -> new MicrosandboxException(ErrorKind.RESOURCE_LIMIT,
                    "cannot run '" + command + "' now: " + failed.message() + "; try again once it is taken");
            case "resource_limit" -> new MicrosandboxException(ErrorKind.RESOURCE_LIMIT,
                    "cannot run '" + command + "' now: " + failed.message() + "; try again later");
            default -> new MicrosandboxException(ErrorKind.EXEC_FAILED, "cannot run '" + command + "': " + failed.kind() + " (" + failed.message() + ")");
        };
    }

    private void sendStdin(byte[] data) {
        ObjectNode p = Json.object();
        p.put("data", data);
        client.send(new Frame(id, 0, Protocol.EXEC_STDIN, p));
    }

    /** Stdin pipe: writes wait for the guest's credit; close sends EOF. */
    private final class StdinStream extends OutputStream {
        /** Set under {@link #credit}, so that a write waiting for credit sees it. */
        private volatile boolean closed;

        @Override
        public void write(int b) throws IOException {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public synchronized void write(byte[] b, int off, int len) throws IOException {
            transfer(b, off, len, true);
        }

        /**
         * Sends as much of {@code b[off, off+len)} as the process's credit allows now, without
         * waiting for more: for a caller that must stay responsive while the guest takes no input.
         *
         * @return the bytes sent, 0 when there is no credit
         */
        synchronized int offer(byte[] b, int off, int len) throws IOException {
            return transfer(b, off, len, false);
        }

        /** Sends {@code b[off, off+len)} chunk by chunk within the credit, waiting for more when {@code wait}; returns the bytes sent. */
        private int transfer(byte[] b, int off, int len, boolean wait) throws IOException {
            if (closed) {
                throw new IOException("stdin of '" + command + "' is closed");
            }
            int sent = 0;
            try {
                while (sent < len) {
                    int n = sendChunk(b, off + sent, len - sent, wait);
                    if (n == 0) {
                        break; // no credit, and not waiting for it
                    }
                    sent += n;
                }
            } catch (InterruptedIOException e) {
                e.bytesTransferred = sent; // what went before the interrupt: a retry must not send it again
                throw e;
            }
            return sent;
        }

        /**
         * Sends up to {@code wanted} bytes from {@code b[off]} (one chunk at most) within the process's
         * credit, waiting for some when {@code wait}. The chunk is queued under the credit lock, so
         * that a {@link #close()} from another thread cannot send EOF between taking the credit and
         * queueing the chunk (the guest drops stdin that follows EOF).
         */
        private int sendChunk(byte[] b, int off, int wanted, boolean wait) throws IOException {
            synchronized (credit) {
                while (wait && stdinCredit == 0 && !finished && !released && !stdinClosed && !closed) {
                    try {
                        credit.wait();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new InterruptedIOException("interrupted while writing to the stdin of '" + command + "'");
                    }
                }
                if (finished || released) {
                    throw new IOException("'" + command + "' has ended or was let go; its stdin is gone");
                }
                if (stdinClosed) {
                    throw new IOException("'" + command + "' closed its stdin");
                }
                if (closed) {
                    throw new IOException("stdin of '" + command + "' was closed while this write waited");
                }
                int n = (int) Math.min(Math.min(wanted, Protocol.CHUNK_BYTES), stdinCredit);
                if (n > 0) {
                    send(Arrays.copyOfRange(b, off, off + n));
                    stdinCredit -= n;
                }
                return n;
            }
        }

        /** Sends EOF; not behind a write that waits for credit, which it ends instead. */
        @Override
        public void close() throws IOException {
            synchronized (credit) {
                if (closed) {
                    return;
                }
                closed = true;
                credit.notifyAll();
                if (!finished) {
                    send(new byte[0]); // queued, never blocks: see sendChunk
                }
            }
        }

        private void send(byte[] data) throws IOException {
            try {
                sendStdin(data);
            } catch (MicrosandboxException e) {
                throw new IOException(e.getMessage(), e);
            }
        }
    }
}

package io.microsandbox.runtime.agent;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.Json;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A client's connection to a sandbox supervisor: the handshake, a reader thread that hands
 * each incoming frame to the listener registered for its id, a writer thread that sends
 * what callers queue, and the supervisor's {@code sup.exited} notice.
 *
 * <p>Callers never touch the socket: {@link #send} only queues. So a caller that is
 * interrupted, or a supervisor that reads slowly, can neither close the shared channel (it is
 * an {@code InterruptibleChannel}) nor hold a lock that another caller needs.
 */
public final class AgentClient implements AutoCloseable {
    /** How long {@link #connect} waits for the supervisor's welcome. */
    public static final Duration CONNECT_TIMEOUT = Duration.ofSeconds(10);
    /** The pause between tries of a control connection the supervisor refused for want of a slot. */
    private static final long CONTROL_RETRY_NANOS = TimeUnit.MILLISECONDS.toNanos(100);
    private static final byte[] END = new byte[0];
    /** The reason sessions get when this process closed the connection. */
    private static final String CLOSED_HERE = "the sandbox handle was closed or detached";
    /** Closes connections whose writer could not finish in time after {@link #close()}. */
    private static final java.util.concurrent.ScheduledExecutorService CLOSER =
            java.util.concurrent.Executors.newSingleThreadScheduledExecutor(r -> daemon("msb-client-closer", r));

    /**
     * Receives the frames of one session. Called on the reader thread: it must not block.
     */
    public interface SessionListener {
        void onFrame(Frame frame);

        /** The connection ended before the session did. */
        void onConnectionLost(String reason);
    }

    private final String name;
    private final FrameLink link;
    private final AtomicInteger nextId = new AtomicInteger();
    private final Map<Integer, SessionListener> sessions = new ConcurrentHashMap<>();
    private final BlockingQueue<byte[]> outbound = new LinkedBlockingQueue<>();
    private final CompletableFuture<ObjectNode> welcome = new CompletableFuture<>();
    private final CompletableFuture<Frame> exited = new CompletableFuture<>();
    private final CompletableFuture<Void> firstExchange = new CompletableFuture<>();
    private volatile boolean closed;
    private volatile String lostReason;
    /** File reads open on this connection: they share one read budget (see SandboxFs). */
    private final AtomicInteger fsReads = new AtomicInteger();

    private AgentClient(String name, FrameLink link) {
        this.name = name;
        this.link = link;
        daemon("msb-client-" + name, this::readLoop).start();
        daemon("msb-client-writer-" + name, this::writeLoop).start();
    }

    /**
     * Connects to the supervisor socket of sandbox {@code name} and says hello, waiting at most
     * {@link #CONNECT_TIMEOUT} for the answer.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_RUNNING} when nobody listens
     *         there or the supervisor does not answer
     */
    public static AgentClient connect(String name, Path socket) {
        return connect(name, socket, CONNECT_TIMEOUT);
    }

    /**
     * Connects within {@code timeout}: a connect to a supervisor that accepts nobody (frozen,
     * its acceptor dead) waits, once the socket's backlog is full, without end.
     */
    private static FrameLink connectWithin(Path socket, Duration timeout) throws IOException {
        java.nio.channels.SocketChannel channel = java.nio.channels.SocketChannel.open(java.net.StandardProtocolFamily.UNIX);
        var deadline = CLOSER.schedule(() -> {
            try {
                channel.close();
            } catch (IOException ignored) {
                // closing is what ends the connect
            }
        }, timeout.toMillis(), TimeUnit.MILLISECONDS);
        try {
            channel.connect(java.net.UnixDomainSocketAddress.of(socket));
        } catch (java.nio.channels.AsynchronousCloseException e) {
            throw new IOException("the connection was not accepted within " + timeout, e);
        } catch (IOException | RuntimeException e) {
            channel.close();
            throw e;
        } finally {
            deadline.cancel(false);
        }
        return new FrameLink(channel);
    }

    /** The kind a supervisor's error frame names, or {@code unnamed} when it names none. */
    private static ErrorKind kindOf(Frame error, ErrorKind unnamed) {
        String kind = error.text("kind");
        return kind != null ? ErrorKind.fromWireName(kind) : unnamed;
    }

    /** Like {@link #connect(String, Path)}, waiting at most {@code timeout} for the welcome. */
    public static AgentClient connect(String name, Path socket, Duration timeout) {
        return connect(name, socket, timeout, false);
    }

    /**
     * Connects for {@code sup.stop}, {@code sup.kill} and {@code sup.status} only: the
     * supervisor keeps a few connections for these beyond its client limit, so that a stop gets
     * through while clients hold every other slot. While those are taken too (other stops under
     * way) it tries again until {@code timeout}.
     */
    public static AgentClient connectForControl(String name, Path socket, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            try {
                return connect(name, socket, Duration.ofNanos(Math.max(1, deadline - System.nanoTime())), true);
            } catch (MicrosandboxException e) {
                if (e.kind() != ErrorKind.RESOURCE_LIMIT || System.nanoTime() + CONTROL_RETRY_NANOS >= deadline) {
                    throw e;
                }
            }
            try {
                TimeUnit.NANOSECONDS.sleep(CONTROL_RETRY_NANOS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while connecting to sandbox '" + name + "'");
            }
        }
    }

    private static AgentClient connect(String name, Path socket, Duration timeout, boolean control) {
        FrameLink link;
        try {
            link = connectWithin(socket, timeout);
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING,
                    "sandbox '" + name + "' is not running (no supervisor at " + socket + ": " + e.getMessage() + ")", e);
        }
        AgentClient client = new AgentClient(name, link);
        ObjectNode hello = Json.object();
        hello.put("v", Protocol.VERSION);
        if (control) {
            hello.put("control", true);
        }
        client.outbound.add(FrameCodec.encode(new Frame(0, 0, Protocol.SUP_HELLO, hello)));
        try {
            client.welcome.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            return client;
        } catch (ExecutionException e) {
            client.close();
            throw e.getCause() instanceof MicrosandboxException m ? m
                    : new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "cannot connect to sandbox '" + name + "': " + e.getCause(), e.getCause());
        } catch (TimeoutException e) {
            client.close();
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING,
                    "the supervisor of sandbox '" + name + "' did not answer within " + timeout);
        } catch (InterruptedException e) {
            client.close();
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while connecting to sandbox '" + name + "'");
        }
    }

    /** The count of file reads open on this connection, which share its read budget. */
    public AtomicInteger fsReads() {
        return fsReads;
    }

    /** What the supervisor said on connect: pid, vmm_pid, ready timings. */
    public ObjectNode welcome() {
        return welcome.getNow(null);
    }

    /** A fresh correlation id, not in use by a live session of this client. */
    public int newId() {
        while (true) {
            int id = nextId.updateAndGet(i -> i == Integer.MAX_VALUE ? 1 : i + 1);
            if (!sessions.containsKey(id)) {
                return id;
            }
        }
    }

    /** Registers the listener of session {@code id}; it gets every frame with that id. */
    public void register(int id, SessionListener listener) {
        sessions.put(id, listener);
    }

    /** Ends session {@code id}: its listener gets no more frames. */
    public void unregister(int id) {
        sessions.remove(id);
        firstExchange.complete(null);
    }

    /**
     * Queues a frame for the supervisor. Never blocks.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_HANDLE} once closed,
     *         {@link ErrorKind#SANDBOX_NOT_RUNNING} when the connection is gone,
     *         {@link ErrorKind#INVALID_ARGUMENT} when the frame is over the protocol's size limit
     */
    public void send(Frame frame) {
        byte[] encoded;
        try {
            encoded = FrameCodec.encode(frame);
        } catch (IllegalArgumentException e) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, e.getMessage(), e);
        }
        // the look and the queueing are one step against close(): a frame that gets past the
        // look is queued ahead of the end marker, never silently dropped behind it
        synchronized (outbound) {
            if (closed) {
                throw new MicrosandboxException(ErrorKind.INVALID_HANDLE, "the connection to sandbox '" + name + "' is closed");
            }
            String lost = lostReason;
            if (lost != null) {
                throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "sandbox '" + name + "' is not running (" + lost + ")");
            }
            outbound.add(encoded); // an unbounded queue: never blocks
        }
    }

    /** Sends a supervisor or agent request and waits for its answer. */
    public Frame request(String type, ObjectNode payload, Duration timeout) {
        int id = newId();
        CompletableFuture<Frame> answer = new CompletableFuture<>();
        register(id, new SessionListener() {
            @Override
            public void onFrame(Frame frame) {
                answer.complete(frame);
            }

            @Override
            public void onConnectionLost(String reason) {
                answer.completeExceptionally(new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING,
                        "sandbox '" + name + "' went away: " + reason));
            }
        });
        try {
            send(new Frame(id, Protocol.FLAG_SESSION_START, type, payload));
            Frame frame = answer.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            if (Protocol.SUP_ERROR.equals(frame.type()) || Protocol.CORE_ERROR.equals(frame.type())) {
                // a supervisor error may name its kind (a refused checkpoint, for one)
                ErrorKind kind = kindOf(frame, ErrorKind.INTERNAL);
                throw new MicrosandboxException(kind == ErrorKind.UNKNOWN ? ErrorKind.INTERNAL : kind,
                        "sandbox '" + name + "' refused " + type + ": " + frame.text("message"));
            }
            return frame;
        } catch (ExecutionException e) {
            throw e.getCause() instanceof MicrosandboxException m ? m
                    : new MicrosandboxException(ErrorKind.INTERNAL, type + " failed: " + e.getCause(), e.getCause());
        } catch (TimeoutException e) {
            throw new MicrosandboxException(ErrorKind.INTERNAL, "no answer to " + type + " from sandbox '" + name + "' within " + timeout);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, type + " to sandbox '" + name + "' was interrupted");
        } finally {
            unregister(id);
        }
    }

    /**
     * Completes when the sandbox has ended: with the supervisor's {@code sup.exited} frame, or
     * with null when the connection was lost without one.
     */
    public CompletableFuture<Frame> exited() {
        return exited;
    }

    /**
     * Completes when the first session on this connection has ended (a request answered, a
     * command done or detached, a file transfer finished) or the connection has: the new
     * sandbox's first use is over, or handed off.
     */
    public CompletableFuture<Void> firstExchange() {
        return firstExchange;
    }

    private void readLoop() {
        String reason = "connection closed";
        try {
            Frame frame;
            while ((frame = link.read()) != null) {
                if (frame.id() != 0) {
                    SessionListener listener = sessions.get(frame.id());
                    if (listener != null) {
                        listener.onFrame(frame);
                    }
                } else if (Protocol.SUP_WELCOME.equals(frame.type())) {
                    welcome.complete(frame.payload());
                } else if (Protocol.SUP_EXITED.equals(frame.type())) {
                    exited.complete(frame);
                } else if (Protocol.SUP_ERROR.equals(frame.type()) && !welcome.isDone()) {
                    // a supervisor that says why (too many clients) is running; one that does not is on its way out
                    welcome.completeExceptionally(new MicrosandboxException(kindOf(frame, ErrorKind.SANDBOX_NOT_RUNNING),
                            "supervisor of sandbox '" + name + "' refused the connection: " + frame.text("message")));
                }
            }
        } catch (IOException e) {
            reason = lossReason(e);
        } catch (RuntimeException e) {
            // a listener failed: the connection cannot be trusted to deliver in order any more
            reason = "client failure: " + e;
        } finally {
            synchronized (outbound) {
                // as in close(): a send either sees the loss or is queued ahead of the end marker
                lostReason = reason;
                outbound.add(END);
            }
            link.close();
            // sessions first: what completes below may run callbacks that wait for them
            for (var entry : sessions.entrySet()) {
                sessions.remove(entry.getKey());
                entry.getValue().onConnectionLost(reason);
            }
            welcome.completeExceptionally(new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING,
                    "lost the supervisor of sandbox '" + name + "' during the handshake: " + reason));
            exited.complete(null);
            firstExchange.complete(null);
        }
    }

    private void writeLoop() {
        try {
            byte[] frame;
            while ((frame = outbound.take()) != END) {
                link.writeEncoded(frame);
            }
        } catch (IOException e) {
            lostReason = lossReason(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            // a reader blocked on the link ends with it
            link.close();
        }
    }

    /**
     * Whether this process closed the connection ({@link #close()}) before the supervisor
     * reported the sandbox's end: the handle was closed or detached, the sandbox may run on.
     */
    public boolean closedWhileRunning() {
        return closed && exited.getNow(null) == null;
    }

    /**
     * Closes the connection once what was queued is sent (a signal to a command that is being
     * closed, for instance); the sandbox itself is not affected.
     */
    @Override
    public void close() {
        synchronized (outbound) {
            if (closed) {
                return;
            }
            closed = true;
            outbound.add(END);
        }
        firstExchange.complete(null);
        CLOSER.schedule(link::close, 2, TimeUnit.SECONDS);
    }

    /** Why the link failed, never null: a link this process closed fails with no message of its own. */
    private String lossReason(IOException e) {
        return closed ? CLOSED_HERE : e.getMessage() != null ? e.getMessage() : e.toString();
    }

    private static Thread daemon(String name, Runnable body) {
        Thread t = new Thread(body, name);
        t.setDaemon(true);
        return t;
    }
}

package io.microsandbox.runtime.agent;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A client's connection to a sandbox supervisor: the handshake, an id range of its own, a
 * reader thread that hands each incoming frame to the listener registered for its id, and
 * the supervisor's {@code sup.exited} notice.
 */
public final class AgentClient implements AutoCloseable {

    /** Receives the frames of one session. */
    public interface SessionListener {
        void onFrame(Frame frame);

        /** The connection ended before the session did. */
        void onConnectionLost(String reason);
    }

    private final String name;
    private final FrameLink link;
    private final ObjectNode welcome;
    private final int idBase;
    private final int idCount;
    private final AtomicInteger nextOffset = new AtomicInteger(1);
    private final Map<Integer, SessionListener> sessions = new ConcurrentHashMap<>();
    private final CompletableFuture<Frame> exited = new CompletableFuture<>();
    private volatile boolean closed;

    private AgentClient(String name, FrameLink link, ObjectNode welcome) {
        this.name = name;
        this.link = link;
        this.welcome = welcome;
        this.idBase = welcome.path("id_base").asInt();
        this.idCount = welcome.path("id_count").asInt();
        Thread reader = new Thread(this::readLoop, "msb-client-" + name);
        reader.setDaemon(true);
        reader.start();
    }

    /**
     * Connects to the supervisor socket of sandbox {@code name} and says hello.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_RUNNING} when nobody listens there
     */
    public static AgentClient connect(String name, Path socket) {
        FrameLink link;
        try {
            link = FrameLink.connect(socket);
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING,
                    "sandbox '" + name + "' is not running (no supervisor at " + socket + ": " + e.getMessage() + ")", e);
        }
        try {
            ObjectNode hello = FrameCodec.mapper().createObjectNode();
            hello.put("v", Protocol.VERSION);
            link.write(new Frame(0, 0, Protocol.SUP_HELLO, hello));
            Frame welcome = link.read();
            if (welcome == null || !Protocol.SUP_WELCOME.equals(welcome.type())) {
                link.close();
                String why = welcome != null && Protocol.SUP_ERROR.equals(welcome.type()) ? welcome.text("message") : String.valueOf(welcome);
                throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING,
                        "supervisor of sandbox '" + name + "' refused the connection: " + why);
            }
            return new AgentClient(name, link, welcome.payload());
        } catch (IOException e) {
            link.close();
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING,
                    "lost the supervisor of sandbox '" + name + "' during the handshake: " + e.getMessage(), e);
        }
    }

    /** What the supervisor said on connect: pid, vmm_pid, ready timings. */
    public ObjectNode welcome() {
        return welcome;
    }

    /** A fresh correlation id from this client's range, not in use by a live session. */
    public int newId() {
        while (true) {
            int offset = nextOffset.getAndUpdate(o -> o + 1 >= idCount ? 1 : o + 1);
            int id = idBase + offset;
            if (!sessions.containsKey(id)) {
                return id;
            }
        }
    }

    /** Registers the listener of session {@code id}; it gets every frame with that id. */
    public void register(int id, SessionListener listener) {
        sessions.put(id, listener);
    }

    public void unregister(int id) {
        sessions.remove(id);
    }

    /**
     * Sends a frame.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_RUNNING} when the connection is gone
     */
    public void send(Frame frame) {
        if (closed) {
            throw new MicrosandboxException(ErrorKind.INVALID_HANDLE, "the connection to sandbox '" + name + "' is closed");
        }
        try {
            link.write(frame);
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING,
                    "sandbox '" + name + "' is not running (" + e.getMessage() + ")", e);
        }
    }

    /** Sends a supervisor request and waits for its answer. */
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
            if (Protocol.SUP_ERROR.equals(frame.type())) {
                throw new MicrosandboxException(ErrorKind.INTERNAL, "supervisor of '" + name + "' refused " + type + ": " + frame.text("message"));
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

    private void readLoop() {
        String reason = "connection closed";
        try {
            Frame frame;
            while ((frame = link.read()) != null) {
                if (frame.id() == 0) {
                    if (Protocol.SUP_EXITED.equals(frame.type())) {
                        exited.complete(frame);
                    }
                    continue;
                }
                SessionListener listener = sessions.get(frame.id());
                if (listener != null) {
                    listener.onFrame(frame);
                }
            }
        } catch (IOException e) {
            reason = e.getMessage();
        } finally {
            link.close();
            exited.complete(null);
            for (var entry : sessions.entrySet()) {
                sessions.remove(entry.getKey());
                entry.getValue().onConnectionLost(reason);
            }
        }
    }

    /** Closes the connection; the sandbox itself is not affected. */
    @Override
    public void close() {
        closed = true;
        link.close();
    }
}

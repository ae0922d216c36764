package io.microsandbox;

import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.agent.AgentClient;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameLink;
import io.microsandbox.runtime.agent.Protocol;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * A supervisor for unit tests of the client side: it welcomes one client, records what the
 * client sends, and sends what the test tells it to.
 */
final class FakeSupervisor implements AutoCloseable {
    private final ServerSocketChannel server;
    private final Path socket;
    private final BlockingQueue<Frame> received = new LinkedBlockingQueue<>();
    private volatile FrameLink link;

    FakeSupervisor(Path dir) throws IOException {
        socket = dir.resolve("supervisor.sock");
        server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(socket));
        Thread serving = new Thread(this::serve, "fake-supervisor");
        serving.setDaemon(true);
        serving.start();
    }

    private void serve() {
        try (SocketChannel channel = server.accept()) {
            FrameLink accepted = new FrameLink(channel);
            accepted.read(); // sup.hello
            accepted.write(new Frame(0, 0, Protocol.SUP_WELCOME, Json.object()));
            link = accepted;
            Frame frame;
            while ((frame = accepted.read()) != null) {
                received.add(frame);
            }
        } catch (IOException e) {
            // the client or the test closed the connection
        }
    }

    AgentClient connect() {
        return AgentClient.connect("fake", socket, Duration.ofSeconds(5));
    }

    /** The next frame of {@code type} the client sent, skipping others; fails after 5 s. */
    Frame next(String type) throws InterruptedException {
        return next(frame -> frame.type().equals(type), type);
    }

    private Frame next(Predicate<Frame> wanted, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (true) {
            Frame frame = received.poll(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            if (frame == null) {
                throw new AssertionError("the client sent no " + what + " within 5 s");
            }
            if (wanted.test(frame)) {
                return frame;
            }
        }
    }

    /** The next frame the client sent for session {@code id}, skipping others; fails after 5 s. */
    Frame next(int id) throws InterruptedException {
        return next(frame -> frame.id() == id, "frame for session " + id);
    }

    void send(Frame frame) throws IOException {
        link.write(frame);
    }

    @Override
    public void close() throws IOException {
        FrameLink open = link;
        if (open != null) {
            open.close();
        }
        server.close();
    }
}

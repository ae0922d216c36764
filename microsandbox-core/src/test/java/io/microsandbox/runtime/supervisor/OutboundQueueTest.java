package io.microsandbox.runtime.supervisor;

import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.agent.FrameLink;
import io.microsandbox.runtime.agent.Protocol;
import io.microsandbox.runtime.Json;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The writer's bounds, hold and withdrawals, over a real socket. */
class OutboundQueueTest {
    private Path dir;
    private SocketChannel peerSide;
    private FrameLink peer;
    private OutboundQueue queue;
    private final ExecutorService reader = Executors.newSingleThreadExecutor();

    @BeforeEach
    void connect() throws Exception {
        dir = Files.createTempDirectory("msb-queue");
        Path socket = dir.resolve("s");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(socket));
            SocketChannel ours = SocketChannel.open(UnixDomainSocketAddress.of(socket));
            peerSide = server.accept();
            peer = new FrameLink(peerSide);
            queue = new OutboundQueue("test", new FrameLink(ours), 1 << 20, null);
        }
    }

    @AfterEach
    void close() throws Exception {
        queue.abort();
        peer.close();
        reader.shutdownNow();
        Files.deleteIfExists(dir.resolve("s"));
        Files.delete(dir);
    }

    /** A peer that never reads cannot grow the urgent frames it is owed (a window per piece of data it sends) without end. */
    @Test
    void urgentFramesForAPeerThatReadsNothingAreBounded() throws Exception {
        byte[] window = frame("window");
        long queued = 0;
        int dropped = 0;
        for (int i = 0; i < 2 * OutboundQueue.MAX_URGENT_BYTES / window.length + 100_000; i++) {
            if (queue.urgent(window)) {
                queued++;
            } else {
                dropped++;
            }
        }
        assertThat(dropped).isPositive();
        assertThat(queue.urgentBytes()).isLessThanOrEqualTo(OutboundQueue.MAX_URGENT_BYTES);
        // a shutdown still gets through
        queue.essential(frame("shutdown"));
        // once the peer reads again, what was queued goes out and the room comes back
        // (behind what the socket's buffer holds already)
        int shutdowns = 0;
        for (long n = 0; n <= queued; n++) {
            String type = read();
            assertThat(type).isIn("window", "shutdown");
            shutdowns += type.equals("shutdown") ? 1 : 0;
        }
        assertThat(shutdowns).isEqualTo(1);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (queue.urgentBytes() > 0 && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertThat(queue.urgentBytes()).isZero();
        assertThat(queue.urgent(window)).isTrue();
    }

    @Test
    void framesQueuedAfterAHeldFrameWaitForTheRelease() throws Exception {
        assertThat(queue.offer(frame("before"))).isTrue();
        assertThat(queue.offerThenHold(frame("ping"))).isTrue();
        assertThat(read()).isEqualTo("before");
        assertThat(read()).isEqualTo("ping");
        // queued after the ping: neither a counted frame nor an urgent one goes out
        assertThat(queue.offer(frame("data"))).isTrue();
        queue.urgent(frame("window"));
        Future<String> next = reader.submit(() -> peer.read().type());
        assertThatThrownBy(() -> next.get(500, TimeUnit.MILLISECONDS)).isInstanceOf(TimeoutException.class);
        assertThat(queue.queuedBytes()).isPositive();

        queue.releaseHold();
        assertThat(next.get(5, TimeUnit.SECONDS)).isEqualTo("window");
        assertThat(read()).isEqualTo("data");
        assertThat(queue.queuedBytes()).isZero();
    }

    /** A checkpoint that fails before its ping is written releases a hold that has not begun: none begins later. */
    @Test
    void aReleaseBeforeTheHeldFrameIsWrittenCancelsTheHold() throws Exception {
        // the peer reads nothing for a while: the writer blocks in a large frame, the ping waits behind it
        assertThat(queue.offer(FrameCodec.encode(new Frame(0, 0, "large", Json.object().put("data", new byte[900_000]))))).isTrue();
        Thread.sleep(200);
        assertThat(queue.offerThenHold(frame("ping"))).isTrue();
        queue.releaseHold();
        assertThat(queue.offer(frame("after"))).isTrue();
        assertThat(read()).isEqualTo("large");
        assertThat(read()).isEqualTo("ping");
        assertThat(read()).isEqualTo("after");
    }

    /** A request withdrawn while it waits never reaches the peer; one the writer has taken is not withdrawn. */
    @Test
    void aRequestIsWithdrawnOnlyWhileItWaits() throws Exception {
        // the peer reads nothing for a while: the writer blocks in a large frame, the requests wait behind it
        assertThat(queue.offer(FrameCodec.encode(new Frame(0, 0, "large", Json.object().put("data", new byte[900_000]))))).isTrue();
        Thread.sleep(200);
        long before = queue.queuedBytes();
        assertThat(queue.offerRequest(frame("withdrawn"), 7)).isTrue();
        assertThat(queue.offerRequest(frame("kept"), 8)).isTrue();
        assertThat(queue.withdraw(7)).isTrue();
        assertThat(queue.withdraw(7)).isFalse();
        assertThat(queue.queuedBytes()).as("the withdrawn request's room is free").isEqualTo(before + frame("kept").length);
        assertThat(read()).isEqualTo("large");
        assertThat(read()).isEqualTo("kept");
        assertThat(queue.withdraw(8)).as("written already").isFalse();
        queue.urgent(frame("after"));
        assertThat(read()).isEqualTo("after");
        assertThat(queue.queuedBytes()).isZero();
    }

    /** A client that requests and cancels on a peer that reads nothing cannot grow the queue past its bound. */
    @Test
    void withdrawnRequestsLeaveTheQueue() throws Exception {
        assertThat(queue.offer(FrameCodec.encode(new Frame(0, 0, "large", Json.object().put("data", new byte[900_000]))))).isTrue();
        Thread.sleep(200); // the writer blocks in it
        for (int session = 1; session <= 10_000; session++) {
            assertThat(queue.offerRequest(frame("request"), session)).isTrue();
            assertThat(queue.withdraw(session)).isTrue();
        }
        assertThat(queue.queuedFrames()).isZero();
        assertThat(read()).isEqualTo("large");
        assertThat(queue.offer(frame("after"))).isTrue();
        assertThat(read()).isEqualTo("after");
    }

    @Test
    void aHoldEndsWhenTheQueueIsFinished() throws Exception {
        assertThat(queue.offerThenHold(frame("ping"))).isTrue();
        assertThat(queue.offer(frame("last"))).isTrue();
        assertThat(read()).isEqualTo("ping");
        queue.finish();
        assertThat(read()).isEqualTo("last");
        assertThat(queue.awaitClosed(5000)).isTrue();
    }

    private String read() throws Exception {
        return reader.submit(() -> peer.read().type()).get(5, TimeUnit.SECONDS);
    }

    private static byte[] frame(String type) {
        return FrameCodec.encode(new Frame(0, 0, type, Json.object().put("p", Protocol.VERSION)));
    }
}

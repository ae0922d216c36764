package io.microsandbox.runtime.agent;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class AgentClientTest {
    @TempDir
    Path dir;

    /** A supervisor that accepts nobody (frozen, its acceptor dead): once its backlog is full, connecting waits too, within the timeout. */
    @Test
    @Timeout(20)
    void aSupervisorThatAcceptsNobodyFailsTheConnectAtItsTimeout() throws Exception {
        Path socket = dir.resolve("agent.sock");
        List<SocketChannel> queued = new ArrayList<>();
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(socket), 1);
            boolean full = false;
            while (!full && queued.size() < 16) {
                SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX);
                c.configureBlocking(false);
                queued.add(c);
                try {
                    full = !c.connect(UnixDomainSocketAddress.of(socket));
                } catch (IOException wouldWait) {
                    full = true;
                }
            }
            assertThat(full).as("the backlog filled").isTrue();
            long start = System.nanoTime();
            assertThatThrownBy(() -> AgentClient.connect("frozen", socket, Duration.ofMillis(300)))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_RUNNING);
                        assertThat(e.getMessage()).contains("not accepted within PT0.3S");
                    });
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(10));
        } finally {
            for (SocketChannel c : queued) {
                c.close();
            }
        }
    }
}

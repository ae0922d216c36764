package io.microsandbox.runtime.vmm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

class QmpClientTest {
    @TempDir
    Path dir;

    private interface Monitor {
        void serve(SocketChannel client, OutputStream out) throws IOException;
    }

    /** A monitor on a socket in {@link #dir} that serves one connection as {@code monitor} says. */
    private Path monitor(Monitor monitor) throws IOException {
        Path socket = dir.resolve("qmp.sock");
        Files.deleteIfExists(socket);
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(socket));
        Thread t = new Thread(() -> {
            try (server; SocketChannel client = server.accept()) {
                monitor.serve(client, Channels.newOutputStream(client));
            } catch (IOException e) {
                // the client went away
            }
        }, "fake-qmp");
        t.setDaemon(true);
        t.start();
        return socket;
    }

    /** Writes {@code line} and its newline, as a monitor does. */
    static void send(OutputStream out, String line) throws IOException {
        out.write((line + "\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    @Test
    @Timeout(20)
    void answersSkipEventsAndTheVersionComesFromTheGreeting() throws Exception {
        Path socket = monitor((client, out) -> {
            send(out, "{\"QMP\":{\"version\":{\"qemu\":{\"major\":7,\"minor\":2,\"micro\":19},\"package\":\"\"}}}");
            java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(Channels.newInputStream(client)));
            String request;
            while ((request = in.readLine()) != null) {
                if (request.contains("query-status")) {
                    send(out, "{\"event\":\"STOP\"}");
                    send(out, "{\"return\":{\"status\":\"paused\"}}");
                } else {
                    send(out, "{\"return\":{}}");
                }
            }
        });
        try (QmpClient.Session qmp = QmpClient.Session.open(socket, Duration.ofSeconds(5))) {
            assertThat(qmp.version().path("qemu").path("minor").asInt()).isEqualTo(2);
            assertThat(qmp.execute("query-status", null, Duration.ofSeconds(5)).path("status").asText()).isEqualTo("paused");
        }
    }

    @Test
    @Timeout(20)
    void aLineWithoutEndIsRefusedOnceItPassesTheLimit() throws Exception {
        Path socket = monitor((client, out) -> {
            byte[] chunk = "x".repeat(64 * 1024).getBytes(StandardCharsets.US_ASCII);
            for (int i = 0; i < 1024; i++) { // 64 MiB if nobody stops reading
                out.write(chunk);
            }
        });
        assertThatThrownBy(() -> QmpClient.Session.open(socket, Duration.ofSeconds(10)))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("QEMU's monitor sent a line longer than");
    }

    @Test
    @Timeout(20)
    void aMonitorThatNeverAnswersFailsAtTheTimeoutNamingTheCall() throws Exception {
        Path socket = monitor((client, out) -> client.read(java.nio.ByteBuffer.allocate(16)));
        long start = System.nanoTime();
        assertThatThrownBy(() -> QmpClient.execute(socket, "query-status", Duration.ofMillis(300)))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("QMP greeting got no answer within PT0.3S");
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(10));
    }

    /** A QEMU whose main loop is stuck accepts nobody: once its backlog is full, connecting waits too, within the timeout. */
    @Test
    @Timeout(20)
    void aMonitorThatAcceptsNobodyFailsAtTheTimeout() throws Exception {
        Path socket = dir.resolve("stuck.sock");
        try (io.microsandbox.runtime.FullBacklog stuck = new io.microsandbox.runtime.FullBacklog(socket)) {
            long start = System.nanoTime();
            assertThatThrownBy(() -> QmpClient.execute(socket, "query-status", Duration.ofMillis(300)))
                    .isInstanceOf(IOException.class)
                    .hasMessageContaining("got no answer within PT0.3S");
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(10));
        }
    }
}

package io.microsandbox.runtime.vmm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

class BlockStatsTest {
    @TempDir
    Path dir;

    /**
     * A monitor that greets each connection and answers query-blockstats with two disks whose
     * counters grow by one each answer, an event before each answer; it hangs up after
     * {@code answersPerConnection} answers, and after {@code muteAfter} answers in all it
     * reads on and answers nothing.
     */
    private Path monitor(AtomicInteger connections, int answersPerConnection, int muteAfter) throws IOException {
        Path socket = dir.resolve("qmp-stats.sock");
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(socket));
        AtomicInteger answered = new AtomicInteger();
        Thread t = new Thread(() -> {
            try (server) {
                while (true) {
                    try (SocketChannel client = server.accept()) {
                        connections.incrementAndGet();
                        OutputStream out = Channels.newOutputStream(client);
                        BufferedReader in = new BufferedReader(new InputStreamReader(Channels.newInputStream(client), StandardCharsets.UTF_8));
                        QmpClientTest.send(out, "{\"QMP\":{\"version\":{}}}");
                        int here = 0;
                        String request;
                        while (here < answersPerConnection && (request = in.readLine()) != null) {
                            if (!request.contains("query-blockstats")) {
                                QmpClientTest.send(out, "{\"return\":{}}");
                                continue;
                            }
                            if (answered.get() >= muteAfter) {
                                continue;
                            }
                            int n = answered.incrementAndGet();
                            here++;
                            QmpClientTest.send(out, "{\"event\":\"RTC_CHANGE\",\"data\":{\"offset\":0}}");
                            QmpClientTest.send(out, "{\"return\":[{\"device\":\"lower\",\"stats\":{\"rd_bytes\":" + 100 * n + ",\"wr_bytes\":0}},"
                                    + "{\"device\":\"upper\",\"stats\":{\"rd_bytes\":" + n + ",\"wr_bytes\":" + 10 * n + "}}]}");
                        }
                    } catch (IOException e) {
                        // the client went away: wait for the next
                    }
                }
            } catch (IOException e) {
                // the test is over
            }
        }, "fake-stats-qmp");
        t.setDaemon(true);
        t.start();
        return socket;
    }

    @Test
    @Timeout(20)
    void keepsOneConnectionAcrossReadsAndOpensAnotherAfterAFailure() throws Exception {
        AtomicInteger connections = new AtomicInteger();
        Path socket = monitor(connections, 3, Integer.MAX_VALUE);
        try (BlockStats stats = new BlockStats(socket, Duration.ofSeconds(5))) {
            assertThat(stats.read()).isEqualTo(new BlockStats.Totals(101, 10));
            assertThat(stats.read()).isEqualTo(new BlockStats.Totals(202, 20));
            assertThat(stats.read()).isEqualTo(new BlockStats.Totals(303, 30));
            assertThat(connections).as("one connection for three reads").hasValue(1);
            // the monitor hung up after its third answer: this read fails, the next reconnects
            assertThatThrownBy(stats::read).isInstanceOf(IOException.class);
            assertThat(stats.read()).isEqualTo(new BlockStats.Totals(404, 40));
            assertThat(connections).hasValue(2);
        }
    }

    @Test
    @Timeout(20)
    void aMonitorThatStopsAnsweringFailsTheReadAtItsTimeout() throws Exception {
        AtomicInteger connections = new AtomicInteger();
        Path socket = monitor(connections, Integer.MAX_VALUE, 1);
        try (BlockStats stats = new BlockStats(socket, Duration.ofMillis(500))) {
            assertThat(stats.read()).isEqualTo(new BlockStats.Totals(101, 10));
            long start = System.nanoTime();
            assertThatThrownBy(stats::read).isInstanceOf(IOException.class).hasMessageContaining("query-blockstats");
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(5));
        }
    }

    @Test
    @Timeout(20)
    void readsFailOnceClosed() throws Exception {
        AtomicInteger connections = new AtomicInteger();
        Path socket = monitor(connections, Integer.MAX_VALUE, Integer.MAX_VALUE);
        BlockStats stats = new BlockStats(socket, Duration.ofSeconds(5));
        assertThat(stats.read().readBytes()).isEqualTo(101);
        stats.close();
        assertThatThrownBy(stats::read).isInstanceOf(IOException.class).hasMessageContaining("closed");
    }
}

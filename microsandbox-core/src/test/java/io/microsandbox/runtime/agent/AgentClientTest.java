package io.microsandbox.runtime.agent;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.FullBacklog;
import java.nio.file.Path;
import java.time.Duration;
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
        try (FullBacklog stuck = new FullBacklog(socket)) {
            long start = System.nanoTime();
            assertThatThrownBy(() -> AgentClient.connect("frozen", socket, Duration.ofMillis(300)))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_RUNNING);
                        assertThat(e.getMessage()).contains("not accepted within PT0.3S");
                    });
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(10));
        }
    }
}

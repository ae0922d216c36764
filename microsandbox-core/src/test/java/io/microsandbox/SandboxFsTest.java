package io.microsandbox;

import io.microsandbox.runtime.agent.AgentClient;
import io.microsandbox.runtime.agent.Protocol;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The client side of file operations against a {@link FakeSupervisor}. */
@Timeout(30)
class SandboxFsTest {
    @TempDir
    Path dir;

    @Test
    void aCallWaitingWhenItsHandleIsClosedFailsAtOnce() throws Exception {
        try (FakeSupervisor supervisor = new FakeSupervisor(dir)) {
            AgentClient client = supervisor.connect();
            SandboxFs fs = new SandboxFs("fake", client, null, () -> { });
            CompletableFuture<FsStat> stat = CompletableFuture.supplyAsync(() -> fs.stat("/etc/hostname"));
            supervisor.next(Protocol.FS_REQUEST); // never answered
            client.close();
            assertThatThrownBy(() -> stat.get(5, TimeUnit.SECONDS)).cause().isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_HANDLE);
                assertThat(e.getMessage()).contains("was closed or detached");
            });
        }
    }
}

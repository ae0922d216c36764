package io.microsandbox;

import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.agent.AgentClient;
import io.microsandbox.runtime.agent.Frame;
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

    /** An agent that does not name the feature (an earlier SDK's) would ignore {@code exclusive} and replace the file. */
    @Test
    void anExclusiveCreateIsRefusedWhenTheAgentDoesNotSayItCanDoIt() throws Exception {
        try (FakeSupervisor supervisor = new FakeSupervisor(dir)) {
            AgentClient client = supervisor.connect();
            SandboxFs fs = new SandboxFs("fake", client, null, () -> { });
            assertThat(fs.canCreateExclusively()).isFalse();
            assertThatThrownBy(() -> fs.create("/etc/motd", new byte[0], null)).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                assertThat(e.kind()).isEqualTo(ErrorKind.UNSUPPORTED_OPERATION);
                assertThat(e.getMessage()).contains("stop and start it");
            });
            client.close();
        }
    }

    @Test
    void anInterruptedReadLosesNothingAndTheStreamGoesOn() throws Exception {
        try (FakeSupervisor supervisor = new FakeSupervisor(dir)) {
            AgentClient client = supervisor.connect();
            OpenRead opened = openRead(supervisor, new SandboxFs("fake", client, null, () -> { }));
            int id = opened.id();
            java.io.InputStream in = opened.in();
            assertThat(in.readNBytes(2)).isEqualTo("ab".getBytes());
            Thread.currentThread().interrupt();
            assertThatThrownBy(in::read).isInstanceOf(java.io.InterruptedIOException.class);
            assertThat(Thread.interrupted()).as("the interrupt is kept").isTrue();
            supervisor.send(new Frame(id, 0, Protocol.FS_DATA, Json.object().put("data", "cd".getBytes())));
            supervisor.send(new Frame(id, Protocol.FLAG_TERMINAL, Protocol.FS_RESULT, Json.object().put("size", 4)));
            assertThat(in.readAllBytes()).isEqualTo("cd".getBytes());
            in.close();
            client.close();
        }
    }

    /** A stream dropped without close would hold the guest's worker, and keep the sandbox from idling, for ever. */
    @Test
    void aStreamDroppedUnclosedEndsItsSession() throws Exception {
        try (FakeSupervisor supervisor = new FakeSupervisor(dir)) {
            AgentClient client = supervisor.connect();
            SandboxFs fs = new SandboxFs("fake", client, null, () -> { });
            OpenRead opened = openRead(supervisor, fs);
            int read = opened.id();
            opened.in().read();
            assertThat(client.fsReads().get()).isEqualTo(1);
            fs.writeStream("/out").write('x');
            int write = supervisor.next(Protocol.FS_REQUEST).id();
            opened = null; // both streams unreachable now
            java.util.Set<Integer> cancelled = new java.util.HashSet<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (cancelled.size() < 2 && System.nanoTime() < deadline) {
                System.gc();
                try {
                    cancelled.add(supervisor.next(Protocol.FS_CANCEL).id());
                } catch (AssertionError e) {
                    // none yet
                }
            }
            assertThat(cancelled).containsExactlyInAnyOrder(read, write);
            assertThat(client.fsReads().get()).isZero();
            client.close();
        }
    }

    private record OpenRead(int id, java.io.InputStream in) {
    }

    /** A read of /data the supervisor answers with its first bytes, "ab". */
    private static OpenRead openRead(FakeSupervisor supervisor, SandboxFs fs) throws Exception {
        CompletableFuture<java.io.InputStream> opening = CompletableFuture.supplyAsync(() -> fs.readStream("/data"));
        int id = supervisor.next(Protocol.FS_REQUEST).id();
        supervisor.send(new Frame(id, 0, Protocol.FS_DATA, Json.object().put("data", "ab".getBytes())));
        return new OpenRead(id, opening.get(5, TimeUnit.SECONDS));
    }
}

package io.microsandbox;

import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.agent.AgentClient;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.Protocol;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The client side of a command against a {@link FakeSupervisor}. */
@Timeout(30)
class ExecHandleTest {
    @TempDir
    Path dir;
    private FakeSupervisor supervisor;
    private AgentClient client;
    private final ScheduledExecutorService timers = Executors.newSingleThreadScheduledExecutor();

    @BeforeEach
    void connect() throws IOException {
        supervisor = new FakeSupervisor(dir);
        client = supervisor.connect();
    }

    @AfterEach
    void close() throws IOException {
        client.close();
        supervisor.close();
        timers.shutdownNow();
    }

    private ExecHandle start(ExecOptions options) {
        return new ExecHandle(client, "cmd", options, Json.object(), timers);
    }

    /** Answers the command's request: started, some output, then its exit with {@code code}. */
    private void runToExit(int code) throws Exception {
        int id = supervisor.next(Protocol.EXEC_REQUEST).id();
        supervisor.send(new Frame(id, 0, Protocol.EXEC_STARTED, Json.object().put("pid", 7)));
        supervisor.send(new Frame(id, 0, Protocol.EXEC_STDOUT, Json.object().put("data", "out".getBytes())));
        supervisor.send(new Frame(id, Protocol.FLAG_TERMINAL, Protocol.EXEC_EXITED, Json.object().put("code", code)));
    }

    @Test
    void everyThreadWaitingOnTheStreamSeesItsEnd() throws Exception {
        ExecHandle handle = start(ExecOptions.builder().build());
        CompletableFuture<Integer> events = CompletableFuture.supplyAsync(() -> {
            int n = 0;
            while (handle.recv() != null) {
                n++;
            }
            return n;
        });
        CompletableFuture<Integer> exit = CompletableFuture.supplyAsync(handle::waitFor);
        runToExit(3);
        assertThat(exit.get(5, TimeUnit.SECONDS)).isEqualTo(3);
        assertThat(events.get(5, TimeUnit.SECONDS)).as("events the other thread left to this one, Done among them").isBetween(1, 4);
    }

    @Test
    void waitForAfterTheEventsWereReadReturnsTheExitCode() throws Exception {
        ExecHandle handle = start(ExecOptions.builder().build());
        runToExit(3);
        while (handle.recv() != null) {
            // read to the end
        }
        assertThat(handle.waitFor()).isEqualTo(3);
        assertThat(handle.collect().exitCode()).isEqualTo(3);
    }

    @Test
    void closingStdinIsNotHeldUpByAWriteThatWaitsForCredit() throws Exception {
        ExecHandle handle = start(ExecOptions.builder().stdinPipe().build());
        supervisor.next(Protocol.EXEC_REQUEST); // never returns stdin credit
        OutputStream stdin = handle.stdin();
        CompletableFuture<Void> write = CompletableFuture.runAsync(() -> {
            try {
                stdin.write(new byte[2 * Protocol.STDIN_WINDOW]);
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        Thread.sleep(200); // the write waits for credit
        assertThat(write).isNotDone();
        CompletableFuture.runAsync(() -> {
            try {
                stdin.close();
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }).get(2, TimeUnit.SECONDS);
        assertThatThrownBy(() -> write.get(2, TimeUnit.SECONDS)).hasRootCauseInstanceOf(IOException.class)
                .hasMessageContaining("was closed while this write waited");
        assertThat(supervisor.next(Protocol.EXEC_STDIN).payload().path("data").binaryValue()).isNotEmpty();
    }

    @Test
    void noWriteIsSentAfterTheEndOfInputThatACloseFromAnotherThreadSent() throws Exception {
        for (int round = 0; round < 200; round++) {
            ExecHandle handle = start(ExecOptions.builder().stdinPipe().build());
            int id = supervisor.next(Protocol.EXEC_REQUEST).id();
            OutputStream stdin = handle.stdin();
            CompletableFuture<Void> writer = CompletableFuture.runAsync(() -> {
                try {
                    while (true) {
                        stdin.write('x');
                    }
                } catch (IOException closed) {
                    // the other thread closed stdin
                }
            });
            Thread.sleep(round % 3);
            stdin.close();
            writer.get(5, TimeUnit.SECONDS);
            handle.close(); // its cancel comes after every frame of stdin
            boolean ended = false;
            for (Frame frame = supervisor.next(id); !frame.type().equals(Protocol.EXEC_CANCEL); frame = supervisor.next(id)) {
                boolean endOfInput = frame.payload().path("data").binaryValue().length == 0;
                assertThat(ended).as("round %d: a chunk of stdin sent after its end", round).isFalse();
                ended = endOfInput;
            }
            assertThat(ended).as("round %d: the end of input is the last frame of stdin", round).isTrue();
        }
    }

    /** Its end of input would follow what was sent so far: the command would take a cut input for the whole. */
    @Test
    void aCommandIsNotDetachedBeforeItsUpFrontStdinIsSent() throws Exception {
        ExecHandle handle = start(ExecOptions.builder().stdin(new byte[2 * Protocol.STDIN_WINDOW]).build());
        supervisor.next(Protocol.EXEC_REQUEST); // never returns stdin credit
        assertThatThrownBy(handle::detach).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
            assertThat(e.kind()).isEqualTo(ErrorKind.UNSUPPORTED_OPERATION);
            assertThat(e.getMessage()).contains(Protocol.STDIN_WINDOW + " bytes of the stdin given up front are still to be sent");
        });
        handle.close();
    }

    @Test
    void closingAHandleCancelsTheSessionSoItsUnreadOutputCannotHoldItOpen() throws Exception {
        ExecHandle handle = start(ExecOptions.builder().build());
        int id = supervisor.next(Protocol.EXEC_REQUEST).id();
        handle.close();
        assertThat(supervisor.next(Protocol.EXEC_CANCEL).id()).isEqualTo(id);
        assertThatThrownBy(handle::waitFor).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_HANDLE));
    }

    @Test
    void aCommandThatCouldNotStartForALimitMayBeTriedAgain() throws Exception {
        for (String kind : new String[] {"resource_limit", "sandbox_draining", "sandbox_checkpointing", "not_found"}) {
            ExecHandle handle = start(ExecOptions.builder().build());
            int id = supervisor.next(Protocol.EXEC_REQUEST).id();
            supervisor.send(new Frame(id, Protocol.FLAG_TERMINAL, Protocol.EXEC_FAILED,
                    Json.object().put("kind", kind).put("errno", 0).put("message", "said the guest").put("stage", "spawn")));
            ErrorKind expected = switch (kind) {
                case "resource_limit", "sandbox_checkpointing" -> ErrorKind.RESOURCE_LIMIT;
                case "sandbox_draining" -> ErrorKind.SANDBOX_NOT_RUNNING;
                default -> ErrorKind.EXEC_FAILED;
            };
            assertThatThrownBy(handle::waitFor).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                assertThat(e.kind()).isEqualTo(expected);
                assertThat(e.getMessage()).contains("'cmd'").contains("said the guest");
            });
        }
    }

    /** The timer here ends with the handle: a detach hands the supervisor what is left of the timeout. */
    @Test
    void aDetachedCommandTakesWhatIsLeftOfItsTimeoutAlong() throws Exception {
        ExecHandle timed = start(ExecOptions.builder().timeout(Duration.ofSeconds(60)).build());
        supervisor.next(Protocol.EXEC_REQUEST);
        Thread.sleep(300);
        timed.detach();
        long left = supervisor.next(Protocol.EXEC_DETACH).payload().path("kill_after_ms").asLong(-1);
        assertThat(left).as("what is left of it, not all of it").isPositive().isLessThanOrEqualTo(60_000 - 300);

        ExecHandle untimed = start(ExecOptions.builder().build());
        supervisor.next(Protocol.EXEC_REQUEST);
        untimed.detach();
        assertThat(supervisor.next(Protocol.EXEC_DETACH).payload().has("kill_after_ms")).isFalse();
    }

    /** A detach that cannot reach the supervisor says so: the command ended with the connection, it did not run on. */
    @Test
    void aDetachAfterTheConnectionWasClosedFails() throws Exception {
        ExecHandle handle = start(ExecOptions.builder().build());
        supervisor.next(Protocol.EXEC_REQUEST);
        client.close();
        assertThatThrownBy(handle::detach).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
            assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_HANDLE);
            assertThat(e.getMessage()).contains("cannot detach 'cmd'", "did not outlive it");
        });
    }

    @Test
    void aSessionEndedWithoutAnExitStatusSaysSo() throws Exception {
        ExecHandle handle = start(ExecOptions.builder().build());
        int id = supervisor.next(Protocol.EXEC_REQUEST).id();
        supervisor.send(new Frame(id, Protocol.FLAG_TERMINAL, "exec.something_new", Json.object()));
        assertThatThrownBy(handle::waitFor).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
            assertThat(e.kind()).isEqualTo(ErrorKind.EXEC_FAILED);
            assertThat(e.getMessage()).contains("'cmd' ended without an exit status", "exec.something_new");
        });
    }

    @Test
    void anInterruptedStdinWriteSaysHowMuchWentOut() throws Exception {
        ExecHandle handle = start(ExecOptions.builder().stdinPipe().build());
        supervisor.next(Protocol.EXEC_REQUEST); // never returns credit
        CompletableFuture<java.io.InterruptedIOException> writing = new CompletableFuture<>();
        Thread writer = new Thread(() -> {
            try {
                handle.stdin().write(new byte[Protocol.STDIN_WINDOW + 10]);
                writing.complete(null);
            } catch (java.io.InterruptedIOException e) {
                writing.complete(e);
            } catch (IOException e) {
                writing.completeExceptionally(e);
            }
        });
        writer.start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (writer.getState() != Thread.State.WAITING && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        writer.interrupt();
        assertThat(writing.get(10, TimeUnit.SECONDS).bytesTransferred).isEqualTo(Protocol.STDIN_WINDOW);
        handle.close();
    }

    @Test
    void aCommandOfAClosedConnectionSaysSo() throws Exception {
        ExecHandle handle = start(ExecOptions.builder().build());
        supervisor.next(Protocol.EXEC_REQUEST);
        client.close();
        assertThatThrownBy(handle::waitFor).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
            assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_HANDLE);
            assertThat(e.getMessage()).contains("closed or detached while 'cmd' ran");
        });
    }

    @Test
    void aStreamEndedByItsTimeoutSaysSo() throws Exception {
        ExecHandle handle = start(ExecOptions.builder().timeout(java.time.Duration.ofMillis(100)).build());
        supervisor.next(Protocol.EXEC_REQUEST); // the guest never answers
        assertThat(supervisor.next(Protocol.EXEC_SIGNAL).payload().path("signal").asInt()).isEqualTo(ExecHandle.SIGKILL);
        ExecEvent last = null;
        ExecEvent e;
        while ((e = handle.recv(java.time.Duration.ofSeconds(10))) != null) {
            last = e;
        }
        assertThat(last).isInstanceOf(ExecEvent.Done.class);
        assertThat(handle.timedOut()).isTrue();
        assertThat(supervisor.next(Protocol.EXEC_CANCEL)).as("the session given up after the grace").isNotNull();
    }
}

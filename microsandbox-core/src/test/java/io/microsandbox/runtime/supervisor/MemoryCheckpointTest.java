package io.microsandbox.runtime.supervisor;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * QEMU runs the {@code exec:} migration commands with {@code /bin/sh -c}: a home or checkpoint
 * path holding spaces, quotes, {@code ;}, {@code $()} or back quotes must reach {@code cat} as
 * one literal word, never as shell syntax.
 */
class MemoryCheckpointTest {
    /** Every character sh treats specially, and a command substitution that would leave a marker. */
    private static final String HOSTILE = "a b'c\"d;e$(touch INJECTED)f`touch INJECTED`g\\h&i|j*k\nl";

    /** The migration stream a fake QMP's save command is fed. */
    private static final byte[] SAVE_STREAM = new byte[64 * 1024];

    @TempDir
    Path tmp;

    @Test
    void theSaveAndLoadCommandsTakeAHostilePathLiterally() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve(HOSTILE).resolve("checkpoints").resolve("it's; $(x)"));
        Path memoryFile = dir.resolve("memory.bin");
        byte[] stream = "migration stream \u0000\u0001 bytes".getBytes(StandardCharsets.UTF_8);

        // QEMU's end of the pipe, as a file: Java closes a child's stdin pipe as soon as the child exits,
        // and the shell exits at once, leaving the copy to its background cat
        Path source = Files.write(tmp.resolve("stream"), stream);
        Process save = new ProcessBuilder("/bin/sh", "-c", MemoryCheckpoint.saveCommand(memoryFile)).directory(tmp.toFile())
                .redirectInput(source.toFile()).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        assertThat(save.waitFor(10, TimeUnit.SECONDS)).isTrue();
        assertThat(save.exitValue()).isZero();
        // the background cat renames the file once it has all of it
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!Files.exists(memoryFile) && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertThat(memoryFile).hasBinaryContent(stream);
        assertThat(dir.resolve("memory.bin.part")).doesNotExist();

        String incoming = MemoryCheckpoint.incoming(memoryFile);
        assertThat(incoming).startsWith("exec:");
        Process load = sh(incoming.substring("exec:".length()));
        load.getOutputStream().close();
        assertThat(load.getInputStream().readAllBytes()).isEqualTo(stream);
        assertThat(load.waitFor(10, TimeUnit.SECONDS)).isTrue();

        try (Stream<Path> all = Files.walk(tmp)) {
            List<Path> injected = all.filter(p -> p.getFileName().toString().equals("INJECTED")).toList();
            assertThat(injected).isEmpty();
        }
        assertThat(Path.of("INJECTED")).doesNotExist();
    }

    @Test
    void theLoadCommandsCatDoesNotInheritTheGuestMemoryDescriptor() throws Exception {
        Path guestMemory = Files.writeString(tmp.resolve("guest-memory"), "guest memory");
        // QEMU runs it holding the guest's memory as descriptor 3: a cat of /proc/self/fd/3 reads it only if inherited
        String incoming = MemoryCheckpoint.incoming(Path.of("/proc/self/fd/3")).substring("exec:".length());
        Process load = sh("exec 3<" + MemoryCheckpoint.shellQuote(guestMemory) + "; " + incoming);
        load.getOutputStream().close();
        assertThat(load.getInputStream().readAllBytes()).isEmpty();
        assertThat(load.waitFor(10, TimeUnit.SECONDS)).isTrue();
        assertThat(load.exitValue()).isNotZero();
    }

    @Test
    void aMigrationWhoseProgressCannotBeReadIsCancelledNotLeftRunning() throws Exception {
        List<String> commands = java.util.Collections.synchronizedList(new java.util.ArrayList<>());
        Throwable failure = takeAgainstFakeQmp("{\"error\":{\"desc\":\"monitor busy\"}}", commands, java.time.Duration.ofSeconds(5));
        assertThat(failure).isInstanceOf(java.io.IOException.class).hasMessageContaining("query-migrate");
        assertThat(commands).containsSubsequence("migrate", "query-migrate", "migrate_cancel");
    }

    @Test
    void aFailedCopyRemovesItsPartialFile() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve(HOSTILE));
        Path memoryFile = dir.resolve("memory.bin");
        // no file may grow (ulimit -f 0): the cat's first write fails, as on a full disk
        Path source = Files.write(tmp.resolve("stream"), new byte[64 * 1024]);
        Process save = new ProcessBuilder("/bin/sh", "-c", "ulimit -f 0; " + MemoryCheckpoint.saveCommand(memoryFile)).directory(tmp.toFile())
                .redirectInput(source.toFile()).redirectError(ProcessBuilder.Redirect.DISCARD).start();
        assertThat(save.waitFor(10, TimeUnit.SECONDS)).isTrue();
        // the shell has exited; its background cat may not even have started: the marker says when it is done
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!Files.exists(MemoryCheckpoint.failedFile(memoryFile)) && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertThat(MemoryCheckpoint.failedFile(memoryFile)).exists();
        assertThat(dir.resolve("memory.bin.part")).doesNotExist();
        assertThat(memoryFile).doesNotExist();
    }

    @Test
    void aMemoryCopyThatFailedAfterTheMigrationEndsTheWaitAtOnce() throws Exception {
        // QEMU says completed, but the cat writing the file failed (no file may grow, as on a full disk)
        long start = System.nanoTime();
        Throwable failure = takeAgainstFakeQmp("{\"return\":{\"status\":\"completed\"}}", new java.util.ArrayList<>(),
                java.time.Duration.ofSeconds(30), "ulimit -f 0; ");
        assertThat(failure).isInstanceOf(java.io.IOException.class).hasMessageContaining("failed");
        // the guest stays paused while this waits: not the whole timeout
        assertThat(java.time.Duration.ofNanos(System.nanoTime() - start)).isLessThan(java.time.Duration.ofSeconds(5));
        assertThat(MemoryCheckpoint.failedFile(tmp.resolve("memory.bin"))).doesNotExist();
    }

    @Test
    void aSaveWhoseCopyStartsOnlyAfterTheMigrationCompletedIsWaitedFor() throws Exception {
        // a small stream sits in the pipe: QEMU may say completed before the shell has even made the partial file
        Files.write(tmp.resolve("guest-memory"), new byte[4096]);
        Files.write(tmp.resolve("upper"), new byte[4096]);
        Throwable failure = takeAgainstFakeQmp("{\"return\":{\"status\":\"completed\"}}", new java.util.ArrayList<>(),
                java.time.Duration.ofSeconds(30), "sleep 0.5; ");
        assertThat(failure).isNull();
        assertThat(tmp.resolve("memory.bin")).hasBinaryContent(SAVE_STREAM);
        assertThat(tmp.resolve("memory.bin.part")).doesNotExist();
    }

    /** What {@link MemoryCheckpoint#take} throws against a {@link #serveQmp} monitor that runs no save command. */
    private Throwable takeAgainstFakeQmp(String queryMigrateAnswer, List<String> commands, java.time.Duration timeout) throws Exception {
        return takeAgainstFakeQmp(queryMigrateAnswer, commands, timeout, null);
    }

    /**
     * What {@link MemoryCheckpoint#take} throws (null for nothing) against a {@link #serveQmp}
     * monitor that, unless {@code savePrefix} is null, runs the migration's save command as
     * QEMU does, after that shell prefix, fed {@link #SAVE_STREAM}.
     */
    private Throwable takeAgainstFakeQmp(String queryMigrateAnswer, List<String> commands, java.time.Duration timeout, String savePrefix)
            throws Exception {
        Path socket = tmp.resolve("qmp.sock");
        Path stream = Files.write(tmp.resolve("stream"), SAVE_STREAM);
        try (java.nio.channels.ServerSocketChannel server = java.nio.channels.ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
            server.bind(java.net.UnixDomainSocketAddress.of(socket));
            Thread qemu = new Thread(() -> serveQmp(server, commands, queryMigrateAnswer, savePrefix, stream), "fake-qmp");
            qemu.setDaemon(true);
            qemu.start();
            return org.assertj.core.api.Assertions.catchThrowable(() -> MemoryCheckpoint.take(socket, tmp.resolve("guest-memory"),
                    tmp.resolve("memory.bin"), tmp.resolve("ram.bin"), tmp.resolve("upper"), tmp.resolve("upper-copy"), timeout));
        } finally {
            Files.deleteIfExists(socket);
        }
    }

    /**
     * A QMP monitor that answers {@code query-migrate} with {@code queryMigrateAnswer} and
     * every other command with success, recording each, over as many connections as it is
     * given; with a {@code savePrefix}, {@code migrate} starts its {@code exec:} command
     * (after the prefix, reading {@code stream}) without waiting for it.
     */
    private static void serveQmp(java.nio.channels.ServerSocketChannel server, List<String> commands, String queryMigrateAnswer,
                                 String savePrefix, Path stream) {
        while (server.isOpen()) {
            try (java.nio.channels.SocketChannel c = server.accept();
                 java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(java.nio.channels.Channels.newInputStream(c)));
                 java.io.PrintStream out = new java.io.PrintStream(java.nio.channels.Channels.newOutputStream(c), true)) {
                out.println("{\"QMP\":{}}");
                in.readLine();
                out.println("{\"return\":{}}");
                String line;
                while ((line = in.readLine()) != null) {
                    com.fasterxml.jackson.databind.JsonNode request = new com.fasterxml.jackson.databind.ObjectMapper().readTree(line);
                    String command = request.path("execute").asText();
                    commands.add(command);
                    if (command.equals("migrate") && savePrefix != null) {
                        String uri = request.path("arguments").path("uri").asText();
                        new ProcessBuilder("/bin/sh", "-c", savePrefix + uri.substring("exec:".length())).redirectInput(stream.toFile())
                                .redirectError(ProcessBuilder.Redirect.DISCARD).start();
                    }
                    out.println(command.equals("query-migrate") ? queryMigrateAnswer : "{\"return\":{}}");
                }
            } catch (java.io.IOException e) {
                return;
            }
        }
    }

    /** What QEMU 7.2 does with an exec: target (migration/exec.c): {@code /bin/sh -c <command>}. */
    private Process sh(String command) throws Exception {
        return new ProcessBuilder("/bin/sh", "-c", command).directory(tmp.toFile()).redirectError(ProcessBuilder.Redirect.INHERIT).start();
    }
}

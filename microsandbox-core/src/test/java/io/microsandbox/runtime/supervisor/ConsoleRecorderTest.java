package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

class ConsoleRecorderTest {
    @TempDir
    Path dir;

    @Test
    @Timeout(20)
    void aMovedConsoleKeepsItsLogAndHandsTheLinesBeforeToItsNewSink() throws Exception {
        List<String> before = new CopyOnWriteArrayList<>();
        List<String> after = new CopyOnWriteArrayList<>();
        Path socket = dir.resolve("console.sock");
        Path first = dir.resolve("spare/kernel.log");
        Files.createDirectories(first.getParent());
        ConsoleRecorder recorder = ConsoleRecorder.start(socket, first, line -> before.add(new String(line, StandardCharsets.UTF_8)));
        try (SocketChannel qemu = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            qemu.connect(UnixDomainSocketAddress.of(socket));
            qemu.write(ByteBuffer.wrap("boot one\nboot two\n".getBytes(StandardCharsets.UTF_8)));
            awaitSize(before, 2);
            Path moved = Files.createDirectories(dir.resolve("sandbox/logs")).resolve("kernel.log");
            recorder.moveTo(moved, line -> after.add(new String(line, StandardCharsets.UTF_8)),
                    () -> before.stream().map(s -> s.getBytes(StandardCharsets.UTF_8)).toList());
            qemu.write(ByteBuffer.wrap("after the move\n".getBytes(StandardCharsets.UTF_8)));
            awaitSize(after, 3);
            assertThat(after).containsExactly("boot one", "boot two", "after the move");
            assertThat(before).hasSize(2);
            assertThat(first).doesNotExist();
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (!Files.readString(moved).endsWith("after the move\n") && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            assertThat(Files.readString(moved)).isEqualTo("boot one\nboot two\nafter the move\n");
        } finally {
            recorder.close();
        }
    }

    /** A VM's last console lines (a panic's) are in the log once the recorder says it is drained. */
    @Test
    @Timeout(20)
    void theLastLinesAreInTheLogOnceTheConsoleHasDrained() throws Exception {
        Path socket = dir.resolve("console.sock");
        Path log = dir.resolve("kernel.log");
        ConsoleRecorder recorder = ConsoleRecorder.start(socket, log, null);
        try {
            try (SocketChannel qemu = SocketChannel.open(StandardProtocolFamily.UNIX)) {
                qemu.connect(UnixDomainSocketAddress.of(socket));
                qemu.write(ByteBuffer.wrap(("x".repeat(200) + "\n").repeat(2000).getBytes(StandardCharsets.UTF_8)));
                qemu.write(ByteBuffer.wrap("Kernel panic - not syncing: Attempted to kill init!\n".getBytes(StandardCharsets.UTF_8)));
            }
            recorder.awaitDrained(java.time.Duration.ofSeconds(10));
            assertThat(Files.readString(log)).endsWith("Attempted to kill init!\n");
        } finally {
            recorder.close();
        }
    }

    /** A log that cannot be written (a full disk, a directory gone) still has its console read: an unread one stalls the guest. */
    @Test
    @Timeout(20)
    void aConsoleIsStillReadWhenItsLogCannotBeWritten() throws Exception {
        List<String> lines = new CopyOnWriteArrayList<>();
        Path socket = dir.resolve("console.sock");
        ConsoleRecorder recorder = ConsoleRecorder.start(socket, dir.resolve("gone/kernel.log"), line -> lines.add(new String(line, StandardCharsets.UTF_8)));
        try (SocketChannel qemu = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            qemu.connect(UnixDomainSocketAddress.of(socket));
            // far beyond what the socket buffers: written only while the recorder reads
            byte[] burst = ("y".repeat(99) + "\n").repeat(40_000).getBytes(StandardCharsets.UTF_8);
            ByteBuffer data = ByteBuffer.wrap(burst);
            while (data.hasRemaining()) {
                qemu.write(data);
            }
            // all taken (else the loop above blocks until the timeout); the first lines went to the sink
            assertThat(lines).isNotEmpty().allMatch(line -> line.equals("y".repeat(99)) || line.contains("console"));
        } finally {
            recorder.close();
        }
    }

    private static void awaitSize(List<String> lines, int size) throws InterruptedException {
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (lines.size() < size && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertThat(lines).hasSize(size);
    }
}

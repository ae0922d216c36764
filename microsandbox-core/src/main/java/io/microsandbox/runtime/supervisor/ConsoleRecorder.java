package io.microsandbox.runtime.supervisor;

import java.io.IOException;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.List;

/**
 * Keeps the guest's serial console: QEMU connects its console chardev to a socket this
 * supervisor listens on, and what arrives goes to {@code kernel.log}, which moves to
 * {@code kernel.log.1} at {@link #ROTATE_BYTES}. The guest can write to its console as fast
 * and as long as it likes; the host keeps at most twice that. Reading promptly matters: a
 * console nobody reads stalls the guest's kernel messages.
 */
final class ConsoleRecorder {
    /** Size at which the console log rotates. */
    static final long ROTATE_BYTES = 1L << 20;
    /** Longest console line handed to the line sink; a longer one is handed on in pieces. */
    static final int MAX_LINE = 1024;
    /** Console bytes handed to the line sink per run; after that one notice, then nothing. */
    static final long SINK_BUDGET = 1L << 20;

    private final ServerSocketChannel server;
    /** Where the console goes; {@link #moveTo} changes it, under {@link #fileLock}. */
    private Path log;
    private volatile java.util.function.Consumer<byte[]> lines;
    /** Orders a rotation and its writes with {@link #moveTo}. */
    private final Object fileLock = new Object();
    private final java.io.ByteArrayOutputStream line = new java.io.ByteArrayOutputStream();
    private long sunk;
    private final Object sinkLock = new Object();
    private boolean sinkClosed;
    /** Counted down once the console has closed and everything it sent is recorded. */
    private final java.util.concurrent.CountDownLatch drained = new java.util.concurrent.CountDownLatch(1);

    private ConsoleRecorder(ServerSocketChannel server, Path log, java.util.function.Consumer<byte[]> lines) {
        this.server = server;
        this.log = log;
        this.lines = lines;
    }

    /** Listens on {@code socket} (before QEMU starts) and records into {@code log} on a thread of its own. */
    static ConsoleRecorder start(Path socket, Path log) throws IOException {
        return start(socket, log, null);
    }

    /**
     * Like {@link #start(Path, Path)}, also handing each console line (without its line end,
     * at most {@link #MAX_LINE} bytes, {@link #SINK_BUDGET} bytes in all) to {@code lines}
     * on the recording thread.
     */
    static ConsoleRecorder start(Path socket, Path log, java.util.function.Consumer<byte[]> lines) throws IOException {
        Files.deleteIfExists(socket);
        Files.deleteIfExists(log);
        Files.deleteIfExists(rotated(log));
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            server.bind(UnixDomainSocketAddress.of(socket));
        } catch (IOException | RuntimeException e) {
            server.close();
            throw e;
        }
        ConsoleRecorder recorder = new ConsoleRecorder(server, log, lines);
        SupervisorLog.daemon("console", recorder::record, e -> { }).start();
        return recorder;
    }

    private void record() {
        try (server; SocketChannel channel = server.accept()) {
            ByteBuffer buf = ByteBuffer.allocate(64 * 1024);
            // null once the log cannot be written (a full host disk): the console is still read
            // (an unread one stalls the guest), not kept
            OutputStream out = null;
            long size = 0;
            try {
                synchronized (fileLock) {
                    out = open();
                }
            } catch (IOException e) {
                SupervisorLog.warn("console log not written: " + e.getMessage());
            }
            try {
                while (channel.read(buf.clear()) >= 0) {
                    if (out != null) {
                        try {
                            synchronized (fileLock) {
                                if (size + buf.position() > ROTATE_BYTES) {
                                    out.close();
                                    out = null;
                                    Files.move(log, rotated(log), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
                                    out = open();
                                    size = 0;
                                }
                                out.write(buf.array(), 0, buf.position());
                                out.flush();
                                size += buf.position();
                            }
                        } catch (IOException e) {
                            SupervisorLog.warn("console log not written any more: " + e.getMessage());
                            Supervisor.closeQuietly(out);
                            out = null;
                        }
                    }
                    split(buf.array(), buf.position());
                }
            } finally {
                Supervisor.closeQuietly(out);
                flushLine();
            }
        } catch (IOException e) {
            if (server.isOpen()) {
                SupervisorLog.warn("console recording ended: " + e.getMessage());
            }
        } finally {
            drained.countDown();
        }
    }

    /**
     * Waits, at most {@code timeout}, for what the console sent before it closed to be in the
     * log: the last lines of a VM that just exited (a panic's) are what its end is judged by.
     */
    void awaitDrained(java.time.Duration timeout) {
        try {
            drained.await(timeout.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Moves the log recorded so far to {@code newLog}, where the console goes from now on, and
     * hands what {@code earlier} gives (lines the sink before took) and then the lines that come from now
     * on to {@code newLines}: a pre-booted VM's console, recorded before its sandbox was known
     * (see {@link PreBoot}).
     */
    void moveTo(Path newLog, java.util.function.Consumer<byte[]> newLines, java.util.function.Supplier<List<byte[]>> earlier) throws IOException {
        synchronized (fileLock) {
            if (Files.exists(log)) {
                Files.move(log, newLog, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            }
            if (Files.exists(rotated(log))) {
                Files.move(rotated(log), rotated(newLog), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            }
            log = newLog;
        }
        synchronized (sinkLock) {
            // taken under the lock the sink is called under: no line falls between the two sinks
            for (byte[] line : earlier.get()) {
                try {
                    newLines.accept(line);
                } catch (RuntimeException e) {
                    SupervisorLog.warn("console line sink failed: " + e);
                }
            }
            lines = newLines;
        }
    }

    private void split(byte[] data, int n) {
        if (lines == null) {
            return;
        }
        for (int i = 0; i < n; i++) {
            byte b = data[i];
            if (b == '\n') {
                flushLine();
            } else if (b != '\r') {
                line.write(b);
                if (line.size() >= MAX_LINE) {
                    flushLine();
                }
            }
        }
    }

    private void flushLine() {
        if (lines == null || line.size() == 0) {
            return;
        }
        byte[] bytes = line.toByteArray();
        line.reset();
        synchronized (sinkLock) {
            java.util.function.Consumer<byte[]> sink = lines;
            if (sink == null || sinkClosed || sunk >= SINK_BUDGET) {
                return;
            }
            sunk += bytes.length;
            try {
                sink.accept(bytes);
                if (sunk >= SINK_BUDGET) {
                    sink.accept("(further console output is only in kernel.log)".getBytes(java.nio.charset.StandardCharsets.UTF_8));
                }
            } catch (RuntimeException e) {
                SupervisorLog.warn("console line sink failed: " + e);
            }
        }
    }

    /**
     * No more lines go to the sink (they still go to kernel.log): called before the run's last
     * exec log entry, which must stay last. A line being handed over finishes first.
     */
    void closeSink() {
        synchronized (sinkLock) {
            sinkClosed = true;
        }
    }

    private OutputStream open() throws IOException {
        // under fileLock: the path may move
        return Files.newOutputStream(log, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    }

    /** Stops listening (a VMM that never connected leaves nothing behind). */
    void close() {
        try {
            server.close();
        } catch (IOException ignored) {
            // closing is best effort
        }
    }

    static Path rotated(Path log) {
        return log.resolveSibling(log.getFileName() + ".1");
    }
}

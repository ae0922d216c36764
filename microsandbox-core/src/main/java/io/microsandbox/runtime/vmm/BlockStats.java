package io.microsandbox.runtime.vmm;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;

/**
 * QEMU's block device counters, asked over a monitor of their own
 * ({@link QemuCommand#statsMonitorSocket}) whose connection stays open between questions: a
 * connection, greeting and capabilities negotiation for each once-a-second sample cost QEMU's
 * main loop and the supervisor more CPU than the question, in every idle sandbox. QEMU serves
 * one client per monitor socket, so this connection never stands in the way of a pause, resume
 * or checkpoint on the other. One thread asks; a call that fails drops the connection, and the
 * next one opens another.
 */
public final class BlockStats implements java.io.Closeable {
    private final Path socket;
    private final Duration timeout;
    private volatile QmpClient.Session session;
    private volatile boolean closed;

    /** Bytes read and written by the guest's disks since QEMU started. */
    public record Totals(long readBytes, long writtenBytes) {
    }

    /** Counters from the monitor at {@code socket}; each call fails once {@code timeout} has passed. */
    public BlockStats(Path socket, Duration timeout) {
        this.socket = socket;
        this.timeout = timeout;
    }

    /** The sum over all of QEMU's block devices, asked now. */
    public Totals read() throws IOException {
        QmpClient.Session current = connection();
        try {
            long read = 0;
            long written = 0;
            for (JsonNode device : current.execute("query-blockstats", null, timeout)) {
                read += device.path("stats").path("rd_bytes").asLong();
                written += device.path("stats").path("wr_bytes").asLong();
            }
            return new Totals(read, written);
        } catch (IOException | RuntimeException e) {
            session = null;
            current.close();
            throw e;
        }
    }

    private QmpClient.Session connection() throws IOException {
        QmpClient.Session current = session;
        if (current == null) {
            if (closed) {
                throw new IOException("block statistics closed");
            }
            current = QmpClient.Session.open(socket, timeout);
            session = current;
            if (closed) {
                // closed while the connection opened: it must not outlive the close
                session = null;
                current.close();
                throw new IOException("block statistics closed");
            }
        }
        return current;
    }

    /** Drops the connection; a call in progress fails. */
    @Override
    public void close() {
        closed = true;
        QmpClient.Session current = session;
        session = null;
        if (current != null) {
            try {
                current.close();
            } catch (IOException ignored) {
                // a socket that cannot be closed cleanly is closed all the same
            }
        }
    }
}

package io.microsandbox.image.oci;

import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.time.Duration;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * A registry's response body that is closed when a window of {@link #window()} brings fewer
 * than {@link #MIN_BYTES_PER_WINDOW} bytes. The HTTP client's request timeout ends with the
 * headers: a registry that then sends nothing, or a byte a minute, would hold the pull, and the
 * cache locks it holds for every other pull of the same image or layer, for ever. Closing the
 * body wakes the blocked reader, which then fails with a message that says so.
 */
final class StallGuard extends FilterInputStream {
    /** About 1 KiB/s: far below any network an image could be pulled over. */
    static final long MIN_BYTES_PER_WINDOW = 32 << 10;
    private static final ScheduledThreadPoolExecutor WATCH = new ScheduledThreadPoolExecutor(1, r -> {
        Thread t = new Thread(r, "msb-registry-stall-guard");
        t.setDaemon(true);
        return t;
    });

    static {
        // a closed body's check leaves the queue at once instead of holding the body for a window
        WATCH.setRemoveOnCancelPolicy(true);
    }

    private final Duration window;
    private final ScheduledFuture<?> check;
    private volatile long bytes;
    private long bytesAtLastCheck;
    private volatile boolean ended;
    private volatile boolean stalled;

    /** {@code body} guarded, or as it is when the window is 0 or less (the guard turned off). */
    static InputStream guard(InputStream body) {
        Duration window = window();
        return window.isNegative() || window.isZero() ? body : new StallGuard(body, window);
    }

    private StallGuard(InputStream in, Duration window) {
        super(in);
        this.window = window;
        this.check = WATCH.scheduleWithFixedDelay(this::check, window.toMillis(), window.toMillis(), TimeUnit.MILLISECONDS);
    }

    /** The window: 30 s, or {@code microsandbox.registry.stallSeconds} (0 turns the guard off). */
    static Duration window() {
        return Duration.ofSeconds(Long.getLong("microsandbox.registry.stallSeconds", 30));
    }

    private void check() {
        long now = bytes;
        if (!ended && now - bytesAtLastCheck < MIN_BYTES_PER_WINDOW) {
            stalled = true;
            check.cancel(false);
            try {
                in.close();
            } catch (IOException ignored) {
                // closing is what wakes the reader
            }
        }
        bytesAtLastCheck = now;
    }

    @Override
    public int read() throws IOException {
        try {
            int c = in.read();
            if (c < 0) {
                ended = true;
            } else {
                bytes++;
            }
            return c;
        } catch (IOException e) {
            throw explained(e);
        }
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
        try {
            int n = in.read(b, off, len);
            if (n < 0) {
                ended = true;
            } else {
                bytes += n;
            }
            return n;
        } catch (IOException e) {
            throw explained(e);
        }
    }

    /** The failure of a read this guard ended says so; any other passes as it is. */
    private IOException explained(IOException e) {
        return stalled ? new IOException("the registry sent fewer than " + MIN_BYTES_PER_WINDOW + " bytes in " + window.toSeconds()
                + " s (a stalled connection)", e) : e;
    }

    @Override
    public void close() throws IOException {
        ended = true;
        check.cancel(false);
        in.close();
    }
}

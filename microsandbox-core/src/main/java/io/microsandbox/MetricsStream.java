package io.microsandbox;

import java.time.Duration;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * A live metrics subscription from {@link Sandbox#metricsStream(Duration)}: a snapshot every
 * interval until the sandbox ends or the stream is closed.
 */
public final class MetricsStream implements AutoCloseable {
    private static final Object END = new Object();

    private final BlockingQueue<Object> snapshots = new LinkedBlockingQueue<>(64);
    private final Thread sampler;
    private final String name;
    private volatile boolean ended;
    private volatile MicrosandboxException failure;
    private volatile boolean closed;

    MetricsStream(Sandbox sandbox, Duration interval) {
        this.name = sandbox.name();
        // whole milliseconds, rounded up; an interval past a day is taken as a day (nanoseconds would overflow)
        Duration bounded = interval.compareTo(Duration.ofDays(1)) > 0 ? Duration.ofDays(1) : interval;
        long period = Math.max(1_000_000L, (bounded.toNanos() + 999_999L) / 1_000_000L * 1_000_000L);
        this.sampler = new Thread(() -> {
            try {
                long next = System.nanoTime();
                while (!Thread.currentThread().isInterrupted()) {
                    Metrics m = sandbox.metrics();
                    // a slow reader sees the newest snapshots: drop the oldest when full
                    while (!snapshots.offer(m)) {
                        snapshots.poll();
                    }
                    // a fixed rate; after a sample slower than the period, the next comes at once, not a burst
                    next = Math.max(next + period, System.nanoTime());
                    TimeUnit.NANOSECONDS.sleep(next - System.nanoTime());
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (MicrosandboxException e) {
                // the sandbox ended (or the handle was released), or the stream was closed: it
                // ends with them; anything else (a supervisor that stopped answering) the reader is told of
                if (e.kind() != ErrorKind.SANDBOX_NOT_RUNNING && e.kind() != ErrorKind.INVALID_HANDLE && !closed) {
                    failure = e;
                }
            } catch (RuntimeException | Error e) {
                failure = new MicrosandboxException(ErrorKind.INTERNAL, "metrics sampling failed: " + e, e);
            } finally {
                ended = true;
                // the end marker must get in even when a slow reader left the queue full
                while (!snapshots.offer(END)) {
                    snapshots.poll();
                }
            }
        }, "msb-metrics-" + sandbox.name());
        sampler.setDaemon(true);
        sampler.start();
    }

    /**
     * The next snapshot, waiting as needed; null once the stream has ended with the sandbox.
     *
     * @throws MicrosandboxException when sampling failed (the supervisor stopped answering, for
     *         one): the stream has ended, and every later call says so again
     */
    public Metrics recv() {
        try {
            return unwrap(snapshots.take());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for metrics");
        }
    }

    /**
     * The next snapshot, or null when none arrives within {@code wait} or the stream has ended
     * with the sandbox.
     *
     * @throws MicrosandboxException when sampling failed, as {@link #recv()} does
     */
    public Metrics recv(Duration wait) {
        try {
            return unwrap(snapshots.poll(wait.toMillis(), TimeUnit.MILLISECONDS));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for metrics");
        }
    }

    private Metrics unwrap(Object item) {
        if (item == END) {
            snapshots.offer(END); // later calls see the end too
            MicrosandboxException failed = failure;
            if (failed != null) {
                throw new MicrosandboxException(failed.kind(), "the metrics stream of sandbox '" + name + "' failed: " + failed.getMessage(), failed);
            }
            return null;
        }
        return (Metrics) item;
    }

    /** Whether the stream has ended. */
    public boolean isEnded() {
        return ended;
    }

    /** Stops sampling. */
    @Override
    public void close() {
        closed = true;
        sampler.interrupt();
    }
}

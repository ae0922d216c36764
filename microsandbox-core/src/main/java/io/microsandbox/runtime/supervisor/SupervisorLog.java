package io.microsandbox.runtime.supervisor;

import java.time.Instant;

/** The supervisor's diagnostics, one timestamped line each, on stderr (its log file). */
final class SupervisorLog {
    private SupervisorLog() {
    }

    static void log(String message) {
        System.err.println(Instant.now() + " [" + Thread.currentThread().getName() + "] " + message);
    }

    /** A daemon thread whose unexpected failure is logged, then handed to {@code onFailure}. */
    static Thread daemon(String name, Runnable body, java.util.function.Consumer<Throwable> onFailure) {
        Thread t = new Thread(() -> {
            try {
                body.run();
            } catch (Throwable e) {
                log("thread " + Thread.currentThread().getName() + " failed: " + e);
                onFailure.accept(e);
            }
        }, "msb-supervisor-" + name);
        t.setDaemon(true);
        return t;
    }
}

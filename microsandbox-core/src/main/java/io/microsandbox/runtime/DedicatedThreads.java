package io.microsandbox.runtime;

import java.util.concurrent.Executor;

/**
 * Runs each task on a daemon thread of its own, for the few blocking steps of a creation that
 * run beside the caller in the application's JVM: on the common pool, which the application
 * may keep busy, they would wait for a free thread while the creation's time runs.
 */
public final class DedicatedThreads {
    private DedicatedThreads() {
    }

    /** An executor that starts a daemon thread named {@code name} for each task. */
    public static Executor named(String name) {
        return task -> {
            Thread t = new Thread(task, name);
            t.setDaemon(true);
            t.start();
        };
    }
}

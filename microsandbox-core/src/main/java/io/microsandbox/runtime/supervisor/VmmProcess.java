package io.microsandbox.runtime.supervisor;

import io.microsandbox.runtime.Posix;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.IntConsumer;

/**
 * The VMM child of a supervisor: spawned with a parent-death signal, reaped by a thread of
 * its own, and killed through a pidfd, so that a kill can never reach another process that
 * reused its pid.
 */
final class VmmProcess {
    private final int pid;
    /** -1 once closed; guarded by {@code this} so that a kill never uses a number the kernel gave to another descriptor. */
    private int pidfd;
    private final CountDownLatch exited = new CountDownLatch(1);
    private volatile int waitStatus = -1;

    private VmmProcess(int pid, int pidfd) {
        this.pid = pid;
        this.pidfd = pidfd;
    }

    /**
     * Starts the VMM with {@code guestMemory} as its fd {@link Posix#PASSED_FD}. Call it from
     * the thread that outlives the VMM: the parent-death signal is tied to the thread that forks.
     */
    static VmmProcess spawn(List<String> argv, Path log, int guestMemory) throws IOException {
        int pid = Posix.spawn(argv.toArray(String[]::new), null, null, log.toString(), Posix.SIGKILL, false, guestMemory);
        // Not reaped yet, so the pid cannot have been reused: the pidfd names our child.
        int pidfd = Posix.pidfdOpen(pid);
        return new VmmProcess(pid, pidfd);
    }

    /** Reaps the VMM on a daemon thread and reports its raw wait status once. */
    void onExit(IntConsumer listener) {
        SupervisorLog.daemon("vmm-reaper", () -> {
            int status;
            try {
                status = Posix.waitPid(pid);
            } catch (IOException e) {
                SupervisorLog.warn("waitpid failed: " + e.getMessage());
                status = -1;
            }
            waitStatus = status;
            closePidfd();
            exited.countDown();
            listener.accept(status);
        }, e -> exited.countDown()).start();
    }

    /** SIGKILL; a no-op once the VMM has been reaped. Never blocks. */
    synchronized void kill() {
        try {
            if (pidfd >= 0) {
                Posix.pidfdSignal(pidfd, Posix.SIGKILL);
            }
        } catch (IOException e) {
            SupervisorLog.error("cannot kill the VMM: " + e.getMessage());
        }
    }

    /** Reaped, the process is gone for good: its pidfd has nothing left to name. */
    private synchronized void closePidfd() {
        if (pidfd >= 0) {
            Posix.close(pidfd);
            pidfd = -1;
        }
    }

    boolean awaitExit(long millis) throws InterruptedException {
        return exited.await(millis, TimeUnit.MILLISECONDS);
    }

    boolean hasExited() {
        return exited.getCount() == 0;
    }

    /**
     * Whether the VMM has exited, reaped or not: read from /proc, for a VMM nobody reaps yet
     * (a second reaper would take the status from the one {@link #onExit} starts later).
     */
    boolean hasEnded() {
        try {
            return io.microsandbox.runtime.vmm.VmmSampler.statFields(pid)[0].equals("Z");
        } catch (IOException | RuntimeException e) {
            return true;
        }
    }

    int pid() {
        return pid;
    }

    int waitStatus() {
        return waitStatus;
    }

    static String describe(int status) {
        if (status == -1) {
            return "unknown status";
        }
        return Posix.exited(status) ? "exit code " + Posix.exitCode(status) : "signal " + Posix.termSignal(status);
    }
}

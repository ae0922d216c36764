package io.microsandbox.runtime.supervisor;

import io.microsandbox.runtime.RuntimeFiles;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.TimeUnit;

/**
 * One spare supervisor JVM per home, started ahead of the next creation so that it waits for
 * no JVM start-up. The start costs about 0.2 s of CPU, and on a small host it competes with
 * whatever runs beside it: when creations come now and then, a spare starts once the sandbox
 * just booted has finished its first exchange (its first command, typically) or a deferral
 * after its client connected, whichever comes first, so it does not slow that first command,
 * which is what a caller waits for (about 16 ms of a restore's first command under emulation
 * on 2 cores). When creations come in a burst (less than {@link #BURST_GAP} apart), a spare
 * starts as soon as a sandbox has booted, so the next creation finds it at least started.
 * While it waits, a spare also boots a VM like the home's last creation's, which the next
 * creation adopts when it is of the same shape ({@link #PREBOOT_PROPERTY}).
 * {@code -Dmicrosandbox.supervisor.spare=false} keeps no spare; {@value #DEFERRAL_PROPERTY}
 * sets the deferral in milliseconds (default 1000).
 */
public final class SpareSupervisors {
    /**
     * A spare also boots a VM shaped like the home's last creation while it waits
     * ({@link PreBoot}), which the next creation of that shape adopts: its QEMU start and kernel
     * boot leave the creation's path (after a restore: QEMU's start and the filling of its
     * memory, for the next restore of that checkpoint). On by default; {@code false} turns it off. Read at each
     * spare's start.
     */
    public static final String PREBOOT_PROPERTY = "microsandbox.supervisor.preboot";
    /** The longest a spare's start waits for the new sandbox's first exchange, in milliseconds. */
    public static final String DEFERRAL_PROPERTY = "microsandbox.supervisor.spareDeferralMs";
    private static final boolean KEEP_SPARE = Boolean.parseBoolean(System.getProperty("microsandbox.supervisor.spare", "true"));
    /** Creations closer together than this are a burst: their spares start without deferral. */
    public static final Duration BURST_GAP = Duration.ofSeconds(1);
    /** How long {@link #release} waits for a spare that is still starting. */
    private static final Duration START_WAIT = Duration.ofSeconds(60);
    /** Runtimes on different homes never share a spare. */
    private static final ConcurrentMap<Path, Slot> SLOTS = new ConcurrentHashMap<>();

    private SpareSupervisors() {
    }

    /**
     * Removes what pre-booted VMs of {@code home} left whose supervisor is gone: the directory
     * of a VM adopted by a sandbox whose supervisor was killed still names that sandbox's upper
     * disk, whose space a removal of the sandbox alone would not free.
     */
    public static void removeAbandonedPreBoots(Path home) {
        PreBoot.removeAbandoned(home.resolve("run"));
    }

    /** {@link #acquire(Path)} for the default home. */
    public static SupervisorProcess acquire() {
        return acquire(RuntimeFiles.defaultHome());
    }

    /**
     * A supervisor JVM for a new sandbox under {@code home}, waiting for
     * {@link SupervisorProcess#boot}: the home's spare when one waits, so the creation waits for
     * no JVM start-up; otherwise one starts now, and its start-up overlaps the disk preparation.
     */
    public static SupervisorProcess acquire(Path home) {
        Slot slot = slot(home);
        slot.acquired(System.nanoTime());
        SupervisorProcess taken = slot.take();
        if (taken != null) {
            // one close to its own idle timeout might exit before it reads the spec
            if (taken.age().toMillis() < Supervisor.SPARE_IDLE_MS / 2 && taken.isAlive()) {
                return taken;
            }
            taken.abandon();
        }
        return SupervisorProcess.launch(home);
    }

    /**
     * Starts the spare of {@code home} in the background once {@code firstExchange} completes
     * (normally or not) or the deferral has passed, or at once in a burst of creations, unless
     * a spare waits, starts or is already due. {@code shape} is the VM the spare boots while it
     * waits (see {@link #PREBOOT_PROPERTY}), null for none: the next creation is taken to be
     * like this one, so after a restart no VM is booted ahead, and after a restore QEMU is
     * started for the next restore of the same checkpoint.
     */
    public static void replenishAfter(Path home, CompletionStage<?> firstExchange, PrebootShape shape) {
        if (!KEEP_SPARE) {
            return;
        }
        Slot slot = slot(home);
        slot.shape = shape;
        if (slot.inBurst()) {
            slot.startNow(home);
            return;
        }
        CompletableFuture<Void> due = new CompletableFuture<>();
        if (!slot.schedule(due)) {
            return;
        }
        firstExchange.whenComplete((result, failure) -> due.complete(null));
        due.completeOnTimeout(null, Long.getLong(DEFERRAL_PROPERTY, 1000), TimeUnit.MILLISECONDS)
                .thenRun(() -> slot.startIfDue(due, home));
    }

    /**
     * Starts the spare of {@code home} now unless one waits or starts: after a creation whose
     * supervisor was used up without a sandbox to show for it (its boot failed, or its client
     * could not connect), so that the next creation still finds one.
     */
    public static void replenishNow(Path home) {
        if (KEEP_SPARE) {
            slot(home).startNow(home);
        }
    }

    /**
     * Takes back a supervisor from {@link #acquire} that was never handed a spec (its creation
     * failed before the boot: an image that is not there, a port that is taken): it becomes the
     * home's spare again, or is abandoned when another spare waits or spares are off.
     */
    public static void putBack(Path home, SupervisorProcess unused) {
        SupervisorProcess surplus = unused;
        if (KEEP_SPARE && unused.isAlive()) {
            surplus = slot(home).settle(unused);
        }
        if (surplus != null) {
            surplus.abandon();
        }
    }

    /**
     * Ends the spare of {@code home}, if one waits, starts or is due, and waits for it to go: for
     * an application that is done with a home (a closing context, a test's temporary home). A
     * spare also ends by itself when this JVM exits or after {@link Supervisor#SPARE_IDLE_MS}.
     */
    public static void release(Path home) {
        Slot slot = SLOTS.get(key(home));
        if (slot == null) {
            return;
        }
        // one still starting would be kept (and write into the home) after this returned
        Thread starting = slot.cancel();
        if (starting != null) {
            try {
                starting.join(START_WAIT.toMillis());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        SupervisorProcess taken = slot.take();
        if (taken != null) {
            taken.abandon();
        }
    }

    private static Slot slot(Path home) {
        return SLOTS.computeIfAbsent(key(home), h -> new Slot());
    }

    private static Path key(Path home) {
        return home.toAbsolutePath().normalize();
    }

    /** A home's spare: the one waiting, the thread starting one, the start that is due. */
    private static final class Slot {
        private SupervisorProcess waiting;
        private Thread starter;
        /** The VM the next spare pre-boots: the last creation's shape, null when it was neither a plain create nor a restore. */
        private volatile PrebootShape shape;
        private CompletableFuture<Void> due;
        /** When the last two creations took their supervisor (System.nanoTime), once there were two. */
        private long lastAcquired;
        private long previousAcquired;
        private int acquisitions;

        synchronized void acquired(long now) {
            previousAcquired = lastAcquired;
            lastAcquired = now;
            acquisitions = Math.min(acquisitions + 1, 2);
        }

        synchronized boolean inBurst() {
            return acquisitions == 2 && lastAcquired - previousAcquired < BURST_GAP.toNanos();
        }

        synchronized SupervisorProcess take() {
            SupervisorProcess taken = waiting;
            waiting = null;
            return taken;
        }

        /** Makes {@code next} the start that is due, unless there is a spare or one on its way. */
        synchronized boolean schedule(CompletableFuture<Void> next) {
            if (waiting != null || starter != null || due != null) {
                return false;
            }
            due = next;
            return true;
        }

        /** Starts the spare {@code trigger} was due for, unless it was cancelled or started since. */
        synchronized void startIfDue(CompletableFuture<Void> trigger, Path home) {
            if (due == trigger) {
                due = null;
                startSpare(home);
            }
        }

        /** Starts a spare now, in place of one that is due, unless one waits or starts. */
        synchronized void startNow(Path home) {
            if (waiting == null && starter == null) {
                due = null;
                startSpare(home);
            }
        }

        private void startSpare(Path home) {
            Thread thread = new Thread(() -> {
                SupervisorProcess next = null;
                try {
                    next = SupervisorProcess.launch(home);
                    PrebootShape boot = shape;
                    if (boot != null && Boolean.parseBoolean(System.getProperty(PREBOOT_PROPERTY, "true"))) {
                        next.preboot(boot);
                    }
                } catch (RuntimeException e) {
                    // no spare: the next creation starts its own supervisor
                } finally {
                    SupervisorProcess surplus = settle(next);
                    if (surplus != null) {
                        surplus.abandon();
                    }
                }
            }, "msb-supervisor-spare");
            thread.setDaemon(true);
            try {
                thread.start();
                starter = thread;
            } catch (RuntimeException | OutOfMemoryError e) {
                // no thread for it: the next creation starts its own supervisor
            }
        }

        /** Keeps {@code started} (null when it failed) as the spare unless one already waits; returns what is not kept. */
        synchronized SupervisorProcess settle(SupervisorProcess started) {
            if (starter == Thread.currentThread()) {
                starter = null;
            }
            if (waiting == null) {
                waiting = started;
                return null;
            }
            return started;
        }

        /** Cancels a due start and returns the thread starting a spare, if any. */
        synchronized Thread cancel() {
            due = null;
            return starter;
        }
    }
}

package io.microsandbox.runtime.supervisor;

import io.microsandbox.image.RootDisks;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.SandboxLock;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxPreparer;
import io.microsandbox.runtime.SparseFiles;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameLink;
import io.microsandbox.runtime.agent.Protocol;
import java.io.IOException;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * A VM a spare supervisor boots before it knows its sandbox, in a directory of its own under
 * the home's socket directory ({@code run/spare-<pid>}): QEMU with the home's last
 * {@link PrebootShape}, a fresh upper disk of that shape's size, up to the agent's hello. The
 * guest has then received nothing of any sandbox: its agent waits for {@code core.configure}.
 * A creation whose command line is the same but for its own paths, and whose upper disk is a
 * fresh one, adopts it ({@link #adoptInto}): the upper disk replaces the creator's empty one,
 * QEMU's monitors are reachable at the sandbox's socket names, and the boot goes on from the
 * hello. Anything else discards it and boots as without. Every sandbox still boots a kernel
 * of its own (its own address layout, entropy and boot id); what moves off the creation's path
 * is QEMU's start and the kernel's boot.
 *
 * <p>After a restore the shape names its checkpoint: QEMU is started waiting for it
 * ({@code -incoming defer}) with its own copy of the checkpoint's upper disk (checked against
 * the checkpoint's digest) and its guest memory filled from the checkpoint's, up to QEMU's
 * connection to the agent port (a resumed agent says nothing before {@code core.restore}).
 * A restore of the same checkpoint files, unchanged since, adopts it and only loads the
 * device state; what moves off its path is QEMU's start and the memory's fill.
 *
 * <p>The directory belongs to the process that holds the lock on {@code run/.spare-<pid>.lock}
 * (taken before the directory is made, kept until the directory is removed, for an adopted VM
 * at the end of its sandbox, or until the process dies): another process removes the
 * directory only once it can take that lock, not because no process has its pid, which says
 * nothing across pid namespaces (two containers sharing a home). Only directories made before
 * there were lock files go by pid.
 */
final class PreBoot {
    /** Console lines kept for the sandbox's exec log while there is none (its boot's), at most this many bytes. */
    static final int EARLY_CONSOLE_BYTES = 64 * 1024;
    /**
     * How long a pre-booted VM waits for a sandbox before it is shut down (the spare JVM stays):
     * a booted guest holds about 135 MiB of host memory under TCG.
     */
    static final long IDLE_MS = 120_000;
    /** The longest an adoption waits for QEMU to finish its start-up. */
    static final long STARTED_TIMEOUT_MS = 10_000;
    /** The longest a pre-boot waits for the agent's hello before it gives up its VM. */
    static final long HELLO_TIMEOUT_MS = 60_000;
    /**
     * A checkpoint's upper disk larger than this (allocated) gets no VM started ahead: the
     * spare copies it before it reads its next spec, which a creation would wait for.
     */
    static final long MAX_UPPER_COPY_BYTES = 64L << 20;
    private static final String DIR_PREFIX = "spare-";
    /** The lock file of {@code run/spare-<pid>} is {@code run/.spare-<pid>.lock}: outside, so that it is there before the directory. */
    private static final String LOCK_SUFFIX = ".lock";
    /** The pre-boot directory locks this process holds, by socket directory (one per home). */
    private static final Map<Path, SandboxLock> OWNED = new HashMap<>();
    /** Tries at taking the lock file of this process's directory, which a remover may hold for a moment. */
    private static final int LOCK_TRIES = 10;
    /** The pause between those tries. */
    private static final long LOCK_RETRY_MS = 20;

    private final Path dir;
    private final Path upper;
    private final List<String> argv;
    private final GuestMemory memory;
    private final ServerSocketChannel vmServer;
    private final ConsoleRecorder console;
    private final VmmProcess vmm;
    private final long startedNanos;
    /** For a restore's VM: its checkpoint, and what its files were when the VM was made of them; else null. */
    private final PrebootShape.Restore checkpoint;
    private final List<Object> checkpointFiles;
    /** The lower disk as its path named it when QEMU was started (one rebuilt at the path since is another); null when none. */
    private final io.microsandbox.runtime.vmm.LowerDiskFile lowerDisk;
    /**
     * The guest memory as the fill writes it, opened before anything could close the memfd:
     * a fill that opened it by descriptor number later could write into a file that reused
     * the number. Closing it ends the fill. Null for a boot.
     */
    private final java.nio.channels.FileChannel memoryFill;
    /** Released once a discard is over: a second caller waits for the VM to be gone too. */
    private final java.util.concurrent.CountDownLatch discardDone = new java.util.concurrent.CountDownLatch(1);
    /**
     * The agent's link once it said hello (with the hello), failed if it did not. For a
     * restore's VM, the link once QEMU connected and the guest memory is filled, with no frame.
     */
    private final CompletableFuture<Hello> hello = new CompletableFuture<>();
    private volatile FrameLink link;
    /** The console's lines so far, for the exec log of the sandbox that adopts the VM. */
    private final EarlyLines earlyConsole;
    private volatile boolean adopted;
    /**
     * The deadlines of a VM that is nobody's: its hello's, and its idle time's. An adoption
     * cancels both (the sandbox's boot timeout rules then).
     */
    private final java.util.concurrent.ScheduledThreadPoolExecutor deadlines = deadlineTimer();
    /** Set once by whoever decides the VM's fate: an adoption ({@link #claim}) or the idle timeout. */
    private final java.util.concurrent.atomic.AtomicBoolean claimed = new java.util.concurrent.atomic.AtomicBoolean();
    private final java.util.concurrent.atomic.AtomicBoolean discarded = new java.util.concurrent.atomic.AtomicBoolean();

    /** The agent's link, and its hello: null for a restore's VM, whose agent resumes silent. */
    record Hello(FrameLink link, Frame frame) {
    }

    private PreBoot(Path dir, Path upper, List<String> argv, GuestMemory memory, ServerSocketChannel vmServer,
            ConsoleRecorder console, EarlyLines earlyConsole, VmmProcess vmm, long startedNanos,
            PrebootShape.Restore checkpoint, List<Object> checkpointFiles, io.microsandbox.runtime.vmm.LowerDiskFile lowerDisk,
            java.nio.channels.FileChannel memoryFill) {
        this.checkpoint = checkpoint;
        this.lowerDisk = lowerDisk;
        this.memoryFill = memoryFill;
        this.checkpointFiles = checkpointFiles;
        this.earlyConsole = earlyConsole;
        this.dir = dir;
        this.upper = upper;
        this.argv = argv;
        this.memory = memory;
        this.vmServer = vmServer;
        this.console = console;
        this.vmm = vmm;
        this.startedNanos = startedNanos;
    }

    /**
     * Boots a VM of {@code shape} under {@code home}; null when it cannot (what it had made is
     * closed and removed). Call it from the thread that outlives the VM (the parent-death signal).
     */
    static PreBoot start(Path home, PrebootShape shape) {
        return start(home, shape, HELLO_TIMEOUT_MS, IDLE_MS);
    }

    /**
     * {@link #start(Path, PrebootShape)}, giving up a VM whose hello has not come after
     * {@code helloMillis} and shutting it down after {@code idleMillis} unclaimed.
     */
    static PreBoot start(Path home, PrebootShape shape, long helloMillis, long idleMillis) {
        Path runRoot = home.resolve("run");
        Path dir = runRoot.resolve(DIR_PREFIX + ProcessHandle.current().pid());
        GuestMemory memory = null;
        java.nio.channels.FileChannel memoryFill = null;
        ServerSocketChannel vmServer = null;
        ConsoleRecorder console = null;
        VmmProcess vmm = null;
        PreBoot preboot = null;
        try {
            OwnerOnly.directories(home, runRoot);
            ownDirectory(runRoot, dir);
        } catch (IOException | RuntimeException e) {
            // never cleaned up below: the directory may be another live process's
            SupervisorLog.log("no VM started ahead: " + e.getMessage());
            return null;
        }
        try {
            removeAbandoned(runRoot);
            // a directory of a dead process that had this pid
            SandboxPreparer.deleteTree(dir);
            OwnerOnly.directories(home, dir);
            Path upper = dir.resolve("upper.ext4");
            PrebootShape.Restore checkpoint = shape.restore();
            // taken before the copy: a checkpoint replaced after it no longer matches at the claim
            List<Object> checkpointFiles = checkpoint == null ? null : identities(checkpoint);
            if (checkpoint == null) {
                RootDisks.createUpperDisk(upper, shape.upperSizeMib());
            } else {
                if (io.microsandbox.runtime.Posix.allocatedBytes(Path.of(checkpoint.upperFile())) > MAX_UPPER_COPY_BYTES) {
                    throw new IOException("the checkpoint's upper disk is too large to copy ahead");
                }
                String digest = SparseFiles.copy(Path.of(checkpoint.upperFile()), upper, false);
                if (checkpoint.upperDigest() != null && !checkpoint.upperDigest().equals(digest)) {
                    throw new IOException("the checkpoint's upper disk does not match its digest");
                }
            }
            List<String> argv = PrebootShape.relocate(shape.vmmArgv(), shape.runDir(), shape.upperDisk(), dir.toString(), upper.toString());
            if (argv.stream().anyMatch(a -> PrebootShape.mentions(a, shape.runDir()) || PrebootShape.mentions(a, shape.upperDisk()))
                    || argv.equals(shape.vmmArgv())) {
                // not relocated (a path QEMU's option syntax escapes): it must never touch that sandbox's files
                throw new IOException("the command line could not be relocated");
            }
            memory = checkpoint == null ? GuestMemory.create(0) : GuestMemory.sizedFor(Path.of(checkpoint.ramFile()));
            if (checkpoint != null) {
                memoryFill = java.nio.channels.FileChannel.open(memory.file(), java.nio.file.StandardOpenOption.WRITE);
            }
            vmServer = Supervisor.listen(dir.resolve("vm.sock"));
            EarlyLines early = new EarlyLines();
            console = ConsoleRecorder.start(dir.resolve("console.sock"), dir.resolve("kernel.log"), early);
            var lowerDisk = io.microsandbox.runtime.vmm.LowerDiskFile.of(argv);
            long startedNanos = System.nanoTime();
            vmm = VmmProcess.spawn(argv, dir.resolve("vmm.log"), memory.fd());
            preboot = new PreBoot(dir, upper, argv, memory, vmServer, console, early, vmm, startedNanos, checkpoint, checkpointFiles,
                    lowerDisk, memoryFill);
            PreBoot started = preboot;
            Runtime.getRuntime().addShutdownHook(new Thread(started::removeUnlessAdopted, "msb-preboot-cleanup"));
            started.deadlines.schedule(logged("hello deadline", started::abortUnlessHelloCame), helloMillis, TimeUnit.MILLISECONDS);
            started.deadlines.schedule(logged("idle shutdown", started::shutDownUnclaimed), idleMillis, TimeUnit.MILLISECONDS);
            SupervisorLog.daemon("preboot-hello", started::awaitHello, e -> started.failHello(e)).start();
            return started;
        } catch (IOException | RuntimeException e) {
            // nothing of it stays in the spare, which goes on waiting without a VM
            SupervisorLog.log("no VM started ahead: " + e.getMessage());
            if (preboot != null) {
                preboot.discard();
                return null;
            }
            if (vmm != null) {
                vmm.kill();
                vmm.onExit(status -> { });
            }
            Supervisor.closeQuietly(memoryFill);
            if (console != null) {
                console.close();
            }
            Supervisor.closeQuietly(vmServer);
            if (memory != null) {
                memory.close();
            }
            try {
                SandboxPreparer.deleteTree(dir);
                disown(dir);
            } catch (RuntimeException cleanup) {
                // left for the next spare's removeAbandoned
            }
            return null;
        }
    }

    /** A task of the deadline timer whose failure is logged rather than kept in a future nobody reads. */
    private static Runnable logged(String what, Runnable task) {
        return () -> {
            try {
                task.run();
            } catch (RuntimeException e) {
                SupervisorLog.warn("pre-booted VM's " + what + " failed: " + e);
            }
        };
    }

    private void awaitHello() {
        try {
            if (checkpoint != null) {
                // QEMU does not touch guest memory before the load, which the adoption starts
                try (java.nio.channels.FileChannel fill = memoryFill) {
                    SparseFiles.copyInto(Path.of(checkpoint.ramFile()), fill, "the pre-started VM's guest memory");
                }
            }
            FrameLink accepted = new FrameLink(vmServer.accept());
            link = accepted;
            if (checkpoint != null) {
                hello.complete(new Hello(accepted, null));
                return;
            }
            Frame frame = accepted.read();
            if (frame == null || !Protocol.CORE_HELLO.equals(frame.type())) {
                throw new IOException("expected core.hello from the pre-booted agent, got " + frame);
            }
            hello.complete(new Hello(accepted, frame));
        } catch (IOException | RuntimeException e) {
            failHello(e);
        } finally {
            Supervisor.closeQuietly(vmServer);
        }
    }

    /** A VM that cannot say hello can never be adopted: unless it already is, it goes at once. */
    private void failHello(Throwable e) {
        hello.completeExceptionally(e);
        shutDownUnclaimed();
    }

    /** One daemon thread; a shutdown drops the deadlines still due, never interrupting the one running. */
    private static java.util.concurrent.ScheduledThreadPoolExecutor deadlineTimer() {
        var timer = new java.util.concurrent.ScheduledThreadPoolExecutor(1, r -> {
            Thread t = new Thread(r, "msb-preboot-deadlines");
            t.setDaemon(true);
            return t;
        });
        timer.setExecuteExistingDelayedTasksAfterShutdownPolicy(false);
        return timer;
    }

    private void shutDownUnclaimed() {
        if (claimed.compareAndSet(false, true)) {
            discard();
        }
    }

    /**
     * Whether the creation of {@code spec} may take this VM instead of booting one; if so, it
     * is the creation's from now on (the idle timeout no longer touches it). Otherwise the
     * caller {@link #discard}s it.
     */
    boolean claim(SupervisorSpec spec, boolean emptyUpper) {
        boolean fits = checkpoint == null ? emptyUpper && spec.restore() == null : sameCheckpoint(spec);
        if (!fits || vmm.hasEnded()) {
            return false;
        }
        List<String> relocated = PrebootShape.relocate(spec.vmmArgv(), spec.runDir(), spec.layout().upperDisk().toString(),
                dir.toString(), upper.toString());
        try {
            // the upper's size is not on the command line; a lower disk of the same path may be
            // another one (pruned from the image cache, then built again for this sandbox)
            if (!relocated.equals(argv) || Files.size(spec.layout().upperDisk()) != Files.size(upper)
                    || lowerDisk != null && !lowerDisk.isStillAtItsPath()) {
                return false;
            }
        } catch (IOException e) {
            return false;
        }
        synchronized (this) {
            // against the hello deadline: either the hello failed first, or the claim won
            if (hello.isCompletedExceptionally() || !claimed.compareAndSet(false, true)) {
                return false;
            }
        }
        deadlines.shutdownNow();
        return true;
    }

    /** Whether {@code spec} restores this VM's checkpoint, whose files are still those it was made of. */
    private boolean sameCheckpoint(SupervisorSpec spec) {
        if (spec.restore() == null || !checkpoint.ramFile().equals(String.valueOf(spec.restore().get("ram_file")))
                || !checkpoint.memoryUri().equals(String.valueOf(spec.restore().get("memory_uri")))) {
            return false;
        }
        try {
            return identities(checkpoint).equals(checkpointFiles);
        } catch (IOException e) {
            return false;
        }
    }

    /** What tells a checkpoint's files from others of the same names: file keys, sizes, times. */
    private static List<Object> identities(PrebootShape.Restore checkpoint) throws IOException {
        List<Object> identities = new java.util.ArrayList<>();
        for (String file : List.of(checkpoint.ramFile(), checkpoint.upperFile())) {
            var attributes = Files.readAttributes(Path.of(file), java.nio.file.attribute.BasicFileAttributes.class);
            identities.add(List.of(String.valueOf(attributes.fileKey()), attributes.size(), attributes.lastModifiedTime().to(TimeUnit.NANOSECONDS)));
        }
        return identities;
    }

    /**
     * Makes the VM the sandbox's: its upper disk and QEMU's two monitor sockets get the
     * sandbox's names as well (hard links: QEMU reopens a disk by the name it was given when
     * a migration ends, so the pre-boot's names stay for the VM's life, and
     * {@link #removeDirectory} goes once it has ended), QEMU's log and the console log move to
     * its logs (the console's lines go to {@code consoleLines} from now on, the earlier ones
     * first).
     */
    void adoptInto(SandboxLayout layout, java.util.function.Consumer<byte[]> consoleLines) throws IOException {
        awaitQemuStarted();
        Files.createDirectories(layout.runDir());
        link(dir.resolve(layout.qmpSocket().getFileName()), layout.qmpSocket());
        link(dir.resolve(layout.statsMonitorSocket().getFileName()), layout.statsMonitorSocket());
        Files.deleteIfExists(layout.consoleLog());
        Files.deleteIfExists(ConsoleRecorder.rotated(layout.consoleLog()));
        console.moveTo(layout.consoleLog(), consoleLines, earlyConsole::takeLines);
        Files.move(dir.resolve("vmm.log"), layout.vmmLog(), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        // last: should anything before fail, the sandbox keeps its own empty upper for a cold boot
        link(upper, layout.upperDisk());
        adopted = true;
    }

    /**
     * Gives {@code existing} the name {@code name} too, in place of whatever had that name:
     * made under a temporary name and moved over, so a failure leaves the old file in place.
     */
    private static void link(Path existing, Path name) throws IOException {
        Path staged = name.resolveSibling(name.getFileName() + ".adopting");
        Files.deleteIfExists(staged);
        Files.createLink(staged, existing);
        try {
            Files.move(staged, name, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            Files.deleteIfExists(staged);
            throw e;
        }
    }

    /** Removes the pre-boot's names once the VM it became the sandbox's has ended. */
    void removeDirectory() {
        SandboxPreparer.deleteTree(dir);
        disown(dir);
    }

    /**
     * Waits until QEMU has opened every path of its command line: its monitor greets only once
     * its start-up is done. A spare taken at once (creations in a burst) would otherwise move
     * the directory away under a QEMU still opening its disks and sockets.
     */
    private void awaitQemuStarted() throws IOException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(STARTED_TIMEOUT_MS);
        try (io.microsandbox.runtime.vmm.QmpClient.Session greeted = Supervisor.awaitMonitor(dir.resolve("qmp.sock"),
                () -> !vmm.hasEnded() && System.nanoTime() < deadline)) {
            // started
        } catch (IOException e) {
            throw new IOException(vmm.hasEnded() ? "the pre-booted QEMU has exited"
                    : "the pre-booted QEMU did not start within " + STARTED_TIMEOUT_MS + " ms", e);
        }
    }

    /** The agent's link and hello, waiting until {@code deadlineNanos} (System.nanoTime) at most. */
    Hello awaitHello(long deadlineNanos) throws IOException, InterruptedException {
        try {
            return hello.get(Math.max(0, deadlineNanos - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (java.util.concurrent.ExecutionException e) {
            throw new IOException("the pre-booted VM's agent did not say hello: " + e.getCause().getMessage(), e.getCause());
        } catch (java.util.concurrent.TimeoutException e) {
            abort();
            throw new IOException("the pre-booted VM's agent did not say hello in time");
        }
    }

    /** The hello deadline: a VM that said hello keeps its link for the sandbox that adopts it. */
    private void abortUnlessHelloCame() {
        boolean gaveUp;
        synchronized (this) {
            // decided once: a hello that comes after this finds the wait failed, and a VM
            // claimed before it keeps its link
            gaveUp = !claimed.get() && hello.completeExceptionally(new IOException("no hello within the pre-boot's deadline"));
        }
        if (gaveUp) {
            abort();
            shutDownUnclaimed();
        }
    }

    /** Ends a wait for the hello: closes the socket and the link it waits on. */
    void abort() {
        Supervisor.closeQuietly(vmServer);
        FrameLink current = link;
        if (current != null) {
            current.close();
        }
    }

    /** Kills the VM, waits for it to go (bounded) and removes its directory. */
    void discard() {
        if (!discarded.compareAndSet(false, true)) {
            try {
                // the first caller's: its VM gone before this one's caller goes on
                discardDone.await(15, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return;
        }
        try {
            discardOnce();
        } finally {
            discardDone.countDown();
        }
    }

    private void discardOnce() {
        // the deadlines have nothing left to end; called at the idle time, its thread ends after this
        deadlines.shutdown();
        abort();
        vmm.kill();
        vmm.onExit(status -> { });
        // ends a fill still running; nobody else reads this memory: QEMU's own reference keeps it until QEMU is gone
        Supervisor.closeQuietly(memoryFill);
        memory.close();
        try {
            // its memory freed before a cold boot starts another VM, within bounds
            vmm.awaitExit(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        console.close();
        removeUnlessAdopted();
    }

    private void removeUnlessAdopted() {
        if (!adopted) {
            // at the JVM's exit the parent-death signal comes only after the hooks: kill it first
            if (!discarded.get()) {
                vmm.kill();
            }
            try {
                SandboxPreparer.deleteTree(dir);
                disown(dir);
            } catch (RuntimeException e) {
                // left for the next spare's removeAbandoned
            }
        }
    }

    private static Path lockFile(Path dir) {
        return dir.resolveSibling("." + dir.getFileName() + LOCK_SUFFIX);
    }

    /**
     * Takes, once per process and home, the lock that makes {@code dir} this process's.
     *
     * @throws IOException when another process keeps it: a supervisor with this pid in another
     *         pid namespace, whose directory this one must leave alone (it boots nothing ahead)
     */
    private static void ownDirectory(Path runRoot, Path dir) throws IOException {
        Path file = lockFile(dir);
        synchronized (OWNED) {
            SandboxLock held = OWNED.get(runRoot);
            if (held != null && held.isOn(file)) {
                return;
            }
            for (int i = 0; i < LOCK_TRIES; i++) {
                SandboxLock lock = SandboxLock.tryAcquire(file);
                // not on the file's name: a remover deleted it between our open and our lock
                if (lock != null && lock.isOn(file)) {
                    if (held != null) {
                        held.close();
                    }
                    OWNED.put(runRoot, lock);
                    return;
                }
                if (lock != null) {
                    lock.close();
                }
                // held: by a remover for a moment (it deletes the file as it goes), or by another pid namespace's supervisor
                try {
                    Thread.sleep(LOCK_RETRY_MS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new java.io.InterruptedIOException("interrupted while taking " + file);
                }
            }
            throw new IOException(file + " stays locked by another process (a supervisor with this pid in another pid namespace"
                    + " that shares the home?): its directory is left alone");
        }
    }

    /** Gives up {@code dir} once it is removed: its lock file goes too, under the lock, so that nothing is left. */
    private static void disown(Path dir) {
        Path file = lockFile(dir);
        synchronized (OWNED) {
            SandboxLock lock = OWNED.remove(dir.getParent());
            if (lock == null) {
                return;
            }
            try {
                if (lock.isOn(file)) {
                    Files.deleteIfExists(file);
                }
            } catch (IOException e) {
                // left for removeAbandoned, which takes it once this process has let go
            } finally {
                lock.close();
            }
        }
    }

    /**
     * Removes the directories of pre-boots whose supervisor is gone (killed before it could):
     * those whose lock nobody holds, with their lock files, and lock files left without a
     * directory. A directory without a lock file (made before there were any) goes when no
     * process here has its pid, judged under a lock taken for it, so that no owner starts meanwhile.
     */
    static void removeAbandoned(Path runRoot) {
        try (var entries = Files.list(runRoot)) {
            for (Path entry : entries.toList()) {
                String name = entry.getFileName().toString();
                boolean lockFileListed = name.startsWith("." + DIR_PREFIX) && name.endsWith(LOCK_SUFFIX);
                if (!name.startsWith(DIR_PREFIX) && !lockFileListed) {
                    continue;
                }
                Path dir = lockFileListed ? runRoot.resolve(name.substring(1, name.length() - LOCK_SUFFIX.length())) : entry;
                if (lockFileListed && Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) {
                    // handled with its directory
                    continue;
                }
                long pid;
                try {
                    pid = Long.parseLong(dir.getFileName().toString().substring(DIR_PREFIX.length()));
                } catch (NumberFormatException e) {
                    // not one of ours: left alone
                    continue;
                }
                removeIfAbandoned(dir, pid, lockFileListed);
            }
        } catch (IOException e) {
            // no socket directory yet, or unreadable: nothing to clean
        }
    }

    private static void removeIfAbandoned(Path dir, long pid, boolean lockFileListed) {
        Path file = lockFile(dir);
        try {
            boolean legacy = false;
            SandboxLock lock;
            try {
                lock = SandboxLock.tryAcquireExisting(file);
            } catch (NoSuchFileException e) {
                if (lockFileListed) {
                    // another remover took it meanwhile
                    return;
                }
                legacy = true;
                lock = SandboxLock.tryAcquire(file);
            }
            if (lock == null) {
                return;
            }
            try (SandboxLock taken = lock) {
                // else deleted, and maybe made again by an owner, since our open: not the lock that says anything
                if (!taken.isOn(file)) {
                    return;
                }
                if (!legacy || !ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
                    SandboxPreparer.deleteTree(dir);
                }
                // under the lock: an owner waiting for it then makes a new one
                Files.deleteIfExists(file);
            }
        } catch (IOException | RuntimeException e) {
            // left for the next removal
        }
    }

    /** Console lines before adoption, kept up to {@link #EARLY_CONSOLE_BYTES} (the console recorder calls it under its lock). */
    private static final class EarlyLines implements java.util.function.Consumer<byte[]> {
        private final List<byte[]> lines = new java.util.ArrayList<>();
        private int bytes;

        @Override
        public synchronized void accept(byte[] line) {
            if (bytes + line.length <= EARLY_CONSOLE_BYTES) {
                lines.add(line);
                bytes += line.length;
            }
        }

        /** The lines kept so far, handed over once: the buffer is emptied. */
        synchronized List<byte[]> takeLines() {
            List<byte[]> taken = List.copyOf(lines);
            lines.clear();
            bytes = EARLY_CONSOLE_BYTES;
            return taken;
        }
    }

    GuestMemory memory() {
        return memory;
    }

    ConsoleRecorder console() {
        return console;
    }

    VmmProcess vmm() {
        return vmm;
    }

    /** The lower disk as its path named it when QEMU was started; null when none or a writable one. */
    io.microsandbox.runtime.vmm.LowerDiskFile lowerDisk() {
        return lowerDisk;
    }

    long startedNanos() {
        return startedNanos;
    }
}

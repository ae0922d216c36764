package io.microsandbox.runtime.supervisor;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.ErrorKind;
import io.microsandbox.SandboxStatus;
import io.microsandbox.runtime.BoundedLines;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.LogTail;
import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxLock;
import io.microsandbox.runtime.agent.ByteBudget;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.agent.FrameLink;
import io.microsandbox.runtime.agent.Protocol;
import io.microsandbox.runtime.agent.ProtocolException;
import io.microsandbox.runtime.vmm.BlockStats;
import io.microsandbox.runtime.vmm.QmpClient;
import io.microsandbox.runtime.vmm.VmmSampler;
import io.microsandbox.store.SandboxStore;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.FutureTask;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The per-sandbox supervisor: a small host process that owns the QEMU process, relays the
 * agent channel to any number of clients over {@code agent.sock}, records how the VM ended,
 * and takes QEMU down with it if it dies itself (QEMU runs with a parent-death signal).
 *
 * <p>The guest is hostile. Nothing the guest does can block a stop or a kill: frames to the
 * guest go through a bounded queue written by a thread of its own, no lock is held across a
 * write, and the escalation (kill the VMM) runs on a timer that touches nothing but the
 * VMM's pidfd. Memory is budgeted (see {@link #HEAP_BUDGET}): frame buffers, the queue to the
 * guest and the queues to clients are bounded, and a client that falls behind is dropped.
 * Any unexpected failure of a relay thread ends the sandbox with a recorded reason.
 *
 * <p>Its creator holds the write end of the supervisor's stdin. End of stdin means the
 * creator is gone: an attached sandbox then shuts down. A {@code 'D'} byte on stdin detaches
 * the sandbox, which then runs until it is stopped. Stdout carries exactly one JSON line,
 * the boot result; diagnostics go to stderr (the supervisor log).
 */
public final class Supervisor {
    /** Default grace period when the creator of an attached sandbox disappears. */
    static final long ORPHAN_STOP_GRACE_MS = 5_000;
    /** How long the end waits for the agent's last frames to be relayed. */
    private static final long AGENT_DRAIN_MS = 1000;
    /** How long the end of a run waits for the console's last bytes (a panic's lines) to be in its log. */
    private static final Duration CONSOLE_DRAIN = Duration.ofSeconds(1);
    /** The longest a checkpoint's save may be given ({@code sup.checkpoint}'s {@code timeout_ms}). */
    private static final Duration MAX_CHECKPOINT_TIMEOUT = Duration.ofHours(1);
    /** How long a supervisor started ahead of time waits for a sandbox before it exits. */
    public static final long SPARE_IDLE_MS = 10 * 60_000;
    /** Grace period of stops the supervisor decides on itself (drain, idle, max duration). */
    static final long STOP_GRACE_MS = 10_000;
    static final int MAX_CLIENTS = 255;
    /**
     * Connections beyond {@link #MAX_CLIENTS} kept for control ({@code sup.hello {control: true}}):
     * a stop or kill must get through even when clients have taken every slot.
     */
    static final int CONTROL_SLOTS = 8;
    /** What a control connection may ask: never a session, which would hold its slot. */
    private static final java.util.Set<String> CONTROL_REQUESTS = java.util.Set.of(Protocol.SUP_STATUS, Protocol.SUP_STOP, Protocol.SUP_KILL);
    /** How long a connection may take to say {@code sup.hello}; a client sends it as it connects. */
    public static final long CLIENT_HELLO_TIMEOUT_MS = 10_000;
    /** How long file data from a client waits for room in the guest queue before its transfer is cancelled. */
    static final long FS_QUEUE_WAIT_MS = 10_000;
    /**
     * How long a client's {@code core.stats} waits for the guest before it is answered from the
     * supervisor's own last sample (when that is at most twice this old; else with no figures).
     */
    static final long GUEST_STATS_WAIT_MS = 2_000;
    /** The longest timeout a client may hand on with a detach (a year: longer ones are not timeouts). */
    private static final long MAX_DETACHED_TIMEOUT_MS = TimeUnit.DAYS.toMillis(365);
    /** Output credit a detached session has ahead of the exec log. */
    static final long DETACHED_WINDOW = 4L << 20;
    /** Frames waiting for the guest; past this, new requests are refused: the guest is not reading. */
    static final long GUEST_QUEUE_BYTES = 8L << 20;
    /** Frame buffers of all client readers together. */
    static final long CLIENT_READ_BUDGET = 16L << 20;
    /** Frames waiting for all clients together. */
    static final long CLIENT_QUEUE_BUDGET = 32L << 20;
    /**
     * What the budgets above add up to with the guest reader's one frame (4 MiB and its
     * decoded tree, bounded by the decoder's item limit), the request bodies the network relay
     * holds to put secrets in, and the JVM's own needs (among them the young generation,
     * which grows to 8 MiB under load): the heap
     * {@link SupervisorProcess} gives the supervisor is sized from it.
     */
    static final long HEAP_BUDGET = GUEST_QUEUE_BYTES + CLIENT_READ_BUDGET + CLIENT_QUEUE_BUDGET
            + 3L * Protocol.MAX_FRAME_BYTES + io.microsandbox.runtime.network.NetworkRelay.SECRET_BODY_HEAP + (32L << 20);
    private static final Duration QMP_TIMEOUT = Duration.ofSeconds(5);
    /** How long a failed boot waits for the run's database write: opening the database and one write. */
    private static final long RUN_RECORD_WAIT_MS = 3L * SandboxStore.BUSY_TIMEOUT_MS;
    /** How long a failed boot waits for the killed QEMU to exit. */
    private static final long VMM_EXIT_WAIT_MS = 10_000;
    /**
     * The longest from the boot's deadline to the report of a failed boot: the monitor call in
     * progress when the watchdog fires (two QMP timeouts at most), the run's database write, the
     * record of its end (one busy timeout), QEMU's exit, and some slack. The creator waits that
     * long past the boot timeout before it calls the supervisor hung.
     */
    static final long FAILED_BOOT_REPORT_MS = 2 * QMP_TIMEOUT.toMillis() + RUN_RECORD_WAIT_MS + SandboxStore.BUSY_TIMEOUT_MS
            + VMM_EXIT_WAIT_MS + 5_000;

    private final SupervisorSpec spec;
    private final SandboxLayout layout;
    private final Future<SandboxStore> storeOpening;
    /** Opened (by {@link #recordRun}) once the guest is up. */
    private volatile SandboxStore store;
    /** Recording this run in the database: null once recorded, else why it could not be. */
    private volatile CompletableFuture<String> runRecording;
    private final PrintStream parentOut;
    private final ScheduledExecutorService timers = Executors.newSingleThreadScheduledExecutor(
            r -> SupervisorLog.daemon("timers", r, e -> { }));
    /**
     * The metrics sample asks QEMU's monitor, which can keep it waiting (a checkpoint holds the
     * monitor's one connection; a stuck QEMU answers late, if ever): on a thread of its own, so
     * the timers (a stop's kill among them) never wait behind it.
     */
    private final ScheduledExecutorService sampling = Executors.newSingleThreadScheduledExecutor(
            r -> SupervisorLog.daemon("metrics", r, e -> { }));
    /** QEMU's disk counters for the metrics, over the second monitor; null until the sampling starts. Asked by the metrics thread only. */
    private volatile BlockStats blockStats;
    /** Whether the last read of {@link #blockStats} failed: its failure is logged once, not every second. */
    private boolean blockStatsFailing;
    /**
     * The disk counters of the last sample, which clients' metrics requests are answered with:
     * the monitor connection serves one question at a time (a second thread's question would
     * read the first one's answer); null until a read succeeds, the last good ones while reads fail.
     */
    private volatile BlockStats.Totals diskTotals;
    /** Done once the first reading of the disk counters has succeeded or failed. */
    private final CompletableFuture<Void> firstDiskSample = new CompletableFuture<>();
    private final Map<Integer, ClientConnection> clientsBySlot = new ConcurrentHashMap<>();
    /** Connections accepted whose {@code sup.hello} has not come yet: at most {@link #MAX_CLIENTS}. */
    private final java.util.concurrent.atomic.AtomicInteger awaitingHello = new java.util.concurrent.atomic.AtomicInteger();
    private final SessionRouter router = new SessionRouter();
    private final ByteBudget clientReadBudget = new ByteBudget(CLIENT_READ_BUDGET);
    private final ByteBudget clientQueueBudget = new ByteBudget(CLIENT_QUEUE_BUDGET);
    /** Session numbers of the exec log, monotonic over the supervisor's life. */
    private final AtomicLong sessionCounter = new AtomicLong();
    private ExecLog execLog;
    private final VmmSampler sampler = new VmmSampler();
    private final CountDownLatch finished = new CountDownLatch(1);

    /** Kept in a field: an unreachable channel would be cleaned up and drop the lock. */
    private SandboxLock ownership;
    private ServerSocketChannel vmServer;
    /** A VM booted before the spec came (see {@link PreBoot}); null once discarded or when there was none. */
    private PreBoot preboot;
    /** Whether the spec's upper disk is a new, empty one (which a pre-booted VM's may replace). */
    private final boolean emptyUpper;
    /** When the pre-booted VM was adopted (System.nanoTime). */
    private long adoptedNanos;
    private ServerSocketChannel clientServer;
    private volatile FrameLink vm;
    /** Relays the agent's frames once the sandbox serves; null before. */
    private volatile Thread agentReader;
    private ConsoleRecorder console;
    private volatile OutboundQueue toGuest;
    private volatile io.microsandbox.runtime.network.NetworkRelay network;
    /** The sandbox's secrets, values included: in this process's memory only. */
    private java.util.List<io.microsandbox.Secret> secrets = java.util.List.of();
    private volatile VmmProcess vmm;
    /** Set before QEMU starts, and open until this process ends. */
    private GuestMemory guestMemory;
    /** Filling {@link #guestMemory} from a checkpoint, for a restore. */
    private CompletableFuture<Void> memoryFill = CompletableFuture.completedFuture(null);
    /** When the boot watchdog fires ({@link System#nanoTime}): what the boot's own waits are bounded by. */
    private long bootDeadlineNanos;
    /** Whether the sandbox serves: from then on the VM's end is recorded by {@link #vmmExited}. Guarded by {@link #bootEnd}. */
    private volatile boolean booted;
    /** Whether the VM ended before the sandbox served, after which the boot cannot succeed. Guarded by {@link #bootEnd}. */
    private boolean exitedDuringBoot;
    /** Orders the boot's end against the VM's: exactly one of the two handles a VM that ends as the boot ends. */
    private final Object bootEnd = new Object();
    /** Set once the creator has heard that the sandbox is ready; a failure before must reach it as a failed boot. */
    private volatile boolean readyReported;
    private volatile boolean detached;
    private volatile boolean killRequested;
    private volatile boolean draining;
    /** The stop reason a drain ends with: a client's drain, or the maximum duration. */
    private volatile String drainReason = "drain-requested";
    private volatile boolean paused;
    /** Set while a memory checkpoint runs: the guest link must stay quiet (see {@link #checkpoint(Frame)}). */
    private volatile boolean checkpointing;
    /**
     * Session starts and stop requests hold it to read {@link #checkpointing}; a checkpoint
     * holds it to set it: a stop either comes first (and the checkpoint is refused) or sees it.
     */
    private final java.util.concurrent.locks.ReadWriteLock checkpointGate = new java.util.concurrent.locks.ReentrantReadWriteLock();
    /**
     * Held while the VM's run state changes, with {@link #paused}: a pause, a resume, a
     * checkpoint (from its checks to the guest running again), the resume before a stop. A
     * resume during a checkpoint would run the guest while its memory is copied.
     */
    private final java.util.concurrent.locks.ReentrantLock runState = new java.util.concurrent.locks.ReentrantLock();
    /** The supervisor's own pings on id 0 (a checkpoint's), and the agent's answers to them, in order. */
    private final AtomicLong pingsSent = new AtomicLong();
    private final AtomicLong pongsReceived = new AtomicLong();
    /** The checkpoint's ping awaiting its answer; null when none: a late answer to an earlier ping is not its answer. */
    private volatile PongWait pong;
    /** The reason of the first stop request; null while none was made. */
    private volatile String stopReason;
    /** When QEMU was started (System.nanoTime), for the boot timeline. */
    private long vmmStartNanos;
    /** The agent's hello, whose boot times the timeline reports. */
    private Frame helloFrame;
    /** When exec activity last happened (System.nanoTime), for the idle timeout. */
    private volatile long lastActivity = System.nanoTime();
    /**
     * Less page cache than this is not worth dropping: free page reporting hands memory back
     * in 4 MiB blocks, and a few MiB of cache freed between the kernel's own pages form
     * hardly any (6.7 MiB dropped in an idle guest gave back nothing measurable).
     */
    static final long CACHE_RECLAIM_MIN_BYTES = 32L << 20;
    /** The guest's droppable file pages in its last {@code core.stats}; -1 before one. */
    private volatile long guestFileBytes = -1;
    /** The {@link #lastActivity} after which the guest last dropped its cache (sampling thread only). */
    private long cacheReclaimedAfter = -1;
    /** The longest version text from the guest that a client's welcome carries. */
    static final int GUEST_TEXT_CHARS = 128;
    private volatile String agentFailure;
    /**
     * Set once, by whichever comes first: the boot watchdog firing (the boot fails) or the
     * handshake ending (the watchdog then does nothing). Without it a watchdog firing between
     * the pre-booted VM's hello and the link's hand-over was lost, and the boot went on.
     */
    private final java.util.concurrent.atomic.AtomicBoolean bootSettled = new java.util.concurrent.atomic.AtomicBoolean();
    private volatile ObjectNode readyPayload;
    /**
     * The read-only lower disk, as its path named it when QEMU was started (null when none): a checkpoint over
     * a disk rebuilt at its path since would record a disk the guest never read.
     */
    private io.microsandbox.runtime.vmm.LowerDiskFile lowerDisk;
    /** The most features an agent's hello may name that reach clients. */
    static final int MAX_AGENT_FEATURES = 32;
    /** QEMU's version (QMP's greeting or query-version), for Sandbox.runtimeVersion(); null when it could not be read. */
    private volatile CompletableFuture<String> qemuVersion = CompletableFuture.completedFuture(null);
    /**
     * The agent's latest answer to the supervisor's own core.stats (id 0), for the metrics file
     * and for clients' requests the guest does not answer, and when it came (System.nanoTime()).
     */
    private volatile GuestSample guestSample;
    /** Clients' core.stats on their way to the guest, answered from {@link #guestSample} if it is paused first. */
    private final java.util.Set<SessionRouter.Route> clientStatsRequests = ConcurrentHashMap.newKeySet();
    /** Guards the metrics file against a last sample written after the run files were removed. */
    private final Object metricsFileLock = new Object();
    private boolean runFilesRemoved;
    /** What the boot waits for, for the timeout message. */
    private volatile String bootStage = "waiting for QEMU to open the agent port";

    /**
     * @param preboot    the VM this spare booted ahead of its sandbox, adopted when it fits (else
     *                   discarded); null for none
     * @param emptyUpper whether the spec's upper disk is a new, empty one, which the pre-booted
     *                   VM's may replace
     */
    Supervisor(SupervisorSpec spec, Future<SandboxStore> storeOpening, PrintStream parentOut, PreBoot preboot, boolean emptyUpper) {
        this.spec = spec;
        this.layout = spec.layout();
        this.storeOpening = storeOpening;
        this.parentOut = parentOut;
        this.detached = spec.detached();
        this.preboot = preboot;
        this.emptyUpper = emptyUpper;
    }

    /**
     * Entry point. The creator starts this JVM before the sandbox's disks are ready, so that
     * JVM start-up overlaps that work; it then writes the path of {@code supervisor.json} as a
     * line of stdin (after a line asking for a pre-booted VM, if any; see {@link PreBoot}).
     * End of stdin before that line means the creation was abandoned.
     */
    public static void main(String[] args) throws Exception {
        // Everything this process and QEMU create (logs, sockets, pid file) is the owner's only.
        Posix.umask(0077);
        PrintStream parentOut = System.out;
        System.setOut(System.err);
        SpareWarmUp.run();
        // A spare nobody takes (its creator went quiet) should not linger for ever.
        Thread idleSpare = SupervisorLog.daemon("spare-timeout", () -> {
            try {
                Thread.sleep(SPARE_IDLE_MS);
                System.exit(0);
            } catch (InterruptedException e) {
                // taken: it boots a sandbox now
            }
        }, e -> { });
        idleSpare.start();
        String line = BoundedLines.read(System.in, SupervisorProcess.MAX_CREATOR_LINE, "the creator");
        PreBoot preboot = null;
        if (line != null && line.startsWith(SupervisorProcess.PREBOOT_LINE)) {
            // own session first: QEMU, started now, must not share the creator's
            Posix.setsid();
            try {
                preboot = PreBoot.start(RuntimeFiles.defaultHome(), PrebootShape.fromJson(line.substring(SupervisorProcess.PREBOOT_LINE.length())));
            } catch (IOException | RuntimeException e) {
                // no VM booted ahead: the spare still serves its sandbox
                preboot = null;
            }
            line = BoundedLines.read(System.in, SupervisorProcess.MAX_CREATOR_LINE, "the creator");
        }
        idleSpare.interrupt();
        if (line == null || line.isBlank()) {
            System.exit(0);
        }
        boolean emptyUpper = line.startsWith(SupervisorProcess.EMPTY_UPPER_LINE);
        String specPath = emptyUpper ? line.substring(SupervisorProcess.EMPTY_UPPER_LINE.length()) : line;
        SupervisorSpec spec = SupervisorSpec.read(Path.of(specPath));
        SupervisorLog.level(spec.configure().get("log_level"));
        Files.createDirectories(spec.layout().logsDir());
        System.setErr(new PrintStream(new java.io.FileOutputStream(spec.layout().supervisorLog().toFile(), true), true,
                StandardCharsets.UTF_8));
        System.setOut(System.err);
        // Opening the database is needed only once the VM is up: do it beside the boot.
        FutureTask<SandboxStore> store = new FutureTask<>(() -> SandboxStore.open(Path.of(spec.home())));
        SupervisorLog.daemon("store-open", store, e -> { }).start();
        int code;
        try {
            code = new Supervisor(spec, store, parentOut, preboot, emptyUpper).run();
        } catch (Throwable e) {
            // run() kills the VMM on every failure path; this is the last word in the log
            SupervisorLog.error("supervisor failed: " + e);
            code = 1;
        }
        System.exit(code);
    }

    /** Boots and serves the sandbox; returns the process exit code once the VM is gone. */
    int run() throws IOException, InterruptedException {
        // Own session: a terminal's ^C to the creator's process group must not reach the VM
        // (a spare that pre-booted a VM made it before that: then this returns it).
        Posix.setsid();
        // first of all, so the values leave the disk whatever happens next (docs/network.md, "Secrets")
        secrets = io.microsandbox.runtime.network.SecretFile.take(layout.dir());
        // Held until this process ends, however it ends: it is how others tell that the sandbox is alive.
        ownership = SandboxLock.tryAcquire(SandboxLock.supervisorLockFile(layout));
        if (ownership == null) {
            ObjectNode error = Json.object();
            error.put("status", "error");
            error.put("kind", ErrorKind.SANDBOX_ALREADY_EXISTS.wireName());
            error.put("message", "another supervisor already runs sandbox " + spec.name());
            reportToParent(error);
            return 1;
        }
        Files.createDirectories(layout.logsDir());
        execLog = ExecLog.append(layout.execLog());
        adoptOrDiscardPreboot();
        try {
            guestMemory = preboot != null ? preboot.memory()
                    : spec.restore() != null ? GuestMemory.sizedFor(restoreRamFile()) : GuestMemory.create(0);
        } catch (IOException e) {
            return failBoot("cannot create the guest's memory: " + e.getMessage());
        }
        if (spec.restore() != null && preboot == null) {
            // from now on, beside the rest of the set-up and QEMU's start: QEMU does not touch
            // guest memory before the load, which waits for this (an adopted VM's is filled)
            memoryFill = onHelperThread(() -> {
                guestMemory.fill(restoreRamFile());
                return null;
            });
        }
        Files.createDirectories(layout.runDir());
        if (preboot == null) {
            vmServer = listen(layout.vmSocket());
        }
        clientServer = listen(layout.agentSocket());
        console = preboot != null ? preboot.console() : ConsoleRecorder.start(layout.consoleSocket(), layout.consoleLog(), this::logConsoleLine);
        Files.writeString(layout.pidFile(), Long.toString(ProcessHandle.current().pid()));

        if (preboot != null) {
            vmmStartNanos = preboot.startedNanos();
            vmm = preboot.vmm();
            lowerDisk = preboot.lowerDisk();
        } else {
            SupervisorLog.log("starting VMM: " + String.join(" ", spec.vmmArgv()));
            try {
                lowerDisk = io.microsandbox.runtime.vmm.LowerDiskFile.of(spec.vmmArgv());
                // Spawned from the main thread, which lives until QEMU is gone: the parent-death
                // signal is tied to the forking thread.
                vmmStartNanos = System.nanoTime();
                vmm = VmmProcess.spawn(spec.vmmArgv(), layout.vmmLog(), guestMemory.fd());
            } catch (IOException e) {
                return failBoot("cannot start the VMM: " + e.getMessage());
            }
        }
        try {
            return serve();
        } catch (Throwable e) {
            // Whatever broke, QEMU must not outlive a supervisor that can no longer serve it.
            SupervisorLog.error("unexpected failure: " + e);
            agentFailure = "the supervisor failed: " + e;
            if (!booted) {
                return failBoot(agentFailure, true);
            }
            vmm.kill();
            // booted: the VM's end is recorded by vmmExited, as for any run that ends
            vmm.awaitExit(10_000);
            finished.await(10, TimeUnit.SECONDS);
            if (!readyReported) {
                // the creator waits for a report: the failure, now, rather than its timeout
                reportBootFailure(agentFailure);
            }
            return 1;
        }
    }

    private int serve() throws IOException, InterruptedException {
        vmm.onExit(this::vmmExited);
        // the host side of the network needs no guest: made while it boots, started once it is up
        CompletableFuture<io.microsandbox.runtime.network.NetworkRelay> relay = onHelperThread(this::prepareNetwork);
        bootDeadlineNanos = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(spec.bootTimeoutMs());
        ScheduledFuture<?> watchdog = timers.schedule(() -> {
            if (bootSettled.compareAndSet(false, true)) {
                agentFailure = bootTimeoutReason();
                unblockHandshake();
            }
        }, spec.bootTimeoutMs(), TimeUnit.MILLISECONDS);
        try {
            handshake();
        } catch (IOException e) {
            watchdog.cancel(false);
            // A dying VMM closes the agent port just before it exits: give the reaper a moment
            // so the report says the VMM died rather than that the port closed.
            vmm.awaitExit(2_000);
            String reason = agentFailure != null ? agentFailure
                    : bootSettled.get() ? bootTimeoutReason()
                    : vmm.hasExited() ? "the VMM exited (" + VmmProcess.describe(vmm.waitStatus()) + ") before the guest agent was ready"
                    : "guest agent handshake failed: " + e.getMessage();
            return failBoot(reason);
        }
        if (!bootSettled.compareAndSet(false, true)) {
            // the watchdog fired as the handshake ended, and may have closed the agent's link
            String reason = agentFailure;
            return failBoot(reason != null ? reason : bootTimeoutReason());
        }
        watchdog.cancel(false);
        closeQuietly(vmServer);
        toGuest = new OutboundQueue("guest", vm, GUEST_QUEUE_BYTES, null);
        blockStats = new BlockStats(layout.statsMonitorSocket(), QMP_TIMEOUT);
        // the first disk reading, beside the rest of the boot: clients' metrics are answered from it
        sampling.execute(this::sampleDisks);
        if (spec.restore() == null) {
            // clients wait for it, the boot need not
            qemuVersion = CompletableFuture.supplyAsync(this::queryQemuVersion, Supervisor::helperThread);
        }
        String failure = awaitRunRecorded();
        if (failure == null) {
            try {
                network = relay.get(untilBootDeadline(), TimeUnit.NANOSECONDS);
                network.start();
            } catch (ExecutionException e) {
                failure = "cannot start the sandbox network: " + causeOf(e);
            } catch (java.util.concurrent.TimeoutException e) {
                failure = "the sandbox network was not prepared within the boot timeout (" + spec.bootTimeoutMs() + " ms)";
            } catch (RuntimeException e) {
                failure = "cannot start the sandbox network: " + e.getMessage();
            }
        }
        if (failure != null) {
            return failBoot(failure, true);
        }
        synchronized (bootEnd) {
            booted = !exitedDuringBoot;
        }
        if (!booted) {
            // it ended after the handshake (which then had nothing to fail): the boot fails instead of serving nobody
            return failBoot("the VMM exited (" + VmmProcess.describe(vmm.waitStatus()) + ") as the sandbox became ready");
        }
        // serving before the creator hears of it, so its connection is accepted at once
        sampler.start(vmm.pid());
        Thread reader = SupervisorLog.daemon("agent-reader", this::relayAgentFrames, this::relayFailed);
        agentReader = reader;
        reader.start();
        SupervisorLog.daemon("client-acceptor", this::acceptClients, this::relayFailed).start();
        SupervisorLog.daemon("creator-watch", this::watchCreator, this::relayFailed).start();

        ObjectNode ready = Json.object();
        ready.put("status", "ready");
        ready.put("pid", ProcessHandle.current().pid());
        ready.put("vmmPid", vmm.pid());
        ready.set("ready", readyPayload);
        reportToParent(ready);
        readyReported = true;
        SupervisorLog.log("sandbox " + spec.name() + " is ready");
        logSystem("sandbox started");
        lastActivity = System.nanoTime();
        if (spec.maxDurationMs() > 0) {
            // drained, as the reference does: running commands get one grace to finish, then it stops
            timers.schedule(() -> {
                if (stopReason != null) {
                    return; // stopping already
                }
                drain("max-duration");
                timers.schedule(() -> {
                    if (stopReason == null) {
                        requestStop(STOP_GRACE_MS, "max-duration");
                    }
                }, STOP_GRACE_MS, TimeUnit.MILLISECONDS);
            }, spec.maxDurationMs(), TimeUnit.MILLISECONDS);
        }
        if (spec.idleTimeoutMs() > 0) {
            everySecond(timers, this::checkIdle);
        }
        everySecond(sampling, this::sampleMetrics);
        everySecond(timers, this::capVmmLog);

        finished.await();
        return 0;
    }

    private void handshake() throws IOException {
        // made while the guest kernel boots: built after the hello it took about 9 ms of every boot
        byte[] configure = spec.restore() != null ? null
                : FrameCodec.encode(new Frame(0, 0, Protocol.CORE_CONFIGURE,
                        spec.configure() == null ? Json.object() : Json.object(spec.configure())));
        Frame hello;
        if (preboot != null) {
            bootStage = spec.restore() != null ? "waiting for the pre-started QEMU's agent port and guest memory"
                    : "waiting for the pre-booted VM's hello: the guest kernel or agent did not start";
            PreBoot.Hello booted;
            try {
                // past the boot's deadline: at the deadline the watchdog ends this wait with its own reason
                booted = preboot.awaitHello(bootDeadlineNanos + TimeUnit.SECONDS.toNanos(2));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("interrupted while the pre-booted VM booted");
            }
            linkVm(booted.link());
            hello = booted.frame();
        } else {
            linkVm(new FrameLink(vmServer.accept()));
            hello = null;
        }
        if (spec.restore() != null) {
            restoreHandshake();
            return;
        }
        if (preboot == null) {
            bootStage = "waiting for the agent's hello: the guest kernel or agent did not start";
            hello = vm.read();
        }
        if (hello == null || !Protocol.CORE_HELLO.equals(hello.type())) {
            throw new ProtocolException("expected core.hello from the agent, got " + hello);
        }
        if (hello.payload() == null) {
            throw new ProtocolException("the agent's hello has no payload");
        }
        helloFrame = hello;
        // the guest runs: recorded while its agent mounts the root (and ended by failBoot should the set-up fail)
        recordRun();
        bootStage = "sending the agent its configuration";
        // Before the boot completes the watchdog bounds this write: it closes the link.
        vm.writeEncoded(configure);
        SupervisorLog.log("agent says hello: " + Json.brief(hello.payload()));
        bootStage = "waiting for the agent to mount the root filesystem";
        Frame answer = vm.read();
        if (answer == null) {
            throw new ProtocolException("the agent closed its port during setup");
        }
        if (Protocol.CORE_ERROR.equals(answer.type())) {
            agentFailure = "guest setup failed at stage " + answer.text("stage") + ": " + answer.text("message");
            throw new ProtocolException(agentFailure);
        }
        if (!Protocol.CORE_READY.equals(answer.type())) {
            throw new ProtocolException("expected core.ready from the agent, got " + answer);
        }
        readyPayload = answer.payload();
        long vmmToReadyNanos = System.nanoTime() - vmmStartNanos;
        String timeline = bootTimeline(helloFrame.payload(), readyPayload, vmmToReadyNanos);
        if (preboot != null) {
            timeline += String.format(java.util.Locale.ROOT, "; a pre-booted VM (its hello to root mounted includes its wait"
                    + " for a sandbox): adopted %d ms after QEMU's start, adoption to ready %d ms",
                    (adoptedNanos - vmmStartNanos) / 1_000_000, (System.nanoTime() - adoptedNanos) / 1_000_000);
        }
        readyPayload.put("hello_time_ns", helloFrame.payload().path("hello_time_ns").asLong(0));
        readyPayload.put("vmm_to_ready_ns", vmmToReadyNanos);
        SupervisorLog.log("boot timeline: " + timeline);
    }

    /**
     * The handshake of a guest resumed from a memory checkpoint: no hello (its agent has been
     * running all along); once QEMU has loaded the checkpoint and runs the guest, the agent
     * gets fresh entropy, the wall clock and maybe a hostname, and answers {@code core.restored}.
     */
    private void restoreHandshake() throws IOException {
        bootStage = "waiting for QEMU's monitor";
        // until the boot watchdog gives up (agentFailure) or QEMU exits
        try (QmpClient.Session qmp = awaitMonitor(layout.qmpSocket(), () -> agentFailure == null && !vmm.hasExited())) {
            qemuVersion = CompletableFuture.completedFuture(versionText(qmp.version()));
            bootStage = "loading the checkpoint's guest memory";
            try {
                memoryFill.get(untilBootDeadline(), TimeUnit.NANOSECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while loading the checkpoint's guest memory", e);
            } catch (ExecutionException e) {
                agentFailure = "cannot load the checkpoint's guest memory: " + causeOf(e);
                throw new ProtocolException(agentFailure);
            } catch (java.util.concurrent.TimeoutException e) {
                agentFailure = "the checkpoint's guest memory was not loaded within the boot timeout (" + spec.bootTimeoutMs() + " ms)";
                throw new ProtocolException(agentFailure);
            }
            bootStage = "loading the checkpoint";
            MemoryCheckpoint.load(qmp, spec.restore().get("memory_uri").toString());
            bootStage = "waiting for QEMU to load the checkpoint";
            MemoryCheckpoint.awaitRunning(qmp, () -> agentFailure != null || vmm.hasExited());
        }
        ObjectNode restore = Json.object();
        byte[] entropy = new byte[64];
        new java.security.SecureRandom().nextBytes(entropy);
        restore.put("entropy", entropy);
        Object hostname = spec.restore().get("hostname");
        if (hostname != null) {
            restore.put("hostname", hostname.toString());
        }
        java.time.Instant now = java.time.Instant.now();
        restore.put("realtime_ns", now.getEpochSecond() * 1_000_000_000L + now.getNano());
        bootStage = "waiting for the restored guest's agent to answer core.restore";
        vm.write(new Frame(0, 0, Protocol.CORE_RESTORE, restore));
        // the guest runs: recorded while its agent answers
        recordRun();
        Frame answer = vm.read();
        if (answer == null) {
            throw new ProtocolException("the agent closed its port during the restore");
        }
        if (Protocol.CORE_ERROR.equals(answer.type())) {
            agentFailure = "the restore failed in the guest at stage " + answer.text("stage") + ": " + answer.text("message");
            throw new ProtocolException(agentFailure);
        }
        if (!Protocol.CORE_RESTORED.equals(answer.type())) {
            throw new ProtocolException("expected core.restored from the agent, got " + answer);
        }
        readyPayload = answer.payload();
        readyPayload.put("vmm_to_ready_ns", System.nanoTime() - vmmStartNanos);
        String adoption = preboot == null ? "" : String.format(java.util.Locale.ROOT,
                " (QEMU started ahead by this spare with the checkpoint's memory: adopted %d ms after its start, adoption to answer %d ms)",
                (adoptedNanos - vmmStartNanos) / 1_000_000, (System.nanoTime() - adoptedNanos) / 1_000_000);
        SupervisorLog.log("restored from a checkpoint: QEMU start to agent answer " + (System.nanoTime() - vmmStartNanos) / 1_000_000 + " ms" + adoption);
    }

    /**
     * Takes the VM this spare pre-booted when the spec's is the same but for the sandbox's own
     * paths and its upper disk is a fresh one (or, for a restore, its checkpoint is the one the
     * VM was started with); otherwise kills it and boots as without.
     */
    private void adoptOrDiscardPreboot() {
        if (preboot == null) {
            return;
        }
        String misfit = preboot.claim(spec, emptyUpper) ? null : "its command line, upper disk or checkpoint differs, or it was shut down idle";
        if (misfit == null) {
            try {
                preboot.adoptInto(layout, this::logConsoleLine);
                adoptedNanos = System.nanoTime();
                SupervisorLog.log("adopted the VM this supervisor booted "
                        + (System.nanoTime() - preboot.startedNanos()) / 1_000_000 + " ms ago: " + String.join(" ", spec.vmmArgv()));
                return;
            } catch (IOException e) {
                misfit = "it could not be moved in: " + e.getMessage();
            }
        }
        SupervisorLog.log("not adopting the pre-booted VM (" + misfit + "): booting one");
        // gone before this boot starts its own QEMU, which may open the same files (a kill takes milliseconds)
        preboot.discard();
        preboot = null;
    }

    private Path restoreRamFile() {
        return Path.of(spec.restore().get("ram_file").toString());
    }

    /**
     * A session with the monitor at {@code socket} as soon as QEMU answers, which it does once
     * its start-up is done (before it waits for an incoming migration): connected to as soon
     * as the socket is there (a connection that succeeds waits for QEMU's greeting), tried
     * again every millisecond while {@code stillWaiting} says so.
     */
    static QmpClient.Session awaitMonitor(Path socket, java.util.function.BooleanSupplier stillWaiting) throws IOException {
        while (stillWaiting.getAsBoolean()) {
            try {
                return QmpClient.Session.open(socket, QMP_TIMEOUT);
            } catch (IOException e) {
                MemoryCheckpoint.pause(1, "waiting for QEMU's monitor");
            }
        }
        throw new ProtocolException("QEMU did not open its monitor");
    }

    /**
     * The boot, read from the guest's CLOCK_BOOTTIME stamps (nanoseconds since the kernel
     * started) in the hello and the ready, and the host's view from QEMU's start: what is
     * left over on the host side is QEMU's own start-up and the kernel's loading.
     */
    static String bootTimeline(com.fasterxml.jackson.databind.JsonNode hello, com.fasterxml.jackson.databind.JsonNode ready, long vmmToReadyNanos) {
        long agentStart = ready.path("boot_time_ns").asLong(hello.path("boot_time_ns").asLong(0));
        long helloAt = hello.path("hello_time_ns").asLong(agentStart);
        long init = ready.path("init_time_ns").asLong(helloAt);
        long readyAt = ready.path("ready_time_ns").asLong(init);
        return String.format(java.util.Locale.ROOT,
                "kernel start to agent start %d ms, agent start to hello %d ms (%d modules, agent port),"
                        + " hello to root mounted %d ms, to ready %d ms; agent start to ready %d ms;"
                        + " QEMU start to ready %d ms (host clock)",
                agentStart / 1_000_000, (helloAt - agentStart) / 1_000_000, hello.path("modules").asLong(0),
                (init - helloAt) / 1_000_000, (readyAt - helloAt) / 1_000_000, (readyAt - agentStart) / 1_000_000,
                vmmToReadyNanos / 1_000_000);
    }

    /** Ends a failed boot: kill QEMU, tell the creator why, leave no socket behind. */
    private int failBoot(String reason) throws InterruptedException {
        return failBoot(reason, false);
    }

    /**
     * {@link #failBoot(String)}; {@code onHost} when the host side failed (the supervisor, the
     * sandbox network), not the guest.
     */
    private int failBoot(String reason, boolean onHost) throws InterruptedException {
        SupervisorLog.error("boot failed: " + reason);
        VmmProcess process = vmm;
        boolean endedByItself = process != null && process.hasExited();
        if (process != null) {
            process.kill();
        }
        // before the creator hears of it and removes the sandbox's record
        if (runRecording != null && awaitRunRecorded() == null) {
            // the run began with the guest's hello: it ends here, as the VM ended or else by its cause
            RunRecorder.Outcome end = endedByItself ? RunRecorder.decide(process.waitStatus(), null, false, null, layout.consoleLog())
                    : new RunRecorder.Outcome(SandboxStatus.CRASHED, onHost ? "internal" : "agent-unresponsive", null, null);
            try {
                store.finishRun(spec.name(), end.statusName(), end.exitCode(), end.signal(), end.reason(), "supervisor");
            } catch (RuntimeException e) {
                SupervisorLog.warn("cannot record the end of the failed boot: " + e.getMessage());
            }
        }
        if (process != null) {
            process.awaitExit(VMM_EXIT_WAIT_MS);
        }
        reportBootFailure(reason);
        cleanupRunFiles();
        return 1;
    }

    /** Tells the creator, which waits for the boot's report, why the boot failed. */
    private void reportBootFailure(String reason) {
        ObjectNode error = Json.object();
        error.put("status", "error");
        error.put("kind", ErrorKind.BOOT_FAILED.wireName());
        error.put("message", reason);
        error.put("console", LogTail.of(layout.consoleLog(), 40));
        error.put("vmmLog", LogTail.of(layout.vmmLog(), 20));
        reportToParent(error);
    }

    private void reportToParent(ObjectNode line) {
        parentOut.println(Json.toText(line));
        parentOut.flush();
    }

    /** A relay thread died of something unexpected: the sandbox ends, with the reason recorded. */
    private void relayFailed(Throwable e) {
        if (agentFailure == null) {
            agentFailure = "the supervisor's relay failed: " + e;
        }
        VmmProcess process = vmm;
        if (process != null) {
            process.kill();
        }
    }

    /**
     * Takes the agent's link for the handshake; closed at once when the boot watchdog fired
     * before it was taken (and so could not close it), so that the handshake's next read fails
     * instead of waiting for a guest that may never answer.
     */
    private void linkVm(FrameLink link) {
        vm = link;
        if (bootSettled.get()) {
            link.close();
        }
    }

    /**
     * The features the agent named in its hello (or its core.restored), for clients to check
     * before a request an older agent would not understand: short names only, at most
     * {@link #MAX_AGENT_FEATURES}; anything else the guest sent is left out.
     */
    static com.fasterxml.jackson.databind.node.ArrayNode agentFeatures(JsonNode identity) {
        var features = Json.array();
        for (JsonNode f : identity.path("features")) {
            if (features.size() < MAX_AGENT_FEATURES && f.isTextual() && f.textValue().matches("[a-z0-9_]{1,32}")) {
                features.add(f.textValue());
            }
        }
        return features;
    }

    /** A name the guest reported (its agent's or kernel's version), cut short for clients' welcomes. */
    private static String guestText(String text) {
        return text == null ? null : Json.brief(text, GUEST_TEXT_CHARS);
    }

    private String bootTimeoutReason() {
        return "the guest agent did not become ready within " + spec.bootTimeoutMs() + " ms (" + bootStage + ")";
    }

    /** Ends the handshake's waits (for the agent's connection, its hello, its answers): it then fails. */
    private void unblockHandshake() {
        closeQuietly(vmServer);
        if (preboot != null) {
            preboot.abort();
        }
        FrameLink link = vm;
        if (link != null) {
            link.close();
        }
    }

    private void vmmExited(int status) {
        SupervisorLog.log("VMM exited: " + VmmProcess.describe(status));
        synchronized (bootEnd) {
            exitedDuringBoot = !booted;
        }
        if (exitedDuringBoot) {
            // the boot fails now rather than at the timeout
            unblockHandshake();
            return;
        }
        try {
            recordExitAndFinish(status);
        } catch (RuntimeException | Error e) {
            SupervisorLog.warn("recording the end failed: " + e);
        } finally {
            // whatever failed above, a supervisor whose VM is gone must not linger
            finished.countDown();
        }
    }

    private void recordExitAndFinish(int status) {
        if (console != null) {
            console.awaitDrained(CONSOLE_DRAIN);
        }
        RunRecorder.Outcome outcome = RunRecorder.decide(status, stopReason, killRequested, agentFailure, layout.consoleLog());
        if (console != null) {
            console.closeSink(); // the end marker stays the run's last entry
        }
        awaitAgentFramesRelayed();
        io.microsandbox.runtime.network.NetworkRelay net = network;
        if (net != null) {
            net.close(); // published ports are released with the sandbox
        }
        logSystem("sandbox " + outcome.statusName() + ": " + outcome.reason());
        try {
            store.finishRun(spec.name(), outcome.statusName(), outcome.exitCode(), outcome.signal(), outcome.reason(), "supervisor");
        } catch (RuntimeException e) {
            SupervisorLog.warn("cannot record the end in the database: " + e.getMessage());
        }
        SupervisorLog.log("sandbox ended: " + outcome.statusName() + ", " + outcome.reason() + ", " + VmmProcess.describe(status)
                + (agentFailure != null ? " (" + agentFailure + ")" : ""));
        ObjectNode payload = Json.object();
        payload.put("status", outcome.statusName());
        payload.put("exit_code", outcome.exitCode());
        payload.put("signal", outcome.signal());
        payload.put("reason", outcome.reason());
        Frame exited = new Frame(0, Protocol.FLAG_TERMINAL, Protocol.SUP_EXITED, payload);
        for (ClientConnection client : clientsBySlot.values()) {
            client.send(exited);
            client.finish();
        }
        // Give the clients' writers a moment to deliver the end; a client that does not read gets nothing.
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
        for (ClientConnection client : clientsBySlot.values()) {
            long left = deadline - System.nanoTime();
            if (left <= 0 || !client.awaitClosed(TimeUnit.NANOSECONDS.toMillis(left))) {
                client.abort();
            }
        }
        FrameLink link = vm;
        if (link != null) {
            link.close();
        }
        closeQuietly(clientServer);
        cleanupRunFiles();
        if (spec.ephemeral()) {
            SupervisorLog.log("ephemeral sandbox: removing its state");
            try {
                store.delete(spec.name());
                layout.deleteFiles();
            } catch (RuntimeException e) {
                SupervisorLog.warn("cannot remove the ephemeral sandbox's state: " + e.getMessage());
            }
        }
    }

    private void cleanupRunFiles() {
        try {
            if (console != null) {
                console.close();
            }
            Files.deleteIfExists(layout.consoleSocket());
            Files.deleteIfExists(layout.agentSocket());
            Files.deleteIfExists(layout.vmSocket());
            Files.deleteIfExists(layout.qmpSocket());
            if (blockStats != null) {
                blockStats.close();
            }
            Files.deleteIfExists(layout.statsMonitorSocket());
            if (preboot != null) {
                try {
                    preboot.removeDirectory();
                } catch (RuntimeException e) {
                    SupervisorLog.warn("cannot remove the pre-booted VM's directory: " + e.getMessage());
                }
            }
            Files.deleteIfExists(layout.pidFile());
            synchronized (metricsFileLock) {
                runFilesRemoved = true;
                Files.deleteIfExists(layout.metricsFile());
                Files.deleteIfExists(metricsTmp());
            }
            Files.deleteIfExists(layout.runDir());
        } catch (IOException e) {
            SupervisorLog.warn("cleanup of " + layout.runDir() + " incomplete: " + e.getMessage());
        }
    }

    /**
     * The last output the guest sent before its VM ended is logged before the end marker: the
     * agent's port reaches its end a moment after the VMM's exit.
     */
    private void awaitAgentFramesRelayed() {
        Thread reader = agentReader;
        if (reader != null && reader != Thread.currentThread()) {
            try {
                reader.join(AGENT_DRAIN_MS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Reads agent frames and routes each to the client that owns its id. */
    private void relayAgentFrames() {
        try {
            Frame frame;
            while ((frame = vm.read()) != null) {
                io.microsandbox.runtime.network.NetworkRelay net = network;
                if (frame.type().startsWith("net.")) {
                    if (net != null) {
                        net.fromGuest(frame);
                    }
                } else if (frame.id() == 0) {
                    handleAgentControl(frame);
                } else {
                    routeFromGuest(frame);
                }
            }
            SupervisorLog.log("agent port closed");
        } catch (ProtocolException e) {
            // The guest is untrusted: a garbled stream ends the VM rather than confusing clients.
            agentFailure = "agent sent an invalid frame: " + e.getMessage();
            SupervisorLog.log(agentFailure);
            logSystem(agentFailure);
            vmm.kill();
        } catch (IOException e) {
            SupervisorLog.log("agent link ended: " + e.getMessage());
        }
    }

    private void routeFromGuest(Frame frame) {
        SessionRouter.Route route = router.ofGuest(frame.id());
        if (route == null || frame.type().startsWith("sup.")) {
            // no client asked for this id (or it is over): a forged, late or hostile frame
            return;
        }
        if (route.cancelled) {
            cancelledSessionFrame(route, frame);
            return;
        }
        if (route.session && !frame.isTerminal() && !expectedWithinSession(route, frame.type())) {
            // unmetered frames a client would have to queue: a guest could fill its heap with them
            if (!route.unexpectedFrameLogged) {
                route.unexpectedFrameLogged = true;
                String message = "guest sent an unexpected " + Json.brief(frame.type(), 64) + " in session " + route.logId + "; dropped";
                SupervisorLog.log(message);
                logSystem(message);
            }
            return;
        }
        boolean output = route.fs ? Protocol.FS_DATA.equals(frame.type())
                : Protocol.EXEC_STDOUT.equals(frame.type()) || Protocol.EXEC_STDERR.equals(frame.type());
        if (output && route.session) {
            byte[] data = frame.bytes("data");
            if (!router.consumeWindow(route, data.length)) {
                if (!route.windowViolationLogged) {
                    route.windowViolationLogged = true;
                    String message = "guest sent more output than the client allowed for session " + route.logId + "; dropped";
                    SupervisorLog.log(message);
                    logSystem(message);
                }
                return;
            }
            if (route.fs) {
                // file data is not command output: not logged
                route.client.send(new Frame(route.clientId, frame.flags(), frame.type(), frame.payload()));
                return;
            }
            String source = route.tty ? "output" : Protocol.EXEC_STDOUT.equals(frame.type()) ? "stdout" : "stderr";
            try {
                execLog.write(source, route.logId, data);
            } catch (IOException e) {
                SupervisorLog.warn("cannot write the exec log: " + e.getMessage());
            }
        }
        if (route.detached) {
            // nobody reads it: its output went to the exec log, its end closes it
            if (frame.isTerminal() && router.close(route)) {
                sessionEnded(route);
            } else if (output) {
                grantDetachedCredit(route, true);
            }
            return;
        }
        // a one-shot request is answered by its first frame, whatever the guest flags it with
        if (!route.session) {
            clientStatsRequests.remove(route);
            if (!router.close(route)) {
                return; // answered meanwhile from the sample (a pause, or a guest slower than the wait)
            }
        } else if (frame.isTerminal() && router.close(route)) {
            sessionEnded(route);
        }
        route.client.send(new Frame(route.clientId, frame.flags(), frame.type(), frame.payload()));
    }

    /**
     * The frames a session's client takes before its end: output within its window, credit for
     * what it sent, and one start. Anything else would sit unmetered in the client's queue.
     */
    private static boolean expectedWithinSession(SessionRouter.Route route, String type) {
        if (route.fs) {
            return Protocol.FS_DATA.equals(type) || Protocol.FS_WRITE_WINDOW.equals(type);
        }
        if (Protocol.EXEC_STARTED.equals(type)) {
            boolean first = !route.startSeen;
            route.startSeen = true;
            return first;
        }
        return Protocol.EXEC_STDOUT.equals(type) || Protocol.EXEC_STDERR.equals(type) || Protocol.EXEC_STDIN_WINDOW.equals(type);
    }

    /** Records this run in the database (opening it first) on a helper thread; see {@link #awaitRunRecorded}. */
    private void recordRun() {
        runRecording = CompletableFuture.supplyAsync(() -> {
            try {
                store = storeOpening.get();
            } catch (ExecutionException e) {
                return "cannot open the sandbox database: " + e.getCause().getMessage();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return "interrupted while opening the sandbox database";
            }
            try {
                store.startRun(spec.name(), ProcessHandle.current().pid(), vmm.pid());
                return null;
            } catch (RuntimeException e) {
                // e.g. the sandbox was removed while it booted
                return "cannot record the run of sandbox " + spec.name() + ": " + e.getMessage();
            }
        }, Supervisor::helperThread);
    }

    /** Null once {@link #recordRun} has recorded the run (or was never asked to), else why not. */
    private String awaitRunRecorded() throws InterruptedException {
        CompletableFuture<String> recording = runRecording;
        if (recording == null) {
            return null;
        }
        try {
            return recording.get(RUN_RECORD_WAIT_MS, TimeUnit.MILLISECONDS);
        } catch (ExecutionException | java.util.concurrent.TimeoutException e) {
            return "cannot record the run of sandbox " + spec.name() + ": " + e;
        }
    }

    /** The host side of the network, not started: the policy and published ports from network.json (docs/network.md). */
    private io.microsandbox.runtime.network.NetworkRelay prepareNetwork() throws IOException {
        var settings = io.microsandbox.runtime.network.NetworkSettings.read(layout.dir());
        var relay = new io.microsandbox.runtime.network.NetworkRelay(settings,
                io.microsandbox.runtime.network.AddressGroups.ofThisHost(),
                new io.microsandbox.runtime.network.GuestChannel() {
                    @Override
                    public boolean send(Frame frame, long timeoutMillis) throws InterruptedException {
                        return toGuest.offer(FrameCodec.encode(frame), timeoutMillis);
                    }

                    @Override
                    public boolean urgent(Frame frame) {
                        return toGuest.urgent(FrameCodec.encode(frame));
                    }
                }, message -> {
                    SupervisorLog.log(message);
                    logSystem(message);
                }, settings.policy().tlsInterception() ? TlsLibraries.open(Path.of(spec.home())) : null);
        relay.secrets(secrets,
                () -> requestStop(STOP_GRACE_MS, "secret-violation"));
        return relay;
    }

    private void handleAgentControl(Frame frame) {
        switch (frame.type()) {
            case Protocol.CORE_SHUTDOWN -> SupervisorLog.log("agent acknowledged shutdown");
            case Protocol.CORE_PONG -> {
                long answered = pongsReceived.incrementAndGet();
                PongWait waiting = pong;
                if (waiting != null && answered >= waiting.ping()) {
                    waiting.answered().complete(null);
                }
            }
            case Protocol.CORE_STATS -> {
                guestSample = new GuestSample(knownGuestFigures(frame.payload()), System.nanoTime());
                guestFileBytes = frame.payload().path("mem_file_bytes").asLong(-1);
            }
            case Protocol.CORE_ERROR -> SupervisorLog.warn("agent error: " + Json.brief(frame.payload()));
            default -> SupervisorLog.log("ignoring agent frame " + frame);
        }
    }

    private void acceptClients() {
        while (clientServer.isOpen()) {
            SocketChannel channel;
            try {
                channel = clientServer.accept();
            } catch (IOException e) {
                if (clientServer.isOpen()) {
                    SupervisorLog.warn("accept failed: " + e.getMessage());
                }
                return;
            }
            FrameLink link = new FrameLink(channel);
            if (awaitingHello.incrementAndGet() > MAX_CLIENTS) {
                // connections that never say hello must not cost a thread each without end
                awaitingHello.decrementAndGet();
                SupervisorLog.debug("refused a connection: " + MAX_CLIENTS + " others have not said hello yet");
                refuse(link, MAX_CLIENTS + " connections to " + spec.name() + " have not said hello yet");
                continue;
            }
            SupervisorLog.daemon("client", () -> serveClient(link), e -> link.close()).start();
        }
    }

    /**
     * Tells a connection why it is refused ({@code resource_limit}: the supervisor runs, a control
     * connection tries again), then closes it. A few bytes into the empty buffer of a connection
     * that has been sent nothing yet: the write does not block.
     */
    private static void refuse(FrameLink link, String message) {
        try {
            link.writeEncoded(FrameCodec.encode(errorFrame(0, ErrorKind.RESOURCE_LIMIT, message)));
        } catch (IOException | RuntimeException e) {
            // gone already
        }
        link.close();
    }

    private void serveClient(FrameLink link) {
        ClientConnection client = null;
        try {
            Frame hello;
            ScheduledFuture<?> helloDeadline = timers.schedule(link::close, CLIENT_HELLO_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            try {
                hello = link.read(clientReadBudget);
            } finally {
                helloDeadline.cancel(false);
                awaitingHello.decrementAndGet();
            }
            if (hello == null || !Protocol.SUP_HELLO.equals(hello.type())) {
                link.close();
                return;
            }
            boolean control = hello.payload().path("control").asBoolean(false);
            client = claimSlot(link, control);
            if (client == null) {
                refuse(link, control ? "too many control connections (" + CONTROL_SLOTS + ") to " + spec.name()
                        : "too many clients (" + MAX_CLIENTS + ") connected to " + spec.name());
                return;
            }
            ObjectNode welcome = Json.object();
            welcome.put("v", Protocol.VERSION);
            welcome.put("name", spec.name());
            welcome.put("pid", ProcessHandle.current().pid());
            welcome.put("vmm_pid", vmm.pid());
            welcome.set("ready", readyPayload);
            // a restored guest sends no hello: its core.restored carries the same identity
            JsonNode identity = helloFrame != null ? helloFrame.payload() : readyPayload;
            welcome.put("agent", guestText(identity.path("agent").asText(null)));
            welcome.put("kernel", guestText(identity.path("kernel").asText(null)));
            welcome.set("features", agentFeatures(identity));
            welcome.put("qemu", qemuVersionOrNull());
            client.send(new Frame(0, 0, Protocol.SUP_WELCOME, welcome));
            SupervisorLog.debug(client + " connected");

            Frame frame;
            while ((frame = link.read(clientReadBudget)) != null) {
                if (frame.id() == 0) {
                    SupervisorLog.warn("dropping frame on id 0 from " + client + ": " + frame);
                } else if (client.control && !CONTROL_REQUESTS.contains(frame.type())) {
                    client.send(errorFrame(frame.id(), ErrorKind.INVALID_ARGUMENT, "a control connection may only send " + CONTROL_REQUESTS));
                } else if (frame.type().startsWith("sup.")) {
                    handleClientRequest(client, frame);
                } else {
                    routeToGuestUnlessCheckpointing(client, frame);
                }
            }
        } catch (IOException e) {
            SupervisorLog.log((client != null ? client : "a client") + " disconnected: " + e.getMessage());
        } finally {
            if (client != null) {
                client.finish();
                clientsBySlot.remove(client.slot);
                killOrphanedSessions(client);
            } else {
                link.close();
            }
        }
    }

    /**
     * {@link #routeToGuest}, except that nothing may start while a checkpoint needs the guest
     * link quiet (see {@link #checkpoint(Frame)}).
     */
    private void routeToGuestUnlessCheckpointing(ClientConnection client, Frame frame) {
        if (!frame.isSessionStart()) {
            routeToGuest(client, frame);
            return;
        }
        checkpointGate.readLock().lock();
        try {
            if (Protocol.CORE_STATS.equals(frame.type()) && (paused || checkpointing || runState.isLocked())) {
                client.send(statsFromSample(frame.id(), false));
                return;
            }
            if (checkpointing) {
                String type = frame.type();
                client.send(Protocol.FS_REQUEST.equals(type) ? fsRefused(frame.id(), "sandbox_checkpointing", "a checkpoint is being taken")
                        : Protocol.EXEC_REQUEST.equals(type) ? execRefused(frame.id(), "sandbox_checkpointing", "a checkpoint is being taken")
                        : errorFrame(frame.id(), "a checkpoint is being taken"));
                return;
            }
            routeToGuest(client, frame);
        } finally {
            checkpointGate.readLock().unlock();
        }
    }

    /** What a client may send to the guest, and with which id. */
    private void routeToGuest(ClientConnection client, Frame frame) {
        String type = frame.type();
        if (frame.isSessionStart()) {
            if (Protocol.FS_REQUEST.equals(type)) {
                openFsSession(client, frame);
                return;
            }
            boolean exec = Protocol.EXEC_REQUEST.equals(type);
            if (!exec && !Protocol.CORE_PING.equals(type) && !Protocol.CORE_TOUCH.equals(type) && !Protocol.CORE_STATS.equals(type)) {
                client.send(errorFrame(frame.id(), "clients may not send " + type));
                return;
            }
            if (exec && !acceptingSessions()) {
                client.send(execRefused(frame.id(), "sandbox_draining", "sandbox " + spec.name() + " is "
                        + (draining ? "draining" : "stopping") + ": new commands are refused"));
                return;
            }
            long window = exec ? frame.payload().path("window").asLong(Protocol.DEFAULT_OUTPUT_WINDOW) : 0;
            SessionRouter.Route route = router.open(client, frame.id(), exec, exec && frame.payload().path("tty").asBoolean(false),
                    exec ? sessionCounter.incrementAndGet() : 0, window);
            if (route == null) {
                client.send(exec ? execRefused(frame.id(), "resource_limit", "id " + frame.id() + " is in use or "
                        + SessionRouter.MAX_ROUTES_PER_CLIENT + " requests are open") : errorFrame(frame.id(), "id in use or too many requests"));
                return;
            }
            // pings and metrics only watch the sandbox: a monitor polling them must not keep it from idling
            if (exec || Protocol.CORE_TOUCH.equals(type)) {
                lastActivity = System.nanoTime();
            }
            if (exec && SupervisorLog.debugEnabled()) {
                SupervisorLog.debug(client + " started session " + route.logId + ": " + frame.payload().path("cmd").asText()
                        + (frame.payload().path("tty").asBoolean(false) ? " (tty)" : ""));
            }
            if (Protocol.CORE_STATS.equals(type)) {
                clientStatsRequests.add(route);
                if (clientStatsRequests.size() > SessionRouter.MAX_ROUTES_PER_CLIENT) {
                    // requests the router gave up (a guest that does not answer) are not kept here either
                    clientStatsRequests.removeIf(r -> router.ofGuest(r.guestId) != r);
                }
                if (paused) {
                    // a pause that landed after the check above: its own look may have missed this one
                    if (clientStatsRequests.remove(route) && router.close(route)) {
                        client.send(statsFromSample(frame.id(), false));
                    }
                    return;
                }
                // a guest that does not answer (busy, or hostile) must not take the host's figures with it
                timers.schedule(() -> answerStatsFromSample(route, true), GUEST_STATS_WAIT_MS, TimeUnit.MILLISECONDS);
            }
            if (!toGuestQueueRequest(route, frame)) {
                clientStatsRequests.remove(route);
                router.close(route);
                if (exec) {
                    sessionEnded(route);
                }
                client.send(exec ? execRefused(frame.id(), "resource_limit", "the guest is not reading its channel")
                        : errorFrame(frame.id(), "the guest is not reading its channel"));
            }
            return;
        }
        SessionRouter.Route route = router.ofClient(client, frame.id());
        if (route == null || !route.session) {
            return; // a session that ended meanwhile
        }
        boolean allowed = route.fs ? Protocol.FS_DATA.equals(type) || Protocol.FS_WINDOW.equals(type) || Protocol.FS_CANCEL.equals(type)
                : type.startsWith("exec.") && !Protocol.EXEC_REQUEST.equals(type);
        if (!allowed) {
            return; // a frame this session does not take
        }
        if (Protocol.EXEC_CANCEL.equals(type) || Protocol.FS_CANCEL.equals(type)) {
            cancelSession(route); // the session's own kind: an fs session takes only fs.cancel, an exec one exec.cancel
            return;
        }
        if (Protocol.EXEC_DETACH.equals(type)) {
            router.detach(route);
            if (!route.tty) {
                // nobody can write to it any more: a command reading its stdin must not wait for ever
                ObjectNode eof = Json.object();
                eof.put("data", new byte[0]);
                if (!toGuestQueueWaiting(new Frame(route.guestId, 0, Protocol.EXEC_STDIN, eof))) {
                    SupervisorLog.warn("the guest is not reading its channel: the end of stdin of detached session " + route.logId + " was dropped");
                }
            }
            grantDetachedCredit(route, false);
            long killAfter = frame.payload().path("kill_after_ms").asLong(0);
            if (killAfter > 0) {
                int guestId = route.guestId;
                timers.schedule(() -> detachedTimeout(guestId), Math.min(killAfter, MAX_DETACHED_TIMEOUT_MS), TimeUnit.MILLISECONDS);
            }
            return;
        }
        if (Protocol.EXEC_WINDOW.equals(type) || Protocol.FS_WINDOW.equals(type)) {
            router.growWindow(route, frame.payload().path("bytes").asLong(0));
        }
        Frame toGuestFrame = new Frame(route.guestId, frame.flags(), type, frame.payload());
        boolean queued = route.fs && Protocol.FS_DATA.equals(type) ? toGuestQueueWaiting(toGuestFrame) : toGuestQueue(toGuestFrame);
        if (!queued) {
            if (route.fs && router.close(route)) {
                // a file must not silently miss a chunk: the operation fails instead
                SupervisorLog.warn("the guest is not reading its channel: cancelled a filesystem session of " + client);
                cancelInGuest(route);
                sessionEnded(route);
                client.send(fsRefused(frame.id(), "resource_limit", "the guest is not reading its channel; the transfer was cancelled"));
                return;
            }
            SupervisorLog.warn("the guest is not reading its channel: dropped " + type + " of session " + route.logId);
        }
    }

    /** An fs.request: a session whose read data is held to the window the client grants, like exec output. */
    private void openFsSession(ClientConnection client, Frame frame) {
        if (stopReason != null || killRequested) {
            client.send(fsRefused(frame.id(), "sandbox_stopping", "sandbox " + spec.name() + " is stopping"));
            return;
        }
        long window = frame.payload().path("window").asLong(Protocol.DEFAULT_OUTPUT_WINDOW);
        SessionRouter.Route route = router.open(client, frame.id(), true, false, 0, window, true);
        if (route == null) {
            client.send(fsRefused(frame.id(), "resource_limit", "id " + frame.id() + " is in use or "
                    + SessionRouter.MAX_ROUTES_PER_CLIENT + " requests are open"));
            return;
        }
        lastActivity = System.nanoTime();
        if (!toGuestQueueRequest(route, frame)) {
            router.close(route);
            sessionEnded(route);
            client.send(fsRefused(frame.id(), "resource_limit", "the guest is not reading its channel"));
        }
    }

    private static Frame fsRefused(int id, String kind, String message) {
        ObjectNode refused = Json.object();
        refused.put("kind", kind);
        refused.put("errno", 0);
        refused.put("message", message);
        return new Frame(id, Protocol.FLAG_TERMINAL, Protocol.FS_ERROR, refused);
    }

    /**
     * Waits up to {@link #FS_QUEUE_WAIT_MS} for room in the guest queue (back-pressure on this
     * client's channel, as the guest reads its port) rather than dropping the frame: for file data
     * (a guest that does not read that long gets the transfer cancelled) and for frames that must
     * keep their place (a detached session's end of input and first credit).
     */
    private boolean toGuestQueueWaiting(Frame frame) {
        try {
            return toGuest.offer(FrameCodec.encode(frame), FS_QUEUE_WAIT_MS);
        } catch (IllegalArgumentException e) {
            SupervisorLog.warn("cannot forward " + frame + ": " + e.getMessage());
            return true;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /** Queues the request that opens {@code route}, so that a cancel can withdraw it while it waits. */
    private boolean toGuestQueueRequest(SessionRouter.Route route, Frame request) {
        Frame frame = new Frame(route.guestId, request.flags(), request.type(), request.payload());
        try {
            return toGuest.offerRequest(FrameCodec.encode(frame), route.guestId);
        } catch (IllegalArgumentException e) {
            SupervisorLog.warn("cannot forward " + frame + ": " + e.getMessage());
            return true;
        }
    }

    private boolean toGuestQueue(Frame frame) {
        try {
            return toGuest.offer(FrameCodec.encode(frame));
        } catch (IllegalArgumentException e) {
            SupervisorLog.warn("cannot forward " + frame + ": " + e.getMessage());
            return true;
        }
    }

    private boolean acceptingSessions() {
        return !draining && stopReason == null && !killRequested;
    }

    private static Frame execRefused(int id, String kind, String message) {
        ObjectNode refused = Json.object();
        refused.put("kind", kind);
        refused.put("errno", 0);
        refused.put("message", message);
        refused.put("stage", "spawn");
        return new Frame(id, Protocol.FLAG_TERMINAL, Protocol.EXEC_FAILED, refused);
    }

    private void sessionEnded(SessionRouter.Route route) {
        try {
            // what the session held back (the start of a character) is written now
            if (!route.fs) {
                execLog.endSession(route.logId);
            }
        } catch (IOException e) {
            SupervisorLog.warn("cannot write the exec log: " + e.getMessage());
        }
        lastActivity = System.nanoTime();
        if (draining && router.sessions() == 0) {
            requestStop(STOP_GRACE_MS, drainReason);
        }
    }

    /** Refuses new commands from now on and stops once the running ones have finished, recording {@code reason}. */
    private void drain(String reason) {
        synchronized (this) {
            if (draining) {
                return;
            }
            drainReason = reason;
            draining = true;
        }
        SupervisorLog.log("draining with " + router.sessions() + " running command(s)");
        try {
            store.updateStatus(spec.name(), "draining");
        } catch (RuntimeException e) {
            SupervisorLog.warn("cannot record the drain: " + e.getMessage());
        }
        if (router.sessions() == 0) {
            requestStop(STOP_GRACE_MS, reason);
        }
    }

    /** A guest console line, as a system entry of the exec log ("console: ..."), so sources=system shows why a boot failed. */
    private void logConsoleLine(byte[] line) {
        byte[] prefix = "console: ".getBytes(StandardCharsets.UTF_8);
        byte[] entry = java.util.Arrays.copyOf(prefix, prefix.length + line.length);
        System.arraycopy(line, 0, entry, prefix.length, line.length);
        try {
            execLog.write("system", null, entry);
        } catch (IOException e) {
            SupervisorLog.warn("cannot write the exec log: " + e.getMessage());
        }
    }

    private void logSystem(String message) {
        try {
            execLog.write("system", null, message.getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            SupervisorLog.warn("cannot write the exec log: " + e.getMessage());
        }
    }

    /** Runs {@code task} every second; a failure is logged, and never ends the repetition. */
    private static void everySecond(ScheduledExecutorService thread, Runnable task) {
        thread.scheduleAtFixedRate(() -> {
            try {
                task.run();
            } catch (RuntimeException | Error e) {
                // an Error too: a scheduled task that throws is never run again, silently
                SupervisorLog.error("periodic task failed: " + e);
            }
        }, 1, 1, TimeUnit.SECONDS);
    }

    /**
     * QEMU's own output can be provoked by the guest (device errors it reports again and
     * again). QEMU appends to its log, so moving the content aside and truncating keeps it
     * bounded without QEMU noticing: at most {@link ConsoleRecorder#ROTATE_BYTES} here and as
     * much again in {@code vmm.log.1}.
     */
    private void capVmmLog() {
        Path log = layout.vmmLog();
        try (var channel = java.nio.channels.FileChannel.open(log, java.nio.file.StandardOpenOption.READ,
                java.nio.file.StandardOpenOption.WRITE)) {
            long size = channel.size();
            if (size > ConsoleRecorder.ROTATE_BYTES) {
                // keep the newest megabyte of what was written, then start over
                try (var previous = java.nio.channels.FileChannel.open(ConsoleRecorder.rotated(log), java.nio.file.StandardOpenOption.CREATE,
                        java.nio.file.StandardOpenOption.WRITE, java.nio.file.StandardOpenOption.TRUNCATE_EXISTING)) {
                    channel.transferTo(size - ConsoleRecorder.ROTATE_BYTES, ConsoleRecorder.ROTATE_BYTES, previous);
                }
                channel.truncate(0);
            }
        } catch (java.nio.file.NoSuchFileException e) {
            // QEMU has not written anything
        } catch (IOException e) {
            SupervisorLog.warn("cannot rotate " + log + ": " + e.getMessage());
        }
    }

    /**
     * Once per idle spell (no exec or file session since {@code cacheReclaimAfterMs}), asks a
     * guest that holds much page cache to drop it: a guest keeps what it once read for as long
     * as nothing presses on its memory, while the host's page cache holds the same disk blocks.
     */
    private void reclaimIdleCache() {
        long since = lastActivity;
        long fileBytes = guestFileBytes;
        if (spec.cacheReclaimAfterMs() <= 0 || since == cacheReclaimedAfter || fileBytes < CACHE_RECLAIM_MIN_BYTES
                || !idleSince(since, spec.cacheReclaimAfterMs())) {
            return;
        }
        if (toGuestQueue(new Frame(0, 0, Protocol.CORE_RECLAIM, Json.object()))) {
            cacheReclaimedAfter = since;
            SupervisorLog.log("idle for " + TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - since) + " s with "
                    + (fileBytes >> 20) + " MiB of page cache: asked the guest to drop it");
        }
    }

    /** No session runs, and none has started or ended since {@code since} for {@code millis} or more. */
    private boolean idleSince(long since, long millis) {
        return router.sessions() == 0 && System.nanoTime() - since >= TimeUnit.MILLISECONDS.toNanos(millis);
    }

    private void checkIdle() {
        long since = lastActivity;
        if (!paused && !checkpointing && idleSince(since, spec.idleTimeoutMs())) {
            SupervisorLog.log("idle for " + TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - since) + " ms");
            requestStop(STOP_GRACE_MS, "idle-timeout");
        }
    }

    /**
     * Output credit for a detached session, granted here as its output is logged, so that it is
     * never held up. A grant answering output goes ahead of the queue (the guest knows the
     * session, and a full queue must not stall it for good); the one at detach keeps its place
     * behind the request (the guest may not know the session yet), waiting for room if need be.
     */
    private void grantDetachedCredit(SessionRouter.Route route, boolean answeringOutput) {
        long grant = DETACHED_WINDOW - router.window(route);
        if (grant >= DETACHED_WINDOW / 2) {
            ObjectNode p = Json.object();
            p.put("bytes", grant);
            Frame window = new Frame(route.guestId, 0, Protocol.EXEC_WINDOW, p);
            if (answeringOutput ? toGuest.urgent(FrameCodec.encode(window)) : toGuestQueueWaiting(window)) {
                router.growWindow(route, grant);
            } else if (!answeringOutput) {
                SupervisorLog.warn("the guest is not reading its channel: the output credit of detached session " + route.logId + " was dropped");
            }
        }
    }

    /**
     * A detached command's timeout ran out (its client kept the time until the detach): it is
     * killed as a cancel kills, and its end still closes the session. Looked up by its guest id,
     * never handed out twice, so that the pending task holds no route or client.
     */
    private void detachedTimeout(int guestId) {
        SessionRouter.Route route = router.ofGuest(guestId);
        if (route == null || !route.detached) {
            return; // it ended in time
        }
        String message = "detached session " + route.logId + " ran out of its timeout and was killed";
        SupervisorLog.log(message);
        logSystem(message);
        cancelInGuest(route);
    }

    /**
     * A client's cancel: its client has let the session go, so nothing of it goes to a client
     * any more; it stays open (counted, and keeping a checkpoint off) until the guest reports its
     * end.
     */
    private void cancelSession(SessionRouter.Route route) {
        router.cancel(route);
        cancelInGuest(route);
    }

    /**
     * Tells the guest to give {@code route}'s session up, ahead of whatever else waits for it. A
     * request still queued is withdrawn instead and the route closed: the guest never hears of
     * it (a cancel that went ahead of its request would leave the guest a session nobody ends).
     */
    private void cancelInGuest(SessionRouter.Route route) {
        if (toGuest.withdraw(route.guestId)) {
            if (router.close(route)) {
                sessionEnded(route);
            }
            return;
        }
        toGuest.essential(FrameCodec.encode(new Frame(route.guestId, 0, route.fs ? Protocol.FS_CANCEL : Protocol.EXEC_CANCEL, Json.object())));
    }

    /** What the guest sends for a session its client gave up: dropped, but its end closes it. */
    private void cancelledSessionFrame(SessionRouter.Route route, Frame frame) {
        if (frame.isTerminal() && router.close(route)) {
            sessionEnded(route);
        }
    }

    /** Sessions of a client that went away would run on unobserved; end them (see {@link #cancelSession}). */
    private void killOrphanedSessions(ClientConnection client) {
        clientStatsRequests.removeIf(route -> route.client == client);
        for (SessionRouter.Route route : router.cancelAll(client)) {
            cancelInGuest(route);
        }
    }

    /** A free slot for a client; a control connection may also take one of the {@link #CONTROL_SLOTS}. */
    private synchronized ClientConnection claimSlot(FrameLink link, boolean control) {
        for (int slot = 1; slot <= MAX_CLIENTS + (control ? CONTROL_SLOTS : 0); slot++) {
            if (!clientsBySlot.containsKey(slot)) {
                ClientConnection client = new ClientConnection(slot, link, clientQueueBudget, control);
                clientsBySlot.put(slot, client);
                return client;
            }
        }
        return null;
    }

    private void handleClientRequest(ClientConnection client, Frame request) {
        switch (request.type()) {
            case Protocol.SUP_STATUS -> {
                ObjectNode p = Json.object();
                p.put("state", stopReason != null || killRequested ? "stopping" : paused ? "paused" : draining ? "draining" : "running");
                p.put("vmm_pid", vmm.pid());
                p.put("active_sessions", router.sessions());
                p.put("detached", detached);
                client.send(new Frame(request.id(), Protocol.FLAG_TERMINAL, Protocol.SUP_STATUS, p));
            }
            case Protocol.SUP_STOP -> {
                Long timeout = request.number("timeout_ms");
                requestStop(timeout == null ? STOP_GRACE_MS : Math.max(0, timeout), "shutdown-requested");
                client.send(ok(request));
            }
            case Protocol.SUP_DRAIN -> {
                drain("drain-requested");
                client.send(ok(request));
            }
            case Protocol.SUP_PAUSE, Protocol.SUP_RESUME -> client.send(pauseOrResume(request, Protocol.SUP_PAUSE.equals(request.type())));
            case Protocol.SUP_METRICS -> client.send(new Frame(request.id(), Protocol.FLAG_TERMINAL, Protocol.SUP_METRICS, hostMetrics()));
            case Protocol.SUP_CHECKPOINT -> client.send(checkpoint(request));
            case Protocol.SUP_KILL -> {
                killRequested = true;
                vmm.kill();
                client.send(ok(request));
            }
            default -> client.send(errorFrame(request.id(), "unknown request " + request.type()));
        }
    }

    /**
     * The answer to a client's {@code core.stats} that the guest cannot give (not running) or
     * did not give in time: its last figures, as the metrics file has them; with
     * {@code recentOnly}, only figures at most twice {@link #GUEST_STATS_WAIT_MS} old, else none
     * (a running guest that stopped answering must not have old figures passed off as current).
     */
    private Frame statsFromSample(int clientId, boolean recentOnly) {
        GuestSample sample = guestSample;
        boolean usable = sample != null
                && (!recentOnly || System.nanoTime() - sample.receivedAt() <= 2 * TimeUnit.MILLISECONDS.toNanos(GUEST_STATS_WAIT_MS));
        return new Frame(clientId, Protocol.FLAG_TERMINAL, Protocol.CORE_STATS, usable ? sample.figures().deepCopy() : Json.object());
    }

    /** Clients' {@code core.stats} the guest had not answered when it was paused: answered from the sample. */
    private void answerStatsRequestsFromSample() {
        clientStatsRequests.forEach(route -> answerStatsFromSample(route, false));
    }

    /** Answers a client's {@code core.stats} from the sample (see {@link #statsFromSample}) unless the guest has answered it. */
    private void answerStatsFromSample(SessionRouter.Route route, boolean recentOnly) {
        if (clientStatsRequests.remove(route) && router.close(route)) {
            route.client.send(statsFromSample(route.clientId, recentOnly));
        }
    }

    /** The agent's figures in an answer to the supervisor's own {@code core.stats}, and when it came (System.nanoTime()). */
    private record GuestSample(ObjectNode figures, long receivedAt) {
    }

    /** {@code sup.pause} / {@code sup.resume}: QMP {@code stop} / {@code cont}, one run-state change at a time. */
    private Frame pauseOrResume(Frame request, boolean pause) {
        String verb = pause ? "pause" : "resume";
        try {
            // a pause or resume under way ends within QMP's timeout; a checkpoint may take minutes
            if (!runState.tryLock(QMP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
                return errorFrame(request.id(), ErrorKind.UNSUPPORTED_OPERATION, verb + " refused: "
                        + (checkpointing ? "a checkpoint is being taken" : "another pause or resume is under way"));
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return errorFrame(request.id(), verb + " failed: interrupted");
        }
        try {
            if (pause && (stopReason != null || killRequested)) {
                // a paused guest could not shut down: the stop would end in its kill
                return errorFrame(request.id(), ErrorKind.SANDBOX_NOT_RUNNING, "pause refused: the sandbox is stopping");
            }
            QmpClient.execute(layout.qmpSocket(), pause ? "stop" : "cont", QMP_TIMEOUT);
            paused = pause;
            if (pause) {
                answerStatsRequestsFromSample();
            }
            lastActivity = System.nanoTime();
            store.updateStatus(spec.name(), pause ? "paused" : draining ? "draining" : "running");
            return ok(request);
        } catch (IOException | RuntimeException e) {
            return errorFrame(request.id(), verb + " failed: " + e.getMessage());
        } finally {
            runState.unlock();
        }
    }

    /** A ping of the supervisor's own and the future its answer completes. */
    private record PongWait(long ping, java.util.concurrent.CompletableFuture<Void> answered) {
    }

    /**
     * Takes a memory checkpoint ({@code sup.checkpoint {memory_file, upper_file, resume, timeout_ms}}):
     * pause, save memory and device state, copy the upper disk, then resume, or resume and stop
     * gracefully. A frame in flight at the pause would be cut in two in the saved guest, and
     * its rest would reach the restored sandbox's supervisor: so the checkpoint needs nothing
     * open on the guest link (network connections included), refuses new requests while it
     * runs, proves the link quiet with a ping whose answer comes after every earlier frame's,
     * and holds whatever is queued for the guest after the ping until the guest runs again.
     */
    private Frame checkpoint(Frame request) {
        try {
            if (!runState.tryLock(QMP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
                return errorFrame(request.id(), ErrorKind.UNSUPPORTED_OPERATION,
                        checkpointing ? "another checkpoint is being taken" : "a pause or resume is under way");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return errorFrame(request.id(), ErrorKind.IO, "checkpoint failed: interrupted");
        }
        try {
            return checkpointHoldingRunState(request);
        } finally {
            runState.unlock();
        }
    }

    private Frame checkpointHoldingRunState(Frame request) {
        long timeoutMs = request.payload().path("timeout_ms").asLong(120_000);
        if (timeoutMs < 1 || timeoutMs > MAX_CHECKPOINT_TIMEOUT.toMillis()) {
            return errorFrame(request.id(), ErrorKind.INVALID_ARGUMENT, "timeout_ms must be 1 to " + MAX_CHECKPOINT_TIMEOUT.toMillis() + ", not " + timeoutMs);
        }
        if (lowerDisk != null && !lowerDisk.isStillAtItsPath()) {
            return errorFrame(request.id(), ErrorKind.SNAPSHOT_INCOMPATIBLE, "the root disk " + lowerDisk.path()
                    + " was deleted or built again since the sandbox started (an image prune), and a restore would run"
                    + " over that one; stop and start the sandbox, then take the checkpoint");
        }
        io.microsandbox.runtime.network.NetworkRelay net = network;
        int flows = net != null ? net.openFlows() : 0;
        checkpointGate.writeLock().lock();
        try {
            String busy = checkpointing ? "another checkpoint is being taken"
                    : paused ? "the sandbox is paused; resume it first"
                    : router.routes() > 0 ? router.routes() + " command(s), transfer(s) or request(s) are open; a checkpoint needs them finished"
                    // the guest may be writing one's data as the VM stops: its frame would be cut in two
                    : flows > 0 ? flows + " network connection(s) or UDP flow(s) are open; a checkpoint needs them closed"
                    : null;
            if (stopReason != null || killRequested || draining) {
                return errorFrame(request.id(), ErrorKind.SANDBOX_NOT_RUNNING, "the sandbox is " + (draining ? "draining" : "stopping"));
            }
            if (busy != null) {
                return errorFrame(request.id(), ErrorKind.UNSUPPORTED_OPERATION, busy);
            }
            checkpointing = true;
        } finally {
            checkpointGate.writeLock().unlock();
        }
        boolean quiesceAsked = false;
        io.microsandbox.runtime.SandboxLock saving = null;
        try {
            // held until the files are written: a client that dies meanwhile must not have the
            // directory deleted, and its name claimed again, under this save
            saving = io.microsandbox.runtime.CheckpointSaving.lockForSaving(Path.of(request.text("memory_file")).getParent(),
                    request.payload().path("writer").textValue());
            var answered = new java.util.concurrent.CompletableFuture<Void>();
            pong = new PongWait(pingsSent.incrementAndGet(), answered);
            // nothing queued after the ping reaches the guest before it runs again; and from its
            // pong the agent starts no frame of its own (a connection or DNS query of the guest's
            // would be cut in two by the stop) until core.resume, or core.restore in a restored copy
            ObjectNode quiesce = Json.object();
            quiesce.put("quiesce", true);
            if (!toGuest.offerThenHold(FrameCodec.encode(new Frame(0, 0, Protocol.CORE_PING, quiesce)))) {
                throw new IOException("the guest is not reading its channel");
            }
            quiesceAsked = true;
            answered.get(QMP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            int opened = net != null ? net.openFlows() : 0;
            if (opened > 0) {
                // the guest opened them between the check above and the pong: their frames may be under way
                return errorFrame(request.id(), ErrorKind.UNSUPPORTED_OPERATION, opened
                        + " network connection(s) or UDP flow(s) opened as the checkpoint began; a checkpoint needs them closed");
            }
            ObjectNode result = MemoryCheckpoint.take(layout.qmpSocket(), guestMemory.file(), Path.of(request.text("memory_file")),
                    Path.of(request.text("ram_file")), layout.upperDisk(), Path.of(request.text("upper_file")),
                    Duration.ofMillis(timeoutMs));
            long resumeStart = System.nanoTime();
            QmpClient.execute(layout.qmpSocket(), "cont", QMP_TIMEOUT);
            result.put("resume_ms", (System.nanoTime() - resumeStart) / 1_000_000);
            SupervisorLog.log("checkpoint taken: " + Json.toText(result));
            if (!request.payload().path("resume").asBoolean(true)) {
                requestStop(STOP_GRACE_MS, "shutdown-requested");
            }
            return new Frame(request.id(), Protocol.FLAG_TERMINAL, Protocol.SUP_OK, result);
        } catch (IOException | RuntimeException | InterruptedException | ExecutionException | java.util.concurrent.TimeoutException e) {
            if (e instanceof InterruptedException) {
                Thread.currentThread().interrupt();
            }
            SupervisorLog.warn("checkpoint failed: " + e);
            if (saving == null && e instanceof io.microsandbox.MicrosandboxException refused) {
                return errorFrame(request.id(), refused.kind(), refused.getMessage()); // nothing was paused
            }
            try {
                QmpClient.execute(layout.qmpSocket(), "cont", QMP_TIMEOUT);
            } catch (IOException resumeFailed) {
                SupervisorLog.warn("cannot resume the VM after the failed checkpoint: " + resumeFailed.getMessage());
            }
            String reason = e instanceof java.util.concurrent.TimeoutException ? "the guest agent did not answer a ping within " + QMP_TIMEOUT : e.getMessage();
            return errorFrame(request.id(), ErrorKind.IO, "checkpoint failed: " + reason);
        } finally {
            if (saving != null) {
                saving.close();
            }
            pong = null;
            if (quiesceAsked && !toGuest.offer(FrameCodec.encode(new Frame(0, 0, Protocol.CORE_RESUME, Json.object())))) {
                SupervisorLog.warn("cannot queue core.resume: the agent ends its quiet spell by itself in 10 s");
            }
            toGuest.releaseHold();
            checkpointing = false;
            lastActivity = System.nanoTime();
            if (stopReason != null) {
                toGuest.essential(FrameCodec.encode(new Frame(0, Protocol.FLAG_SHUTDOWN, Protocol.CORE_SHUTDOWN, null)));
            }
        }
    }

    /**
     * Once a second: samples the VMM, asks the agent for its figures (answered on id 0, kept
     * for the next sample) and writes {@code metrics.json} (atomically, owner-only), so that a
     * handle reads metrics without connecting.
     */
    private void sampleMetrics() {
        sampler.sample();
        // a paused guest would not answer: its requests would only pile up in the queue; and
        // from a checkpoint's ping to its save the link must stay quiet (the gate orders the two)
        checkpointGate.readLock().lock();
        try {
            if (stopReason == null && !killRequested && !paused && !checkpointing) {
                toGuestQueue(new Frame(0, 0, Protocol.CORE_STATS, Json.object()));
                reclaimIdleCache();
            }
        } finally {
            checkpointGate.readLock().unlock();
        }
        sampleDisks();
        ObjectNode sample = Json.object();
        sample.put("sampled_at_ms", System.currentTimeMillis());
        sample.set("host", hostMetrics());
        GuestSample guest = guestSample;
        if (guest != null) {
            sample.set("guest", guest.figures());
        }
        Path file = layout.metricsFile();
        synchronized (metricsFileLock) {
            if (runFilesRemoved) {
                return;
            }
            try {
                Files.write(metricsTmp(), Json.bytes(sample));
                Files.move(metricsTmp(), file, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
            } catch (IOException e) {
                SupervisorLog.warn("cannot write " + file + ": " + e.getMessage());
            }
        }
    }

    private Path metricsTmp() {
        return layout.metricsFile().resolveSibling("metrics.json.tmp");
    }

    /** Only the figures the agent is known to send, as numbers: a hostile guest's extra keys go nowhere. */
    private static ObjectNode knownGuestFigures(JsonNode payload) {
        ObjectNode figures = Json.object();
        for (String key : new String[] {"mem_total_bytes", "mem_available_bytes", "upper_used_bytes", "upper_free_bytes"}) {
            if (payload.path(key).isIntegralNumber()) {
                figures.put(key, payload.get(key).asLong());
            }
        }
        return figures;
    }

    /** Nanoseconds left until the boot watchdog fires; zero once it has. */
    private long untilBootDeadline() {
        return Math.max(0, bootDeadlineNanos - System.nanoTime());
    }

    /** A host-side step of the boot, run beside the guest's on a short-lived thread. */
    private interface BootStep<T> {
        T run() throws IOException;
    }

    private static <T> CompletableFuture<T> onHelperThread(BootStep<T> step) {
        return CompletableFuture.supplyAsync(() -> {
            try {
                return step.run();
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }, Supervisor::helperThread);
    }

    /** The message of what a step on another thread failed with, unwrapping an {@link java.io.UncheckedIOException}. */
    static String causeOf(ExecutionException e) {
        Throwable cause = e.getCause() instanceof java.io.UncheckedIOException u ? u.getCause() : e.getCause();
        return cause.getMessage();
    }

    /** A short-lived thread of the boot's host-side steps. */
    private static void helperThread(Runnable step) {
        SupervisorLog.daemon("boot-step", step, e -> { }).start();
    }

    /** QEMU's version, once {@link #queryQemuVersion} has answered (it is bounded by QMP's timeout); null if it could not. */
    private String qemuVersionOrNull() {
        try {
            return qemuVersion.get(2 * QMP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        } catch (ExecutionException | java.util.concurrent.TimeoutException e) {
            return null;
        }
    }

    /** "7.2.19 (Debian 1:7.2+dfsg-7+deb12u16)" from QMP, or null (logged) when QEMU does not answer. */
    private String queryQemuVersion() {
        try {
            return versionText(QmpClient.execute(layout.qmpSocket(), "query-version", QMP_TIMEOUT));
        } catch (IOException e) {
            SupervisorLog.warn("cannot read QEMU's version: " + e.getMessage());
            return null;
        }
    }

    /** "7.2.19 (Debian ...)" of QMP's version object (query-version's, or the greeting's); null when it has none. */
    private static String versionText(JsonNode version) {
        JsonNode q = version.path("qemu");
        if (!q.has("major")) {
            return null;
        }
        String pkg = version.path("package").asText("").strip();
        return q.path("major").asInt() + "." + q.path("minor").asInt() + "." + q.path("micro").asInt()
                + (pkg.isEmpty() ? "" : " (" + pkg + ")");
    }

    /** Reads QEMU's disk counters into {@link #diskTotals}; on the metrics thread only. */
    private void sampleDisks() {
        try {
            BlockStats.Totals disks = readDiskTotals();
            if (disks != null) {
                diskTotals = disks;
            }
        } finally {
            firstDiskSample.complete(null);
        }
    }

    private ObjectNode hostMetrics() {
        if (diskTotals == null) {
            // a client that asks as soon as it hears of the boot: the first reading is under way
            try {
                firstDiskSample.get(QMP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (ExecutionException | java.util.concurrent.TimeoutException e) {
                // answered without disk figures
            }
        }
        ObjectNode p = Json.object();
        p.put("cpu_millipercent", sampler.cpuMilliPercent());
        p.put("vcpu_time_ns", sampler.cpuTimeNanos());
        p.put("rss_bytes", sampler.residentBytes());
        p.put("uptime_ms", sampler.uptimeMillis());
        io.microsandbox.runtime.network.NetworkRelay net = network;
        p.put("net_rx_bytes", net != null ? net.rxBytes() : 0);
        p.put("net_tx_bytes", net != null ? net.txBytes() : 0);
        BlockStats.Totals disks = diskTotals;
        if (disks != null) {
            p.put("disk_read_bytes", disks.readBytes());
            p.put("disk_write_bytes", disks.writtenBytes());
        }
        return p;
    }

    /** QEMU's disk counters now, or null when they cannot be read (said once until they can, unless QEMU is being stopped). */
    private BlockStats.Totals readDiskTotals() {
        try {
            BlockStats.Totals totals = blockStats.read();
            if (blockStatsFailing) {
                blockStatsFailing = false;
                SupervisorLog.log("block statistics read again");
            }
            return totals;
        } catch (IOException e) {
            if (!blockStatsFailing && stopReason == null && !killRequested) {
                SupervisorLog.warn("cannot read block statistics (logged once until they can): " + e.getMessage());
            }
            blockStatsFailing = true;
            return null;
        }
    }

    /**
     * Asks the agent to power off, and kills QEMU if it has not gone after {@code graceMs}.
     * The first request's reason is the one recorded. Never blocks: the kill is scheduled
     * before anything is sent, and what is sent is only queued.
     */
    void requestStop(long graceMs, String reason) {
        boolean duringCheckpoint;
        checkpointGate.readLock().lock();
        try {
            synchronized (this) {
                if (stopReason == null) {
                    stopReason = reason;
                }
            }
            duringCheckpoint = checkpointing;
        } finally {
            checkpointGate.readLock().unlock();
        }
        SupervisorLog.log("stop requested (" + reason + "), grace " + graceMs + " ms");
        timers.schedule(() -> {
            if (!vmm.hasExited()) {
                SupervisorLog.log("grace period over, killing the VMM");
                vmm.kill();
            }
        }, graceMs, TimeUnit.MILLISECONDS);
        if (graceMs == 0) {
            vmm.kill();
            return;
        }
        if (paused || (runState.isLocked() && !duringCheckpoint)) {
            // a paused guest (or one a pause under way leaves paused) cannot shut down: let it run
            // again first, off this thread: QMP may be slow; a checkpoint resumes it itself
            SupervisorLog.daemon("resume-for-stop", this::resumeForStop, e -> { }).start();
        }
        if (duringCheckpoint) {
            // a frame sent now would be saved inside the checkpoint: checkpoint() sends it once the guest runs again
            SupervisorLog.log("the shutdown request waits for the checkpoint to end");
            return;
        }
        toGuest.essential(FrameCodec.encode(new Frame(0, Protocol.FLAG_SHUTDOWN, Protocol.CORE_SHUTDOWN, null)));
    }

    private void resumeForStop() {
        try {
            if (!runState.tryLock(2 * QMP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
                SupervisorLog.warn("cannot resume the VM to stop it: its run state is changing; it is killed after the grace period");
                return;
            }
        } catch (InterruptedException e) {
            return;
        }
        try {
            if (paused) {
                QmpClient.execute(layout.qmpSocket(), "cont", QMP_TIMEOUT);
                paused = false;
            }
        } catch (IOException e) {
            SupervisorLog.warn("cannot resume the VM to stop it: " + e.getMessage());
        } finally {
            runState.unlock();
        }
    }

    /** Watches the creator: end of stdin without a detach byte first stops an attached sandbox. */
    private void watchCreator() {
        try (InputStream in = System.in) {
            int b;
            while ((b = in.read()) >= 0) {
                if (b == 'D') {
                    detached = true;
                    SupervisorLog.log("detached from the creator");
                }
            }
        } catch (IOException e) {
            SupervisorLog.warn("creator pipe failed: " + e.getMessage());
        }
        if (!detached && stopReason == null) {
            SupervisorLog.log("creator is gone and the sandbox is attached: stopping");
            requestStop(ORPHAN_STOP_GRACE_MS, "creator-exited");
        }
    }

    private static Frame ok(Frame request) {
        return new Frame(request.id(), Protocol.FLAG_TERMINAL, Protocol.SUP_OK, null);
    }

    private static Frame errorFrame(int id, ErrorKind kind, String message) {
        Frame frame = errorFrame(id, message);
        frame.payload().put("kind", kind.wireName());
        return frame;
    }

    private static Frame errorFrame(int id, String message) {
        ObjectNode p = Json.object();
        p.put("message", message);
        return new Frame(id, Protocol.FLAG_TERMINAL, Protocol.SUP_ERROR, p);
    }

    static ServerSocketChannel listen(Path socket) throws IOException {
        Files.deleteIfExists(socket);
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(socket));
        return server;
    }

    static void closeQuietly(java.io.Closeable c) {
        try {
            if (c != null) {
                c.close();
            }
        } catch (IOException ignored) {
            // already closed or never opened
        }
    }
}

package io.microsandbox.runtime.supervisor;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.ErrorKind;
import io.microsandbox.SandboxStatus;
import io.microsandbox.runtime.LogTail;
import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxLock;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.agent.FrameLink;
import io.microsandbox.runtime.agent.Protocol;
import io.microsandbox.runtime.agent.ProtocolException;
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
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The per-sandbox supervisor: a small host process that owns the QEMU process, relays the
 * agent channel to any number of clients over {@code agent.sock}, records how the VM ended,
 * and takes QEMU down with it if it dies itself (QEMU runs with a parent-death signal).
 *
 * <p>Its creator holds the write end of the supervisor's stdin. End of stdin means the
 * creator is gone: an attached sandbox then shuts down. A {@code 'D'} byte on stdin detaches
 * the sandbox, which then runs until it is stopped. Stdout carries exactly one JSON line,
 * the boot result; diagnostics go to stderr (the supervisor log).
 */
public final class Supervisor {
    /** Default grace period when the creator of an attached sandbox disappears. */
    static final long ORPHAN_STOP_GRACE_MS = 5_000;
    /** How long a supervisor started ahead of time waits for a sandbox before it exits. */
    static final long SPARE_IDLE_MS = 10 * 60_000;
    /** Grace period of stops the supervisor decides on itself (drain, idle, max duration). */
    static final long STOP_GRACE_MS = 10_000;
    /** Each client owns ids {@code slot << 24 .. (slot << 24) + 2^24 - 1}; slot 0 is never given out. */
    private static final int ID_SLOT_SHIFT = 24;
    private static final int MAX_CLIENTS = 255;
    /** Unread bytes a client may let pile up before it is dropped. */
    private static final long MAX_QUEUED_BYTES = 64L << 20;
    private static final byte[] END_OF_QUEUE = new byte[0];
    private static final ObjectMapper JSON = new ObjectMapper();

    private final SupervisorSpec spec;
    private final SandboxLayout layout;
    private final java.util.concurrent.Future<SandboxStore> storeOpening;
    private SandboxStore store;
    private final PrintStream parentOut;
    private final ScheduledExecutorService timers = Executors.newSingleThreadScheduledExecutor(r -> daemon(r, "timers"));
    private final Map<Integer, ClientConnection> clientsBySlot = new ConcurrentHashMap<>();
    /** Live exec sessions by correlation id. */
    private final Map<Integer, Session> activeSessions = new ConcurrentHashMap<>();
    /** Session numbers of the exec log, monotonic over the supervisor's life. */
    private final AtomicLong sessionCounter = new AtomicLong();
    private ExecLog execLog;
    private final VmmSampler sampler = new VmmSampler();
    private final CountDownLatch vmmExited = new CountDownLatch(1);
    private final CountDownLatch finished = new CountDownLatch(1);

    /** Kept in a field: an unreachable channel would be cleaned up and drop the lock. */
    private SandboxLock ownership;
    private ServerSocketChannel vmServer;
    private ServerSocketChannel clientServer;
    private volatile FrameLink vm;
    private volatile int vmmPid;
    private volatile int vmmWaitStatus;
    private volatile boolean booted;
    private volatile boolean detached;
    private volatile boolean stopRequested;
    private volatile boolean killRequested;
    private volatile boolean shutdownAcknowledged;
    private volatile boolean draining;
    private volatile boolean paused;
    private volatile String stopReason = "shutdown-requested";
    /** When exec activity last happened (System.nanoTime), for the idle timeout. */
    private volatile long lastActivity = System.nanoTime();
    private volatile String agentFailure;
    private volatile ObjectNode readyPayload;
    /** What the boot waits for, for the timeout message. */
    private volatile String bootStage = "waiting for QEMU to open the agent port";

    Supervisor(SupervisorSpec spec, java.util.concurrent.Future<SandboxStore> storeOpening, PrintStream parentOut) {
        this.spec = spec;
        this.layout = spec.layout();
        this.storeOpening = storeOpening;
        this.parentOut = parentOut;
        this.detached = spec.detached();
    }

    /**
     * Entry point. The creator starts this JVM before the sandbox's disks are ready, so that
     * JVM start-up overlaps that work; it then writes the path of {@code supervisor.json} as
     * the first line of stdin. End of stdin before that line means the creation was abandoned.
     */
    public static void main(String[] args) throws Exception {
        // Everything this process and QEMU create (logs, sockets, pid file) is the owner's only.
        Posix.umask(0077);
        PrintStream parentOut = System.out;
        System.setOut(System.err);
        warmUp();
        // A spare nobody takes (its creator went quiet) should not linger for ever.
        Thread idleSpare = daemon(() -> {
            try {
                Thread.sleep(SPARE_IDLE_MS);
                System.exit(0);
            } catch (InterruptedException e) {
                // taken: it boots a sandbox now
            }
        }, "spare-timeout");
        idleSpare.start();
        String specPath = readLine(System.in);
        idleSpare.interrupt();
        if (specPath == null || specPath.isBlank()) {
            System.exit(0);
        }
        SupervisorSpec spec = SupervisorSpec.read(Path.of(specPath));
        Files.createDirectories(spec.layout().logsDir());
        System.setErr(new PrintStream(new java.io.FileOutputStream(spec.layout().supervisorLog().toFile(), true), true,
                java.nio.charset.StandardCharsets.UTF_8));
        System.setOut(System.err);
        // Opening the database is needed only once the VM is up: do it beside the boot.
        java.util.concurrent.FutureTask<SandboxStore> store = new java.util.concurrent.FutureTask<>(
                () -> SandboxStore.open(Path.of(spec.home())));
        daemon(store, "store-open").start();
        int code = new Supervisor(spec, store, parentOut).run();
        System.exit(code);
    }

    /** Loads what the boot path uses while the creator still prepares the disks. */
    private static void warmUp() {
        Posix.load();
        FrameCodec.encode(new Frame(0, 0, Protocol.CORE_PING, JSON.createObjectNode()));
        JSON.createObjectNode().put("warm", true).toString();
        SandboxStore.preload();
    }

    /** One line read byte by byte, so nothing after it is consumed from the creator pipe. */
    private static String readLine(InputStream in) throws IOException {
        java.io.ByteArrayOutputStream line = new java.io.ByteArrayOutputStream();
        int b;
        while ((b = in.read()) >= 0 && b != '\n') {
            line.write(b);
        }
        return b < 0 && line.size() == 0 ? null : line.toString(java.nio.charset.StandardCharsets.UTF_8);
    }

    int run() throws IOException, InterruptedException {
        // Own session: a terminal's ^C to the creator's process group must not reach the VM.
        Posix.setsid();
        // Held until this process ends, however it ends: it is how others tell that the sandbox is alive.
        ownership = SandboxLock.tryAcquire(SandboxLock.supervisorLockFile(layout));
        if (ownership == null) {
            ObjectNode error = JSON.createObjectNode();
            error.put("status", "error");
            error.put("kind", ErrorKind.SANDBOX_ALREADY_EXISTS.wireName());
            error.put("message", "another supervisor already runs sandbox " + spec.name());
            reportToParent(error);
            return 1;
        }
        Files.createDirectories(layout.runDir());
        Files.createDirectories(layout.logsDir());
        execLog = ExecLog.append(layout.execLog());
        vmServer = listen(layout.vmSocket());
        clientServer = listen(layout.agentSocket());
        Files.writeString(layout.pidFile(), Long.toString(ProcessHandle.current().pid()));

        log("starting VMM: " + String.join(" ", spec.vmmArgv()));
        try {
            // Spawned from the main thread, which lives until QEMU is gone: the parent-death
            // signal is tied to the forking thread.
            vmmPid = Posix.spawn(spec.vmmArgv().toArray(String[]::new), null, null,
                    layout.vmmLog().toString(), Posix.SIGKILL, false);
        } catch (IOException e) {
            return failBoot("cannot start the VMM: " + e.getMessage());
        }
        Thread reaper = new Thread(this::reapVmm, "vmm-reaper");
        reaper.start();

        ScheduledFuture<?> watchdog = timers.schedule(() -> {
            agentFailure = "the guest agent did not become ready within " + spec.bootTimeoutMs() + " ms (" + bootStage + ")";
            closeQuietly(vmServer);
            FrameLink link = vm;
            if (link != null) {
                link.close();
            }
        }, spec.bootTimeoutMs(), TimeUnit.MILLISECONDS);
        try {
            handshake();
        } catch (IOException e) {
            watchdog.cancel(false);
            // A dying VMM closes the agent port just before it exits: give the reaper a moment
            // so the report says the VMM died rather than that the port closed.
            vmmExited.await(2, TimeUnit.SECONDS);
            String reason = agentFailure != null ? agentFailure
                    : vmmExited.getCount() == 0 ? "the VMM exited (" + describeWaitStatus(vmmWaitStatus) + ") before the guest agent was ready"
                    : "guest agent handshake failed: " + e.getMessage();
            return failBoot(reason);
        }
        watchdog.cancel(false);
        closeQuietly(vmServer);
        try {
            store = storeOpening.get();
        } catch (java.util.concurrent.ExecutionException e) {
            return failBoot("cannot open the sandbox database: " + e.getCause().getMessage());
        }
        booted = true;

        ObjectNode ready = JSON.createObjectNode();
        ready.put("status", "ready");
        ready.put("pid", ProcessHandle.current().pid());
        ready.put("vmmPid", vmmPid);
        ready.set("ready", JSON.valueToTree(readyPayload));
        store.startRun(spec.name(), ProcessHandle.current().pid(), vmmPid);
        reportToParent(ready);
        log("sandbox " + spec.name() + " is ready");
        logSystem("sandbox started");
        lastActivity = System.nanoTime();
        if (spec.maxDurationMs() > 0) {
            timers.schedule(() -> requestStop(STOP_GRACE_MS, "max-duration"), spec.maxDurationMs(), TimeUnit.MILLISECONDS);
        }
        if (spec.idleTimeoutMs() > 0) {
            everySecond(this::checkIdle);
        }
        sampler.start(vmmPid);
        everySecond(sampler::sample);

        daemon(this::relayAgentFrames, "agent-reader").start();
        daemon(this::acceptClients, "client-acceptor").start();
        daemon(this::watchCreator, "creator-watch").start();

        finished.await();
        return 0;
    }

    private void handshake() throws IOException {
        SocketChannel channel = vmServer.accept();
        vm = new FrameLink(channel);
        bootStage = "waiting for the agent's hello: the guest kernel or agent did not start";
        Frame hello = vm.read();
        if (hello == null || !Protocol.CORE_HELLO.equals(hello.type())) {
            throw new ProtocolException("expected core.hello from the agent, got " + hello);
        }
        log("agent says hello: " + hello.payload());
        Frame configure = new Frame(0, 0, Protocol.CORE_CONFIGURE, JSON.valueToTree(spec.configure()));
        vm.write(configure);
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
    }

    /** Ends a failed boot: kill QEMU, tell the creator why, leave no socket behind. */
    private int failBoot(String reason) throws InterruptedException {
        log("boot failed: " + reason);
        if (vmmPid > 0) {
            killVmm();
            vmmExited.await(10, TimeUnit.SECONDS);
        }
        ObjectNode error = JSON.createObjectNode();
        error.put("status", "error");
        error.put("kind", ErrorKind.BOOT_FAILED.wireName());
        error.put("message", reason);
        error.put("console", LogTail.of(layout.consoleLog(), 40));
        error.put("vmmLog", LogTail.of(layout.vmmLog(), 20));
        reportToParent(error);
        cleanupRunFiles();
        return 1;
    }

    private void reportToParent(ObjectNode line) {
        parentOut.println(line.toString());
        parentOut.flush();
    }

    private void reapVmm() {
        int status;
        try {
            status = Posix.waitPid(vmmPid);
        } catch (IOException e) {
            log("waitpid failed: " + e.getMessage());
            status = -1;
        }
        vmmWaitStatus = status;
        vmmExited.countDown();
        log("VMM exited: " + describeWaitStatus(status));
        if (!booted) {
            // Unblock the handshake so the boot fails now rather than at the timeout.
            closeQuietly(vmServer);
            FrameLink link = vm;
            if (link != null) {
                link.close();
            }
            return;
        }
        try {
            recordExitAndFinish(status);
        } catch (RuntimeException | Error e) {
            log("recording the end failed: " + e);
        } finally {
            // whatever failed above, a supervisor whose VM is gone must not linger
            finished.countDown();
        }
    }

    private void recordExitAndFinish(int status) {
        boolean exitedNormally = Posix.exited(status);
        Integer exitCode = exitedNormally ? Posix.exitCode(status) : null;
        Integer signal = exitedNormally || status == -1 ? null : Posix.termSignal(status);
        SandboxStatus outcome;
        String reason;
        if (shutdownAcknowledged || stopRequested) {
            // asked to stop: stopped, whether the guest powered off or was killed after the grace period
            outcome = SandboxStatus.STOPPED;
            reason = stopReason;
        } else if (killRequested) {
            outcome = SandboxStatus.STOPPED;
            reason = "signal";
        } else if (agentFailure != null) {
            outcome = SandboxStatus.CRASHED;
            reason = "agent-unresponsive";
        } else if (exitedNormally && exitCode == 0 && !LogTail.of(layout.consoleLog(), 60).contains("Kernel panic")) {
            // the guest powered itself off (e.g. `poweroff` inside it)
            outcome = SandboxStatus.STOPPED;
            reason = "completed";
        } else {
            outcome = SandboxStatus.CRASHED;
            reason = signal != null ? "signal" : "failed";
        }
        String statusName = outcome.name().toLowerCase(java.util.Locale.ROOT);
        logSystem("sandbox " + statusName + ": " + reason);
        try {
            store.finishRun(spec.name(), statusName, exitCode, signal, reason, "supervisor");
        } catch (RuntimeException e) {
            log("cannot record the end in the database: " + e.getMessage());
        }
        log("sandbox ended: " + statusName + ", " + reason + ", " + describeWaitStatus(status));
        ObjectNode payload = JSON.createObjectNode();
        payload.put("status", statusName);
        payload.put("exit_code", exitCode);
        payload.put("signal", signal);
        payload.put("reason", reason);
        Frame exited = new Frame(0, Protocol.FLAG_TERMINAL, Protocol.SUP_EXITED, payload);
        for (ClientConnection client : clientsBySlot.values()) {
            client.send(exited);
            client.finish();
        }
        try {
            for (ClientConnection client : clientsBySlot.values()) {
                client.awaitFinished(2_000);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        FrameLink link = vm;
        if (link != null) {
            link.close();
        }
        closeQuietly(clientServer);
        cleanupRunFiles();
        if (spec.ephemeral()) {
            log("ephemeral sandbox: removing its state");
            try {
                store.delete(spec.name());
                layout.deleteFiles();
            } catch (RuntimeException e) {
                log("cannot remove the ephemeral sandbox's state: " + e.getMessage());
            }
        }
    }

    private void cleanupRunFiles() {
        try {
            Files.deleteIfExists(layout.agentSocket());
            Files.deleteIfExists(layout.vmSocket());
            Files.deleteIfExists(layout.qmpSocket());
            Files.deleteIfExists(layout.pidFile());
            Files.deleteIfExists(layout.runDir());
        } catch (IOException e) {
            log("cleanup of " + layout.runDir() + " incomplete: " + e.getMessage());
        }
    }

    /** Reads agent frames and routes each to the client that owns its id. */
    private void relayAgentFrames() {
        try {
            Frame frame;
            while ((frame = vm.read()) != null) {
                if (frame.id() == 0) {
                    handleAgentControl(frame);
                    continue;
                }
                logOutput(frame);
                if (frame.isTerminal()) {
                    sessionEnded(frame.id());
                }
                ClientConnection owner = clientsBySlot.get(frame.id() >>> ID_SLOT_SHIFT);
                if (owner != null) {
                    owner.send(frame);
                }
            }
            log("agent port closed");
        } catch (ProtocolException e) {
            // The guest is untrusted: a garbled stream ends the VM rather than confusing clients.
            agentFailure = "agent sent an invalid frame: " + e.getMessage();
            log(agentFailure);
            killVmm();
        } catch (IOException e) {
            log("agent link ended: " + e.getMessage());
        }
    }

    private void handleAgentControl(Frame frame) {
        switch (frame.type()) {
            case Protocol.CORE_SHUTDOWN -> {
                shutdownAcknowledged = true;
                log("agent acknowledged shutdown");
            }
            case Protocol.CORE_ERROR -> log("agent error: " + frame.payload());
            default -> log("ignoring agent frame " + frame);
        }
    }

    private void acceptClients() {
        while (clientServer.isOpen()) {
            try {
                SocketChannel channel = clientServer.accept();
                daemon(() -> serveClient(new FrameLink(channel)), "client").start();
            } catch (IOException e) {
                if (clientServer.isOpen()) {
                    log("accept failed: " + e.getMessage());
                }
                return;
            }
        }
    }

    private void serveClient(FrameLink link) {
        int slot = -1;
        ClientConnection client = null;
        try {
            Frame hello = link.read();
            if (hello == null || !Protocol.SUP_HELLO.equals(hello.type())) {
                link.close();
                return;
            }
            client = new ClientConnection(link);
            slot = claimSlot(client);
            if (slot < 0) {
                client.send(errorFrame(0, "too many clients (" + MAX_CLIENTS + ") connected to " + spec.name()));
                client.finish();
                return;
            }
            ObjectNode welcome = JSON.createObjectNode();
            welcome.put("v", Protocol.VERSION);
            welcome.put("name", spec.name());
            welcome.put("id_base", slot << ID_SLOT_SHIFT);
            welcome.put("id_count", 1 << ID_SLOT_SHIFT);
            welcome.put("pid", ProcessHandle.current().pid());
            welcome.put("vmm_pid", vmmPid);
            welcome.set("ready", readyPayload);
            client.send(new Frame(0, 0, Protocol.SUP_WELCOME, welcome));

            Frame frame;
            while ((frame = link.read()) != null) {
                if ((frame.id() >>> ID_SLOT_SHIFT) != slot || frame.id() == 0) {
                    log("dropping frame with foreign id from client " + slot + ": " + frame);
                    continue;
                }
                if (frame.type().startsWith("sup.")) {
                    handleClientRequest(client, frame);
                    continue;
                }
                boolean execStart = frame.isSessionStart() && Protocol.EXEC_REQUEST.equals(frame.type());
                if (execStart && !sessionStarting(frame.id(), slot, frame.payload().path("tty").asBoolean(false))) {
                    ObjectNode refused = JSON.createObjectNode();
                    refused.put("kind", "sandbox_draining");
                    refused.put("errno", 0);
                    refused.put("message", "sandbox " + spec.name() + " is " + (draining ? "draining" : "stopping") + ": new commands are refused");
                    refused.put("stage", "spawn");
                    client.send(new Frame(frame.id(), Protocol.FLAG_TERMINAL, Protocol.EXEC_FAILED, refused));
                    continue;
                }
                if (Protocol.CORE_TOUCH.equals(frame.type())) {
                    lastActivity = System.nanoTime();
                }
                vm.write(frame);
            }
        } catch (IOException e) {
            log("client " + slot + " disconnected: " + e.getMessage());
        } finally {
            if (client != null) {
                client.finish();
            } else {
                link.close();
            }
            if (slot > 0) {
                clientsBySlot.remove(slot);
                killOrphanedSessions(slot);
            }
        }
    }

    /** Registers a session unless the sandbox drains or stops; false refuses it. */
    private synchronized boolean sessionStarting(int id, int slot, boolean tty) {
        if (draining || stopRequested || killRequested) {
            return false;
        }
        activeSessions.put(id, new Session(slot, sessionCounter.incrementAndGet(), tty));
        lastActivity = System.nanoTime();
        return true;
    }

    private synchronized void sessionEnded(int id) {
        if (activeSessions.remove(id) != null) {
            lastActivity = System.nanoTime();
        }
        if (draining && activeSessions.isEmpty()) {
            requestStop(STOP_GRACE_MS, "drain-requested");
        }
    }

    /** Refuses new commands from now on and stops once the running ones have finished. */
    private synchronized void drain() {
        if (draining) {
            return;
        }
        draining = true;
        log("draining with " + activeSessions.size() + " running command(s)");
        try {
            store.updateStatus(spec.name(), "draining");
        } catch (RuntimeException e) {
            log("cannot record the drain: " + e.getMessage());
        }
        if (activeSessions.isEmpty()) {
            requestStop(STOP_GRACE_MS, "drain-requested");
        }
    }

    /** Records the output of a session in the exec log; a failing log never stops the relay. */
    private void logOutput(Frame frame) {
        Session session = activeSessions.get(frame.id());
        boolean stdout = Protocol.EXEC_STDOUT.equals(frame.type());
        if (session == null || !(stdout || Protocol.EXEC_STDERR.equals(frame.type()))) {
            return;
        }
        String source = session.tty() ? "output" : stdout ? "stdout" : "stderr";
        try {
            execLog.write(source, session.logId(), frame.bytes("data"));
        } catch (IOException e) {
            log("cannot write the exec log: " + e.getMessage());
        }
    }

    private void logSystem(String message) {
        try {
            execLog.write("system", null, message.getBytes(java.nio.charset.StandardCharsets.UTF_8));
        } catch (IOException e) {
            log("cannot write the exec log: " + e.getMessage());
        }
    }

    /** Runs {@code task} every second; a failure is logged, and never ends the repetition. */
    private void everySecond(Runnable task) {
        timers.scheduleAtFixedRate(() -> {
            try {
                task.run();
            } catch (RuntimeException e) {
                log("periodic task failed: " + e);
            }
        }, 1, 1, TimeUnit.SECONDS);
    }

    private void checkIdle() {
        long idleNanos = System.nanoTime() - lastActivity;
        if (activeSessions.isEmpty() && !paused && idleNanos >= TimeUnit.MILLISECONDS.toNanos(spec.idleTimeoutMs())) {
            log("idle for " + TimeUnit.NANOSECONDS.toMillis(idleNanos) + " ms");
            requestStop(STOP_GRACE_MS, "idle-timeout");
        }
    }

    /** Sessions of a client that went away would run on unobserved; end them. */
    private void killOrphanedSessions(int slot) {
        activeSessions.forEach((id, session) -> {
            if (session.slot() == slot) {
                sessionEnded(id);
                ObjectNode p = JSON.createObjectNode();
                p.put("signal", Posix.SIGKILL);
                try {
                    vm.write(new Frame(id, 0, Protocol.EXEC_SIGNAL, p));
                } catch (IOException e) {
                    log("cannot kill orphaned session " + id + ": " + e.getMessage());
                }
            }
        });
    }

    private synchronized int claimSlot(ClientConnection client) {
        for (int slot = 1; slot <= MAX_CLIENTS; slot++) {
            if (clientsBySlot.putIfAbsent(slot, client) == null) {
                return slot;
            }
        }
        return -1;
    }

    private void handleClientRequest(ClientConnection client, Frame request) {
        switch (request.type()) {
            case Protocol.SUP_STATUS -> {
                ObjectNode p = JSON.createObjectNode();
                p.put("state", stopRequested || killRequested ? "stopping" : paused ? "paused" : draining ? "draining" : "running");
                p.put("vmm_pid", vmmPid);
                p.put("active_sessions", activeSessions.size());
                p.put("detached", detached);
                client.send(new Frame(request.id(), Protocol.FLAG_TERMINAL, Protocol.SUP_STATUS, p));
            }
            case Protocol.SUP_STOP -> {
                Long timeout = request.number("timeout_ms");
                requestStop(timeout == null ? STOP_GRACE_MS : Math.max(0, timeout), "shutdown-requested");
                client.send(new Frame(request.id(), Protocol.FLAG_TERMINAL, Protocol.SUP_OK, null));
            }
            case Protocol.SUP_DRAIN -> {
                drain();
                client.send(new Frame(request.id(), Protocol.FLAG_TERMINAL, Protocol.SUP_OK, null));
            }
            case Protocol.SUP_PAUSE, Protocol.SUP_RESUME -> {
                boolean pause = Protocol.SUP_PAUSE.equals(request.type());
                try {
                    QmpClient.execute(layout.qmpSocket(), pause ? "stop" : "cont");
                    paused = pause;
                    lastActivity = System.nanoTime();
                    store.updateStatus(spec.name(), pause ? "paused" : draining ? "draining" : "running");
                    client.send(new Frame(request.id(), Protocol.FLAG_TERMINAL, Protocol.SUP_OK, null));
                } catch (IOException | RuntimeException e) {
                    client.send(errorFrame(request.id(), (pause ? "pause" : "resume") + " failed: " + e.getMessage()));
                }
            }
            case Protocol.SUP_METRICS -> {
                ObjectNode p = JSON.createObjectNode();
                p.put("cpu_millipercent", sampler.cpuMilliPercent());
                p.put("vcpu_time_ns", sampler.cpuTimeNanos());
                p.put("rss_bytes", sampler.residentBytes());
                p.put("uptime_ms", sampler.uptimeMillis());
                try {
                    long read = 0;
                    long written = 0;
                    for (com.fasterxml.jackson.databind.JsonNode device : QmpClient.execute(layout.qmpSocket(), "query-blockstats")) {
                        read += device.path("stats").path("rd_bytes").asLong();
                        written += device.path("stats").path("wr_bytes").asLong();
                    }
                    p.put("disk_read_bytes", read);
                    p.put("disk_write_bytes", written);
                } catch (IOException e) {
                    log("cannot read block statistics: " + e.getMessage());
                }
                client.send(new Frame(request.id(), Protocol.FLAG_TERMINAL, Protocol.SUP_METRICS, p));
            }
            case Protocol.SUP_KILL -> {
                killRequested = true;
                killVmm();
                client.send(new Frame(request.id(), Protocol.FLAG_TERMINAL, Protocol.SUP_OK, null));
            }
            default -> client.send(errorFrame(request.id(), "unknown request " + request.type()));
        }
    }

    /**
     * Asks the agent to power off, and kills QEMU if it has not gone after {@code graceMs}.
     * The first request's reason is the one recorded.
     */
    synchronized void requestStop(long graceMs, String reason) {
        if (!stopRequested) {
            stopRequested = true;
            stopReason = reason;
        }
        log("stop requested (" + reason + "), grace " + graceMs + " ms");
        try {
            if (paused) {
                // a paused guest cannot shut down: let it run again first
                QmpClient.execute(layout.qmpSocket(), "cont");
                paused = false;
            }
            if (graceMs > 0) {
                vm.write(new Frame(0, Protocol.FLAG_SHUTDOWN, Protocol.CORE_SHUTDOWN, null));
            }
        } catch (IOException e) {
            log("cannot send shutdown to the agent: " + e.getMessage());
            killVmm();
            return;
        }
        timers.schedule(() -> {
            if (vmmExited.getCount() > 0) {
                log("grace period over, killing the VMM");
                killVmm();
            }
        }, graceMs, TimeUnit.MILLISECONDS);
    }

    private void killVmm() {
        try {
            Posix.kill(vmmPid, Posix.SIGKILL);
        } catch (IOException e) {
            log("cannot kill the VMM: " + e.getMessage());
        }
    }

    /** Watches the creator: end of stdin without a detach byte first stops an attached sandbox. */
    private void watchCreator() {
        try (InputStream in = System.in) {
            int b;
            while ((b = in.read()) >= 0) {
                if (b == 'D') {
                    detached = true;
                    log("detached from the creator");
                }
            }
        } catch (IOException e) {
            log("creator pipe failed: " + e.getMessage());
        }
        if (!detached && !stopRequested) {
            log("creator is gone and the sandbox is attached: stopping");
            requestStop(ORPHAN_STOP_GRACE_MS, "shutdown-requested");
        }
    }

    private static Frame errorFrame(int id, String message) {
        ObjectNode p = JSON.createObjectNode();
        p.put("message", message);
        return new Frame(id, Protocol.FLAG_TERMINAL, Protocol.SUP_ERROR, p);
    }

    static String describeWaitStatus(int status) {
        if (status == -1) {
            return "unknown status";
        }
        return Posix.exited(status) ? "exit code " + Posix.exitCode(status) : "signal " + Posix.termSignal(status);
    }

    private static ServerSocketChannel listen(Path socket) throws IOException {
        Files.deleteIfExists(socket);
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(socket));
        return server;
    }

    private static void closeQuietly(java.io.Closeable c) {
        try {
            if (c != null) {
                c.close();
            }
        } catch (IOException ignored) {
            // already closed or never opened
        }
    }

    private static Thread daemon(Runnable r, String name) {
        Thread t = new Thread(r, "msb-supervisor-" + name);
        t.setDaemon(true);
        return t;
    }

    private void log(String message) {
        System.err.println(Instant.now() + " [" + Thread.currentThread().getName() + "] " + message);
    }

    /**
     * A live exec session.
     *
     * @param slot  the client that started it
     * @param logId its number in the exec log
     * @param tty   whether its output is a merged terminal stream
     */
    private record Session(int slot, long logId, boolean tty) {
    }

    /**
     * One connected client with its own writer thread and queue, so a client that reads
     * slowly delays nobody else; one that lets {@link #MAX_QUEUED_BYTES} pile up is dropped.
     */
    private final class ClientConnection {
        final FrameLink link;
        private final BlockingQueue<byte[]> queue = new LinkedBlockingQueue<>();
        private final AtomicLong queuedBytes = new AtomicLong();
        private final Thread writer;

        ClientConnection(FrameLink link) {
            this.link = link;
            this.writer = daemon(this::writeQueued, "client-writer");
            writer.start();
        }

        void send(Frame frame) {
            byte[] bytes = FrameCodec.encode(frame);
            if (queuedBytes.addAndGet(bytes.length) > MAX_QUEUED_BYTES) {
                log("dropping a client that left " + MAX_QUEUED_BYTES + " bytes unread");
                queue.clear();
                link.close();
                return;
            }
            queue.add(bytes);
        }

        /** Sends what is queued, then closes the connection. */
        void finish() {
            queue.add(END_OF_QUEUE);
        }

        void awaitFinished(long millis) throws InterruptedException {
            writer.join(millis);
        }

        private void writeQueued() {
            try {
                byte[] bytes;
                while ((bytes = queue.take()) != END_OF_QUEUE) {
                    link.writeEncoded(bytes);
                    queuedBytes.addAndGet(-bytes.length);
                }
            } catch (IOException e) {
                log("client gone: " + e.getMessage());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                link.close();
            }
        }
    }
}

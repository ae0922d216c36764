package io.microsandbox;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxLock;
import io.microsandbox.runtime.SandboxPreparer;
import io.microsandbox.runtime.agent.AgentClient;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.agent.Protocol;
import io.microsandbox.runtime.supervisor.ExecLog;
import io.microsandbox.runtime.supervisor.SupervisorProcess;
import io.microsandbox.runtime.supervisor.SupervisorSpec;
import io.microsandbox.runtime.vmm.KernelBundle;
import io.microsandbox.store.SandboxRecord;
import io.microsandbox.store.SandboxStore;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A running sandbox: a microVM booted from an image, with a guest agent that runs commands.
 * Safe to use from many threads at once.
 *
 * <pre>{@code
 * try (Sandbox sb = Sandbox.create("api", SandboxConfig.builder().image("/srv/rootfs").build())) {
 *     ExecOutput out = sb.exec("python3", List.of("-c", "print(2+2)"));
 *     System.out.println(out.stdout()); // 4
 * }
 * }</pre>
 *
 * <p>{@link #close()} stops the sandbox, whether it is attached or detached; {@link #detach()}
 * releases the handle and leaves the sandbox running. An attached sandbox (the default) also
 * stops when the JVM that created it exits, even on {@code kill -9}.
 */
public final class Sandbox implements AutoCloseable {
    /** Names are at most this many UTF-8 bytes. */
    public static final int MAX_NAME_BYTES = 128;
    /** Default graceful window of {@link #stop()}. */
    public static final Duration DEFAULT_STOP_TIMEOUT = Duration.ofSeconds(10);
    /** Default observation window of {@link #kill()}. */
    public static final Duration DEFAULT_KILL_TIMEOUT = Duration.ofSeconds(5);
    /** How long a supervisor has to acknowledge a kill before it is killed itself. */
    private static final Duration KILL_REQUEST_TIMEOUT = Duration.ofSeconds(3);

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final ScheduledExecutorService TIMERS = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "msb-exec-timeouts");
        t.setDaemon(true);
        return t;
    });

    private final String name;
    private final SandboxConfig config;
    private final SandboxLayout layout;
    private final AgentClient client;
    /** The supervisor we started, or null for a sandbox we connected to. */
    private final SupervisorProcess supervisor;
    private volatile boolean released;
    private volatile boolean detached;

    private Sandbox(String name, SandboxConfig config, SandboxLayout layout, AgentClient client, SupervisorProcess supervisor) {
        this.name = name;
        this.config = config;
        this.layout = layout;
        this.client = client;
        this.supervisor = supervisor;
        this.detached = supervisor == null || config.detached();
    }

    /**
     * Creates and boots a sandbox, returning once its guest agent is ready.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} for a bad name,
     *         {@link ErrorKind#SANDBOX_ALREADY_EXISTS} when the name is taken (unless the config
     *         asks to replace it), {@link ErrorKind#IMAGE_NOT_FOUND} for a missing image,
     *         {@link ErrorKind#BOOT_FAILED} when the VM does not come up (with the tail of the guest console)
     */
    public static Sandbox create(String name, SandboxConfig config) {
        validateName(name);
        Path home = RuntimeFiles.defaultHome();
        SandboxStore store = SandboxStore.open(home);
        SandboxLayout layout = SandboxLayout.of(home, name);
        if (store.find(name).isPresent()) {
            if (config.replaceTimeout() == null) {
                throw alreadyExists(name);
            }
            replace(name, config.replaceTimeout());
        }
        SandboxLock createLock = claim(layout);
        try {
            store.insert(name, config.toJson(), config.labels(), config.ephemeral(), "running");
        } catch (MicrosandboxException e) {
            discard(layout, createLock);
            throw e;
        }
        try {
            return boot(home, layout, config, true, createLock);
        } catch (MicrosandboxException e) {
            store.delete(name);
            discard(layout, createLock);
            throw e;
        }
    }

    /**
     * Boots a stopped sandbox again from its persisted configuration and upper disk: files
     * written before it stopped are still there. The sandbox is attached to this JVM.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_FOUND}, or
     *         {@link ErrorKind#SANDBOX_STILL_RUNNING} when it already runs
     */
    public static Sandbox start(String name) {
        return start(name, false);
    }

    /** Like {@link #start(String)}, but the sandbox keeps running after this JVM exits. */
    public static Sandbox startDetached(String name) {
        return start(name, true);
    }

    private static Sandbox start(String name, boolean detached) {
        SandboxHandle handle = get(name);
        if (!handle.status().isTerminal()) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_STILL_RUNNING, "sandbox '" + name + "' is already " + handle.status().wireName());
        }
        Path home = RuntimeFiles.defaultHome();
        SandboxLayout layout = SandboxLayout.of(home, name);
        SandboxLock createLock;
        try {
            Files.createDirectories(layout.dir());
            createLock = SandboxLock.tryAcquire(SandboxLock.createLockFile(layout));
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot lock sandbox '" + name + "': " + e.getMessage(), e);
        }
        if (createLock == null || supervisorAlive(layout)) {
            closeQuietly(createLock);
            throw new MicrosandboxException(ErrorKind.SANDBOX_STILL_RUNNING, "sandbox '" + name + "' is being started by another process");
        }
        SandboxConfig config = handle.config().toBuilder().detached(detached).build();
        try {
            return boot(home, layout, config, false, createLock);
        } catch (MicrosandboxException e) {
            closeQuietly(createLock);
            throw e;
        }
    }

    /** Whether a supervisor holds the sandbox (another process started it since we looked). */
    private static boolean supervisorAlive(SandboxLayout layout) {
        try {
            return SandboxLock.isHeld(SandboxLock.supervisorLockFile(layout));
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot check sandbox '" + layout.name() + "': " + e.getMessage(), e);
        }
    }

    /** Boots the prepared sandbox: the supervisor starts while the disks are made. */
    private static Sandbox boot(Path home, SandboxLayout layout, SandboxConfig config, boolean freshUpper, SandboxLock createLock) {
        SupervisorProcess supervisor = SupervisorProcess.acquire();
        try {
            SupervisorSpec spec = SandboxPreparer.prepare(home, layout, config, freshUpper);
            supervisor.boot(spec);
        } catch (RuntimeException | IOException e) {
            supervisor.abandon();
            if (e instanceof MicrosandboxException m) {
                throw m;
            }
            throw new MicrosandboxException(ErrorKind.IO, "cannot prepare sandbox '" + layout.name() + "': " + e.getMessage(), e);
        }
        // the supervisor owns the sandbox now and holds its own lock
        closeQuietly(createLock);
        SupervisorProcess.replenish();
        AgentClient client;
        try {
            client = AgentClient.connect(layout.name(), layout.agentSocket());
        } catch (MicrosandboxException e) {
            supervisor.release();
            throw e;
        }
        if (config.detached()) {
            supervisor.detach();
        }
        return new Sandbox(layout.name(), config, layout, client, supervisor);
    }

    /** Stops (gracefully within {@code timeout}, then forcibly) and removes an existing sandbox. */
    private static void replace(String name, Duration timeout) {
        SandboxHandle old = get(name);
        if (!old.status().isTerminal()) {
            if (timeout.isZero()) {
                old.kill();
            } else {
                old.stop(timeout);
            }
        }
        remove(name);
    }

    /**
     * Makes sure the runtime can boot sandboxes: unpacks the guest kernel of the
     * {@code microsandbox-kernel} jar under the home directory, or, when Debian's kernel is
     * selected ({@code -Dmicrosandbox.kernel=debian}) and missing, installs it (Debian's
     * {@code linux-image-amd64} through {@code apt-get download}, which needs the apt package
     * lists; minutes on first use), and checks that QEMU is there. Optional: call it at start-up to surface install problems
     * early. Idempotent.
     *
     * @throws MicrosandboxException {@link ErrorKind#BOOT_FAILED} naming what is missing
     */
    public static void ensureInstalled() {
        Path home = RuntimeFiles.defaultHome();
        SandboxPreparer.findQemu();
        try {
            KernelBundle.locate(home);
        } catch (MicrosandboxException missing) {
            if (!KernelBundle.debianSelected()) {
                throw missing;
            }
            KernelBundle.install(home);
        }
    }

    /**
     * Connects to a running sandbox by name, typically a detached one created by another process.
     * The returned handle does not own the sandbox's lifecycle, but {@link #close()} still stops it;
     * use {@link #detach()} to leave it running.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_FOUND} when there is no such sandbox,
     *         {@link ErrorKind#SANDBOX_NOT_RUNNING} when it is not running
     */
    public static Sandbox connect(String name) {
        SandboxHandle handle = get(name);
        if (handle.status().isTerminal()) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "sandbox '" + name + "' is " + handle.status().wireName());
        }
        SandboxLayout layout = SandboxLayout.of(RuntimeFiles.defaultHome(), name);
        return new Sandbox(name, handle.config(), layout, AgentClient.connect(name, layout.agentSocket()), null);
    }

    /**
     * Looks a sandbox up without connecting to it.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_FOUND} when there is no such sandbox
     */
    public static SandboxHandle get(String name) {
        validateName(name);
        Path home = RuntimeFiles.defaultHome();
        SandboxStore store = SandboxStore.open(home);
        return store.find(name)
                .map(record -> observe(store, home, record))
                .filter(record -> !purgedIfEphemeral(store, home, record))
                .map(SandboxHandle::new)
                .orElseThrow(() -> new MicrosandboxException(ErrorKind.SANDBOX_NOT_FOUND, "no sandbox named '" + name + "'"));
    }

    /** Every known sandbox, newest first. */
    public static List<SandboxHandle> list() {
        return list(SandboxFilter.all());
    }

    /** The sandboxes carrying every label of {@code filter}, newest first. */
    public static List<SandboxHandle> list(SandboxFilter filter) {
        Path home = RuntimeFiles.defaultHome();
        SandboxStore store = SandboxStore.open(home);
        return store.list(filter.labels()).stream()
                .map(record -> observe(store, home, record))
                .filter(record -> !purgedIfEphemeral(store, home, record))
                .map(SandboxHandle::new)
                .toList();
    }

    /**
     * An ephemeral sandbox whose supervisor died could not clean up after itself: whoever
     * sees it ended does, and it is then gone.
     */
    private static boolean purgedIfEphemeral(SandboxStore store, Path home, SandboxRecord record) {
        if (!record.ephemeral() || !SandboxStatus.fromWireName(record.status()).isTerminal()) {
            return false;
        }
        erase(store, SandboxLayout.of(home, record.name()));
        return true;
    }

    /**
     * A record that says the sandbox lives, checked against its locks: if no supervisor holds
     * them, the supervisor died without recording the end, and the sandbox is marked crashed.
     */
    private static SandboxRecord observe(SandboxStore store, Path home, SandboxRecord record) {
        if (SandboxStatus.fromWireName(record.status()).isTerminal()) {
            return record;
        }
        try {
            if (SandboxLock.isOwned(SandboxLayout.of(home, record.name()))) {
                return record;
            }
        } catch (IOException e) {
            return record;
        }
        store.finishRun(record.name(), "crashed", null, null, "internal", "client");
        return store.find(record.name()).orElse(record);
    }

    /**
     * Deletes a stopped sandbox and all its state: disks, logs, sockets, database rows.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_FOUND} when there is no such sandbox,
     *         {@link ErrorKind#SANDBOX_STILL_RUNNING} when it is running; stop it first
     */
    public static void remove(String name) {
        SandboxHandle handle = get(name);
        if (!handle.status().isTerminal()) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_STILL_RUNNING,
                    "sandbox '" + name + "' is " + handle.status().wireName() + "; stop it before removing it");
        }
        Path home = RuntimeFiles.defaultHome();
        SandboxLayout layout = SandboxLayout.of(home, name);
        // The database may lag behind the locks: another process may be starting it right now.
        // Holding its creation lock while erasing keeps a start from beginning meanwhile.
        SandboxLock createLock;
        try {
            createLock = Files.isDirectory(layout.dir()) ? SandboxLock.tryAcquire(SandboxLock.createLockFile(layout)) : null;
            if ((Files.isDirectory(layout.dir()) && createLock == null) || supervisorAlive(layout)) {
                closeQuietly(createLock);
                throw new MicrosandboxException(ErrorKind.SANDBOX_STILL_RUNNING,
                        "sandbox '" + name + "' is being started or run by another process; stop it before removing it");
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot lock sandbox '" + name + "': " + e.getMessage(), e);
        }
        try {
            erase(SandboxStore.open(home), layout);
        } finally {
            closeQuietly(createLock);
        }
    }

    /** Deletes a sandbox's files, then its rows. */
    private static void erase(SandboxStore store, SandboxLayout layout) {
        layout.deleteFiles();
        store.delete(layout.name());
    }

    /**
     * Checks a sandbox name: non-empty, at most 128 UTF-8 bytes, usable as a directory name.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} naming the problem
     */
    public static void validateName(String name) {
        if (name == null || name.isEmpty()) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "sandbox name must not be empty");
        }
        int bytes = name.getBytes(StandardCharsets.UTF_8).length;
        if (bytes > MAX_NAME_BYTES) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT,
                    "sandbox name is " + bytes + " UTF-8 bytes, the limit is " + MAX_NAME_BYTES);
        }
        if (name.equals(".") || name.equals("..") || name.startsWith(".")) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "sandbox name must not start with '.': '" + name + "'");
        }
        for (int i = 0; i < name.length(); i++) {
            char c = name.charAt(i);
            if (c == '/' || c == '\\' || Character.isISOControl(c)) {
                throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT,
                        "sandbox name must not contain '/', '\\' or control characters: '" + name.replaceAll("\\p{Cntrl}", "?") + "'");
            }
        }
    }

    /** Sandbox name. */
    public String name() {
        return name;
    }

    /** The configuration the sandbox was created with. */
    public SandboxConfig config() {
        return config;
    }

    /** Runs a command and collects its output. */
    public ExecOutput exec(String command, List<String> args) {
        return exec(command, args, ExecOptions.defaults());
    }

    /**
     * Runs a command and collects its output.
     *
     * @throws MicrosandboxException {@link ErrorKind#EXEC_FAILED} when it cannot run (missing binary,
     *         bad cwd, unknown user), {@link ErrorKind#EXEC_TIMEOUT} when its timeout expires
     */
    public ExecOutput exec(String command, List<String> args, ExecOptions options) {
        try (ExecHandle handle = execStream(command, args, options)) {
            return handle.collect();
        }
    }

    /** Runs {@code script} with the configured shell ({@code shell -c script}). */
    public ExecOutput shell(String script) {
        return shell(script, ExecOptions.defaults());
    }

    public ExecOutput shell(String script, ExecOptions options) {
        return exec(config.shell(), List.of("-c", script), options);
    }

    /** Starts a command and returns a handle to its event stream. */
    public ExecHandle execStream(String command, List<String> args, ExecOptions options) {
        ensureUsable();
        if (command == null || command.isEmpty()) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "command must not be empty");
        }
        ObjectNode request = FrameCodec.mapper().createObjectNode();
        request.put("cmd", command);
        var argArray = request.putArray("args");
        args.forEach(argArray::add);
        Map<String, String> env = new LinkedHashMap<>(config.env());
        env.putAll(options.env());
        request.set("env", JSON.valueToTree(env));
        request.put("cwd", options.cwd());
        request.put("user", options.user());
        request.put("tty", options.tty());
        request.put("rows", options.rows());
        request.put("cols", options.cols());
        request.put("stdin", options.stdinPipe() || options.stdin() != null);
        return new ExecHandle(client, command, options, request, TIMERS);
    }

    /** Starts {@code script} with the configured shell and returns its event stream. */
    public ExecHandle shellStream(String script, ExecOptions options) {
        return execStream(config.shell(), List.of("-c", script), options);
    }

    /** Stops gracefully with the default 10 s window, then forcibly. */
    public void stop() {
        stop(DEFAULT_STOP_TIMEOUT);
    }

    /**
     * Asks the guest to shut down (processes get SIGTERM, disks are synced) and waits until the
     * sandbox has stopped; after {@code timeout} the VM is killed.
     */
    public void stop(Duration timeout) {
        requestStop(timeout);
        waitUntilStopped(timeout.plus(DEFAULT_KILL_TIMEOUT));
    }

    /** Sends the stop request and returns without waiting. */
    public void requestStop() {
        requestStop(DEFAULT_STOP_TIMEOUT);
    }

    private void requestStop(Duration timeout) {
        ensureUsable();
        ObjectNode p = FrameCodec.mapper().createObjectNode();
        p.put("timeout_ms", timeout.toMillis());
        supervisorRequest(Protocol.SUP_STOP, p);
    }

    /** Kills the VM at once and waits up to 5 s for the stop to be observed. */
    public void kill() {
        kill(DEFAULT_KILL_TIMEOUT);
    }

    /**
     * Kills the VM and waits up to {@code timeout} for the end to be observed. A supervisor
     * that does not answer the kill request is killed itself, which takes its VM down: a
     * kill never depends on the guest, or on the supervisor being healthy.
     */
    public void kill(Duration timeout) {
        ensureUsable();
        try {
            client.request(Protocol.SUP_KILL, FrameCodec.mapper().createObjectNode(), KILL_REQUEST_TIMEOUT);
        } catch (MicrosandboxException e) {
            if (e.kind() == ErrorKind.CANCELLED) {
                throw e;
            }
            if (!client.exited().isDone()) {
                killUnresponsiveSupervisor(name, client.welcome().path("pid").asLong(-1));
            }
        }
        waitUntilStopped(timeout);
    }

    /**
     * Kills the supervisor of a sandbox that does not answer, and records the end the
     * supervisor could not record.
     */
    static void killUnresponsiveSupervisor(String name, long supervisorPid) {
        if (supervisorPid <= 0 || !SupervisorProcess.killUnresponsive(supervisorPid, DEFAULT_KILL_TIMEOUT)) {
            throw new MicrosandboxException(ErrorKind.INTERNAL, "the supervisor of sandbox '" + name
                    + "' (pid " + supervisorPid + ") does not answer and could not be killed");
        }
        SandboxStore.open(RuntimeFiles.defaultHome()).finishRun(name, "stopped", null, Posix.SIGKILL, "signal", "client");
    }

    /** Sends the kill request and returns without waiting. */
    public void requestKill() {
        ensureUsable();
        supervisorRequest(Protocol.SUP_KILL, FrameCodec.mapper().createObjectNode());
    }

    private void supervisorRequest(String type, ObjectNode payload) {
        try {
            client.request(type, payload, Duration.ofSeconds(10));
        } catch (MicrosandboxException e) {
            if (e.kind() != ErrorKind.SANDBOX_NOT_RUNNING || !client.exited().isDone()) {
                throw e;
            }
            // it ended before the request arrived: nothing left to stop
        }
    }

    /**
     * Starts a drain: running commands finish, new ones are refused with
     * {@link ErrorKind#SANDBOX_NOT_RUNNING}, then the sandbox stops by itself. Returns at once.
     */
    public void requestDrain() {
        ensureUsable();
        supervisorRequest(Protocol.SUP_DRAIN, FrameCodec.mapper().createObjectNode());
    }

    /** Pauses the VM (its vCPUs stop; memory stays); status becomes paused. */
    public void pause() {
        ensureUsable();
        client.request(Protocol.SUP_PAUSE, FrameCodec.mapper().createObjectNode(), Duration.ofSeconds(10));
    }

    /** Resumes a paused VM. */
    public void resume() {
        ensureUsable();
        client.request(Protocol.SUP_RESUME, FrameCodec.mapper().createObjectNode(), Duration.ofSeconds(10));
    }

    /**
     * Resets the sandbox's idle timer, as exec activity does. A sandbox with an idle timeout
     * stays up as long as it is touched or runs commands.
     */
    public void touch() {
        ensureUsable();
        client.request(Protocol.CORE_TOUCH, FrameCodec.mapper().createObjectNode(), Duration.ofSeconds(10));
    }

    /** A resource snapshot: CPU, memory, disk I/O, upper disk usage, uptime. */
    public Metrics metrics() {
        ensureUsable();
        Frame host = client.request(Protocol.SUP_METRICS, FrameCodec.mapper().createObjectNode(), Duration.ofSeconds(10));
        Frame guest = client.request(Protocol.CORE_STATS, FrameCodec.mapper().createObjectNode(), Duration.ofSeconds(10));
        Long total = guest.number("mem_total_bytes");
        Long available = guest.number("mem_available_bytes");
        Long rss = host.number("rss_bytes");
        return new Metrics(
                host.payload().path("cpu_millipercent").asLong() / 1000.0,
                host.payload().path("vcpu_time_ns").asLong(),
                total != null && available != null ? total - available : 0,
                available,
                rss != null && rss >= 0 ? rss : null,
                config.memoryMib() * 1024L * 1024L,
                host.payload().path("disk_read_bytes").asLong(),
                host.payload().path("disk_write_bytes").asLong(),
                0,
                0,
                guest.number("upper_used_bytes"),
                guest.number("upper_free_bytes"),
                Duration.ofMillis(host.payload().path("uptime_ms").asLong()));
    }

    /**
     * A snapshot every {@code interval} (at least 1 ms) until the sandbox ends or the stream
     * is closed.
     */
    public MetricsStream metricsStream(Duration interval) {
        ensureUsable();
        return new MetricsStream(this, interval);
    }

    /** Metrics of every running sandbox under the home, by name; sandboxes that end meanwhile are left out. */
    public static Map<String, Metrics> allMetrics() {
        Map<String, Metrics> all = new java.util.TreeMap<>();
        for (SandboxHandle handle : list()) {
            if (handle.status() != SandboxStatus.RUNNING && handle.status() != SandboxStatus.DRAINING) {
                continue;
            }
            try {
                Sandbox sb = connect(handle.name());
                try {
                    all.put(handle.name(), sb.metrics());
                } finally {
                    sb.detach();
                }
            } catch (MicrosandboxException e) {
                // it stopped between the listing and the connection
            }
        }
        return all;
    }

    /** The captured stdout and stderr of every command, oldest first. */
    public List<LogEntry> logs() {
        return logs(LogOptions.defaults());
    }

    /**
     * Captured output, read from the sandbox's exec log on disk: it works without talking
     * to the guest, and for stopped sandboxes too (see {@link SandboxHandle#logs(LogOptions)}).
     */
    public List<LogEntry> logs(LogOptions options) {
        return readLogs(layout, options);
    }

    static List<LogEntry> readLogs(SandboxLayout layout, LogOptions options) {
        List<LogEntry> entries;
        try {
            entries = ExecLog.read(layout.execLog()).stream()
                    .map(l -> new LogEntry(LogSource.fromWireName(l.source()), l.session(), l.time(), l.data()))
                    .filter(options::matches)
                    .toList();
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot read the logs of '" + layout.name() + "': " + e.getMessage(), e);
        }
        if (options.tail() > 0 && entries.size() > options.tail()) {
            return entries.subList(entries.size() - (int) options.tail(), entries.size());
        }
        return entries;
    }

    /** Blocks until the sandbox has ended and tells how. */
    public SandboxStopResult waitUntilStopped() {
        return waitUntilStopped(null);
    }

    /**
     * Blocks until the sandbox has ended, or {@code timeout} passes.
     *
     * @throws MicrosandboxException {@link ErrorKind#CANCELLED} when the timeout passes first
     */
    public SandboxStopResult waitUntilStopped(Duration timeout) {
        Frame exited;
        try {
            exited = timeout == null ? client.exited().get()
                    : client.exited().get(timeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new MicrosandboxException(ErrorKind.CANCELLED, "sandbox '" + name + "' still runs after " + timeout);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for sandbox '" + name + "'");
        } catch (java.util.concurrent.ExecutionException e) {
            throw new MicrosandboxException(ErrorKind.INTERNAL, "waiting for sandbox '" + name + "' failed", e.getCause());
        }
        released = true;
        client.close();
        awaitSupervisorExit();
        return exited != null ? fromExitedFrame(exited) : fromStore();
    }

    /**
     * The supervisor reports the end just before it exits; waiting for the process too means
     * that once this returns, the sandbox's locks are free and it can be removed or recreated.
     */
    private void awaitSupervisorExit() {
        long pid = client.welcome().path("pid").asLong(-1);
        ProcessHandle.of(pid).ifPresent(process -> {
            try {
                process.onExit().get(DEFAULT_KILL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            } catch (TimeoutException | java.util.concurrent.ExecutionException e) {
                // it still cleans up; callers see its lock released a moment later
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
    }

    private SandboxStopResult fromExitedFrame(Frame exited) {
        return new SandboxStopResult(name, SandboxStatus.valueOf(exited.text("status").toUpperCase(java.util.Locale.ROOT)),
                toInteger(exited.number("exit_code")), toInteger(exited.number("signal")), exited.text("reason"),
                Instant.now(), "supervisor");
    }

    /** The database's record of the end; "crashed" when the supervisor vanished without one. */
    private SandboxStopResult fromStore() {
        try {
            SandboxHandle handle = get(name);
            return handle.lastStop().orElseGet(() ->
                    new SandboxStopResult(name, SandboxStatus.CRASHED, null, null, "internal", Instant.now(), "client"));
        } catch (MicrosandboxException e) {
            // an ephemeral sandbox leaves no record
            return new SandboxStopResult(name, SandboxStatus.STOPPED, null, null, "completed", Instant.now(), "client");
        }
    }

    private static Integer toInteger(Long value) {
        return value == null ? null : value.intValue();
    }

    /**
     * Releases this handle and leaves the sandbox running; reconnect later with
     * {@link #connect(String)}. Further calls on this handle fail with
     * {@link ErrorKind#INVALID_HANDLE}; {@link #close()} becomes a no-op.
     */
    public void detach() {
        ensureUsable();
        if (supervisor != null && !detached) {
            supervisor.detach();
        }
        detached = true;
        released = true;
        client.close();
    }

    /**
     * Whether this handle owns the VM: true for an attached sandbox created by this JVM, which
     * stops when the JVM exits; false for detached sandboxes and for connected handles.
     */
    public boolean ownsLifecycle() {
        return !released && supervisor != null && !detached;
    }

    /**
     * Stops the sandbox (gracefully, with the default window) and releases the handle.
     * Idempotent; a no-op after {@link #detach()} or once the sandbox has stopped.
     */
    @Override
    public void close() {
        if (released) {
            return;
        }
        try {
            stop();
        } catch (MicrosandboxException e) {
            if (e.kind() != ErrorKind.SANDBOX_NOT_RUNNING && e.kind() != ErrorKind.INVALID_HANDLE) {
                throw e;
            }
        } finally {
            released = true;
            client.close();
            if (supervisor != null) {
                supervisor.release();
            }
        }
    }

    private void ensureUsable() {
        if (released) {
            throw new MicrosandboxException(ErrorKind.INVALID_HANDLE,
                    "the handle of sandbox '" + name + "' was closed or detached; use Sandbox.connect(\"" + name + "\")");
        }
    }

    /**
     * Claims the sandbox directory. A directory without a database row (the caller checked)
     * is what a crashed creation left, and is cleared.
     */
    private static SandboxLock claim(SandboxLayout layout) {
        try {
            Files.createDirectories(layout.dir().getParent());
            for (int attempt = 0; attempt < 2; attempt++) {
                try {
                    Files.createDirectory(layout.dir());
                } catch (java.nio.file.FileAlreadyExistsException e) {
                    if (SandboxLock.isOwned(layout)) {
                        throw alreadyExists(layout.name());
                    }
                    layout.deleteFiles();
                    continue;
                }
                SandboxLock lock = SandboxLock.tryAcquire(SandboxLock.createLockFile(layout));
                if (lock == null) {
                    throw alreadyExists(layout.name());
                }
                return lock;
            }
            throw alreadyExists(layout.name());
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot create the state directory " + layout.dir() + ": " + e.getMessage(), e);
        }
    }

    private static MicrosandboxException alreadyExists(String name) {
        return new MicrosandboxException(ErrorKind.SANDBOX_ALREADY_EXISTS, "a sandbox named '" + name
                + "' already exists; remove it or create with SandboxConfig.builder().replace()");
    }

    /** Removes everything a failed create left: disks, logs, sockets. */
    private static void discard(SandboxLayout layout, SandboxLock lock) {
        closeQuietly(lock);
        layout.deleteFiles();
    }

    private static void closeQuietly(SandboxLock lock) {
        if (lock == null) {
            return;
        }
        try {
            lock.close();
        } catch (IOException ignored) {
            // the lock goes with its file or its process
        }
    }

    @Override
    public String toString() {
        return "Sandbox[" + name + "]";
    }
}

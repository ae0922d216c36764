package io.microsandbox;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.agent.AgentClient;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.agent.Protocol;
import io.microsandbox.runtime.supervisor.ExecLog;
import io.microsandbox.runtime.supervisor.SupervisorProcess;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
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
 *
 * <p>The static methods ({@link #create}, {@link #get}, {@link #list()}, ...) use
 * {@link Microsandbox#defaultRuntime()}; a {@link Microsandbox} built with a home of its own
 * has the same operations. A sandbox remembers the runtime it came from ({@link #runtime()}).
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

    private final Microsandbox runtime;
    private final String name;
    private final SandboxConfig config;
    private final SandboxLayout layout;
    private final AgentClient client;
    /** The supervisor we started, or null for a sandbox we connected to. */
    private final SupervisorProcess supervisor;
    private volatile boolean released;
    private volatile boolean detached;
    /** Let go by its user ({@link #close()}, {@link #detach()}): no longer valid, whether the sandbox ran on or not. */
    private volatile boolean letGo;
    /** This handle saw the sandbox end (a stop, a kill, a wait): its calls say it is not running. */
    private volatile boolean sawEnd;
    /** Taken by the first thread that saw the end: it records the result, the others wait for it within their own timeout. */
    private final java.util.concurrent.atomic.AtomicBoolean endTaken = new java.util.concurrent.atomic.AtomicBoolean();
    /** How it ended, completed a moment after {@link #sawEnd} by the thread that took {@link #endTaken}. */
    private final java.util.concurrent.CompletableFuture<SandboxStopResult> ending = new java.util.concurrent.CompletableFuture<>();
    /** What {@link #closeWith} tied to this handle: closed when it is released or the sandbox ends. */
    private final List<AutoCloseable> companions = new java.util.concurrent.CopyOnWriteArrayList<>();

    Sandbox(Microsandbox runtime, String name, SandboxConfig config, SandboxLayout layout, AgentClient client, SupervisorProcess supervisor) {
        this.runtime = runtime;
        this.name = name;
        this.config = config;
        this.layout = layout;
        this.client = client;
        this.supervisor = supervisor;
        this.detached = supervisor == null || config.detached();
        client.exited().whenComplete((frame, failure) -> {
            if (!companions.isEmpty()) {
                // off the connection's reader thread, which completes this: an SSH server's stop waits for its sessions
                Thread closer = new Thread(this::closeCompanions, "msb-companions-" + name);
                closer.setDaemon(true);
                closer.start();
            }
        });
    }

    /**
     * Creates and boots a sandbox in the {@linkplain Microsandbox#defaultRuntime() default runtime},
     * returning once its guest agent is ready.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} for a bad name,
     *         {@link ErrorKind#SANDBOX_ALREADY_EXISTS} when the name is taken (unless the config
     *         asks to replace it), {@link ErrorKind#IMAGE_NOT_FOUND} for a missing image,
     *         {@link ErrorKind#BOOT_FAILED} when the VM does not come up (with the tail of the guest console)
     * @see Microsandbox#create(String, SandboxConfig)
     */
    public static Sandbox create(String name, SandboxConfig config) {
        return Microsandbox.defaultRuntime().create(name, config);
    }

    /**
     * Boots a stopped sandbox of the default runtime again from its persisted configuration and
     * upper disk: files written before it stopped are still there. The sandbox is attached to this JVM.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_FOUND}, or
     *         {@link ErrorKind#SANDBOX_STILL_RUNNING} when it already runs
     * @see Microsandbox#start(String)
     */
    public static Sandbox start(String name) {
        return Microsandbox.defaultRuntime().start(name);
    }

    /** Like {@link #start(String)}, but the sandbox keeps running after this JVM exits. */
    public static Sandbox startDetached(String name) {
        return Microsandbox.defaultRuntime().startDetached(name);
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
     * @see Microsandbox#ensureInstalled()
     */
    public static void ensureInstalled() {
        Microsandbox.defaultRuntime().ensureInstalled();
    }

    /**
     * Whether the default runtime can boot sandboxes (QEMU found, the guest kernel present);
     * checks files only, changes nothing.
     *
     * @see Microsandbox#isInstalled()
     */
    public static boolean isInstalled() {
        return Microsandbox.defaultRuntime().isInstalled();
    }

    /**
     * The version of this SDK (the {@code microsandbox-core} artifact), e.g. {@code "0.1.0-SNAPSHOT"};
     * the runtime it brings (supervisor, agent, JNI library) is the same version.
     */
    public static String sdkVersion() {
        return SdkVersionHolder.VERSION;
    }

    private static final class SdkVersionHolder {
        static final String VERSION = read();

        private static String read() {
            java.util.Properties p = new java.util.Properties();
            try (java.io.InputStream in = Sandbox.class.getResourceAsStream("sdk.properties")) {
                if (in != null) {
                    p.load(in);
                }
            } catch (IOException e) {
                throw new java.io.UncheckedIOException("cannot read sdk.properties", e);
            }
            String v = p.getProperty("version");
            // an unfiltered copy (an IDE build that skipped Maven's resource filtering) names no version
            return v == null || v.startsWith("${") ? "unknown" : v;
        }
    }

    /**
     * The versions this running sandbox uses: this SDK, the agent protocol, the guest agent and
     * kernel (as the guest reported them at boot) and QEMU (as it answered the supervisor).
     * Needs no guest round trip: the supervisor hands them over when the handle connects.
     */
    public RuntimeVersion runtimeVersion() {
        ensureUsable();
        ObjectNode w = client.welcome();
        return new RuntimeVersion(sdkVersion(), w.path("v").asInt(Protocol.VERSION),
                w.path("agent").asText(null), w.path("kernel").asText(null), w.path("qemu").asText(null));
    }

    /**
     * Connects to a running sandbox of the default runtime by name, typically a detached one
     * created by another process. The returned handle does not own the sandbox's lifecycle, but
     * {@link #close()} still stops it; use {@link #detach()} to leave it running.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_FOUND} when there is no such sandbox,
     *         {@link ErrorKind#SANDBOX_NOT_RUNNING} when it is not running
     */
    public static Sandbox connect(String name) {
        return Microsandbox.defaultRuntime().connect(name);
    }

    /**
     * Looks a sandbox of the default runtime up without connecting to it.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_FOUND} when there is no such sandbox
     */
    public static SandboxHandle get(String name) {
        return Microsandbox.defaultRuntime().get(name);
    }

    /** Like {@link #get(String)}, empty instead of {@link ErrorKind#SANDBOX_NOT_FOUND}. */
    public static java.util.Optional<SandboxHandle> find(String name) {
        return Microsandbox.defaultRuntime().find(name);
    }

    /**
     * Starts a sandbox of the default runtime from a memory checkpoint, by bare name or path
     * (see {@link Microsandbox#restore(String, Checkpoint, RestoreOptions)}).
     */
    public static Sandbox restore(String name, String checkpointNameOrPath) {
        return Microsandbox.defaultRuntime().restore(name, checkpointNameOrPath);
    }

    /**
     * Starts {@code count} sandboxes of the default runtime from one checkpoint, named
     * {@code namePrefix-1} and on (see {@link Microsandbox#fork(Checkpoint, String, int, RestoreOptions)}).
     */
    public static List<Sandbox> fork(String checkpointNameOrPath, String namePrefix, int count) {
        Microsandbox runtime = Microsandbox.defaultRuntime();
        return runtime.fork(runtime.checkpoints().get(checkpointNameOrPath), namePrefix, count, RestoreOptions.defaults());
    }

    /** Every sandbox of the default runtime, newest first. */
    public static List<SandboxHandle> list() {
        return Microsandbox.defaultRuntime().list();
    }

    /** The sandboxes of the default runtime carrying every label of {@code filter}, newest first. */
    public static List<SandboxHandle> list(SandboxFilter filter) {
        return Microsandbox.defaultRuntime().list(filter);
    }

    /**
     * Deletes a stopped sandbox of the default runtime and all its state: disks, logs, sockets, database rows.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_FOUND} when there is no such sandbox,
     *         {@link ErrorKind#SANDBOX_STILL_RUNNING} when it is running; stop it first
     */
    public static void remove(String name) {
        Microsandbox.defaultRuntime().remove(name);
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

    /** The runtime this sandbox belongs to. */
    public Microsandbox runtime() {
        return runtime;
    }

    /** The configuration the sandbox was created with. */
    public SandboxConfig config() {
        return config;
    }

    /**
     * Runs the image's workload: the entrypoint ({@link SandboxConfig#entrypoint()},
     * else the OCI image config's), followed by {@code args}, or by the image's cmd when
     * {@code args} is empty, as {@code docker run} does; waits and collects like {@link #exec}.
     */
    public ExecOutput run(List<String> args) {
        List<String> argv = io.microsandbox.image.ImageRoots.command(runtime.home(), config, layout.dir(), args);
        return exec(argv.get(0), argv.subList(1, argv.size()));
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

    /** Runs {@code script} with the configured shell and {@code options}, and collects its output. */
    public ExecOutput shell(String script, ExecOptions options) {
        return exec(config.shell(), List.of("-c", script), options);
    }

    /** Starts a command with the default options and returns a handle to its event stream. */
    public ExecHandle execStream(String command, List<String> args) {
        return execStream(command, args, ExecOptions.defaults());
    }

    /**
     * Starts a command and returns a handle to its event stream; close the handle when done
     * with it (that ends the command), or {@link ExecHandle#detach()} it.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} for an empty command,
     *         {@link ErrorKind#SANDBOX_NOT_RUNNING} once the sandbox has stopped,
     *         {@link ErrorKind#INVALID_HANDLE} on a closed or detached handle; a command that
     *         cannot run reports it as an {@link ExecEvent.Failed} event
     */
    public ExecHandle execStream(String command, List<String> args, ExecOptions options) {
        ensureUsable();
        if (command == null || command.isEmpty()) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "command must not be empty");
        }
        ObjectNode request = Json.object();
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

    /**
     * The sandbox's files: read, write, list, copy in and out, streams for big files (see
     * {@link SandboxFs}). Operations on a sandbox that has stopped fail with
     * {@link ErrorKind#SANDBOX_NOT_RUNNING}.
     */
    public SandboxFs fs() {
        ensureFsUsable();
        return new SandboxFs(name, client, null, this::ensureFsUsable);
    }

    private void ensureFsUsable() {
        if (client.exited().isDone()) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "sandbox '" + name + "' is not running");
        }
        ensureUsable();
    }

    /**
     * SSH for this sandbox: a host-side SSH server on 127.0.0.1 bridged to the guest agent, so
     * {@code ssh}, {@code scp} and {@code sftp} work with no sshd in the guest, and an
     * in-process client (see {@link io.microsandbox.ssh.SandboxSsh}).
     */
    public io.microsandbox.ssh.SandboxSsh ssh() {
        ensureUsable();
        return new io.microsandbox.ssh.SandboxSsh(this);
    }

    /**
     * Ties {@code resource} to this handle: it is closed when the handle is closed or detached,
     * or when the sandbox ends (an SSH endpoint, say, which runs its sessions through this
     * handle). Closed at once when that has already happened.
     */
    public void closeWith(AutoCloseable resource) {
        companions.add(resource);
        if (released || client.exited().isDone()) {
            closeCompanions();
        }
    }

    /**
     * Unties {@code resource} from this handle ({@link #closeWith}): for a resource closed by its
     * own user first, which the handle would otherwise keep until it is closed itself.
     */
    public void forget(AutoCloseable resource) {
        companions.remove(resource);
    }

    private void closeCompanions() {
        for (AutoCloseable c : companions) {
            if (companions.remove(c)) {
                try {
                    c.close();
                } catch (Exception e) {
                    // closing is best effort: the sandbox it served is gone or released either way
                }
            }
        }
    }

    /** What {@link #attach} returns when the user detached ({@code Ctrl-] Ctrl-]}) and left the command running. */
    public static final int ATTACH_DETACHED = -1;

    /**
     * Bridges this process's terminal to {@code command} on a tty in the guest, like
     * {@code docker exec -it}: raw mode on the host terminal, the window size forwarded,
     * {@code Ctrl-] Ctrl-]} detaches (the command keeps running), and the terminal is restored
     * however it ends. Blocks until the command exits. Keys wait for the command to take them
     * (nothing typed is dropped), the detach keys included only behind a paste of more than
     * about 2 MiB that the command does not read.
     *
     * @return the command's exit code, or {@link #ATTACH_DETACHED}
     * @throws MicrosandboxException {@link ErrorKind#UNSUPPORTED_OPERATION} when stdin is not a
     *         terminal, {@link ErrorKind#EXEC_FAILED} when the command cannot run
     */
    public int attach(String command, String... args) {
        ensureUsable();
        return Attach.run(this, command, List.of(args));
    }

    /** {@link #attach} to the configured shell. */
    public int attachShell() {
        return attach(config.shell());
    }

    /** Starts {@code script} with the configured shell and the default options, and returns its event stream. */
    public ExecHandle shellStream(String script) {
        return shellStream(script, ExecOptions.defaults());
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
     * sandbox has stopped; after {@code timeout} the VM is killed. A supervisor that does not
     * take the request, or has not ended the VM {@link #DEFAULT_KILL_TIMEOUT} after the window,
     * is dealt with as {@link #kill(Duration)} does: a stop never depends on it being healthy.
     * Afterwards {@link #waitUntilStopped()} tells how it ended and other calls fail with
     * {@link ErrorKind#SANDBOX_NOT_RUNNING}.
     */
    public void stop(Duration timeout) {
        ensureUsable();
        ObjectNode p = Json.object();
        p.put("timeout_ms", timeout.toMillis());
        if (!requestEvenIfThisConnectionIsBusy(Protocol.SUP_STOP, p, Duration.ofSeconds(10))) {
            killUnansweringSupervisor();
            waitUntilStopped(DEFAULT_KILL_TIMEOUT);
            return;
        }
        if (!endsWithin(timeout.plus(DEFAULT_KILL_TIMEOUT))) {
            kill(DEFAULT_KILL_TIMEOUT);
            return;
        }
        waitUntilStopped(DEFAULT_KILL_TIMEOUT);
    }

    /** Sends the stop request and returns without waiting. */
    public void requestStop() {
        ensureUsable();
        ObjectNode p = Json.object();
        p.put("timeout_ms", DEFAULT_STOP_TIMEOUT.toMillis());
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
        if (!requestEvenIfThisConnectionIsBusy(Protocol.SUP_KILL, Json.object(), KILL_REQUEST_TIMEOUT)) {
            killUnansweringSupervisor();
        }
        waitUntilStopped(timeout);
    }

    /**
     * Sends {@code sup.stop} or {@code sup.kill} (which the supervisor always answers) on this
     * connection and, when no answer comes within {@code wait}, again on a fresh one: the
     * supervisor serves one connection's requests in turn, so another thread's long request
     * (a checkpoint) can hold this one up while the supervisor is healthy.
     *
     * @return false when neither connection got an answer: the supervisor is hung; true when
     *         one did, or this connection ended and no other is accepted (the supervisor exits,
     *         or is gone)
     * @throws MicrosandboxException {@link ErrorKind#CANCELLED} when the thread is interrupted
     */
    private boolean requestEvenIfThisConnectionIsBusy(String type, ObjectNode payload, Duration wait) {
        boolean connectionEnded;
        try {
            client.request(type, payload, wait);
            return true;
        } catch (MicrosandboxException e) {
            if (e.kind() == ErrorKind.CANCELLED) {
                throw e;
            }
            // ended: the supervisor exits, or dropped this client (one that fell behind)
            connectionEnded = e.kind() == ErrorKind.SANDBOX_NOT_RUNNING;
        }
        try (AgentClient fresh = AgentClient.connectForControl(name, layout.agentSocket(), KILL_REQUEST_TIMEOUT)) {
            fresh.request(type, payload, KILL_REQUEST_TIMEOUT);
            return true;
        } catch (MicrosandboxException e) {
            if (e.kind() == ErrorKind.CANCELLED) {
                throw e;
            }
            // a supervisor that ended this connection and accepts no other is on its way out
            return connectionEnded;
        }
    }

    /** The last step of a stop or kill: the supervisor answers on no connection, so it is killed, its VM with it. */
    private void killUnansweringSupervisor() {
        if (!client.exited().isDone()) {
            runtime.killUnresponsiveSupervisor(name, client.welcome().path("pid").asLong(-1));
        }
    }

    /** Sends the kill request and returns without waiting. */
    public void requestKill() {
        ensureUsable();
        supervisorRequest(Protocol.SUP_KILL, Json.object());
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
     * {@link ErrorKind#SANDBOX_NOT_RUNNING}, then the sandbox stops by itself. File transfers
     * are not refused, and one in flight is waited for like a command, but the sandbox stops as
     * soon as nothing runs: copy results out before the last command ends. Returns at once.
     */
    public void requestDrain() {
        ensureUsable();
        supervisorRequest(Protocol.SUP_DRAIN, Json.object());
    }

    /**
     * Saves this running sandbox as a memory checkpoint under a bare name
     * ({@code <home>/checkpoints/<name>/}) or at a path (a name holding a '/'), and lets it run on.
     *
     * @see #checkpoint(String, AfterCheckpoint)
     */
    public Checkpoint checkpoint(String nameOrPath) {
        return checkpoint(nameOrPath, AfterCheckpoint.RESUME);
    }

    /**
     * Saves this running sandbox as a memory checkpoint: the guest is paused, its memory and
     * device state saved, a copy of its upper disk taken, then it resumes, or stops gracefully
     * ({@link AfterCheckpoint#STOP}; this returns once it has stopped). Restore it with
     * {@link Microsandbox#restore(String, Checkpoint, RestoreOptions)} or
     * {@link Microsandbox#fork(Checkpoint, String, int, RestoreOptions)}. Commands started before
     * (detached from any open exec session) keep running in the restored guests.
     *
     * @throws MicrosandboxException {@link ErrorKind#UNSUPPORTED_OPERATION} while an exec or file
     *         session or a network connection is open, the sandbox is paused or a pause or resume
     *         is under way (a frame cut in two by the pause would end up in the checkpoint; a
     *         guest resumed during it would change while it is copied), {@link ErrorKind#SNAPSHOT_ALREADY_EXISTS} when the name is
     *         taken, {@link ErrorKind#SANDBOX_NOT_RUNNING} when it is stopping or draining,
     *         {@link ErrorKind#SNAPSHOT_INCOMPATIBLE} when QEMU was upgraded since the sandbox
     *         started (restores would run the new one over the old one's saved state)
     */
    public Checkpoint checkpoint(String nameOrPath, AfterCheckpoint after) {
        // null would read as "do not resume": the sandbox would stop without this waiting for it
        java.util.Objects.requireNonNull(after, "after");
        ensureUsable();
        Checkpoints checkpoints = runtime.checkpoints();
        Checkpoint checkpoint = checkpoints.take(layout, config, Snapshots.locateIn(checkpoints.directory(), nameOrPath, "checkpoint"),
                after == AfterCheckpoint.RESUME, client.welcome().path("qemu").asText(null),
                payload -> client.request(Protocol.SUP_CHECKPOINT, payload, Duration.ofMillis(Checkpoints.SAVE_TIMEOUT_MS + 30_000)));
        if (after == AfterCheckpoint.STOP) {
            waitUntilStopped(DEFAULT_STOP_TIMEOUT.plus(DEFAULT_KILL_TIMEOUT));
        }
        return checkpoint;
    }

    /** Pauses the VM (its vCPUs stop; memory stays); status becomes paused. */
    public void pause() {
        ensureUsable();
        client.request(Protocol.SUP_PAUSE, Json.object(), Duration.ofSeconds(10));
    }

    /** Resumes a paused VM. */
    public void resume() {
        ensureUsable();
        client.request(Protocol.SUP_RESUME, Json.object(), Duration.ofSeconds(10));
    }

    /**
     * Resets the sandbox's idle timer, as exec activity does. A sandbox with an idle timeout
     * stays up as long as it is touched or runs commands.
     */
    public void touch() {
        ensureUsable();
        client.request(Protocol.CORE_TOUCH, Json.object(), Duration.ofSeconds(10));
    }

    /**
     * A resource snapshot: CPU, memory, disk I/O, upper disk usage, uptime. Reading it is not
     * activity: a monitor polling it does not keep a sandbox with an idle timeout up (see
     * {@link #touch()}).
     */
    public Metrics metrics() {
        ensureUsable();
        Frame host = client.request(Protocol.SUP_METRICS, Json.object(), Duration.ofSeconds(10));
        Frame guest = client.request(Protocol.CORE_STATS, Json.object(), Duration.ofSeconds(10));
        return toMetrics(host.payload(), guest.payload(), config, layout);
    }

    /** Metrics from the supervisor's host figures and the agent's guest figures (absent ones are null). */
    static Metrics toMetrics(com.fasterxml.jackson.databind.JsonNode host, com.fasterxml.jackson.databind.JsonNode guest,
                             SandboxConfig config, SandboxLayout layout) {
        Long total = number(guest, "mem_total_bytes");
        Long available = number(guest, "mem_available_bytes");
        Long rss = number(host, "rss_bytes");
        return new Metrics(
                host.path("cpu_millipercent").asLong() / 1000.0,
                host.path("vcpu_time_ns").asLong(),
                total != null && available != null ? total - available : 0,
                available,
                rss != null && rss >= 0 ? rss : null,
                config.memoryMib() * 1024L * 1024L,
                host.path("disk_read_bytes").asLong(),
                host.path("disk_write_bytes").asLong(),
                host.path("net_rx_bytes").asLong(),
                host.path("net_tx_bytes").asLong(),
                number(guest, "upper_used_bytes"),
                number(guest, "upper_free_bytes"),
                Duration.ofMillis(host.path("uptime_ms").asLong()),
                upperAllocated(layout));
    }

    private static Long number(com.fasterxml.jackson.databind.JsonNode n, String field) {
        com.fasterxml.jackson.databind.JsonNode v = n.get(field);
        return v != null && v.isIntegralNumber() ? v.longValue() : null;
    }

    private static Long upperAllocated(SandboxLayout layout) {
        try {
            return io.microsandbox.runtime.Posix.allocatedBytes(layout.upperDisk());
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    /**
     * A snapshot every {@code interval} until the sandbox ends or the stream is closed: at a
     * fixed rate (a slow sample does not push the later ones back), sub-millisecond intervals
     * rounded up, zero or negative ones taken as 1 ms. The stream keeps the newest 64 snapshots:
     * a reader that falls further behind loses the oldest.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} for a null interval
     */
    public MetricsStream metricsStream(Duration interval) {
        if (interval == null) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "interval must not be null");
        }
        ensureUsable();
        return new MetricsStream(this, interval);
    }

    /**
     * Metrics of every running sandbox of the default runtime, by name, from their supervisors'
     * latest samples (see {@link Microsandbox#allMetrics()}); sandboxes that end meanwhile are left out.
     */
    public static Map<String, Metrics> allMetrics() {
        return Microsandbox.defaultRuntime().allMetrics();
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

    /**
     * A stream of log entries as they are written (see {@link LogStream}): with
     * {@link LogStreamOptions.Builder#follow(boolean)} it delivers output of commands started
     * later too, and ends when the sandbox stops.
     */
    public LogStream logStream(LogStreamOptions options) {
        return new LogStream(name, layout.execLog(), options, this::runningAsFarAsKnown);
    }

    /**
     * Whether the sandbox runs: by this handle's connection while it is open, by the store once
     * the connection is closed or lost (a detached handle's stream follows a sandbox that runs on).
     */
    private boolean runningAsFarAsKnown() {
        if (!client.exited().isDone()) {
            return true;
        }
        if (client.exited().getNow(null) != null) {
            return false; // the supervisor reported the end
        }
        try {
            return runtime.find(name).map(h -> !h.status().isTerminal()).orElse(false);
        } catch (MicrosandboxException e) {
            return false;
        }
    }

    static List<LogEntry> readLogs(SandboxLayout layout, LogOptions options) {
        List<LogEntry> entries;
        try {
            entries = ExecLog.read(layout.execLog()).stream()
                    .map(l -> new LogEntry(LogSource.fromWireName(l.source()), l.session(), l.time(), l.data(), LogStream.cursorOf(l.seq())))
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
     * Blocks until the sandbox has ended, or {@code timeout} passes, and tells how; once it has
     * ended, every call returns the same result. After this returns, the handle's other calls
     * fail with {@link ErrorKind#SANDBOX_NOT_RUNNING}.
     *
     * @throws MicrosandboxException {@link ErrorKind#CANCELLED} when the timeout passes first,
     *         {@link ErrorKind#INVALID_HANDLE} on a handle that was closed or detached (reconnect
     *         with {@link #connect(String)}, or wait on {@link SandboxHandle#waitUntilStopped})
     */
    public SandboxStopResult waitUntilStopped(Duration timeout) {
        if (!sawEnd || letGo) {
            ensureUsable();
        }
        SandboxStopResult ended = recordedEnd();
        if (ended != null) {
            return ended;
        }
        long deadline = timeout == null ? 0 : System.nanoTime() + timeout.toNanos();
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
        sawEnd = true;
        released = true;
        if (endTaken.compareAndSet(false, true)) {
            try {
                client.close();
                awaitSupervisorExit();
                SandboxStopResult result = exited != null ? fromExitedFrame(exited) : fromStore();
                ending.complete(result);
                return result;
            } catch (RuntimeException | Error e) {
                ending.completeExceptionally(e);
                throw e;
            }
        }
        // another thread saw the end too and is recording it: one result for both, within this call's timeout
        try {
            return timeout == null ? ending.get() : ending.get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (TimeoutException e) {
            throw new MicrosandboxException(ErrorKind.CANCELLED, "sandbox '" + name + "' has stopped, but its end was still being recorded after " + timeout);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for sandbox '" + name + "'");
        } catch (java.util.concurrent.ExecutionException e) {
            if (e.getCause() instanceof MicrosandboxException m) {
                throw m;
            }
            throw new MicrosandboxException(ErrorKind.INTERNAL, "waiting for sandbox '" + name + "' failed", e.getCause());
        }
    }

    /** How the sandbox ended, once recorded; null before (or when recording it failed). */
    private SandboxStopResult recordedEnd() {
        return ending.isDone() && !ending.isCompletedExceptionally() ? ending.join() : null;
    }

    /**
     * Whether the supervisor reports the end, or its connection ends, within {@code timeout}.
     *
     * @throws MicrosandboxException {@link ErrorKind#CANCELLED} when the waiting thread is interrupted
     */
    private boolean endsWithin(Duration timeout) {
        try {
            client.exited().get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            return true;
        } catch (TimeoutException e) {
            return false;
        } catch (java.util.concurrent.ExecutionException e) {
            return true;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for sandbox '" + name + "'");
        }
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

    /** The supervisor's report of the end; the database's record when the report names no status this SDK knows. */
    private SandboxStopResult fromExitedFrame(Frame exited) {
        SandboxStopResult reported = SandboxStopResult.reported(name, exited);
        return reported != null ? reported : fromStore();
    }

    /** The database's record of the end; "crashed" when the supervisor vanished without one. */
    private SandboxStopResult fromStore() {
        try {
            SandboxHandle handle = runtime.get(name);
            return handle.lastStop().orElseGet(() ->
                    new SandboxStopResult(name, SandboxStatus.CRASHED, null, null, "internal", Instant.now(), "client"));
        } catch (MicrosandboxException e) {
            // an ephemeral sandbox leaves no record
            return SandboxStopResult.withoutRecord(name);
        }
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
        releaseConnection();
    }

    /**
     * Lets go of this handle's connection, whatever happened on it, and leaves the sandbox as
     * it is: how {@link #detach()} ends, and all a {@link SandboxHandle}'s one-off connections
     * (which own no VM) need.
     */
    void releaseConnection() {
        letGo = true;
        if (!released) {
            released = true;
            detached = true;
            closeCompanions();
            client.close();
        }
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
            letGo = true;
            return;
        }
        try {
            stop();
        } catch (MicrosandboxException e) {
            if (e.kind() != ErrorKind.SANDBOX_NOT_RUNNING && e.kind() != ErrorKind.INVALID_HANDLE) {
                throw e;
            }
        } finally {
            letGo = true;
            released = true;
            closeCompanions();
            client.close();
            if (supervisor != null) {
                supervisor.release();
            }
        }
    }

    private void ensureUsable() {
        if (!released) {
            return;
        }
        if (sawEnd && !letGo) {
            SandboxStopResult ended = recordedEnd();
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "sandbox '" + name + "' has stopped"
                    + (ended == null ? "" : " (" + ended.status().name().toLowerCase(java.util.Locale.ROOT) + ", " + ended.reason() + ")")
                    + "; start it again with Sandbox.start(\"" + name + "\")");
        }
        throw new MicrosandboxException(ErrorKind.INVALID_HANDLE,
                "the handle of sandbox '" + name + "' was closed or detached; use Sandbox.connect(\"" + name + "\")");
    }

    @Override
    public String toString() {
        return "Sandbox[" + name + "]";
    }
}

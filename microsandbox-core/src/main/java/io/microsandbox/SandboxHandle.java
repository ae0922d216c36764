package io.microsandbox;

import io.microsandbox.runtime.agent.AgentClient;
import io.microsandbox.store.RunRecord;
import io.microsandbox.store.SandboxRecord;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A sandbox's persisted state, from {@link Microsandbox#get(String)} or {@link Microsandbox#list()} (or the
 * static {@link Sandbox#get(String)}, {@link Sandbox#list()}): its
 * name, status, configuration and timestamps, with lifecycle operations that need no open
 * connection. A handle is a snapshot; {@link #refresh()} reads the state again. To run
 * commands, {@link #connect()} to a running sandbox or {@link #start()} a stopped one.
 */
public final class SandboxHandle {
    private final Microsandbox runtime;
    private final SandboxRecord record;

    SandboxHandle(Microsandbox runtime, SandboxRecord record) {
        this.runtime = runtime;
        this.record = record;
    }

    /** The runtime this sandbox belongs to. */
    public Microsandbox runtime() {
        return runtime;
    }

    /** The sandbox's name. */
    public String name() {
        return record.name();
    }

    /** Last known status. */
    public SandboxStatus status() {
        return SandboxStatus.fromWireName(record.status());
    }

    /** The configuration as persisted JSON. */
    public String configJson() {
        return record.configJson();
    }

    /** The parsed configuration. */
    public SandboxConfig config() {
        return SandboxConfig.fromJson(record.configJson());
    }

    /** The sandbox's labels (empty when it has none). */
    public Map<String, String> labels() {
        return record.labels();
    }

    /** When the sandbox was created. */
    public Instant createdAt() {
        return record.createdAt();
    }

    /** When its record last changed (a start, a stop, a status change). */
    public Instant updatedAt() {
        return record.updatedAt();
    }

    /** How the latest run ended, when it has. */
    public Optional<SandboxStopResult> lastStop() {
        RunRecord run = record.lastRun();
        if (run == null || run.terminatedAt() == null) {
            return Optional.empty();
        }
        return Optional.of(new SandboxStopResult(name(), SandboxStatus.fromWireName(run.status()), run.exitCode(),
                run.signal(), run.reason(), run.terminatedAt(), run.source()));
    }

    /** A fresh handle for the same name. */
    public SandboxHandle refresh() {
        return runtime.get(name());
    }

    /** Connects to the running sandbox. */
    public Sandbox connect() {
        return runtime.connect(name());
    }

    /** Boots the stopped sandbox, attached to this JVM. */
    public Sandbox start() {
        return runtime.start(name());
    }

    /** Boots the stopped sandbox, detached. */
    public Sandbox startDetached() {
        return runtime.startDetached(name());
    }

    /** Boots the stopped sandbox, attached, with the values of its secrets (see {@link Microsandbox#start(String, java.util.Map)}). */
    public Sandbox start(java.util.Map<String, String> secretValues) {
        return runtime.start(name(), secretValues);
    }

    /** Boots the stopped sandbox, detached, with the values of its secrets (see {@link Microsandbox#start(String, java.util.Map)}). */
    public Sandbox startDetached(java.util.Map<String, String> secretValues) {
        return runtime.startDetached(name(), secretValues);
    }

    /** Stops the sandbox gracefully (10 s window) and waits; a no-op when it is not running. */
    public void stop() {
        stop(Sandbox.DEFAULT_STOP_TIMEOUT);
    }

    /**
     * Stops the sandbox gracefully within {@code timeout}, then forcibly, and waits (see
     * {@link Sandbox#stop(Duration)}); a supervisor that does not even accept the connection is
     * killed, as {@link #kill(Duration)} does. A no-op when it is not running.
     */
    public void stop(Duration timeout) {
        withControlConnection(sb -> sb.stop(timeout));
    }

    /** Sends a stop request and returns; a no-op when it is not running. */
    public void requestStop() {
        // a control connection: a stop gets through while clients hold every slot
        withConnection(Sandbox::requestStop, true, false);
    }

    /** Kills the VM and waits until the stop is observed; a no-op when it is not running. */
    public void kill() {
        kill(Sandbox.DEFAULT_KILL_TIMEOUT);
    }

    /**
     * Kills the VM and waits up to {@code timeout} for the end. A supervisor that does not
     * even accept the connection is killed itself (its VM goes with it).
     */
    public void kill(Duration timeout) {
        withControlConnection(sb -> sb.kill(timeout));
    }

    /**
     * The last step of a stop or kill when the supervisor does not accept a connection (hung,
     * or still booting the VM: a boot has no graceful way out).
     */
    private void killUnreachableSupervisor() {
        SandboxHandle now = refresh();
        RunRecord run = now.record.lastRun();
        if (now.running() && run != null && run.terminatedAt() == null && run.supervisorPid() != null) {
            runtime.killUnresponsiveSupervisor(name(), run.supervisorPid());
        }
    }

    /** Sends a kill request and returns. */
    public void requestKill() {
        withConnection(Sandbox::requestKill, true, false);
    }

    /**
     * Starts a drain (see {@link Sandbox#requestDrain()}) and returns.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_RUNNING} when it is not running
     */
    public void requestDrain() {
        // the record read now, not the one this handle was made from: the sandbox may have stopped or started since
        SandboxHandle now = refresh();
        if (!now.running()) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "sandbox '" + name() + "' is " + now.record.status());
        }
        Sandbox sb = runtime.connect(name());
        try {
            sb.requestDrain();
        } finally {
            sb.releaseConnection();
        }
    }

    /**
     * Blocks until the sandbox has ended; returns at once for a stopped one.
     *
     * @throws MicrosandboxException {@link ErrorKind#CANCELLED} when the waiting thread is interrupted
     */
    public SandboxStopResult waitUntilStopped() {
        return waitUntilStopped(null);
    }

    /**
     * Blocks until the sandbox has ended, or {@code timeout} passes; returns at once for a stopped one.
     *
     * @throws MicrosandboxException {@link ErrorKind#CANCELLED} when the timeout passes first or the
     *         waiting thread is interrupted
     */
    public SandboxStopResult waitUntilStopped(Duration timeout) {
        long deadline = timeout == null ? Long.MAX_VALUE : System.nanoTime() + timeout.toNanos();
        io.microsandbox.runtime.agent.Frame exited = null;
        if (running()) {
            try {
                AgentClient client = AgentClient.connect(name(), runtime.layout(name()).agentSocket());
                try {
                    exited = timeout == null ? client.exited().get()
                            : client.exited().get(Math.max(0, deadline - System.nanoTime()), java.util.concurrent.TimeUnit.NANOSECONDS);
                } catch (java.util.concurrent.TimeoutException e) {
                    throw stillRuns(timeout);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for sandbox '" + name() + "'");
                } catch (java.util.concurrent.ExecutionException e) {
                    // the connection ended without a report: the record below says how the run ended
                } finally {
                    client.close();
                }
            } catch (MicrosandboxException e) {
                if (e.kind() == ErrorKind.CANCELLED) {
                    throw e;
                }
                if (e.kind() == ErrorKind.RESOURCE_LIMIT) {
                    // running, with every client slot taken: wait for its supervisor to end instead
                    awaitSupervisorExit(deadline, timeout);
                }
                // else gone already
            }
        }
        SandboxStopResult reported = exited == null ? null : SandboxStopResult.reported(name(), exited);
        if (reported != null) {
            return reported; // the supervisor's own word, as Sandbox.waitUntilStopped prefers it
        }
        SandboxHandle now;
        try {
            now = refresh();
        } catch (MicrosandboxException e) {
            if (e.kind() != ErrorKind.SANDBOX_NOT_FOUND || !record.ephemeral()) {
                throw e;
            }
            return SandboxStopResult.withoutRecord(name());
        }
        return now.lastStop().orElseGet(() -> new SandboxStopResult(name(), now.status(), null, null, null, Instant.now(), "client"));
    }

    private MicrosandboxException stillRuns(Duration timeout) {
        return new MicrosandboxException(ErrorKind.CANCELLED, "sandbox '" + name() + "' still runs after " + timeout);
    }

    /**
     * Waits while the sandbox's supervisor holds its lock: the lock, not a recorded pid, which
     * another process may have taken since a supervisor died unrecorded.
     */
    private void awaitSupervisorExit(long deadline, Duration timeout) {
        java.nio.file.Path lock = io.microsandbox.runtime.SandboxLock.supervisorLockFile(runtime.layout(name()));
        try {
            while (io.microsandbox.runtime.SandboxLock.isHeld(lock)) {
                if (timeout != null && System.nanoTime() - deadline >= 0) {
                    throw stillRuns(timeout);
                }
                Thread.sleep(50);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for sandbox '" + name() + "'");
        } catch (java.io.IOException e) {
            // its directory is gone: so is the sandbox
        }
    }

    /** A metrics sample older than this means the supervisor has stopped writing (hung or gone). */
    private static final Duration METRICS_STALE_AFTER = Duration.ofSeconds(10);
    /** The metrics file is a few hundred bytes; anything much larger is not the supervisor's. */
    private static final long METRICS_FILE_MAX_BYTES = 64 * 1024;
    private static final com.fasterxml.jackson.databind.ObjectMapper JSON = new com.fasterxml.jackson.databind.ObjectMapper();

    /**
     * The sandbox's latest metrics without connecting to it: the supervisor samples the VM and
     * the guest every second and leaves the figures in a file of the sandbox's run directory,
     * which this reads. At most about a second old (the guest figures one sample more); the
     * same fields as {@link Sandbox#metrics()}.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_RUNNING} when the sandbox is
     *         not running, {@link ErrorKind#METRICS_UNAVAILABLE} when no recent sample exists
     *         (just booted, or its supervisor no longer samples)
     */
    public Metrics metrics() {
        SandboxHandle now = refresh();
        if (!now.running()) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "sandbox '" + name() + "' is " + now.status().wireName());
        }
        io.microsandbox.runtime.SandboxLayout layout = runtime.layout(name());
        java.nio.file.Path file = layout.metricsFile();
        com.fasterxml.jackson.databind.JsonNode sample;
        try {
            if (java.nio.file.Files.size(file) > METRICS_FILE_MAX_BYTES) {
                throw new MicrosandboxException(ErrorKind.METRICS_UNAVAILABLE, file + " is larger than " + METRICS_FILE_MAX_BYTES + " bytes");
            }
            sample = JSON.readTree(java.nio.file.Files.readAllBytes(file));
        } catch (java.nio.file.NoSuchFileException e) {
            throw new MicrosandboxException(ErrorKind.METRICS_UNAVAILABLE, "sandbox '" + name() + "' has no metrics sample yet", e);
        } catch (java.io.IOException e) {
            throw new MicrosandboxException(ErrorKind.METRICS_UNAVAILABLE, "cannot read " + file + ": " + e.getMessage(), e);
        }
        Instant sampledAt = Instant.ofEpochMilli(sample.path("sampled_at_ms").asLong(0));
        if (sampledAt.isBefore(Instant.now().minus(METRICS_STALE_AFTER))) {
            throw new MicrosandboxException(ErrorKind.METRICS_UNAVAILABLE, "the latest metrics sample of sandbox '" + name()
                    + "' is from " + sampledAt + ": its supervisor no longer samples");
        }
        return Sandbox.toMetrics(sample.path("host"), sample.path("guest"), config(), layout);
    }

    /** Captured stdout and stderr of the sandbox's commands, running or stopped (see {@link Sandbox#logs()}). */
    public List<LogEntry> logs() {
        return logs(LogOptions.defaults());
    }

    /** Captured output of the sandbox's commands, running or stopped (see {@link Sandbox#logs(LogOptions)}). */
    public List<LogEntry> logs(LogOptions options) {
        return Sandbox.readLogs(runtime.layout(name()), options);
    }

    /**
     * A stream of log entries, for a running or a stopped sandbox (see
     * {@link Sandbox#logStream(LogStreamOptions)}); a following stream ends once the sandbox
     * is seen stopped, unless it follows across restarts.
     */
    public LogStream logStream(LogStreamOptions options) {
        return new LogStream(name(), runtime.layout(name()).execLog(), options, () -> {
            try {
                return refresh().running();
            } catch (MicrosandboxException e) {
                return false;
            }
        });
    }

    /**
     * Takes a disk snapshot of this stopped sandbox under a bare name
     * ({@code <home>/snapshots/<name>/}), with an integrity hash and no labels.
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_SANDBOX_RUNNING} when it is not stopped,
     *         {@link ErrorKind#SNAPSHOT_ALREADY_EXISTS} when the name is taken
     */
    public Snapshot snapshot(String snapshotName) {
        return snapshot(snapshotName, SnapshotOptions.defaults());
    }

    /** Like {@link #snapshot(String)}, with labels and the integrity choice of {@code options}. */
    public Snapshot snapshot(String snapshotName, SnapshotOptions options) {
        if (snapshotName != null && snapshotName.indexOf('/') >= 0) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "'" + snapshotName + "' is a path: use snapshotTo(path)");
        }
        return runtime.snapshot(name(), runtime.snapshots().locate(snapshotName), options);
    }

    /** Takes a disk snapshot of this stopped sandbox into the directory {@code dir}, which must not exist. */
    public Snapshot snapshotTo(java.nio.file.Path dir) {
        return snapshotTo(dir, SnapshotOptions.defaults());
    }

    /** Like {@link #snapshotTo(java.nio.file.Path)}, with labels and the integrity choice of {@code options}. */
    public Snapshot snapshotTo(java.nio.file.Path dir, SnapshotOptions options) {
        return runtime.snapshot(name(), dir.toAbsolutePath().normalize(), options);
    }

    /** Deletes the stopped sandbox and its state (see {@link Sandbox#remove(String)}). */
    public void remove() {
        runtime.remove(name());
    }

    private boolean running() {
        return !status().isTerminal();
    }

    /**
     * Runs a stop or kill on a control connection, which the supervisor takes even when clients
     * hold every slot; kills a supervisor that does not accept one.
     */
    private void withControlConnection(java.util.function.Consumer<Sandbox> action) {
        withConnection(action, true, true);
    }

    /**
     * Runs {@code action} on a connection; a no-op when the sandbox does not run or accepts no
     * connection.
     *
     * @param killIfUnreachable whether a running sandbox whose supervisor accepts no connection has it killed
     * @throws MicrosandboxException {@link ErrorKind#RESOURCE_LIMIT} when clients hold every slot
     */
    private void withConnection(java.util.function.Consumer<Sandbox> action, boolean control, boolean killIfUnreachable) {
        if (!refresh().running()) {
            return;
        }
        Sandbox sb;
        try {
            sb = control ? runtime.connectForControl(name()) : runtime.connect(name());
        } catch (MicrosandboxException e) {
            if (e.kind() == ErrorKind.SANDBOX_NOT_RUNNING) {
                if (killIfUnreachable) {
                    killUnreachableSupervisor();
                }
                return;
            }
            throw e;
        }
        try {
            action.accept(sb);
        } finally {
            // a call that failed (a supervisor that did not answer) must not keep the connection
            sb.releaseConnection();
        }
    }

    @Override
    public String toString() {
        return "SandboxHandle[" + name() + ", " + record.status() + "]";
    }
}

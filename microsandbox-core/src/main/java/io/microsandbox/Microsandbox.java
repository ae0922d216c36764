package io.microsandbox;

import io.microsandbox.runtime.ClaimedDirectory;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxLock;
import io.microsandbox.runtime.SandboxPreparer;
import io.microsandbox.runtime.agent.AgentClient;
import io.microsandbox.runtime.supervisor.SpareSupervisors;
import io.microsandbox.runtime.supervisor.SupervisorProcess;
import io.microsandbox.runtime.supervisor.SupervisorSpec;
import io.microsandbox.runtime.vmm.Accelerators;
import io.microsandbox.runtime.vmm.KernelBundle;
import io.microsandbox.store.SandboxRecord;
import io.microsandbox.store.SandboxStore;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;

/**
 * A microsandbox runtime: a home directory (database, sandboxes, caches), the QEMU binary, the
 * guest kernel and the accelerator that sandboxes boot with. It creates, starts, finds, lists
 * and removes sandboxes; the {@link Sandbox} and {@link SandboxHandle} it returns remember it.
 *
 * <pre>{@code
 * Microsandbox runtime = Microsandbox.builder().home(Path.of("/srv/msb")).build();
 * try (Sandbox sb = runtime.create("api", SandboxConfig.builder().image("/srv/rootfs").build())) {
 *     System.out.println(sb.exec("python3", List.of("-c", "print(2+2)")).stdout());
 * }
 * }</pre>
 *
 * <p>Runtimes on different homes are independent, in one JVM too: each has its own database,
 * its own sandboxes and its own spare supervisor. Runtimes on the same home see the same
 * sandboxes, as separate JVMs on one home do. The static methods of {@link Sandbox} use
 * {@link #defaultRuntime()}. Instances are immutable and safe to use from many threads.
 */
public final class Microsandbox {
    private static final ConcurrentMap<Path, Microsandbox> DEFAULTS = new ConcurrentHashMap<>();

    private final Path home;
    private final Path qemu;
    private final Path kernelDir;
    private final Accelerator accelerator;
    private volatile Accelerator resolved;

    private Microsandbox(Path home, Path qemu, Path kernelDir, Accelerator accelerator) {
        this.home = home.toAbsolutePath().normalize();
        this.qemu = qemu;
        this.kernelDir = kernelDir;
        this.accelerator = accelerator;
    }

    /**
     * The runtime of the default home: the system property {@code microsandbox.home}, else the
     * environment variable {@code MSB_HOME}, else {@code ~/.microsandbox}; QEMU from
     * {@code microsandbox.qemu} / {@code MSB_QEMU} or the {@code PATH}, the kernel from
     * {@code microsandbox.kernel.dir} / {@code MSB_KERNEL_DIR}, else the one
     * {@code microsandbox.kernel} / {@code MSB_KERNEL} selects: by default the kernel of the
     * {@code microsandbox-kernel} jar, the accelerator {@link Accelerator#AUTO}. One shared instance per home.
     */
    public static Microsandbox defaultRuntime() {
        return DEFAULTS.computeIfAbsent(RuntimeFiles.defaultHome().normalize(), h -> new Microsandbox(h, null, null, Accelerator.AUTO));
    }

    /** A builder for a runtime of your own; {@link Builder#home(Path)} is required. */
    public static Builder builder() {
        return new Builder();
    }

    /** Builds a {@link Microsandbox}. */
    public static final class Builder {
        private Path home;
        private Path qemu;
        private Path kernelDir;
        private Accelerator accelerator = Accelerator.AUTO;

        private Builder() {
        }

        /**
         * The home directory: database, sandboxes, caches, extracted runtime files. Required.
         * Created on first use, its owner's only.
         */
        public Builder home(Path home) {
            this.home = Objects.requireNonNull(home, "home");
            return this;
        }

        /**
         * The QEMU binary ({@code qemu-system-x86_64}). Default: the system property
         * {@code microsandbox.qemu}, else {@code MSB_QEMU}, else the one on the {@code PATH}.
         */
        public Builder qemu(Path qemuBinary) {
            this.qemu = qemuBinary;
            return this;
        }

        /**
         * A guest kernel directory of this runtime's own (holding {@code vmlinux}, and
         * {@code modules/} with {@code modules.order} for a distribution kernel). Default: the
         * system property {@code microsandbox.kernel.dir}, else {@code MSB_KERNEL_DIR}, else the
         * kernel {@code microsandbox.kernel} / {@code MSB_KERNEL} selects ({@code microsandbox},
         * the kernel of the {@code microsandbox-kernel} jar, by default; {@code debian} for
         * {@code <home>/kernel/current}), read at each boot.
         */
        public Builder kernelDir(Path dir) {
            this.kernelDir = dir;
            return this;
        }

        /**
         * The accelerator of sandboxes whose configuration says {@link Accelerator#AUTO}.
         * Default {@link Accelerator#AUTO}: {@code MSB_ACCEL=kvm|tcg} forces one, otherwise a
         * cached probe boot decides.
         */
        public Builder accelerator(Accelerator a) {
            this.accelerator = Objects.requireNonNull(a, "accelerator");
            return this;
        }

        /**
         * The runtime. Nothing is created or checked on disk yet.
         *
         * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} without a home
         */
        public Microsandbox build() {
            if (home == null) {
                throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT,
                        "a Microsandbox runtime needs a home directory: Microsandbox.builder().home(path), or use Microsandbox.defaultRuntime()");
            }
            return new Microsandbox(home, qemu == null ? null : qemu.toAbsolutePath(),
                    kernelDir == null ? null : kernelDir.toAbsolutePath(), accelerator);
        }
    }

    /** The home directory, absolute. */
    public Path home() {
        return home;
    }

    /** The accelerator as configured ({@link Accelerator#AUTO} unless the builder set one). */
    public Accelerator accelerator() {
        return accelerator;
    }

    /** The QEMU binary the builder named, or null for the default lookup. */
    Path configuredQemu() {
        return qemu;
    }

    /** The kernel directory the builder named, or null for the default location. */
    Path configuredKernelDir() {
        return kernelDir;
    }

    /**
     * Creates and boots a sandbox, returning once its guest agent is ready.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} for a bad name,
     *         {@link ErrorKind#SANDBOX_ALREADY_EXISTS} when the name is taken (unless the config
     *         asks to replace it), {@link ErrorKind#IMAGE_NOT_FOUND} for a missing image,
     *         {@link ErrorKind#BOOT_FAILED} when the VM does not come up (with the tail of the guest console)
     */
    public Sandbox create(String name, SandboxConfig config) {
        Sandbox.validateName(name);
        Objects.requireNonNull(config, "config");
        // a configuration read back from a sandbox carries its secrets without values
        config = config.withSecretValues(Map.of(), "sandbox '" + name + "'").withAbsolutePaths();
        Snapshot snapshot = null;
        if (config.snapshot() != null) {
            snapshot = snapshots().get(config.snapshot());
            snapshots().checkImage(snapshot);
            // persisted with the image: a restart boots its own upper over it, the snapshot may be gone by then
            config = config.toBuilder().snapshot(null).image(snapshot.image()).build();
        }
        SandboxStore store = store();
        SandboxLayout layout = SandboxLayout.of(home, name);
        if (taken(store, name)) {
            if (config.replaceTimeout() == null) {
                throw alreadyExists(name);
            }
            replace(name, config.replaceTimeout());
        }
        SandboxLock createLock = claimAndRecord(store, layout, config);
        try {
            if (snapshot != null) {
                snapshots().materialize(snapshot, layout);
            }
            return boot(layout, config, snapshot == null, createLock, null, spec -> spec);
        } catch (RuntimeException e) {
            forgetFailedCreation(store, layout, createLock, e);
            throw e;
        }
    }

    /**
     * Removes the row and files of a creation that failed with {@code failure}, which a failing
     * clean-up does not hide, under the creation lock. An unexpected failure after the supervisor
     * took the sandbox over (the creation lock let go) leaves it be: it runs, and is the
     * supervisor's to end. A typed one there (the first connection failed) comes after the
     * supervisor ended it: the lock is taken again, so that nothing a creation of the same name
     * made since is erased.
     */
    private static void forgetFailedCreation(SandboxStore store, SandboxLayout layout, SandboxLock createLock, RuntimeException failure) {
        Path lockFile = SandboxLock.createLockFile(layout);
        SandboxLock lock = createLock;
        if (!createLock.isOn(lockFile)) {
            if (!(failure instanceof MicrosandboxException)) {
                return;
            }
            try {
                lock = SandboxLock.tryAcquire(lockFile);
                if (lock == null || !lock.isOn(lockFile) || supervisorAlive(layout)) {
                    release(lock);
                    return; // another creation's now
                }
            } catch (IOException | RuntimeException cleanUp) {
                release(lock);
                failure.addSuppressed(cleanUp);
                return;
            }
        }
        try {
            // the row first, under the lock (a new creator inserts its own only once it holds it);
            // the files go even when the row cannot (a full disk fails both, and the files are what filled it)
            store.delete(layout.name());
        } catch (RuntimeException cleanUp) {
            failure.addSuppressed(cleanUp);
        }
        try {
            discard(layout, lock);
        } catch (RuntimeException cleanUp) {
            failure.addSuppressed(cleanUp);
        }
    }

    /**
     * Boots a stopped sandbox again from its persisted configuration and upper disk: files
     * written before it stopped are still there. The sandbox is attached to this JVM.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_FOUND}, or
     *         {@link ErrorKind#SANDBOX_STILL_RUNNING} when it already runs
     */
    public Sandbox start(String name) {
        return start(name, Map.of(), false);
    }

    /** Like {@link #start(String)}, but the sandbox keeps running after this JVM exits. */
    public Sandbox startDetached(String name) {
        return start(name, Map.of(), true);
    }

    /**
     * Like {@link #start(String)}, for a sandbox created with secrets: their values are never
     * stored, so they are given again here, by secret name (placeholders and allowed hosts are
     * kept from its configuration).
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_CONFIG} when a secret has no value
     *         or a name is not one of the sandbox's secrets
     */
    public Sandbox start(String name, Map<String, String> secretValues) {
        return start(name, secretValues, false);
    }

    /** Like {@link #start(String, Map)}, but the sandbox keeps running after this JVM exits. */
    public Sandbox startDetached(String name, Map<String, String> secretValues) {
        return start(name, secretValues, true);
    }

    private Sandbox start(String name, Map<String, String> secretValues, boolean detached) {
        Objects.requireNonNull(secretValues, "secretValues");
        SandboxHandle handle = get(name);
        if (!handle.status().isTerminal()) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_STILL_RUNNING, "sandbox '" + name + "' is already " + handle.status().wireName());
        }
        SandboxConfig config = handle.config().toBuilder().detached(detached).build().withSecretValues(secretValues, "sandbox '" + name + "'");
        SandboxLayout layout = SandboxLayout.of(home, name);
        Path lockFile = SandboxLock.createLockFile(layout);
        SandboxLock createLock;
        try {
            // never made here: a directory a remove took away meanwhile must stay gone
            createLock = SandboxLock.tryAcquire(lockFile);
        } catch (java.nio.file.NoSuchFileException e) {
            throw removedMeanwhile(name);
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot lock sandbox '" + name + "': " + e.getMessage(), e);
        }
        try {
            if (createLock == null || supervisorAlive(layout)) {
                throw new MicrosandboxException(ErrorKind.SANDBOX_STILL_RUNNING, "sandbox '" + name + "' is being started by another process");
            }
            // under the lock: a remove that erased the sandbox since get() took its directory (and lock file) away
            if (!createLock.isOn(lockFile) || store().find(name).isEmpty()) {
                throw removedMeanwhile(name);
            }
            return boot(layout, config, false, createLock, null, spec -> spec);
        } catch (RuntimeException e) {
            release(createLock); // whatever failed, the check (a busy database, say) or the boot
            throw e;
        }
    }

    private static MicrosandboxException removedMeanwhile(String name) {
        return new MicrosandboxException(ErrorKind.SANDBOX_NOT_FOUND, "sandbox '" + name + "' is gone: its state directory was removed");
    }

    /** The shape of a restore's VM, for a spare to start the next restore of its checkpoint ahead. */
    private static io.microsandbox.runtime.supervisor.PrebootShape restoreShape(SupervisorSpec spec) {
        Map<String, Object> restore = spec.restore();
        Object digest = restore.get("upper_digest");
        return io.microsandbox.runtime.supervisor.PrebootShape.ofRestore(spec, new io.microsandbox.runtime.supervisor.PrebootShape.Restore(
                restore.get("ram_file").toString(), restore.get("memory_uri").toString(), restore.get("upper_file").toString(),
                digest == null ? null : digest.toString()));
    }

    /** Whether a supervisor holds the sandbox (another process started it since we looked). */
    private static boolean supervisorAlive(SandboxLayout layout) {
        if (!Files.isDirectory(layout.dir())) {
            return false;
        }
        try {
            return SandboxLock.isHeld(SandboxLock.supervisorLockFile(layout));
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot check sandbox '" + layout.name() + "': " + e.getMessage(), e);
        }
    }

    /**
     * Boots the prepared sandbox: the supervisor starts while the disks are made.
     *
     * @param knownRoot the image's root when already known, else null (see SandboxPreparer)
     * @param adapt turns the prepared spec into the one to run (a restore adds its checkpoint)
     */
    private Sandbox boot(SandboxLayout layout, SandboxConfig config, boolean freshUpper, SandboxLock createLock,
            io.microsandbox.image.ImageRoots.Root knownRoot, java.util.function.UnaryOperator<SupervisorSpec> adapt) {
        SupervisorProcess supervisor = SpareSupervisors.acquire(home);
        boolean handedSpec = false;
        // the shape a spare may pre-boot next: a plain boot with a new, empty upper disk, or a restore
        io.microsandbox.runtime.supervisor.PrebootShape shape = null;
        try {
            SupervisorSpec prepared = SandboxPreparer.prepare(home, SandboxPreparer.findQemu(qemu), KernelBundle.locate(home, kernelDir),
                    accelerator, layout, config, freshUpper, knownRoot);
            SupervisorSpec spec = adapt.apply(prepared);
            if (spec != prepared) {
                spec.write(layout.specFile());
            }
            // a restore's upper is the checkpoint's copy: it comes with freshUpper false
            boolean emptyUpper = freshUpper && config.patches().isEmpty();
            // no VM booted ahead with host files of its own open (mounts, volumes, an image
            // disk's overlay): it would hold them as they were, and their locks, until adopted
            if (config.mounts().isEmpty() && config.imageDisk() == null) {
                shape = emptyUpper ? io.microsandbox.runtime.supervisor.PrebootShape.of(spec, config.upperSizeMib())
                        : spec.restore() != null ? restoreShape(spec) : null;
            }
            handedSpec = true;
            supervisor.boot(spec, emptyUpper);
        } catch (RuntimeException | IOException e) {
            if (handedSpec) {
                supervisor.abandon();
                SpareSupervisors.replenishNow(home);
            } else {
                // it never saw this sandbox: still as good as a spare
                SpareSupervisors.putBack(home, supervisor);
            }
            // a supervisor that never started never took the secrets' values off the disk
            io.microsandbox.runtime.network.SecretFile.discard(layout.dir());
            if (e instanceof MicrosandboxException m) {
                throw m;
            }
            if (e instanceof IOException || e instanceof java.io.UncheckedIOException) {
                throw new MicrosandboxException(ErrorKind.IO, "cannot prepare sandbox '" + layout.name() + "': " + e.getMessage(), e);
            }
            // not the disk's trouble: a defect, said as one
            throw new MicrosandboxException(ErrorKind.INTERNAL, "cannot prepare sandbox '" + layout.name() + "': " + e, e);
        }
        // the supervisor owns the sandbox now and holds its own lock
        release(createLock);
        AgentClient client = null;
        try {
            client = AgentClient.connect(layout.name(), layout.agentSocket());
            if (config.detached()) {
                supervisor.detach();
            }
        } catch (MicrosandboxException e) {
            if (client != null) {
                client.close();
            }
            // it ends the sandbox and records that before the caller erases what is left: a
            // supervisor still running then would end a successor of the same name in its stead
            supervisor.abandon();
            SpareSupervisors.replenishNow(home);
            throw e;
        }
        // the next creation's supervisor: after this sandbox's first command, a deferral or at once (see SpareSupervisors)
        SpareSupervisors.replenishAfter(home, client.firstExchange(), shape);
        return new Sandbox(this, layout.name(), config, layout, client, supervisor);
    }

    /** Stops (gracefully within {@code timeout}, then forcibly) and removes an existing sandbox. */
    private void replace(String name, Duration timeout) {
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
     * Connects to a running sandbox by name, typically a detached one created by another process.
     * The returned handle does not own the sandbox's lifecycle, but {@link Sandbox#close()} still
     * stops it; use {@link Sandbox#detach()} to leave it running.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_FOUND} when there is no such sandbox,
     *         {@link ErrorKind#SANDBOX_NOT_RUNNING} when it is not running
     */
    public Sandbox connect(String name) {
        return connect(name, false);
    }

    /** A connection that may only stop, kill or ask the status, which the supervisor takes even when clients hold every slot. */
    Sandbox connectForControl(String name) {
        return connect(name, true);
    }

    private Sandbox connect(String name, boolean control) {
        SandboxHandle handle = get(name);
        if (handle.status().isTerminal()) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "sandbox '" + name + "' is " + handle.status().wireName());
        }
        SandboxLayout layout = SandboxLayout.of(home, name);
        AgentClient client = control ? AgentClient.connectForControl(name, layout.agentSocket(), AgentClient.CONNECT_TIMEOUT)
                : AgentClient.connect(name, layout.agentSocket());
        return new Sandbox(this, name, handle.config(), layout, client, null);
    }

    /**
     * Looks a sandbox up without connecting to it.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_FOUND} when there is no such sandbox,
     *         {@link ErrorKind#INVALID_ARGUMENT} for a bad name
     */
    public SandboxHandle get(String name) {
        return find(name).orElseThrow(() -> new MicrosandboxException(ErrorKind.SANDBOX_NOT_FOUND, "no sandbox named '" + name + "'"));
    }

    /**
     * Looks a sandbox up without connecting to it; empty when there is no such sandbox.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} for a bad name
     */
    public Optional<SandboxHandle> find(String name) {
        Sandbox.validateName(name);
        SandboxStore store = store();
        return visible(store, name).map(record -> new SandboxHandle(this, record));
    }

    /** Every sandbox of this runtime's home, newest first. */
    public List<SandboxHandle> list() {
        return list(SandboxFilter.all());
    }

    /** The sandboxes carrying every label of {@code filter} (every sandbox for null), newest first. */
    public List<SandboxHandle> list(SandboxFilter filter) {
        SandboxStore store = store();
        return store.list((filter == null ? SandboxFilter.all() : filter).labels()).stream()
                .map(record -> observe(store, record))
                .filter(record -> !purgedIfEphemeral(store, record))
                .map(record -> new SandboxHandle(this, record))
                .toList();
    }

    /** The record of {@code name} as it is: checked against its locks, and gone if it was an ephemeral sandbox that ended. */
    private Optional<SandboxRecord> visible(SandboxStore store, String name) {
        return store.find(name).map(record -> observe(store, record)).filter(record -> !purgedIfEphemeral(store, record));
    }

    private boolean taken(SandboxStore store, String name) {
        return visible(store, name).isPresent();
    }

    /**
     * An ephemeral sandbox whose supervisor died could not clean up after itself: whoever
     * sees it ended does, and it is then gone.
     */
    private boolean purgedIfEphemeral(SandboxStore store, SandboxRecord record) {
        if (!endedEphemeral(record)) {
            return false;
        }
        SandboxLayout layout = SandboxLayout.of(home, record.name());
        SandboxLock createLock = null;
        try {
            // under its creation lock, as remove() erases: never under a start, nor twice at once
            if (Files.isDirectory(layout.dir())) {
                createLock = SandboxLock.tryAcquire(SandboxLock.createLockFile(layout));
                if (createLock == null || supervisorAlive(layout)) {
                    return false; // being started, or its supervisor is still erasing it: shown as it is
                }
                // the record read before the lock may be stale: the name may be a new sandbox's by now
                Optional<SandboxRecord> now = store.find(record.name());
                if (now.isPresent() && !(endedEphemeral(now.get()) && now.get().createdAt().equals(record.createdAt()))) {
                    return false;
                }
                eraseFiles(layout);
            }
            // its files gone (here, or before): only its own row, never that of a sandbox created since under the name
            store.delete(record.name(), record.createdAt());
            return true;
        } catch (IOException e) {
            return false; // its directory went meanwhile: whoever took it away erases it
        } finally {
            release(createLock);
        }
    }

    private static boolean endedEphemeral(SandboxRecord record) {
        return record.ephemeral() && SandboxStatus.fromWireName(record.status()).isTerminal();
    }

    /**
     * A record that says the sandbox lives, checked against its locks: if no supervisor holds
     * them, the supervisor died without recording the end, and the sandbox is marked crashed.
     */
    private SandboxRecord observe(SandboxStore store, SandboxRecord record) {
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
        SpareSupervisors.removeAbandonedPreBoots(home);
        return store.find(record.name()).orElse(record);
    }

    /**
     * Deletes a stopped sandbox and all its state: disks, logs, sockets, database rows.
     *
     * @throws MicrosandboxException {@link ErrorKind#SANDBOX_NOT_FOUND} when there is no such sandbox,
     *         {@link ErrorKind#SANDBOX_STILL_RUNNING} when it is running; stop it first
     */
    public void remove(String name) {
        SandboxHandle handle = get(name);
        if (!handle.status().isTerminal()) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_STILL_RUNNING,
                    "sandbox '" + name + "' is " + handle.status().wireName() + "; stop it before removing it");
        }
        SandboxLayout layout = SandboxLayout.of(home, name);
        // The database may lag behind the locks: another process may be starting it right now.
        // Holding its creation lock while erasing keeps a start from beginning meanwhile.
        SandboxLock createLock = lockStopped(layout, true, () -> new MicrosandboxException(ErrorKind.SANDBOX_STILL_RUNNING,
                "sandbox '" + name + "' is being started or run by another process; stop it before removing it"));
        try {
            if (createLock == null) {
                // no directory (an earlier remove's files went, its row did not): nothing is
                // locked, so only the row read above goes; a creation of the name since has its own
                store().delete(name, handle.createdAt());
            } else {
                erase(store(), layout);
            }
        } finally {
            release(createLock);
        }
    }

    /**
     * The creation lock of a sandbox that is stopped, for a remove or a snapshot, once a
     * supervisor that is exiting has let go (see {@link #awaitExitingSupervisor}); null when
     * {@code withoutDirectory} and the sandbox has no directory. Released on every failure, an
     * interrupt among them: a lock left held would refuse the sandbox to every process until
     * this JVM exits.
     *
     * @throws MicrosandboxException {@code busy} when another process holds it or a supervisor runs it
     */
    private static SandboxLock lockStopped(SandboxLayout layout, boolean withoutDirectory,
                                           java.util.function.Supplier<MicrosandboxException> busy) {
        SandboxLock lock = null;
        try {
            boolean directory = Files.isDirectory(layout.dir());
            lock = directory || !withoutDirectory ? SandboxLock.tryAcquire(SandboxLock.createLockFile(layout)) : null;
            if (lock != null) {
                awaitExitingSupervisor(layout);
            }
            if ((lock == null && (directory || !withoutDirectory)) || supervisorAlive(layout)) {
                throw busy.get();
            }
            return lock;
        } catch (IOException e) {
            release(lock);
            throw new MicrosandboxException(ErrorKind.IO, "cannot lock sandbox '" + layout.name() + "': " + e.getMessage(), e);
        } catch (RuntimeException e) {
            release(lock);
            throw e;
        }
    }

    /**
     * A supervisor records the end just before it exits: give one that has recorded it a few
     * seconds to let go of the sandbox, so that removing right after a stop is observed works.
     */
    private static void awaitExitingSupervisor(SandboxLayout layout) {
        long deadline = System.nanoTime() + Sandbox.DEFAULT_KILL_TIMEOUT.toNanos();
        try {
            while (supervisorAlive(layout) && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while removing sandbox '" + layout.name() + "'");
        }
    }

    /** Deletes a sandbox's files, then its rows. */
    private void erase(SandboxStore store, SandboxLayout layout) {
        eraseFiles(layout);
        store.delete(layout.name());
    }

    /** Deletes a sandbox's files, and the home's pre-boot directories whose supervisor died. */
    private void eraseFiles(SandboxLayout layout) {
        layout.deleteFiles();
        SpareSupervisors.removeAbandonedPreBoots(home);
    }

    /** Claims a new sandbox's directory and records it as running; on failure neither is left. */
    private SandboxLock claimAndRecord(SandboxStore store, SandboxLayout layout, SandboxConfig config) {
        SandboxLock createLock = claim(layout);
        try {
            store.insert(layout.name(), config.toJson(), config.labels(), config.ephemeral(), "running", Volumes.mountedBy(config));
        } catch (MicrosandboxException e) {
            discard(layout, createLock);
            throw e;
        }
        return createLock;
    }

    /** How many restores {@link #fork} runs at once. */
    public static final int FORK_PARALLELISM = 4;

    /** The memory checkpoints of this runtime's home, and those at explicit paths. */
    public Checkpoints checkpoints() {
        return new Checkpoints(home);
    }

    /**
     * Starts a sandbox from a memory checkpoint ({@link Sandbox#checkpoint(String)}) without
     * booting: QEMU loads the saved guest, which resumes where it was paused, with its own
     * copy of the checkpoint's upper disk. Before it runs anything, the guest's entropy pool is
     * reseeded from the host and its wall clock set (see {@link #fork}). The configuration is
     * the source's (its persisted form, which a later {@link #start(String)} cold-boots), with
     * the options' hostname, labels, detached, ephemeral and published ports.
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_INCOMPATIBLE} when this runtime's
     *         QEMU, machine, accelerator, kernel, agent or the image's lower disk differ from the
     *         checkpoint's (before QEMU starts; a directory image's disk is the checkpoint's
     *         while the cache still holds it), {@link ErrorKind#SNAPSHOT_IMAGE_MISSING},
     *         {@link ErrorKind#SNAPSHOT_INTEGRITY} for a corrupt upper copy or a guest memory
     *         file that is not the guest's size,
     *         {@link ErrorKind#SANDBOX_ALREADY_EXISTS}, {@link ErrorKind#BOOT_FAILED}
     */
    public Sandbox restore(String name, Checkpoint checkpoint, RestoreOptions options) {
        Sandbox.validateName(name);
        Objects.requireNonNull(checkpoint, "checkpoint");
        Objects.requireNonNull(options, "options");
        String what = "checkpoint '" + checkpoint.name() + "'";
        String uncapturable = Checkpoints.uncapturable(checkpoint.config());
        if (uncapturable != null) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, what + " records a sandbox that " + uncapturable
                    + ": no checkpoint can have been taken of it, so its manifest was altered");
        }
        // its files stay the ones this restore reads, to its end: a remove (and so a new
        // checkpoint of the name) is refused meanwhile
        try (SandboxLock pin = Checkpoints.pinForRestore(checkpoint)) {
            return restorePinned(name, checkpoint, options, what);
        }
    }

    private Sandbox restorePinned(String name, Checkpoint checkpoint, RestoreOptions options, String what) {
        Snapshots.checkImage(home, what, checkpoint.image(), checkpoint.imageDigest());
        SandboxConfig.Builder builder = checkpoint.config().toBuilder().detached(options.detached()).ephemeral(options.ephemeral())
                .labels(options.labels()).replaceTimeout(null);
        if (options.hostname() != null) {
            builder.hostname(options.hostname());
        }
        if (options.portBindings() != null) {
            builder.withoutPorts().portBindings(options.portBindings());
        }
        SandboxConfig config = builder.build().withSecretValues(options.secretValues(), what);
        SandboxStore store = store();
        if (taken(store, name)) {
            throw alreadyExists(name);
        }
        SandboxLayout layout = SandboxLayout.of(home, name);
        SandboxLock createLock = claimAndRecord(store, layout, config);
        try {
            Snapshots.materialize(home, what, checkpoint.upperDisk(), checkpoint.upperDigest(), checkpoint.imageDigest(), layout);
            Map<String, Object> restore = new java.util.LinkedHashMap<>();
            restore.put("ram_file", checkpoint.ramFile().toString());
            restore.put("memory_uri", io.microsandbox.runtime.supervisor.MemoryCheckpoint.incoming(checkpoint.memoryFile()));
            // for a spare to start the next restore of this checkpoint ahead (PrebootShape.Restore)
            restore.put("upper_file", checkpoint.upperDisk().toString());
            if (checkpoint.upperDigest() != null) {
                restore.put("upper_digest", checkpoint.upperDigest());
            }
            if (options.hostname() != null) {
                restore.put("hostname", options.hostname());
            }
            return boot(layout, config, false, createLock, checkpointRoot(home, checkpoint), spec -> {
                checkpoints().checkCompatible(checkpoint, spec.vmmArgv());
                List<String> argv = new ArrayList<>(spec.vmmArgv());
                // the supervisor fills the guest's memory from ram.bin, then starts the load
                argv.add("-incoming");
                argv.add("defer");
                return new SupervisorSpec(spec.name(), argv, spec.sandboxDir(), spec.runDir(), spec.configure(), spec.bootTimeoutMs(),
                        spec.detached(), spec.home(), spec.ephemeral(), spec.idleTimeoutMs(), spec.cacheReclaimAfterMs(), spec.maxDurationMs(), restore);
            });
        } catch (RuntimeException e) {
            forgetFailedCreation(store, layout, createLock, e);
            throw e;
        }
    }

    /**
     * The lower disk a checkpoint of a directory image was taken over, while it is still in the
     * cache: its guest must see that disk whatever the directory holds now, and finding it
     * spares walking the whole tree. Null for an OCI image (found by its pinned digest), a disk
     * no longer there or a path that is not a disk of this home's cache (the image is then
     * resolved, and checked against the checkpoint, again).
     */
    private static io.microsandbox.image.ImageRoots.Root checkpointRoot(Path home, Checkpoint checkpoint) {
        Path lower = checkpoint.imageDigest() == null ? io.microsandbox.runtime.vmm.VmIdentity.lowerDisk(checkpoint.vm()) : null;
        return lower == null ? null : io.microsandbox.image.ImageRoots.builtDirectoryImage(home, lower);
    }

    /** {@link #restore(String, Checkpoint, RestoreOptions)} of a checkpoint by bare name or path, with default options. */
    public Sandbox restore(String name, String checkpointNameOrPath) {
        return restore(name, checkpoints().get(checkpointNameOrPath), RestoreOptions.defaults());
    }

    /**
     * Starts {@code count} sandboxes from one checkpoint, named {@code namePrefix-1} to
     * {@code namePrefix-count}, each with its own upper disk, up to {@link #FORK_PARALLELISM} at
     * a time: what a pool refills from instead of cold boots. Each restored guest gets its own entropy (its kernel's random pool is
     * reseeded from the host, so {@code /dev/urandom} and {@code getrandom} differ between
     * forks) and the current wall clock. What the kernel cannot know stays shared: random
     * state a process drew before the checkpoint (a seeded PRNG, UUID generators, TLS session
     * keys), its own idea of time elapsed, and open network connections; restart or re-seed
     * those in the guest. If one restore fails, those already started are killed and removed.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_ARGUMENT} for a count below 1, no
     *         prefix, or more than one fork publishing ports (the checkpoint's, unless
     *         {@link RestoreOptions.Builder#portBindings} replaces them): a host port can be
     *         published once; else as {@link #restore(String, Checkpoint, RestoreOptions)}
     */
    public List<Sandbox> fork(Checkpoint checkpoint, String namePrefix, int count, RestoreOptions options) {
        if (count < 1) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "fork needs a count of at least 1, got " + count);
        }
        Objects.requireNonNull(checkpoint, "checkpoint");
        Objects.requireNonNull(options, "options");
        if (namePrefix == null || namePrefix.isEmpty()) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "fork needs a name prefix");
        }
        List<PortBinding> published = options.portBindings() != null ? options.portBindings() : checkpoint.config().ports();
        if (count > 1 && !published.isEmpty()) {
            // the second restore would fail on the first's port, after booting, and take all down with it
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "a fork of " + count + " from checkpoint '" + checkpoint.name()
                    + "' would publish host port(s) " + published.stream().map(p -> p.bindAddress() + ":" + p.hostPort() + "/"
                    + p.protocol().name().toLowerCase(java.util.Locale.ROOT)).collect(java.util.stream.Collectors.joining(", "))
                    + " " + count + " times; fork with RestoreOptions.builder().portBindings(List.of()), or restore one at a time"
                    + " with ports of its own");
        }
        // for the whole fork, not restore by restore: a remove and a new checkpoint of the name
        // between two of them would give the later ones other files than the earlier ones
        try (SandboxLock pin = Checkpoints.pinForRestore(checkpoint)) {
            return forkPinned(checkpoint, namePrefix, count, options);
        }
    }

    private List<Sandbox> forkPinned(Checkpoint checkpoint, String namePrefix, int count, RestoreOptions options) {
        List<Sandbox> started = new ArrayList<>();
        RuntimeException failure = null;
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(Math.min(count, FORK_PARALLELISM), r -> {
            Thread t = new Thread(r, "msb-fork");
            t.setDaemon(true);
            return t;
        });
        boolean interrupted = false;
        try {
            List<java.util.concurrent.Future<Sandbox>> restores = new ArrayList<>();
            for (int i = 1; i <= count; i++) {
                String name = namePrefix + "-" + i;
                restores.add(pool.submit(() -> restore(name, checkpoint, options)));
            }
            // every restore is collected, even after an interrupt: each is bounded by its boot timeout
            for (java.util.concurrent.Future<Sandbox> restore : restores) {
                while (true) {
                    try {
                        started.add(restore.get());
                        break;
                    } catch (java.util.concurrent.ExecutionException e) {
                        RuntimeException cause = e.getCause() instanceof RuntimeException r ? r
                                : new MicrosandboxException(ErrorKind.INTERNAL, "restore failed: " + e.getCause(), e.getCause());
                        if (failure == null) {
                            failure = cause;
                        } else {
                            failure.addSuppressed(cause);
                        }
                        break;
                    } catch (InterruptedException e) {
                        interrupted = true;
                    }
                }
            }
        } finally {
            pool.shutdown();
        }
        try {
            if (failure == null) {
                return started;
            }
            // the interrupt is put back after this: with it set, each kill would fail at once
            for (Sandbox sb : started) {
                try {
                    sb.kill();
                    if (!options.ephemeral()) {
                        remove(sb.name());
                    }
                } catch (RuntimeException cleanup) {
                    failure.addSuppressed(cleanup);
                    try {
                        sb.close(); // stops it when the kill could not: no fork is left running unseen
                    } catch (RuntimeException closing) {
                        failure.addSuppressed(closing);
                    }
                }
            }
            throw failure;
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** The disk snapshots of this runtime's home, and those at explicit paths. */
    public Snapshots snapshots() {
        return new Snapshots(home);
    }

    /**
     * Snapshots a stopped sandbox into the new directory {@code dir}, holding its creation
     * lock so that it cannot start meanwhile.
     */
    Snapshot snapshot(String name, Path dir, SnapshotOptions options) {
        SandboxHandle handle = get(name);
        if (!handle.status().isTerminal()) {
            throw snapshotRunning(name, handle.status().wireName());
        }
        SandboxLayout layout = SandboxLayout.of(home, name);
        SandboxLock createLock = lockStopped(layout, false, () -> snapshotRunning(name, "being started or run by another process"));
        try {
            return snapshots().take(layout, handle.config(), dir, options);
        } finally {
            release(createLock);
        }
    }

    private static MicrosandboxException snapshotRunning(String name, String state) {
        return new MicrosandboxException(ErrorKind.SNAPSHOT_SANDBOX_RUNNING, "sandbox '" + name + "' is " + state
                + "; a disk snapshot needs it stopped (a checkpoint captures a running one)");
    }

    /** The images cached under this runtime's home: pull ahead, list, inspect, remove, prune. */
    public Images images() {
        return Images.at(home);
    }

    /** The named volumes of this runtime's home: create, get, list, remove. */
    public Volumes volumes() {
        return Volumes.at(home);
    }

    /**
     * Metrics of every running sandbox of this runtime, by name, from their supervisors' latest
     * samples ({@link SandboxHandle#metrics()}: no connection, nothing asked of the guests, so a
     * monitor polling them never stands in the way of a checkpoint), or over a connection for
     * one without a fresh sample (started in the last second). A sandbox whose figures cannot be
     * had is left out rather than failing the whole map: one that ended meanwhile, or whose
     * supervisor does not answer; {@link SandboxHandle#metrics()} on it says why.
     */
    public Map<String, Metrics> allMetrics() {
        Map<String, Metrics> all = new java.util.TreeMap<>();
        for (SandboxHandle handle : list()) {
            if (handle.status() != SandboxStatus.RUNNING && handle.status() != SandboxStatus.DRAINING) {
                continue;
            }
            try {
                all.put(handle.name(), sampledOrAsked(handle));
            } catch (MicrosandboxException e) {
                // it stopped since the listing, or cannot answer: see the javadoc
            }
        }
        return all;
    }

    private Metrics sampledOrAsked(SandboxHandle handle) {
        try {
            return handle.metrics();
        } catch (MicrosandboxException e) {
            if (e.kind() != ErrorKind.METRICS_UNAVAILABLE) {
                throw e;
            }
        }
        Sandbox sb = connect(handle.name());
        try {
            return sb.metrics();
        } finally {
            sb.detach();
        }
    }

    /**
     * Makes sure this runtime can boot sandboxes: unpacks the guest kernel of the
     * {@code microsandbox-kernel} jar under the home, or, when Debian's kernel is selected
     * ({@code -Dmicrosandbox.kernel=debian}) and missing, installs it (Debian's
     * {@code linux-image-amd64} through {@code apt-get download}, which needs the apt package
     * lists; minutes on first use), and checks that QEMU is there. A kernel directory named with {@link Builder#kernelDir(Path)}
     * is only checked, never installed into. Idempotent.
     *
     * @throws MicrosandboxException {@link ErrorKind#BOOT_FAILED} naming what is missing
     */
    public void ensureInstalled() {
        SandboxPreparer.findQemu(qemu);
        if (kernelDir != null) {
            KernelBundle.locate(home, kernelDir);
            return;
        }
        try {
            KernelBundle.locate(home);
        } catch (MicrosandboxException missing) {
            if (!KernelBundle.debianSelected()) {
                throw missing;
            }
            KernelBundle.install(home);
        }
    }

    /** Whether QEMU is found and the guest kernel is present; checks files only, changes nothing. */
    public boolean isInstalled() {
        return describeInstallProblem() == null;
    }

    /**
     * What keeps this runtime from booting sandboxes, with the command that fixes it: a missing
     * QEMU ({@code scripts/setup.sh} installs it), a missing guest kernel
     * ({@link #ensureInstalled()} or {@code scripts/setup.sh} installs it); null when both are
     * there. Checks files only, changes nothing.
     */
    public String describeInstallProblem() {
        List<String> problems = new ArrayList<>();
        try {
            SandboxPreparer.findQemu(qemu);
        } catch (MicrosandboxException e) {
            problems.add(e.getMessage());
        }
        String kernel = KernelBundle.problem(home, kernelDir);
        if (kernel != null) {
            problems.add(kernel);
        }
        return problems.isEmpty() ? null : String.join("; ", problems);
    }

    /**
     * The accelerator that boots of sandboxes configured with {@link Accelerator#AUTO} use: the
     * configured one, else {@code MSB_ACCEL}, else TCG on a host without a usable
     * {@code /dev/kvm}, else the verdict of a KVM probe boot (run once per host and kernel, and
     * remembered under the home; seconds the first time). Needs QEMU and the kernel for the probe.
     *
     * @throws MicrosandboxException {@link ErrorKind#BOOT_FAILED} when the probe is needed and
     *         QEMU or the kernel is missing
     */
    public Accelerator resolvedAccelerator() {
        Accelerator known = Accelerators.withoutProbe(accelerator);
        if (known != null) {
            return known;
        }
        Accelerator cached = resolved;
        if (cached != null) {
            return cached;
        }
        String qemuBinary = SandboxPreparer.findQemu(qemu);
        KernelBundle kernel = KernelBundle.locate(home, kernelDir);
        try {
            Path agent = RuntimeFiles.extract(home, "msb-agent");
            Path initramfs = kernel.initramfs(agent, agent.getParent());
            cached = Accelerators.resolve(accelerator, qemuBinary, kernel, initramfs, agent.getParent());
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot build the initramfs under " + home + ": " + e.getMessage(), e);
        }
        resolved = cached;
        return cached;
    }

    /**
     * Kills the supervisor of a sandbox that does not answer, and records the end and removes
     * the sockets and run files the supervisor could not.
     */
    void killUnresponsiveSupervisor(String name, long supervisorPid) {
        if (supervisorPid <= 0 || !SupervisorProcess.killUnresponsive(supervisorPid, Sandbox.DEFAULT_KILL_TIMEOUT)) {
            throw new MicrosandboxException(ErrorKind.INTERNAL, "the supervisor of sandbox '" + name
                    + "' (pid " + supervisorPid + ") does not answer and could not be killed");
        }
        SandboxLayout layout = layout(name);
        // under both of its locks: a new run of the sandbox, started meanwhile, keeps its record and files
        try (SandboxLock supervisorLock = SandboxLock.tryAcquireExisting(SandboxLock.supervisorLockFile(layout));
             SandboxLock createLock = SandboxLock.tryAcquire(SandboxLock.createLockFile(layout))) {
            if (supervisorLock != null && createLock != null) {
                store().finishRun(name, "stopped", null, io.microsandbox.runtime.Posix.SIGKILL, "signal", "client");
                SandboxPreparer.deleteTree(layout.runDir());
            }
        } catch (IOException e) {
            // the sandbox directory is gone (removed meanwhile): nothing of this run is left to record or remove
        }
    }

    /**
     * The database of this runtime. The first runtime of the JVM that uses its home also
     * becomes the place of the JVM's own native libraries ({@link RuntimeFiles#nativeHome()}).
     */
    private SandboxStore store() {
        RuntimeFiles.preferNativeHome(home);
        return SandboxStore.open(home);
    }

    /** The layout of a sandbox of this runtime. */
    SandboxLayout layout(String name) {
        return SandboxLayout.of(home, name);
    }

    /**
     * Claims a new sandbox's directory, its creation lock held from the moment it appears (see
     * {@link ClaimedDirectory#claim}), so two creators can never both own it. A directory there
     * without a database row (the caller checked) that nobody owns is what a crashed creation
     * left: it is cleared under its own lock first.
     */
    static SandboxLock claim(SandboxLayout layout) {
        try {
            Files.createDirectories(layout.dir().getParent());
            for (int attempt = 0; attempt < 3; attempt++) {
                try {
                    return ClaimedDirectory.claim(layout.dir(), SandboxLock.CREATE_LOCK);
                } catch (java.nio.file.FileAlreadyExistsException e) {
                    if (!clearedAbandoned(layout)) {
                        throw alreadyExists(layout.name());
                    }
                }
            }
            throw alreadyExists(layout.name());
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot create the state directory " + layout.dir() + ": " + e.getMessage(), e);
        }
    }

    /** Deletes a sandbox directory that nobody owns, under its creation lock; false when somebody owns it. */
    private static boolean clearedAbandoned(SandboxLayout layout) throws IOException {
        Path lockFile = SandboxLock.createLockFile(layout);
        SandboxLock lock;
        try {
            lock = SandboxLock.tryAcquire(lockFile);
        } catch (java.nio.file.NoSuchFileException e) {
            return true; // gone meanwhile
        }
        if (lock == null) {
            return false;
        }
        try (lock) {
            if (!lock.isOn(lockFile)) {
                return true; // deleted or replaced meanwhile: look again
            }
            if (SandboxLock.isHeld(SandboxLock.supervisorLockFile(layout))) {
                return false;
            }
            layout.deleteFiles();
            return true;
        }
    }

    private static MicrosandboxException alreadyExists(String name) {
        return new MicrosandboxException(ErrorKind.SANDBOX_ALREADY_EXISTS, "a sandbox named '" + name
                + "' already exists; remove it or create with SandboxConfig.builder().replace()");
    }

    /**
     * Removes everything a failed create left: disks, logs, sockets; under its lock until the
     * directory has left its name, so that a new creator's directory is never the one deleted.
     */
    private static void discard(SandboxLayout layout, SandboxLock lock) {
        try {
            layout.deleteFiles();
        } finally {
            release(lock);
        }
    }

    private static void release(SandboxLock lock) {
        if (lock != null) {
            lock.close();
        }
    }

    @Override
    public String toString() {
        return "Microsandbox[" + home + (qemu != null ? ", qemu=" + qemu : "") + (kernelDir != null ? ", kernel=" + kernelDir : "")
                + ", " + accelerator.name().toLowerCase(java.util.Locale.ROOT) + "]";
    }
}

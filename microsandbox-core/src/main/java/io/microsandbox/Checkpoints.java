package io.microsandbox;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxLock;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.supervisor.SupervisorSpec;
import io.microsandbox.runtime.vmm.VmIdentity;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.Stream;

/**
 * The memory checkpoints of a home ({@code <home>/checkpoints/<name>/}) and those at explicit
 * paths: get, list, remove. From {@link Microsandbox#checkpoints()}; taken with
 * {@link Sandbox#checkpoint(String)}, restored with {@link Microsandbox#restore(String, Checkpoint, RestoreOptions)}.
 */
public final class Checkpoints {
    /** How long the supervisor may take to save a guest (memory, device state, upper copy). */
    static final long SAVE_TIMEOUT_MS = 120_000;

    private final Path home;

    Checkpoints(Path home) {
        this.home = home;
    }

    /** The directory of checkpoints with bare names. */
    public Path directory() {
        return home.resolve("checkpoints");
    }

    /**
     * The checkpoint with this bare name, or at this path (anything holding a '/').
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_NOT_FOUND} when there is none
     */
    public Checkpoint get(String nameOrPath) {
        return SnapshotDirectories.get(locate(nameOrPath), Checkpoint.MANIFEST_FILE, "checkpoint", nameOrPath, Checkpoint::parse);
    }

    /** Every checkpoint with a bare name, newest first; unfinished ones are left out. */
    public List<Checkpoint> list() {
        return SnapshotDirectories.list(directory(), Checkpoint.MANIFEST_FILE, "checkpoint", Checkpoint::parse, Checkpoint::createdAt);
    }

    /**
     * Deletes a checkpoint, or an unfinished one whose writer died; sandboxes restored from it
     * have their own upper copy and guest memory.
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_NOT_FOUND} when there is none, or
     *         when it is still being written, or a restore is reading it
     */
    public void remove(String nameOrPath) {
        SnapshotDirectories.remove(locate(nameOrPath), Checkpoint.MANIFEST_FILE, "checkpoint", nameOrPath);
    }

    /**
     * Deletes this checkpoint and nothing else: where its directory now holds another one (removed
     * and taken again under the name since {@code checkpoint} was read), that one stays. For
     * callers that take and drop a checkpoint of one name over and over, such as a pool.
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_NOT_FOUND} when it is gone or was
     *         taken again, or when a restore is reading it
     */
    public void remove(Checkpoint checkpoint) {
        SnapshotDirectories.remove(checkpoint.path(), Checkpoint.MANIFEST_FILE, "checkpoint", checkpoint.name(), checkpoint.digest());
    }

    /** A bare name under {@link #directory()}, or a path. */
    Path locate(String nameOrPath) {
        return Snapshots.locateIn(directory(), nameOrPath, "checkpoint");
    }

    /**
     * What in {@code config} a checkpoint cannot capture, said of the sandbox; null when nothing.
     * A restore refuses a checkpoint whose recorded configuration has any of it: no checkpoint
     * can have been taken of such a sandbox, so its manifest was written by other means, and
     * would hand the restored guest host directories or disks.
     */
    static String uncapturable(SandboxConfig config) {
        if (config.imageDisk() != null) {
            return "boots from a disk image (imageDisk), whose overlay a checkpoint does not capture";
        }
        List<String> hostStorage = config.mounts().entrySet().stream()
                .filter(e -> e.getValue().kind() != Mount.Kind.TMPFS).map(Map.Entry::getKey).toList();
        // QEMU refuses to migrate a mounted 9p share, and a disk volume is not copied: every
        // restore would open the same one
        return hostStorage.isEmpty() ? null : "mounts host storage at " + hostStorage
                + ", which a checkpoint cannot capture; only tmpfs mounts can be checkpointed";
    }

    /**
     * Has the supervisor of a running sandbox save it into the new directory {@code dir}, and
     * writes the manifest once it has.
     *
     * @param runningQemu the version of the QEMU running the sandbox, as its supervisor read it
     *        ({@link RuntimeVersion#qemu()}); null when unknown
     * @param supervisor sends {@code sup.checkpoint} with the given payload and returns the answer
     */
    Checkpoint take(SandboxLayout layout, SandboxConfig config, Path dir, boolean resume, String runningQemu,
            Function<ObjectNode, Frame> supervisor) {
        String uncapturable = uncapturable(config);
        if (uncapturable != null) {
            throw new MicrosandboxException(ErrorKind.UNSUPPORTED_OPERATION, "sandbox '" + layout.name() + "' " + uncapturable);
        }
        SandboxLock writing = Snapshots.claimDirectory(home, directory(), dir, "checkpoint", Checkpoint.MANIFEST_FILE);
        try {
            SupervisorSpec spec = SupervisorSpec.read(layout.specFile());
            Map<String, String> vm = VmIdentity.of(spec.vmmArgv());
            String upgraded = upgradedSince(runningQemu, vm.get("qemuVersion"));
            if (upgraded != null) {
                throw new MicrosandboxException(ErrorKind.SNAPSHOT_INCOMPATIBLE, "sandbox '" + layout.name() + "': " + upgraded);
            }
            ObjectNode request = Json.object();
            request.put("memory_file", dir.resolve(Checkpoint.MEMORY_FILE).toString());
            request.put("ram_file", dir.resolve(Checkpoint.RAM_FILE).toString());
            request.put("upper_file", dir.resolve(Checkpoint.UPPER_FILE).toString());
            request.put("writer", io.microsandbox.runtime.CheckpointSaving.leaveToken(dir));
            request.put("resume", resume);
            request.put("timeout_ms", SAVE_TIMEOUT_MS);
            Frame saved = supervisor.apply(request);
            Map<String, Object> fields = new LinkedHashMap<>();
            fields.put("format", Checkpoint.FORMAT);
            fields.put("sourceSandbox", layout.name());
            fields.put("config", config.toJson());
            fields.put("image", config.image());
            fields.put("imageDigest", Snapshots.pinnedDigest(layout));
            fields.put("memoryBytes", saved.payload().path("memory_bytes").asLong());
            fields.put("ramBytes", saved.payload().path("ram_bytes").asLong());
            fields.put("ramDataBytes", saved.payload().path("ram_data_bytes").asLong());
            fields.put("upperDigest", saved.text("upper_digest"));
            fields.put("pausedMs", saved.payload().path("pause_ms").asLong() + saved.payload().path("migrate_ms").asLong()
                    + saved.payload().path("copy_ms").asLong() + saved.payload().path("resume_ms").asLong());
            fields.put("vm", vm);
            fields.put("createdAt", Instant.now().truncatedTo(ChronoUnit.MILLIS).toString());
            byte[] manifest = Snapshot.canonicalManifest(fields);
            Snapshots.writeManifest(dir.resolve(Checkpoint.MANIFEST_FILE), manifest);
            return Checkpoint.parse(dir, manifest);
        } catch (IOException | RuntimeException e) {
            // out of the way in one step, its lock still held: nobody finds it half deleted; one the
            // supervisor still writes into (its save outlived the wait) is left to a later remove or claim
            try {
                SnapshotDirectories.deleteUnlessSaving(dir);
            } catch (RuntimeException cleanup) {
                e.addSuppressed(cleanup); // the failure that matters is the take's
            }
            if (e instanceof MicrosandboxException m) {
                throw m;
            }
            throw new MicrosandboxException(ErrorKind.IO, "cannot checkpoint sandbox '" + layout.name() + "' to " + dir + ": " + e.getMessage(), e);
        } finally {
            SnapshotDirectories.finished(dir, writing);
        }
    }

    /**
     * A shared hold on {@code checkpoint}'s files for a restore or fork that reads them: a
     * remove, which takes the same lock exclusively, is refused until every one has ended (else
     * a remove and a new checkpoint of the name during a fork could hand later restores the new
     * one's files beside the old one's). Null when the lock cannot be made in a directory this
     * user cannot write: the restore then runs unpinned, once the manifest is found unchanged.
     *
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_NOT_FOUND} while it is being removed,
     *         or once it was removed or taken again since {@code checkpoint} was read
     */
    static SandboxLock pinForRestore(Checkpoint checkpoint) {
        Path lockFile = checkpoint.path().resolve(io.microsandbox.runtime.CheckpointSaving.SAVING_LOCK);
        SandboxLock pin;
        try {
            pin = SandboxLock.tryAcquireShared(lockFile);
        } catch (java.nio.file.NoSuchFileException e) {
            throw replaced(checkpoint);
        } catch (IOException e) {
            // a directory this user cannot write: unpinned, but still the checkpoint that was read
            requireUnchanged(checkpoint);
            return null;
        }
        if (pin == null) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_NOT_FOUND, "checkpoint '" + checkpoint.name() + "' is being removed");
        }
        try {
            // a lock on the file of a directory removed meanwhile holds nothing
            if (!pin.isOn(lockFile)) {
                throw replaced(checkpoint);
            }
            requireUnchanged(checkpoint);
            return pin;
        } catch (RuntimeException e) {
            pin.close();
            throw e;
        }
    }

    /** Fails when the checkpoint at {@code checkpoint}'s path is another one (taken again under the name since it was read), or none. */
    private static void requireUnchanged(Checkpoint checkpoint) {
        Checkpoint now;
        try {
            now = SnapshotDirectories.get(checkpoint.path(), Checkpoint.MANIFEST_FILE, "checkpoint", checkpoint.name(), Checkpoint::parse);
        } catch (MicrosandboxException e) {
            if (e.kind() == ErrorKind.SNAPSHOT_NOT_FOUND) {
                throw replaced(checkpoint);
            }
            throw e;
        }
        if (!now.digest().equals(checkpoint.digest())) {
            throw replaced(checkpoint);
        }
    }

    private static MicrosandboxException replaced(Checkpoint checkpoint) {
        return new MicrosandboxException(ErrorKind.SNAPSHOT_NOT_FOUND, "checkpoint '" + checkpoint.name()
                + "' was removed or taken again since it was read; get it again");
    }

    /**
     * Why a checkpoint of a sandbox that QEMU {@code running} runs cannot be restored by the
     * QEMU installed now, which says {@code installed} for {@code --version} (restores run the
     * installed one, and the checkpoint records it); null when both are the same, or the
     * running one is unknown. QEMU upgraded under a running sandbox (a package update) would
     * otherwise record a version the saved state did not come from.
     */
    static String upgradedSince(String running, String installed) {
        if (running == null || installed == null || installed.endsWith(" " + running)) {
            return null;
        }
        return "QEMU changed since it started: it runs " + running + ", the one installed now says \"" + installed
                + "\", and a restore would run that one; stop and start the sandbox, then take the checkpoint";
    }

    /**
     * Refuses a restore that would not run: another QEMU, machine, accelerator, CPU, memory
     * size, vCPU count, kernel, agent or lower disk than the checkpoint's.
     *
     * @param argv the QEMU command line the restore would run
     * @throws MicrosandboxException {@link ErrorKind#SNAPSHOT_INCOMPATIBLE} naming the first difference,
     *         also for a checkpoint of an earlier format; {@link ErrorKind#SNAPSHOT_INTEGRITY} when the
     *         memory or guest memory file is missing or not the size recorded, or the guest
     *         memory file is not the guest's memory size
     */
    void checkCompatible(Checkpoint checkpoint, List<String> argv) {
        if (checkpoint.format() < Checkpoint.FORMAT) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INCOMPATIBLE, "checkpoint '" + checkpoint.name()
                    + "' was taken by an earlier microsandbox (format " + checkpoint.format() + ", this one restores "
                    + Checkpoint.FORMAT + "): take it again");
        }
        // cheap checks on the hot path: QEMU itself refuses a stream that does not parse
        requireSize(checkpoint, "memory file", checkpoint.memoryFile(), checkpoint.memoryBytes());
        requireSize(checkpoint, "guest memory file", checkpoint.ramFile(), checkpoint.ramBytes());
        requireOwnFile(checkpoint, "upper disk", checkpoint.upperDisk());
        String mismatch;
        Map<String, String> actual;
        try {
            actual = VmIdentity.of(argv);
            mismatch = VmIdentity.mismatch(checkpoint.vm(), actual);
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot identify the VM to restore checkpoint '" + checkpoint.name() + "' into: " + e.getMessage(), e);
        }
        if (mismatch != null) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INCOMPATIBLE, "checkpoint '" + checkpoint.name()
                    + "' cannot be restored by this runtime: " + mismatch);
        }
        // the supervisor sizes the new guest's memory by this file: never beyond the guest's own
        long guestBytes = Long.parseLong(actual.get("memoryMib")) << 20;
        if (checkpoint.ramBytes() != guestBytes) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the guest memory file of checkpoint '" + checkpoint.name()
                    + "' has " + checkpoint.ramBytes() + " bytes, the guest has " + guestBytes);
        }
    }

    private static void requireSize(Checkpoint checkpoint, String what, Path file, long recorded) {
        requireOwnFile(checkpoint, what, file);
        long size;
        try {
            size = Files.size(file);
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the " + what + " of checkpoint '" + checkpoint.name()
                    + "' is missing: " + e.getMessage(), e);
        }
        if (size != recorded) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the " + what + " of checkpoint '" + checkpoint.name()
                    + "' has " + size + " bytes, the manifest records " + recorded);
        }
    }

    /** A checkpoint's files are its own: a link could stand for another sandbox's disk, or any host file. */
    private static void requireOwnFile(Checkpoint checkpoint, String what, Path file) {
        if (Files.isSymbolicLink(file)) {
            throw new MicrosandboxException(ErrorKind.SNAPSHOT_INTEGRITY, "the " + what + " of checkpoint '" + checkpoint.name()
                    + "' is a symbolic link (" + file + ")");
        }
    }
}

package io.microsandbox.runtime.supervisor;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.SparseFiles;
import io.microsandbox.runtime.vmm.QmpClient;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

/**
 * Saves a paused VM: its device state through QEMU's migration into a file, its memory as a
 * sparse copy of the guest's RAM, and a copy of the upper disk taken while the guest cannot
 * write to it; and loads such a checkpoint into a new QEMU started with {@code -incoming defer}.
 *
 * <p>Guest RAM lives in the supervisor's memfd ({@link GuestMemory}), shared with QEMU, and
 * the migration runs with {@code x-ignore-shared}, so the stream leaves it out: migrated, QEMU
 * would read every page to find the zero ones, and reading a hole in a memfd allocates it, so
 * both the source and every restored sandbox would end up holding all of the guest's memory
 * (a restored 512 MiB guest held 360 MiB instead of 130, and loading took 0.45 s). The
 * supervisor copies the pages that hold data from the memfd into the checkpoint, and back into
 * a new sandbox's memfd while its QEMU starts (see {@link GuestMemory#fill}).
 *
 * <p>QEMU 7.2 has no {@code file:} migration target, and Java cannot pass QEMU a descriptor
 * over QMP ({@code getfd} needs SCM_RIGHTS), so QEMU writes through an {@code exec:} command.
 * QEMU 7.2 ends that command with SIGTERM and SIGKILL 10 ms apart as soon as the migration
 * completes, which could cut a {@code cat} still writing its last buffer: so the shell QEMU
 * starts hands the pipe to a background {@code cat} and exits at once, and the {@code cat}
 * renames its file into place when it has written everything, which this waits for. The VM is
 * left paused; the caller resumes or stops it.
 */
public final class MemoryCheckpoint {
    private static final Duration QMP_TIMEOUT = Duration.ofSeconds(10);
    /**
     * QEMU 7.2 throttles migration to 32 MiB/s by default, meant for a live migration over a
     * network; a paused guest into a local file should go as fast as the disk takes it.
     */
    private static final long MAX_BANDWIDTH = 64L << 30;
    private static final long POLL_MS = 2;

    private MemoryCheckpoint() {
    }

    /**
     * Pauses the VM, migrates its device state into {@code memoryFile} (waiting at most
     * {@code timeout}), copies the guest's memory ({@code guestMemory}) to
     * {@code ramFile} and {@code upper} to {@code upperCopy}. On failure the migration is
     * cancelled; the VM stays paused either way.
     *
     * @return {@code memory_bytes}, {@code ram_bytes}, {@code ram_data_bytes}, {@code upper_digest},
     *         {@code pause_ms}, {@code migrate_ms}, {@code copy_ms}
     */
    static ObjectNode take(Path qmp, Path guestMemory, Path memoryFile, Path ramFile, Path upper, Path upperCopy, Duration timeout)
            throws IOException {
        long start = System.nanoTime();
        long paused = 0;
        boolean migrating = false;
        // one connection for the whole save: QEMU serves one monitor client at a time, so
        // another (the metrics sampler) waits the save out rather than slipping in between
        try (QmpClient.Session session = QmpClient.Session.open(qmp, QMP_TIMEOUT)) {
            session.execute("stop", null, QMP_TIMEOUT);
            paused = System.nanoTime();
            leaveGuestMemoryOut(session);
            session.execute("migrate-set-parameters", Json.object().put("max-bandwidth", MAX_BANDWIDTH), QMP_TIMEOUT);
            Files.deleteIfExists(failedFile(memoryFile));
            migrating = true;
            session.execute("migrate", Json.object().put("uri", "exec:" + saveCommand(memoryFile)), QMP_TIMEOUT);
            awaitMigration(session, memoryFile, timeout);
        } catch (IOException | RuntimeException e) {
            if (migrating) {
                // a migration left running (QMP timed out, say) would finish later and stop the
                // guest the caller resumed; on a new connection, as the session's may be what failed
                cancel(qmp);
            }
            throw e;
        }
        long migrated = System.nanoTime();
        // paused, and the devices stopped by the migration: nothing writes guest memory now
        SparseFiles.copyUnhashed(guestMemory, ramFile);
        // the migration flushed and released the disks: what the file holds is what the guest wrote
        String upperDigest = SparseFiles.copy(upper, upperCopy);
        long copied = System.nanoTime();
        ObjectNode result = Json.object();
        result.put("memory_bytes", Files.size(memoryFile));
        result.put("ram_bytes", Files.size(ramFile));
        result.put("ram_data_bytes", io.microsandbox.runtime.Posix.allocatedBytes(ramFile));
        result.put("upper_digest", upperDigest);
        result.put("pause_ms", (paused - start) / 1_000_000);
        result.put("migrate_ms", (migrated - paused) / 1_000_000);
        result.put("copy_ms", (copied - migrated) / 1_000_000);
        return result;
    }

    /**
     * Starts loading the device state from {@code memoryUri} ({@link #incoming}) into a QEMU
     * started with {@code -incoming defer} whose guest memory already holds the checkpoint's;
     * {@link #awaitRunning} waits for the load to end.
     */
    public static void load(QmpClient.Session qmp, String memoryUri) throws IOException {
        leaveGuestMemoryOut(qmp);
        qmp.execute("migrate-incoming", Json.object().put("uri", memoryUri), QMP_TIMEOUT);
    }

    /**
     * Waits for QEMU to finish loading an incoming checkpoint, then runs the guest: QEMU takes
     * the run state the source had when saved, which is paused (it was stopped for a consistent
     * disk copy). The clock sent to the guest next must not age while QEMU is still loading.
     * Gives up once {@code abandoned} says so (the boot's watchdog fired, or QEMU exited).
     */
    public static void awaitRunning(QmpClient.Session qmp, java.util.function.BooleanSupplier abandoned) throws IOException {
        String status;
        while ((status = qmp.execute("query-status", null, QMP_TIMEOUT).path("status").asText()).equals("inmigrate")
                || status.equals("prelaunch")) {
            if (abandoned.getAsBoolean()) {
                throw new IOException("QEMU did not run the restored guest");
            }
            pause(POLL_MS, "loading a checkpoint");
        }
        if (status.equals("paused")) {
            qmp.execute("cont", null, QMP_TIMEOUT);
        } else if (!status.equals("running")) {
            throw new IOException("QEMU is in state " + status + " after loading the checkpoint");
        }
    }

    /** The migration stream leaves shared memory (the memfd) out; source and destination must agree. */
    private static void leaveGuestMemoryOut(QmpClient.Session qmp) throws IOException {
        ObjectNode capability = Json.object().put("capability", "x-ignore-shared").put("state", true);
        ObjectNode arguments = Json.object();
        arguments.putArray("capabilities").add(capability);
        qmp.execute("migrate-set-capabilities", arguments, QMP_TIMEOUT);
    }

    /** Waits for QEMU to finish the migration and the background cat to rename its file into place. */
    private static void awaitMigration(QmpClient.Session qmp, Path memoryFile, Duration timeout) throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        String status;
        JsonNode info;
        while (true) {
            info = qmp.execute("query-migrate", null, QMP_TIMEOUT);
            status = info.path("status").asText();
            if (status.equals("completed") || status.equals("failed") || status.equals("cancelled")) {
                break;
            }
            if (System.nanoTime() > deadline) {
                throw new IOException("saving guest memory did not finish within " + timeout + " (status " + status + ")");
            }
            pause(POLL_MS, "saving guest memory");
        }
        if (!status.equals("completed")) {
            throw new IOException("saving guest memory " + status + ": " + info.path("error-desc").asText("no reason given"));
        }
        // the background cat may not even have opened its file yet: QEMU's stream is small enough
        // to sit in the pipe, so the migration can complete first; only its marker says it failed
        Path failed = failedFile(memoryFile);
        while (!Files.exists(memoryFile)) {
            if (Files.exists(failed)) {
                Files.deleteIfExists(failed);
                throw new IOException("writing the saved guest memory to " + memoryFile + " failed (is the disk full?)");
            }
            if (System.nanoTime() > deadline) {
                throw new IOException("the saved guest memory was not complete within " + timeout);
            }
            pause(POLL_MS, "saving guest memory");
        }
    }

    private static Path partialFile(Path memoryFile) {
        return memoryFile.resolveSibling(memoryFile.getFileName() + ".part");
    }

    /** The empty file the save's command makes when its copy failed. */
    static Path failedFile(Path memoryFile) {
        return memoryFile.resolveSibling(memoryFile.getFileName() + ".failed");
    }

    private static void cancel(Path qmp) {
        try {
            QmpClient.execute(qmp, "migrate_cancel", QMP_TIMEOUT);
        } catch (IOException e) {
            SupervisorLog.log("cannot cancel the checkpoint's migration: " + e.getMessage());
        }
    }

    /** Sleeps between two polls; an interrupt ends the wait as an IOException naming what it was {@code during}. */
    static void pause(long millis, String during) throws IOException {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while " + during, e);
        }
    }

    /**
     * The shell command QEMU's {@code exec:} migration writes the stream into: a background
     * {@code cat} into {@code <memoryFile>.part}, renamed to {@code memoryFile} once complete
     * and on disk ({@code sync}: the checkpoint's manifest, written after, must not outlive it);
     * when the copy failed (a full disk) the partial file is removed and an empty
     * {@code <memoryFile>.failed} made, which tells {@link #take} to stop waiting.
     */
    static String saveCommand(Path memoryFile) {
        Path partial = partialFile(memoryFile);
        return "exec 3<&0; (cat <&3 > " + shellQuote(partial) + " && sync " + shellQuote(partial)
                + " && mv " + shellQuote(partial) + " " + shellQuote(memoryFile)
                + " || { rm -f " + shellQuote(partial) + "; : > " + shellQuote(failedFile(memoryFile)) + "; }) &";
    }

    /**
     * QEMU's {@code -incoming} argument that loads a guest saved into {@code memoryFile}. The
     * {@code cat} gets no descriptor 3, the guest's memory that QEMU was handed (the save's
     * command reuses that number for its input, which closes it the same way).
     */
    public static String incoming(Path memoryFile) {
        return "exec:cat " + shellQuote(memoryFile) + " 3<&-";
    }

    /** A path as one word of {@code sh -c}, which QEMU runs the exec: target with. */
    static String shellQuote(Path path) {
        return "'" + path.toString().replace("'", "'\\''") + "'";
    }
}

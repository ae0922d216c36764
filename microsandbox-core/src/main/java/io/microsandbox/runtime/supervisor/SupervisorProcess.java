package io.microsandbox.runtime.supervisor;

import com.fasterxml.jackson.databind.JsonNode;
import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.BoundedLines;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.LogTail;
import io.microsandbox.runtime.agent.Protocol;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * The creator's side of a supervisor: starts it as a child JVM on the same JDK and class
 * path, waits for its boot report, and keeps the write end of its stdin, which tells the
 * supervisor this JVM is alive (and, with a {@code 'D'}, that the sandbox is detached).
 */
public final class SupervisorProcess {
    /**
     * No JIT warm-up work: the supervisor mostly sleeps and copies frames. The heap may grow
     * to the supervisor's memory budget but starts small, with a young generation of 1 MiB
     * (an idle supervisor touches all of it) that grows to at most 8 MiB when a transfer's
     * chunks fill the old generation (a fixed 2 MiB took 1.1 MiB more of every idle supervisor
     * and paused it twice as long during a 64 MiB write and read: 245 against 115 ms);
     * exiting on an OutOfMemoryError (which the budget should make impossible) takes QEMU
     * down by its parent-death signal instead of leaving a half-dead relay. The JDK's class-data sharing archive is mapped (-Xshare:auto);
     * freed native memory (the compiler's arenas after start-up) goes back to the OS every few
     * seconds where the JDK has TrimNativeHeapInterval (17.0.10 and later; older ones ignore it).
     * The class-data archives are mapped where they were dumped to (ArchiveRelocationMode=0;
     * recent 17.0.x builds map them at a random address by default and rewrite their pointers
     * in every process, about 6 MiB of private memory each; README, "The supervisor JVM"), and
     * {@link SupervisorCds} adds an archive of the supervisor's own classes. The JVM's own
     * warnings go to stderr, never into the boot report on stdout. Measured idle (JDK
     * 17.0.15): RSS 64 MiB before, about 59 MiB with these; private memory 39 MiB without the
     * mapping at the dump address, 33 MiB with it, 26 MiB with the application archive, 22 MiB
     * (RSS 52 MiB) once the runtime's JSON stopped starting databind's mapper ({@code runtime.Json}),
     * RSS 50 MiB without Bouncy Castle's jars opened ({@link TlsLibraries}) and 49 MiB with the
     * young generation above; the rest is libjvm and the archives, shared with the other supervisors.
     */
    private static final List<String> JVM_OPTIONS = List.of(
            "-Xms4m", "-XX:NewSize=1m", "-XX:MaxNewSize=8m", "-Xmx" + (Supervisor.HEAP_BUDGET >> 20) + "m", "-XX:+ExitOnOutOfMemoryError", "-Xss256k",
            "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1", "-XX:-UsePerfData", "-Xshare:auto",
            "-XX:+IgnoreUnrecognizedVMOptions", "-XX:+UnlockExperimentalVMOptions", "-XX:TrimNativeHeapInterval=2000",
            "-XX:+UnlockDiagnosticVMOptions", "-XX:ArchiveRelocationMode=0", "-Xlog:disable", "-Xlog:all=warning:stderr");

    /** What starts a line on the creator pipe that asks a spare to pre-boot a VM of the {@link PrebootShape} that follows as JSON. */
    static final String PREBOOT_LINE = "preboot ";
    /** What starts the spec line when the spec's upper disk is a new, empty one (a pre-booted VM may bring its own). */
    static final String EMPTY_UPPER_LINE = "empty-upper ";
    /** The longest line the creator writes to a supervisor. */
    static final int MAX_CREATOR_LINE = 64 * 1024;

    private final Process process;
    private final OutputStream creatorPipe;
    private final long startedAt = System.nanoTime();
    /** Set once the supervisor reported its sandbox ready: only then may its class-data dump become the archive. */
    private volatile boolean booted;

    private SupervisorProcess(Process process) {
        this.process = process;
        this.creatorPipe = process.getOutputStream();
    }

    /** Starts a supervisor JVM for a sandbox under {@code home}; it waits for {@link #boot}. */
    static SupervisorProcess launch(Path home) {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(JVM_OPTIONS);
        SupervisorClassPath.ClassPaths classPaths = SupervisorClassPath.forHome(home);
        SupervisorCds.Plan cds = SupervisorCds.plan(home, classPaths.supervisor());
        cmd.addAll(cds.jvmOptions());
        // measuring and debugging aid: more JVM options, after (so overriding) the defaults
        String extra = System.getProperty("microsandbox.supervisor.jvmOptions", "");
        for (String option : extra.trim().split("\\s+")) {
            if (!option.isEmpty()) {
                cmd.add(option);
            }
        }
        cmd.add("-cp");
        cmd.add(classPaths.supervisor());
        if (!classPaths.tls().isEmpty()) {
            cmd.add("-D" + TlsLibraries.CLASS_PATH_PROPERTY + "=" + classPaths.tls());
        }
        // where the supervisor extracts the JNI library; its database comes with the spec
        cmd.add("-D" + RuntimeFiles.HOME_PROPERTY + "=" + home.toAbsolutePath());
        // the native libraries this JVM extracted (JNI, SQLite's), used as they are
        cmd.addAll(RuntimeFiles.handDownOptions(List.of(io.microsandbox.runtime.Posix.LIBRARY, io.microsandbox.store.SandboxStore.NATIVE_LIBRARY)));
        cmd.add(Supervisor.class.getName());
        try {
            // Until it knows its sandbox it has no log: it says nothing before that.
            Process process = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.DISCARD).start();
            SupervisorProcess started = new SupervisorProcess(process);
            if (cds.training()) {
                SupervisorCds.finishWhenExited(cds, process, () -> started.booted);
            }
            return started;
        } catch (IOException e) {
            SupervisorCds.finish(cds, false);
            throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "cannot start a supervisor JVM: " + e.getMessage(), e);
        }
    }

    /**
     * Hands the supervisor its spec (already written to the layout's spec file) and waits
     * until the guest agent is ready.
     *
     * @throws MicrosandboxException {@link ErrorKind#BOOT_FAILED} with the console tail when the boot fails
     */
    public void boot(SupervisorSpec spec) {
        boot(spec, false);
    }

    /**
     * Like {@link #boot(SupervisorSpec)}; {@code emptyUpper} says that the spec's upper disk
     * is a new, empty one, which a VM this supervisor pre-booted may replace with its own.
     */
    public void boot(SupervisorSpec spec, boolean emptyUpper) {
        SandboxLayout layout = spec.layout();
        try {
            creatorPipe.write(((emptyUpper ? EMPTY_UPPER_LINE : "") + layout.specFile() + "\n").getBytes(StandardCharsets.UTF_8));
            creatorPipe.flush();
        } catch (IOException e) {
            awaitExit(process);
            throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "the supervisor of '" + spec.name()
                    + "' died before booting; its log:\n" + LogTail.of(layout.supervisorLog(), 30), e);
        }
        CompletableFuture<String> line = CompletableFuture.supplyAsync(() -> {
            try {
                // the report carries the guest's ready payload, one frame at most, as JSON
                return BoundedLines.read(new java.io.BufferedInputStream(process.getInputStream()),
                        4 * Protocol.MAX_FRAME_BYTES, "the supervisor");
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }, io.microsandbox.runtime.DedicatedThreads.named("msb-boot-report-" + spec.name()));
        String report;
        try {
            report = line.get(spec.bootTimeoutMs() + Supervisor.FAILED_BOOT_REPORT_MS, TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.ExecutionException e) {
            process.destroyForcibly();
            throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "cannot read the boot report of the supervisor of '"
                    + spec.name() + "': " + Supervisor.causeOf(e) + "; its log:\n" + LogTail.of(layout.supervisorLog(), 30), e);
        } catch (InterruptedException e) {
            process.destroyForcibly();
            // gone before the caller removes the sandbox's files
            awaitExit(process);
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while sandbox '" + spec.name() + "' booted; its supervisor was killed");
        } catch (java.util.concurrent.TimeoutException e) {
            process.destroyForcibly();
            throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "the supervisor of '" + spec.name() + "' did not report within "
                    + (spec.bootTimeoutMs() + Supervisor.FAILED_BOOT_REPORT_MS) / 1000 + " s (the boot timeout and the longest a failed boot's"
                    + " clean-up takes): it hangs and was killed; console:\n" + LogTail.of(layout.consoleLog(), 40)
                    + "\nits log:\n" + LogTail.of(layout.supervisorLog(), 30), e);
        }
        JsonNode result;
        try {
            result = report == null ? null : Json.parse(report);
        } catch (IOException e) {
            result = null;
        }
        if (result == null || !"ready".equals(result.path("status").asText())) {
            awaitExit(process);
            if (result == null) {
                throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "supervisor of '" + spec.name()
                        + "' exited without a boot report; its log:\n" + LogTail.of(layout.supervisorLog(), 30));
            }
            StringBuilder message = new StringBuilder("sandbox '").append(spec.name()).append("' failed to boot: ")
                    .append(result.path("message").asText());
            appendSection(message, "guest console", result.path("console").asText());
            appendSection(message, "VMM output", result.path("vmmLog").asText());
            throw new MicrosandboxException(ErrorKind.fromWireName(result.path("kind").asText()), message.toString());
        }
        booted = true;
    }

    private static void appendSection(StringBuilder message, String title, String text) {
        if (!text.isBlank()) {
            message.append("\n--- ").append(title).append(" (tail) ---\n").append(text);
        }
    }

    /**
     * Waits up to 15 s for the supervisor to exit, killing it after that or at once on an
     * interrupt, and then for the killed one to go (at most 15 s more): its caller removes the
     * sandbox's files next. An interrupt is kept for the caller.
     */
    private static void awaitExit(Process process) {
        boolean interrupted = false;
        try {
            if (!process.waitFor(15, TimeUnit.SECONDS)) {
                process.destroyForcibly();
            }
        } catch (InterruptedException e) {
            interrupted = true;
            process.destroyForcibly();
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        while (process.isAlive() && System.nanoTime() < deadline) {
            try {
                process.waitFor(deadline - System.nanoTime(), TimeUnit.NANOSECONDS);
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    /** How long ago this supervisor JVM was started. */
    Duration age() {
        return Duration.ofNanos(System.nanoTime() - startedAt);
    }

    boolean isAlive() {
        return process.isAlive();
    }

    /**
     * Asks this supervisor, still waiting for its spec, to boot a VM of {@code shape} meanwhile
     * ({@link PreBoot}); a shape too long for one creator line is not asked for. A supervisor
     * that is gone is found out by the creation that takes it.
     */
    void preboot(PrebootShape shape) {
        try {
            byte[] line = (PREBOOT_LINE + shape.toJson() + "\n").getBytes(StandardCharsets.UTF_8);
            if (line.length <= MAX_CREATOR_LINE) {
                creatorPipe.write(line);
                creatorPipe.flush();
            }
        } catch (IOException e) {
            // gone: acquire() does not hand out a spare that is not alive
        }
    }

    /** Tells the supervisor the sandbox outlives this JVM. */
    public void detach() {
        try {
            creatorPipe.write('D');
            creatorPipe.flush();
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.SANDBOX_NOT_RUNNING, "cannot detach: the supervisor is gone (" + e.getMessage() + ")", e);
        }
    }

    /**
     * Releases the creator pipe: an attached sandbox then stops, and a supervisor still
     * waiting for its spec exits.
     */
    public void release() {
        try {
            creatorPipe.close();
        } catch (IOException ignored) {
            // the supervisor is already gone
        }
    }

    /**
     * Kills a supervisor that does not answer, the last step of a kill: its VMM dies with it
     * (parent-death signal). Only a process that runs this supervisor class is touched, so a
     * pid that was reused by something else is left alone.
     *
     * @return true when the supervisor is gone
     */
    public static boolean killUnresponsive(long pid, Duration wait) {
        var process = ProcessHandle.of(pid).orElse(null);
        if (process == null) {
            return true;
        }
        boolean ours = process.info().commandLine().map(cmd -> cmd.contains(Supervisor.class.getName())).orElse(false);
        if (!ours) {
            return false;
        }
        process.destroyForcibly();
        try {
            process.onExit().get(wait.toMillis(), TimeUnit.MILLISECONDS);
            return true;
        } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
            return !process.isAlive();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return !process.isAlive();
        }
    }

    /** Abandons a supervisor that was never booted and waits for it to go. */
    public void abandon() {
        release();
        awaitExit(process);
    }
}

package io.microsandbox.runtime.supervisor;

import io.microsandbox.runtime.OwnerOnly;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BooleanSupplier;

/**
 * The supervisor's application class-data archive: the classes a supervisor loads (Jackson's
 * parser and tree nodes, sqlite-jdbc, its own, and the JDK's that its archive lacks; about
 * 700), stored once per home in
 * {@code <home>/runtime/cds/supervisor-<key>.jsa} and mapped read-only by every supervisor
 * after. Their metadata is then shared among the supervisors instead of built in each one's
 * metaspace (measured: about 7 MiB less private memory per supervisor).
 *
 * <p>The key covers the JDK (home and build) and the class path (each jar's path, size and
 * modification time), so a changed JDK or jar gets a new archive; the JVM checks the same
 * again when it maps one, and with {@code -Xshare:auto} runs without it when anything differs.
 * JDK 17 dumps no archive for a class path with directories (as in tests and {@code mvn}
 * runs), so there is none then.
 *
 * <p>While no archive exists, one supervisor at a time per home and key in this JVM runs with
 * {@code -XX:ArchiveClassesAtExit}: the JVM writes the classes it loaded when it exits,
 * to a file of its own; that file becomes the archive (by an atomic rename) only when the
 * supervisor had booted its sandbox (so the archive holds the serving path's classes, not
 * just a spare's), exited normally rather than by a signal, and a JVM started on the dump
 * maps it and finds its checksums right: a dump cut short would crash every supervisor.
 */
final class SupervisorCds {
    private static final String PREFIX = "supervisor-";
    private static final String SUFFIX = ".jsa";
    private static final String PART = ".part";
    /** A dump takes seconds; a part file this old was left by a JVM that died while writing it. */
    private static final Duration STALE_PART = Duration.ofMinutes(10);
    /** The check of a dump starts a JVM that maps it and exits. */
    private static final Duration CHECK_TIMEOUT = Duration.ofSeconds(60);
    /** Archives (one per home and key) whose training supervisor runs now, started by this JVM. */
    private static final Set<Path> TRAINING = ConcurrentHashMap.newKeySet();
    /** The finishers of training runs not finished yet, by part file. */
    private static final Map<Path, Runnable> PENDING = new ConcurrentHashMap<>();

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(() -> PENDING.values().forEach(Runnable::run), "msb-supervisor-cds"));
    }

    /** What a supervisor launch adds for class-data sharing, and how to finish a training run. */
    record Plan(List<String> jvmOptions, Path part, Path archive, String classPath) {
        /** A plan that adds nothing: the supervisor runs on the JDK's own archive. */
        static final Plan NONE = new Plan(List.of(), null, null, null);

        boolean training() {
            return part != null;
        }
    }

    private SupervisorCds() {
    }

    /**
     * The JVM options for a supervisor started with {@code classPath} for {@code home}: the
     * archive when there is one, else a training run when none runs from this JVM, else nothing.
     * Never fails: without an archive a supervisor only starts a little slower and uses more memory.
     */
    static Plan plan(Path home, String classPath) {
        try {
            String key = key(classPath);
            if (key == null) {
                return Plan.NONE;
            }
            Path dir = home.toAbsolutePath().normalize().resolve("runtime").resolve("cds");
            Path archive = dir.resolve(PREFIX + key + SUFFIX);
            if (Files.isRegularFile(archive, LinkOption.NOFOLLOW_LINKS)) {
                return new Plan(List.of("-XX:SharedArchiveFile=" + archive), null, archive, classPath);
            }
            OwnerOnly.directories(home.toAbsolutePath().normalize(), dir);
            removeStaleParts(dir);
            if (!TRAINING.add(archive)) {
                return Plan.NONE;
            }
            Path part = dir.resolve(PREFIX + key + "-" + UUID.randomUUID() + SUFFIX + PART);
            // with checksums, so that the check before it becomes the archive reads every byte
            return new Plan(List.of("-XX:ArchiveClassesAtExit=" + part, "-XX:+VerifySharedSpaces"), part, archive, classPath);
        } catch (IOException | RuntimeException e) {
            return Plan.NONE;
        }
    }

    /**
     * Ends the training run of {@code plan} once {@code process} has exited: its dump becomes
     * the archive when {@code booted} says the supervisor had booted its sandbox and it exited
     * normally. Also done by a shutdown hook for a supervisor that exited before this JVM
     * ends: an application that exits right after closing its sandbox would otherwise end
     * before the exit notification runs, and no archive would ever be made.
     */
    static void finishWhenExited(Plan plan, Process process, BooleanSupplier booted) {
        AtomicBoolean done = new AtomicBoolean();
        Runnable finisher = () -> {
            // the shutdown hook waits here for a finish under way, which the JVM's halt would cut short
            synchronized (done) {
                if (!process.isAlive() && !done.getAndSet(true)) {
                    // exit values from 128 up: killed by a signal, maybe in the middle of the dump
                    finish(plan, booted.getAsBoolean() && process.exitValue() < 128);
                    PENDING.remove(plan.part());
                }
            }
        };
        PENDING.put(plan.part(), finisher);
        process.onExit().thenRun(finisher);
    }

    /**
     * Ends a training run: its dump becomes the archive when {@code usable}, else it is
     * deleted. Archives of other keys in the same directory (an older JDK or jars) go too.
     */
    static void finish(Plan plan, boolean usable) {
        if (!plan.training()) {
            return;
        }
        try {
            if (usable && Files.isRegularFile(plan.part(), LinkOption.NOFOLLOW_LINKS) && Files.size(plan.part()) > 0
                    && loads(plan)) {
                OwnerOnly.restrictFile(plan.part());
                Files.move(plan.part(), plan.archive(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                removeOtherArchives(plan.archive());
            }
        } catch (AtomicMoveNotSupportedException e) {
            // same directory: cannot happen; without the archive the next supervisor trains again
        } catch (IOException e) {
            // as above
        } finally {
            try {
                Files.deleteIfExists(plan.part());
            } catch (IOException ignored) {
                // removed as stale by a later training run
            }
            TRAINING.remove(plan.archive());
        }
    }

    /**
     * Whether a JVM maps the dump and finds its checksums right: a dump cut short (a full
     * disk) must not become the archive, which every later supervisor would map.
     */
    static boolean loads(Plan plan) {
        try {
            Process check = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-Xshare:on", "-XX:+VerifySharedSpaces", "-XX:+UnlockDiagnosticVMOptions", "-XX:ArchiveRelocationMode=0",
                    // a dump cut short crashes the JVM that maps it: no crash report or core file left behind
                    "-XX:ErrorFile=/dev/null", "-XX:-CreateCoredumpOnCrash",
                    "-XX:SharedArchiveFile=" + plan.part(), "-cp", plan.classPath(), "-version")
                    .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            if (!check.waitFor(CHECK_TIMEOUT.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)) {
                check.destroyForcibly().waitFor();
                return false;
            }
            return check.exitValue() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /**
     * The archive's key for a class path of jars only, else null. It names the JDK (its home
     * and build) and each jar by path, size and modification time, as the JVM checks them.
     */
    static String key(String classPath) throws IOException {
        StringBuilder identity = new StringBuilder();
        identity.append(System.getProperty("java.home")).append('\0').append(System.getProperty("java.vm.version")).append('\n');
        int jars = 0;
        for (String entry : classPath.split(File.pathSeparator)) {
            if (entry.isEmpty()) {
                continue;
            }
            Path jar = Path.of(entry);
            if (!entry.endsWith(".jar") || !Files.isRegularFile(jar)) {
                return null;
            }
            BasicFileAttributes attributes = Files.readAttributes(jar, BasicFileAttributes.class);
            identity.append(jar.toAbsolutePath().normalize()).append('\0').append(attributes.size()).append('\0')
                    .append(attributes.lastModifiedTime().toMillis()).append('\n');
            jars++;
        }
        if (jars == 0) {
            return null;
        }
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(identity.toString().getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(digest).substring(0, 16);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 unavailable", e);
        }
    }

    private static void removeStaleParts(Path dir) throws IOException {
        Instant staleBefore = Instant.now().minus(STALE_PART);
        try (DirectoryStream<Path> parts = Files.newDirectoryStream(dir, PREFIX + "*" + SUFFIX + PART)) {
            for (Path part : parts) {
                if (Files.getLastModifiedTime(part, LinkOption.NOFOLLOW_LINKS).toInstant().isBefore(staleBefore)) {
                    Files.deleteIfExists(part);
                }
            }
        }
    }

    /** Older archives: a supervisor that maps one keeps its mapping when the file goes. */
    private static void removeOtherArchives(Path keep) throws IOException {
        List<Path> others = new ArrayList<>();
        try (DirectoryStream<Path> archives = Files.newDirectoryStream(keep.getParent(), PREFIX + "*" + SUFFIX)) {
            for (Path archive : archives) {
                if (!archive.equals(keep)) {
                    others.add(archive);
                }
            }
        }
        for (Path other : others) {
            Files.deleteIfExists(other);
        }
    }
}

package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.Microsandbox;
import io.microsandbox.Sandbox;
import io.microsandbox.TestSandboxes;
import io.microsandbox.runtime.SandboxLayout;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The supervisor's application class-data archive on a real VM: the first supervisor started
 * from a jar-only class path boots a sandbox and, when it exits, leaves the archive in the
 * home; the next supervisor maps it and serves its sandbox as usual.
 */
class SupervisorCdsIT {

    @Test
    void theFirstSupervisorLeavesAnArchiveThatTheNextOneMaps(@TempDir Path dir) throws Exception {
        Path home = dir.resolve("home");
        Path kernelDir = io.microsandbox.runtime.vmm.KernelBundle.locate(io.microsandbox.runtime.RuntimeFiles.defaultHome()).dir();
        Microsandbox runtime = Microsandbox.builder().home(home).kernelDir(kernelDir).build();
        System.setProperty(SupervisorClassPath.OVERRIDE_PROPERTY, jarsOnly(dir));
        try {
            try (Sandbox first = runtime.create(TestSandboxes.uniqueName("cds-train"), TestSandboxes.config().ephemeral(true).build())) {
                assertThat(first.exec("true", List.of()).exitCode()).isZero();
                assertThat(mappedArchives(first, home)).isEmpty();
            }
            Path archive = awaitArchive(home.resolve("runtime/cds"));
            assertThat(Files.getPosixFilePermissions(archive)).isEqualTo(io.microsandbox.runtime.OwnerOnly.FILE);
            // the spare was started while the first supervisor still trained: without the archive
            SpareSupervisors.release(home);

            try (Sandbox second = runtime.create(TestSandboxes.uniqueName("cds-use"), TestSandboxes.config().ephemeral(true).build())) {
                assertThat(mappedArchives(second, home)).containsExactly(archive.toString());
                assertThat(second.shell("python3 -c 'print(6 * 7)'").stdout()).isEqualTo("42\n");
            }
            try (Stream<Path> left = Files.list(archive.getParent())) {
                assertThat(left).containsExactly(archive);
            }
        } finally {
            System.clearProperty(SupervisorClassPath.OVERRIDE_PROPERTY);
            SpareSupervisors.release(home);
        }
        assertThat(ProcessHandle.current().children().map(p -> p.info().commandLine().orElse(""))
                .filter(cmd -> cmd.contains(home.toString()))).isEmpty();
    }

    /** This JVM's class path with the main classes directory as a jar and test directories left out. */
    private static String jarsOnly(Path dir) throws IOException {
        List<String> entries = new ArrayList<>();
        for (String entry : System.getProperty("java.class.path").split(File.pathSeparator)) {
            Path path = Path.of(entry);
            if (Files.isRegularFile(path) && entry.endsWith(".jar")) {
                entries.add(entry);
            } else if (Files.isRegularFile(path.resolve(Supervisor.class.getName().replace('.', '/') + ".class"))) {
                entries.add(jarOf(path, dir.resolve("microsandbox-core.jar")).toString());
            }
        }
        return String.join(File.pathSeparator, entries);
    }

    private static Path jarOf(Path classes, Path jar) throws IOException {
        if (classes.getFileName().toString().endsWith(".jar")) {
            return classes;
        }
        return SupervisorClassPathTest.jarOf(classes, jar);
    }

    /** The archives of {@code home} that the sandbox's supervisor has mapped. */
    private static List<String> mappedArchives(Sandbox sandbox, Path home) throws IOException {
        long pid = Long.parseLong(Files.readString(SandboxLayout.of(home, sandbox.name()).pidFile()).strip());
        try (Stream<String> maps = Files.lines(Path.of("/proc", Long.toString(pid), "maps"))) {
            return maps.map(line -> line.substring(line.lastIndexOf(' ') + 1))
                    .filter(file -> file.startsWith(home.resolve("runtime/cds").toString())).distinct().toList();
        }
    }

    /** The dump is written as the first supervisor exits, after its sandbox is gone. */
    private static Path awaitArchive(Path cds) throws Exception {
        long deadline = System.nanoTime() + 120_000_000_000L;
        while (System.nanoTime() < deadline) {
            if (Files.isDirectory(cds)) {
                try (Stream<Path> files = Files.list(cds)) {
                    List<Path> archives = files.filter(f -> f.getFileName().toString().endsWith(".jsa")).toList();
                    if (!archives.isEmpty()) {
                        assertThat(archives).hasSize(1);
                        return archives.get(0);
                    }
                }
            }
            Thread.sleep(200);
        }
        throw new AssertionError("no class-data archive under " + cds + " within 120 s");
    }
}

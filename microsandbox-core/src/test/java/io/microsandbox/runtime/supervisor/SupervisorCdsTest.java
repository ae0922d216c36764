package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SupervisorCdsTest {

    @Test
    void aClassPathWithADirectoryOrNothingGetsNoArchive(@TempDir Path dir) throws Exception {
        Path jar = jar(dir);
        Path classes = Files.createDirectory(dir.resolve("classes"));
        assertThat(SupervisorCds.plan(dir.resolve("home"), jar + File.pathSeparator + classes)).isEqualTo(SupervisorCds.Plan.NONE);
        assertThat(SupervisorCds.plan(dir.resolve("home"), "")).isEqualTo(SupervisorCds.Plan.NONE);
        assertThat(SupervisorCds.plan(dir.resolve("home"), dir.resolve("missing.jar").toString())).isEqualTo(SupervisorCds.Plan.NONE);
        assertThat(dir.resolve("home")).doesNotExist();
    }

    @Test
    void theKeyFollowsTheJarsSizeAndTime(@TempDir Path dir) throws Exception {
        Path jar = jar(dir);
        String key = SupervisorCds.key(jar.toString());
        assertThat(key).hasSize(16).isEqualTo(SupervisorCds.key(jar.toString()));
        Files.setLastModifiedTime(jar, FileTime.from(Instant.now().minusSeconds(3600)));
        assertThat(SupervisorCds.key(jar.toString())).isNotEqualTo(key);
    }

    @Test
    void oneTrainingRunAtATimeAndOnlyABootedCompleteDumpBecomesTheArchive(@TempDir Path dir) throws Exception {
        Path home = dir.resolve("home");
        String classPath = jar(dir).toString();

        SupervisorCds.Plan first = SupervisorCds.plan(home, classPath);
        assertThat(first.training()).isTrue();
        assertThat(first.jvmOptions()).contains("-XX:ArchiveClassesAtExit=" + first.part());
        assertThat(first.part().getParent()).isEqualTo(home.resolve("runtime/cds"));
        // while it runs, other supervisors start without one
        assertThat(SupervisorCds.plan(home, classPath)).isEqualTo(SupervisorCds.Plan.NONE);

        // a spare that never booted (or a supervisor killed by a signal): its dump is dropped
        assertThat(java(first).waitFor()).isZero();
        assertThat(first.part()).isNotEmptyFile();
        SupervisorCds.finish(first, false);
        assertThat(first.part()).doesNotExist();
        assertThat(first.archive()).doesNotExist();

        // a dump cut short (a full disk) is dropped too: every JVM that mapped it would crash
        SupervisorCds.Plan cut = SupervisorCds.plan(home, classPath);
        assertThat(java(cut).waitFor()).isZero();
        try (RandomAccessFile file = new RandomAccessFile(cut.part().toFile(), "rw")) {
            file.setLength(file.length() / 2);
        }
        SupervisorCds.finish(cut, true);
        assertThat(cut.part()).doesNotExist();
        assertThat(cut.archive()).doesNotExist();

        SupervisorCds.Plan second = SupervisorCds.plan(home, classPath);
        assertThat(second.training()).isTrue();
        assertThat(second.part()).isNotEqualTo(first.part());
        Path older = Files.write(home.resolve("runtime/cds/supervisor-0123456789abcdef.jsa"), new byte[] {3});
        assertThat(java(second).waitFor()).isZero();
        long size = Files.size(second.part());
        SupervisorCds.finish(second, true);
        assertThat(second.part()).doesNotExist();
        assertThat(second.archive()).hasSize(size);
        assertThat(older).doesNotExist();
        assertThat(Files.getPosixFilePermissions(second.archive())).isEqualTo(io.microsandbox.runtime.OwnerOnly.FILE);

        SupervisorCds.Plan third = SupervisorCds.plan(home, classPath);
        assertThat(third.training()).isFalse();
        assertThat(third.jvmOptions()).containsExactly("-XX:SharedArchiveFile=" + second.archive());
        assertThat(java(third).waitFor()).isZero();
    }

    @Test
    void aProcessThatExitsNormallyAfterBootingLeavesTheArchiveAndOneKilledDoesNot(@TempDir Path dir) throws Exception {
        String classPath = jar(dir).toString();
        SupervisorCds.Plan normal = SupervisorCds.plan(dir.resolve("a"), classPath);
        // a JVM writing its dump as it exits stands in for the supervisor
        Process exits = java(normal);
        SupervisorCds.finishWhenExited(normal, exits, () -> true);
        exits.waitFor();
        for (int i = 0; i < 500 && !Files.exists(normal.archive()); i++) {
            Thread.sleep(20);
        }
        assertThat(normal.archive()).isNotEmptyFile();
        assertThat(normal.part()).doesNotExist();

        SupervisorCds.Plan killed = SupervisorCds.plan(dir.resolve("b"), classPath);
        Process dies = new ProcessBuilder("sh", "-c", "printf x > '" + killed.part() + "'; kill -9 $$").start();
        SupervisorCds.finishWhenExited(killed, dies, () -> true);
        dies.waitFor();
        for (int i = 0; i < 100 && Files.exists(killed.part()); i++) {
            Thread.sleep(20);
        }
        assertThat(killed.part()).doesNotExist();
        assertThat(killed.archive()).doesNotExist();
    }

    @Test
    void eachHomeTrainsItsOwn(@TempDir Path dir) throws Exception {
        String classPath = jar(dir).toString();
        SupervisorCds.Plan a = SupervisorCds.plan(dir.resolve("a"), classPath);
        SupervisorCds.Plan b = SupervisorCds.plan(dir.resolve("b"), classPath);
        assertThat(a.training()).isTrue();
        assertThat(b.training()).isTrue();
        assertThat(a.archive().getFileName()).isEqualTo(b.archive().getFileName());
        SupervisorCds.finish(a, false);
        SupervisorCds.finish(b, false);
    }

    @Test
    void aTrainingRunWithoutADumpLeavesNothing(@TempDir Path dir) throws Exception {
        Path home = dir.resolve("home");
        String classPath = jar(dir).toString();
        SupervisorCds.Plan plan = SupervisorCds.plan(home, classPath);
        SupervisorCds.finish(plan, true);
        assertThat(plan.archive()).doesNotExist();
        assertThat(SupervisorCds.plan(home, classPath).training()).isTrue();
    }

    /** A jar with one resource: a class path the JVM can dump an archive for. */
    private static Path jar(Path dir) throws IOException {
        Path jar = dir.resolve("a.jar");
        try (JarOutputStream out = new JarOutputStream(Files.newOutputStream(jar))) {
            out.putNextEntry(new JarEntry("a.txt"));
            out.write('a');
            out.closeEntry();
        }
        return jar;
    }

    /** A JVM with the plan's options on its class path that prints its version and exits. */
    private static Process java(SupervisorCds.Plan plan) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        cmd.addAll(plan.jvmOptions());
        cmd.addAll(List.of("-cp", plan.classPath(), "-version"));
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
    }
}

package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SupervisorCdsTest {

    @Test
    void aClassPathWithADirectoryOrNothingGetsNoArchive(@TempDir Path dir) throws Exception {
        Path jar = Files.write(dir.resolve("a.jar"), new byte[] {1});
        Path classes = Files.createDirectory(dir.resolve("classes"));
        assertThat(SupervisorCds.plan(dir.resolve("home"), jar + File.pathSeparator + classes)).isEqualTo(SupervisorCds.Plan.NONE);
        assertThat(SupervisorCds.plan(dir.resolve("home"), "")).isEqualTo(SupervisorCds.Plan.NONE);
        assertThat(SupervisorCds.plan(dir.resolve("home"), dir.resolve("missing.jar").toString())).isEqualTo(SupervisorCds.Plan.NONE);
        assertThat(dir.resolve("home")).doesNotExist();
    }

    @Test
    void theKeyFollowsTheJarsSizeAndTime(@TempDir Path dir) throws Exception {
        Path jar = Files.write(dir.resolve("a.jar"), new byte[] {1});
        String key = SupervisorCds.key(jar.toString());
        assertThat(key).hasSize(16).isEqualTo(SupervisorCds.key(jar.toString()));
        Files.setLastModifiedTime(jar, FileTime.from(Instant.now().minusSeconds(3600)));
        assertThat(SupervisorCds.key(jar.toString())).isNotEqualTo(key);
    }

    @Test
    void oneTrainingRunAtATimeAndOnlyABootedNormalExitMakesTheArchive(@TempDir Path dir) throws Exception {
        Path home = dir.resolve("home");
        String classPath = Files.write(dir.resolve("a.jar"), new byte[] {1}).toString();

        SupervisorCds.Plan first = SupervisorCds.plan(home, classPath);
        assertThat(first.training()).isTrue();
        assertThat(first.jvmOptions()).containsExactly("-XX:ArchiveClassesAtExit=" + first.part());
        assertThat(first.part().getParent()).isEqualTo(home.resolve("runtime/cds"));
        // while it runs, other supervisors start without one
        assertThat(SupervisorCds.plan(home, classPath)).isEqualTo(SupervisorCds.Plan.NONE);

        // a spare that never booted (or a supervisor killed by a signal): its dump is dropped
        Files.write(first.part(), new byte[] {2});
        SupervisorCds.finish(first, false);
        assertThat(first.part()).doesNotExist();
        assertThat(first.archive()).doesNotExist();

        SupervisorCds.Plan second = SupervisorCds.plan(home, classPath);
        assertThat(second.training()).isTrue();
        assertThat(second.part()).isNotEqualTo(first.part());
        Path older = Files.write(home.resolve("runtime/cds/supervisor-0123456789abcdef.jsa"), new byte[] {3});
        Files.write(second.part(), new byte[] {4});
        SupervisorCds.finish(second, true);
        assertThat(second.part()).doesNotExist();
        assertThat(second.archive()).hasBinaryContent(new byte[] {4});
        assertThat(older).doesNotExist();
        assertThat(Files.getPosixFilePermissions(second.archive())).isEqualTo(io.microsandbox.runtime.OwnerOnly.FILE);

        SupervisorCds.Plan third = SupervisorCds.plan(home, classPath);
        assertThat(third.training()).isFalse();
        assertThat(third.jvmOptions()).containsExactly("-XX:SharedArchiveFile=" + second.archive());
    }

    @Test
    void aProcessThatExitsNormallyAfterBootingLeavesTheArchiveAndOneKilledDoesNot(@TempDir Path dir) throws Exception {
        String classPath = Files.write(dir.resolve("a.jar"), new byte[] {1}).toString();
        Path homeA = dir.resolve("a");
        SupervisorCds.Plan normal = SupervisorCds.plan(homeA, classPath);
        // stands in for the JVM writing its dump as it exits
        Process exits = new ProcessBuilder("sh", "-c", "printf x > '" + normal.part() + "'").start();
        SupervisorCds.finishWhenExited(normal, exits, () -> true);
        exits.waitFor();
        awaitFile(normal.archive());
        assertThat(normal.part()).doesNotExist();

        Path homeB = dir.resolve("b");
        SupervisorCds.Plan killed = SupervisorCds.plan(homeB, classPath);
        Process dies = new ProcessBuilder("sh", "-c", "printf x > '" + killed.part() + "'; kill -9 $$").start();
        SupervisorCds.finishWhenExited(killed, dies, () -> true);
        dies.waitFor();
        for (int i = 0; i < 100 && Files.exists(killed.part()); i++) {
            Thread.sleep(20);
        }
        assertThat(killed.part()).doesNotExist();
        assertThat(killed.archive()).doesNotExist();
    }

    private static void awaitFile(Path file) throws InterruptedException {
        for (int i = 0; i < 250 && !Files.exists(file); i++) {
            Thread.sleep(20);
        }
        assertThat(file).exists();
    }

    @Test
    void eachHomeTrainsItsOwn(@TempDir Path dir) throws Exception {
        String classPath = Files.write(dir.resolve("a.jar"), new byte[] {1}).toString();
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
        String classPath = Files.write(dir.resolve("a.jar"), new byte[] {1}).toString();
        SupervisorCds.Plan plan = SupervisorCds.plan(home, classPath);
        SupervisorCds.finish(plan, true);
        assertThat(plan.archive()).doesNotExist();
        assertThat(SupervisorCds.plan(home, classPath).training()).isTrue();
    }
}

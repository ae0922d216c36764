package io.microsandbox.runtime;

import io.microsandbox.runtime.supervisor.ExecLog;
import io.microsandbox.runtime.supervisor.SupervisorSpec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

/** A sandbox's directories and files are their owner's only, whatever the build's umask. */
class SandboxLayoutTest {
    @TempDir
    Path tmp;

    private static String mode(Path p) throws IOException {
        return PosixFilePermissions.toString(Files.getPosixFilePermissions(p));
    }

    private static void widen(Path p) throws IOException {
        Files.setPosixFilePermissions(p, PosixFilePermissions.fromString(Files.isDirectory(p) ? "rwxrwxrwx" : "rw-rw-rw-"));
    }

    @Test
    void sandboxLayoutSpecLockAndExecLogAreOwnerOnly() throws IOException {
        Path home = tmp.resolve("home");
        SandboxLayout layout = SandboxLayout.of(home, "perm");
        Files.createDirectories(layout.logsDir());
        widen(home);
        widen(layout.dir());
        Path oldLog = Files.writeString(layout.supervisorLog(), "from an older version\n");
        widen(oldLog);

        layout.createDirectories(home);
        new SupervisorSpec("perm", List.of("qemu"), layout.dir().toString(), layout.runDir().toString(),
                Map.of("env", Map.of("SECRET", "s3cret")), 1000, false, home.toString(), false, 0, 0, 0, null)
                .write(layout.specFile());
        try (SandboxLock lock = SandboxLock.tryAcquire(SandboxLock.createLockFile(layout));
             ExecLog log = ExecLog.append(layout.execLog())) {
            log.write("system", null, "started".getBytes());
            assertThat(lock).isNotNull();
        }

        for (Path dir : List.of(home, home.resolve("sandboxes"), layout.dir(), layout.logsDir(), home.resolve("run"), layout.runDir())) {
            assertThat(mode(dir)).as(dir.toString()).isEqualTo("rwx------");
        }
        for (Path file : List.of(oldLog, layout.specFile(), SandboxLock.createLockFile(layout), layout.execLog())) {
            assertThat(mode(file)).as(file.toString()).isEqualTo("rw-------");
        }
    }
}

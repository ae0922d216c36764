package io.microsandbox;

import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxLock;
import io.microsandbox.store.SandboxStore;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

/** A creation lock taken by a remove or a snapshot is let go whatever ends the call: one left held refuses the sandbox to every process. */
class CreationLockTest {
    @TempDir
    Path home;

    @Test
    void anInterruptedRemoveOrSnapshotLetsGoOfTheCreationLock() throws Exception {
        Microsandbox runtime = Microsandbox.builder().home(home).build();
        SandboxStore.open(home).insert("s", SandboxConfig.builder().image("alpine").build().toJson(), Map.of(), false, "stopped");
        SandboxLayout layout = SandboxLayout.of(home, "s");
        Files.createDirectories(layout.dir());
        // a supervisor that recorded the stop and has not exited yet: the call waits for it
        try (SandboxLock supervisor = SandboxLock.tryAcquire(SandboxLock.supervisorLockFile(layout))) {
            assertThat(supervisor).isNotNull();
            for (Runnable call : new Runnable[] {() -> runtime.remove("s"), () -> runtime.snapshot("s", home.resolve("snap"), SnapshotOptions.defaults())}) {
                AtomicReference<ErrorKind> failed = new AtomicReference<>();
                Thread caller = new Thread(() -> {
                    try {
                        call.run();
                    } catch (MicrosandboxException e) {
                        failed.set(e.kind());
                    }
                });
                caller.start();
                Thread.sleep(300);
                caller.interrupt();
                caller.join(10_000);
                assertThat(failed.get()).isEqualTo(ErrorKind.CANCELLED);
                try (SandboxLock creation = SandboxLock.tryAcquire(SandboxLock.createLockFile(layout))) {
                    assertThat(creation).as("the creation lock was let go").isNotNull();
                }
            }
        }
        assertThat(runtime.get("s").status()).isEqualTo(SandboxStatus.STOPPED);
    }
}

package io.microsandbox;

import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxPreparer;
import io.microsandbox.runtime.vmm.KernelBundle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * QEMU saves and loads a checkpoint through {@code exec:} commands that {@code /bin/sh} runs,
 * built from the checkpoint's path: a home (and a checkpoint path) with spaces, quotes,
 * {@code ;}, {@code $()} and back quotes must be taken literally, by a real VM.
 */
class CheckpointHostilePathIT {
    @Test
    void aHomeWithShellSyntaxInItsPathCheckpointsAndRestores() throws Exception {
        Path base = Files.createTempDirectory("msb-cp-home");
        // kept short: the sandbox's sockets live under the home too (108-byte limit)
        Path home = base.resolve("h 'q\";$(touch X)`touch X`");
        Microsandbox runtime = Microsandbox.builder().home(home)
                .kernelDir(KernelBundle.locate(RuntimeFiles.defaultHome()).dir()).build();
        String source = "cp-src";
        String restored = "cp-restored";
        String fromPath = "cp-from-path";
        try {
            try (Sandbox sb = runtime.create(source, TestSandboxes.config().build())) {
                sb.fs().writeString("/root/before.txt", "kept");
                // null is no way to say "stop": refused before anything happens, and the sandbox runs on
                assertThatThrownBy(() -> sb.checkpoint("refused", null)).isInstanceOf(NullPointerException.class);
                assertThat(sb.shell("echo running").stdout()).isEqualTo("running\n");
                assertThatThrownBy(() -> runtime.fork(null, "x", 1, RestoreOptions.defaults())).isInstanceOf(NullPointerException.class);
                Checkpoint named = sb.checkpoint("it's; $(touch X)");
                assertThat(named.memoryFile()).isRegularFile();
                assertThat(named.memoryBytes()).isPositive().isEqualTo(Files.size(named.memoryFile()));
                Checkpoint atPath = sb.checkpoint(home.resolve("at a 'path'").toString());
                assertThat(atPath.memoryBytes()).isEqualTo(Files.size(atPath.memoryFile()));
            }
            Checkpoint named = runtime.checkpoints().get("it's; $(touch X)");
            // a missing prefix would have named the forks "null-1" and on
            assertThatThrownBy(() -> runtime.fork(named, null, 1, RestoreOptions.defaults())).isInstanceOfSatisfying(MicrosandboxException.class,
                    e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_ARGUMENT));
            assertThat(runtime.find("null-1")).isEmpty();
            try (Sandbox sb = runtime.restore(restored, named, RestoreOptions.defaults())) {
                assertThat(sb.shell("cat /root/before.txt").stdout()).isEqualTo("kept");
            }
            try (Sandbox sb = runtime.restore(fromPath, home.resolve("at a 'path'").toString())) {
                assertThat(sb.shell("cat /root/before.txt").stdout()).isEqualTo("kept");
            }
            try (Stream<Path> all = Files.walk(base)) {
                List<Path> injected = all.filter(p -> p.getFileName().toString().equals("X")).toList();
                assertThat(injected).as("files a shell made from the path").isEmpty();
            }
            runtime.checkpoints().remove("it's; $(touch X)");
            runtime.checkpoints().remove(home.resolve("at a 'path'").toString());
            assertThat(runtime.checkpoints().list()).isEmpty();
        } finally {
            for (String name : List.of(source, restored, fromPath)) {
                runtime.find(name).ifPresent(h -> {
                    h.kill();
                    h.remove();
                });
            }
            // a spare supervisor started for this home would write into it while it is deleted
            io.microsandbox.runtime.supervisor.SpareSupervisors.release(runtime.home());
            SandboxPreparer.deleteTree(base);
        }
    }
}

package io.microsandbox.spring.pool;

import static org.assertj.core.api.Assertions.assertThat;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.ErrorKind;
import io.microsandbox.Microsandbox;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.runtime.SandboxLock;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PoolCheckpointTest {

    private static String name(String pool, String instance) {
        return new PoolCheckpoint(null, pool, instance).name();
    }

    @Test
    void pairsThatJoinAlikeHaveTheirOwnCheckpoint() {
        assertThat(name("default-web", "1")).isNotEqualTo(name("default", "web-1"));
        assertThat(name("default", "node/1")).as("ids that read alike once made a name").isNotEqualTo(name("default", "node_1"));
        assertThat(name("py", "node/1")).startsWith("spring-pool-py-node_1-").isEqualTo(name("py", "node/1"));
    }

    @Test
    void aLongInstanceIdStillMakesAValidName() {
        String name = name("default", "x".repeat(300));
        assertThat(name).hasSizeLessThanOrEqualTo(Sandbox.MAX_NAME_BYTES).isNotEqualTo(name("default", "x".repeat(299)));
    }

    /**
     * A new checkpoint at the path of one a restore still reads would hand that restore the new
     * one's files beside the old one's: the leftover stays until the restore is over.
     */
    @Test
    void aLeftoverARestoreStillReadsIsNotRemoved(@TempDir Path home) throws Exception {
        Microsandbox runtime = Microsandbox.builder().home(home).build();
        PoolCheckpoint checkpoint = new PoolCheckpoint(runtime, "py", "1");
        Path dir = Files.createDirectories(runtime.checkpoints().directory().resolve(checkpoint.name()));
        Files.writeString(dir.resolve("checkpoint.json"), "{}");
        try (SandboxLock restoring = SandboxLock.tryAcquireShared(dir.resolve(".saving.lock"))) {
            assertThat(restoring).isNotNull();
            assertThatThrownBy(checkpoint::removeLeftover).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                assertThat(e.kind()).isEqualTo(ErrorKind.SNAPSHOT_NOT_FOUND);
                assertThat(e.getMessage()).contains("restored from");
            });
            assertThat(dir.resolve("checkpoint.json")).exists();
        }
        checkpoint.removeLeftover();
        assertThat(dir).doesNotExist();
        checkpoint.removeLeftover(); // none left: nothing to do
    }
}

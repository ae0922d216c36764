package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SpareWarmUpTest {
    @Test
    void theHostIoWarmUpRunsEveryStepAndRemovesWhatItMade(@TempDir Path parent) throws Exception {
        Path dir = Files.createDirectory(parent.resolve("warm-up"));
        assertThat(SpareWarmUp.hostFiles(dir)).isTrue();
        assertThat(dir).doesNotExist();
        assertThat(parent).isEmptyDirectory();
    }

    @Test
    void aDirectoryThatCannotHoldASocketSkipsTheRestAndStillCleansUp(@TempDir Path parent) throws Exception {
        // a UNIX socket path longer than the kernel's limit (108 bytes) cannot be bound
        Path dir = Files.createDirectories(parent.resolve("d".repeat(120)));
        assertThat(SpareWarmUp.hostFiles(dir)).isFalse();
        assertThat(dir).doesNotExist();
    }
}

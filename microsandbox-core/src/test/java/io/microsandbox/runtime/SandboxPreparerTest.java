package io.microsandbox.runtime;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SandboxPreparerTest {
    @TempDir
    Path dir;

    /** A preparation killed half-way leaves staging trees and files made aside, which only grow the sandbox's directory. */
    @Test
    void whatAPreparationCutShortLeftIsSwept() throws Exception {
        Files.createDirectories(dir.resolve("upper-stage.123/root/app"));
        Files.writeString(dir.resolve("upper-stage.123/root/app/big"), "staged");
        Files.writeString(dir.resolve(".upper.ext4.456.part"), "half an upper");
        Files.writeString(dir.resolve(".upper.ext4.part"), "half a snapshot's upper");
        Files.writeString(dir.resolve("root-overlay.qcow2.part"), "half an overlay");
        Files.writeString(dir.resolve("upper.ext4"), "the upper");
        Files.writeString(dir.resolve("image.digest"), "sha256:...");
        SandboxPreparer.sweepHalfMade(dir);
        try (var left = Files.list(dir)) {
            assertThat(left.map(p -> p.getFileName().toString())).containsExactlyInAnyOrder("upper.ext4", "image.digest");
        }
    }
}

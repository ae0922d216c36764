package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

class SpareWarmUpTest {
    @Test
    void theWarmUpLeavesNoFileBehind() throws Exception {
        Path tmp = Path.of(System.getProperty("java.io.tmpdir"));
        List<Path> before = warmUpDirectories(tmp);
        SpareWarmUp.run();
        assertThat(warmUpDirectories(tmp)).isEqualTo(before);
    }

    private static List<Path> warmUpDirectories(Path tmp) throws Exception {
        try (Stream<Path> files = Files.list(tmp)) {
            return files.filter(f -> f.getFileName().toString().startsWith("msb-warm-up")).sorted().toList();
        }
    }
}

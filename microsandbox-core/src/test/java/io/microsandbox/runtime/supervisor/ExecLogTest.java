package io.microsandbox.runtime.supervisor;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

class ExecLogTest {
    @TempDir
    Path dir;

    @Test
    void writesJsonLinesAndReadsThemBack() throws Exception {
        Path file = dir.resolve("exec.log");
        try (ExecLog log = ExecLog.append(file)) {
            log.write("system", null, "sandbox started".getBytes(StandardCharsets.UTF_8));
            log.write("stdout", 1L, "hi\n".getBytes(StandardCharsets.UTF_8));
            log.write("stderr", 1L, "oops\n".getBytes(StandardCharsets.UTF_8));
        }
        List<ExecLog.Line> lines = ExecLog.read(file);
        assertThat(lines).extracting(ExecLog.Line::source).containsExactly("system", "stdout", "stderr");
        assertThat(lines.get(0).session()).isNull();
        assertThat(lines.get(1).session()).isEqualTo(1L);
        assertThat(lines.get(1).text()).isEqualTo("hi\n");
        assertThat(Files.readAllLines(file).get(1)).contains("\"s\":\"stdout\"").contains("\"id\":1");
    }

    @Test
    void rotatesAtTenMebibytesKeepingOneGeneration() throws Exception {
        Path file = dir.resolve("exec.log");
        byte[] chunk = "x".repeat(64 * 1024).getBytes(StandardCharsets.UTF_8);
        try (ExecLog log = ExecLog.append(file)) {
            for (long i = 0; i < 200; i++) { // about 12.5 MiB
                log.write("stdout", i, chunk);
            }
        }
        assertThat(file.resolveSibling("exec.log.1")).exists();
        assertThat(Files.size(file)).isLessThan(ExecLog.ROTATE_BYTES);
        List<ExecLog.Line> lines = ExecLog.read(file);
        assertThat(lines).hasSize(200);
        assertThat(lines).extracting(ExecLog.Line::session).isSorted();
    }

    @Test
    void skipsATornLastLine() throws Exception {
        Path file = dir.resolve("exec.log");
        try (ExecLog log = ExecLog.append(file)) {
            log.write("stdout", 3L, "whole\n".getBytes(StandardCharsets.UTF_8));
        }
        Files.writeString(file, "{\"t\":\"2026-01-01T00:00:00Z\",\"s\":\"std", StandardOpenOption.APPEND);
        assertThat(ExecLog.read(file)).extracting(ExecLog.Line::text).containsExactly("whole\n");
    }
}

package io.microsandbox;

import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.supervisor.ExecLog;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

class LogEntryTest {
    @TempDir
    Path home;

    @Test
    void logsCarryExactBytesAndWholeCharacters() throws Exception {
        SandboxLayout layout = SandboxLayout.of(home, "logs");
        Files.createDirectories(layout.logsDir());
        byte[] binary = {0, (byte) 0xff, (byte) 0x80, 10};
        try (ExecLog log = ExecLog.append(layout.execLog())) {
            log.write("stdout", 1L, new byte[] {'x', (byte) 0xe2, (byte) 0x82});
            log.write("stdout", 1L, new byte[] {(byte) 0xac});
            log.write("stderr", 1L, binary);
        }
        List<LogEntry> entries = Sandbox.readLogs(layout, LogOptions.defaults());
        assertThat(entries).extracting(LogEntry::text).containsExactly("x", "\u20ac", new String(binary, StandardCharsets.UTF_8));
        assertThat(entries.get(2).data()).isEqualTo(binary);
        assertThat(entries.get(2).source()).isEqualTo(LogSource.STDERR);
    }

    @Test
    void dataIsACopyAndEqualityIsByContent() {
        Instant t = Instant.parse("2026-01-01T00:00:00Z");
        LogEntry a = new LogEntry(LogSource.STDOUT, 1L, t, "hi");
        LogEntry b = new LogEntry(LogSource.STDOUT, 1L, t, "hi".getBytes(StandardCharsets.UTF_8));
        assertThat(a).isEqualTo(b).hasSameHashCodeAs(b);
        a.data()[0] = 'X';
        assertThat(a.text()).isEqualTo("hi");
        assertThat(a.toString()).contains("text=hi");
    }
}

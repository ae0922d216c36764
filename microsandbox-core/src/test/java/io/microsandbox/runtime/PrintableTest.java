package io.microsandbox.runtime;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PrintableTest {
    @Test
    void escapesWhatATerminalWouldActOnAndNothingElse() {
        assertThat(Printable.line("plain text, ünïcode")).isEqualTo("plain text, ünïcode");
        assertThat(Printable.line("a\u001b]52;c;AAAA\u0007b")).isEqualTo("a\\x1b]52;c;AAAA\\x07b");
        assertThat(Printable.line("x\ny\u2028z\u202eevil")).isEqualTo("x\\x0ay\\u2028z\\u202eevil");
        assertThat(Printable.lines("x\n\ty\r")).isEqualTo("x\n\ty\\x0d");
    }

    /** A console tail quoted in an error message carries no escape sequence of the guest's. */
    @Test
    void aLogTailIsPrintable(@TempDir Path dir) throws Exception {
        Path log = dir.resolve("kernel.log");
        Files.writeString(log, "booting\n\u001b[2J\u001b]52;c;AAAA\u0007cleared\n");
        assertThat(LogTail.of(log, 5)).isEqualTo("booting\n\\x1b[2J\\x1b]52;c;AAAA\\x07cleared");
    }
}

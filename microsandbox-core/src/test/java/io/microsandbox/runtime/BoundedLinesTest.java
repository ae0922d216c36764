package io.microsandbox.runtime;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class BoundedLinesTest {
    private static ByteArrayInputStream stream(String text) {
        return new ByteArrayInputStream(text.getBytes(StandardCharsets.UTF_8));
    }

    @Test
    void readsLineByLineAndConsumesNothingAfterTheLine() throws IOException {
        ByteArrayInputStream in = stream("first\nsecond");
        assertThat(BoundedLines.read(in, 16, "peer")).isEqualTo("first");
        assertThat(in.available()).isEqualTo("second".length());
        assertThat(BoundedLines.read(in, 16, "peer")).isEqualTo("second");
        assertThat(BoundedLines.read(in, 16, "peer")).isNull();
    }

    @Test
    void aCarriageReturnBeforeTheLineEndIsPartOfTheEnd() throws IOException {
        ByteArrayInputStream in = stream("{\"return\": {}}\r\nnext\r");
        assertThat(BoundedLines.read(in, 64, "peer")).isEqualTo("{\"return\": {}}");
        assertThat(BoundedLines.read(in, 64, "peer")).isEqualTo("next");
    }

    @Test
    void anEmptyLineIsNotTheEnd() throws IOException {
        ByteArrayInputStream in = stream("\n");
        assertThat(BoundedLines.read(in, 16, "peer")).isEmpty();
        assertThat(BoundedLines.read(in, 16, "peer")).isNull();
    }

    @Test
    void aLineOfExactlyTheLimitIsRead() throws IOException {
        assertThat(BoundedLines.read(stream("x".repeat(16) + "\n"), 16, "peer")).hasSize(16);
    }

    @Test
    void aLongerLineIsRefusedNamingThePeer() {
        assertThatThrownBy(() -> BoundedLines.read(stream("x".repeat(17) + "\n"), 16, "QEMU's monitor"))
                .isInstanceOf(IOException.class)
                .hasMessage("QEMU's monitor sent a line longer than 16 bytes");
    }

    @Test
    void charactersAreDecodedAsUtf8() throws IOException {
        assertThat(BoundedLines.read(stream("gr\u00fc\u00dfe\n"), 16, "peer")).isEqualTo("gr\u00fc\u00dfe");
    }
}

package io.microsandbox.runtime.supervisor;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The supervisor log's level filter: each line carries its level; quiet ("off") writes nothing. */
class SupervisorLogTest {
    private final PrintStream original = System.err;

    @AfterEach
    void restore() {
        System.setErr(original);
        SupervisorLog.level("info");
    }

    private String written(String level) {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        System.setErr(new PrintStream(buf, true, StandardCharsets.UTF_8));
        SupervisorLog.level(level);
        SupervisorLog.debug("a debug line");
        SupervisorLog.log("an info line");
        SupervisorLog.warn("a warning");
        SupervisorLog.error("a failure");
        System.setErr(original);
        return buf.toString(StandardCharsets.UTF_8);
    }

    @Test
    void levelsFilterLines() {
        assertThat(written("debug")).contains("DEBUG [", "a debug line", "INFO [", "an info line", "WARN [", "a warning");
        assertThat(written("info")).doesNotContain("a debug line").contains("an info line", "a warning");
        assertThat(written("warn")).doesNotContain("a debug line", "an info line").contains("a warning", "a failure");
        assertThat(written("error")).doesNotContain("a warning").contains("ERROR [", "a failure");
        assertThat(written("off")).isEmpty();
    }

    @Test
    void anUnknownLevelIsRefused() {
        assertThatThrownBy(() -> SupervisorLog.level("loud")).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("loud");
    }
}

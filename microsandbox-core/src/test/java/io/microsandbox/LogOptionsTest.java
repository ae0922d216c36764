package io.microsandbox;

import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;

class LogOptionsTest {
    /** As the Go SDK: logs default to stdout and stderr, a stream to what a command shows, on a terminal or not. */
    @Test
    void defaultSources() {
        assertThat(LogOptions.defaults().sources()).containsExactlyInAnyOrder(LogSource.STDOUT, LogSource.STDERR);
        assertThat(LogStreamOptions.defaults().sources()).containsExactlyInAnyOrder(LogSource.STDOUT, LogSource.STDERR, LogSource.OUTPUT);
        assertThat(LogStreamOptions.builder().sources(LogSource.SYSTEM).build().sources()).containsExactly(LogSource.SYSTEM);
    }
}

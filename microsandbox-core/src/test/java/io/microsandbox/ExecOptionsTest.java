package io.microsandbox;

import java.time.Duration;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class ExecOptionsTest {
    @Test
    void aTimeoutIsPositiveOrNone() {
        assertThat(ExecOptions.builder().timeout(null).build().timeout()).isNull();
        assertThat(ExecOptions.builder().timeout(Duration.ofMillis(1)).build().timeout()).isEqualTo(Duration.ofMillis(1));
        for (Duration bad : new Duration[] {Duration.ZERO, Duration.ofSeconds(-1)}) {
            assertThatThrownBy(() -> ExecOptions.builder().timeout(bad)).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_ARGUMENT);
                assertThat(e.getMessage()).contains("timeout must be positive");
            });
        }
    }
}

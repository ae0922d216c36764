package io.microsandbox;

import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** logLevel and quietLogs in SandboxConfig: what the supervisor and agent are told, and persistence. */
class LogLevelTest {

    @Test
    void theEffectiveLevelIsInfoByDefaultTheConfiguredOneOrOffWhenQuiet() {
        assertThat(SandboxConfig.builder().image("/x").build().effectiveLogLevel()).isEqualTo("info");
        assertThat(SandboxConfig.builder().image("/x").logLevel(LogLevel.DEBUG).build().effectiveLogLevel()).isEqualTo("debug");
        assertThat(SandboxConfig.builder().image("/x").logLevel(LogLevel.DEBUG).quietLogs().build().effectiveLogLevel()).isEqualTo("off");
    }

    @Test
    void bothArePersistedAndReadBack() {
        SandboxConfig quiet = SandboxConfig.builder().image("/x").logLevel(LogLevel.WARN).quietLogs().build();
        SandboxConfig back = SandboxConfig.fromJson(quiet.toJson());
        assertThat(back.logLevel()).isEqualTo(LogLevel.WARN);
        assertThat(back.quietLogs()).isTrue();
        assertThat(back).isEqualTo(quiet);
        SandboxConfig plain = SandboxConfig.fromJson(SandboxConfig.builder().image("/x").build().toJson());
        assertThat(plain.logLevel()).isNull();
        assertThat(plain.quietLogs()).isFalse();
        assertThat(plain.toBuilder().build()).isEqualTo(plain);
    }

    @Test
    void anUnknownLevelNamesTheChoices() {
        assertThat(LogLevel.parse("Trace")).isEqualTo(LogLevel.TRACE);
        assertThatThrownBy(() -> LogLevel.parse("verbose"))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG))
                .hasMessageContaining("verbose").hasMessageContaining("trace, debug, info, warn, error");
    }
}

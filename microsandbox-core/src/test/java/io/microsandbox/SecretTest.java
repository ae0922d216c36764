package io.microsandbox;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import org.junit.jupiter.api.Test;

class SecretTest {
    @Test
    void secretsGetARandomPlaceholderAndNeverShowTheirValue() {
        Secret a = Secret.env("A", "value-of-a").allowHosts("a.test").build();
        Secret b = Secret.env("B", "value-of-b").build();
        assertThat(a.placeholder()).startsWith("msb-secret-").hasSize("msb-secret-".length() + 32).isNotEqualTo(b.placeholder());
        assertThat(a.requireTls()).isTrue();
        assertThat(a.onViolation()).isEqualTo(Secret.Violation.BLOCK_AND_LOG);
        assertThat(a.toString()).doesNotContain("value-of-a");
        assertThatThrownBy(() -> Secret.env("1BAD", "v").build()).hasMessageContaining("not an environment variable name");
        assertThatThrownBy(() -> Secret.env("K", "v").placeholder("short").build()).hasMessageContaining("at least 8");
    }

    @Test
    void hostPatterns() {
        Secret s = Secret.env("K", "value-1").allowHosts("Api.Test").allowHostPatterns("*.a.test", ".b.test").build();
        assertThat(s.allows("api.test")).isTrue();
        assertThat(s.allows("api.test.")).isTrue();
        assertThat(s.allows("x.a.test")).isTrue();
        assertThat(s.allows("a.test")).isFalse();
        assertThat(s.allows("b.test")).isTrue();
        assertThat(s.allows("x.b.test")).isTrue();
        assertThat(s.allows("evilb.test")).isFalse();
        assertThat(s.allows("other.test")).isFalse();
        assertThat(s.allows(null)).isFalse();
    }

    @Test
    void theConfigKeepsSecretsButNeverPersistsThem() {
        Secret s = Secret.env("API_KEY", "the-real-value").allowHosts("api.test").build();
        SandboxConfig config = SandboxConfig.builder().image("/img").secret(s).build();
        assertThat(config.secrets()).containsExactly(s);
        assertThat(config.toBuilder().build().secrets()).containsExactly(s);
        assertThat(config.toJson()).doesNotContain("the-real-value").doesNotContain("API_KEY");
        assertThat(config.toString()).doesNotContain("the-real-value");
        assertThatThrownBy(() -> SandboxConfig.builder().secrets(List.of(s, Secret.env("API_KEY", "other-value").build())))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG))
                .hasMessageContaining("given twice");
        Secret full = Secret.env("B", "value-b", List.of("b.test"), List.of(), "placeholder-b", false, Secret.Violation.TERMINATE);
        assertThat(full.placeholder()).isEqualTo("placeholder-b");
        assertThat(full.requireTls()).isFalse();
        assertThat(full.onViolation()).isEqualTo(Secret.Violation.TERMINATE);
    }
}

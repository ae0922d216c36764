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
        SandboxConfig config = SandboxConfig.builder().image("/img").network(INTERCEPTING).secret(s).build();
        assertThat(config.secrets()).containsExactly(s);
        assertThat(config.toBuilder().build().secrets()).containsExactly(s);
        assertThat(config.toJson()).doesNotContain("the-real-value").contains(s.placeholder());
        assertThat(config.toString()).doesNotContain("the-real-value");
        assertThatThrownBy(() -> SandboxConfig.builder().secrets(List.of(s, Secret.env("API_KEY", "other-value").build())))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG))
                .hasMessageContaining("given twice");
        Secret full = Secret.env("B", "value-b", List.of("b.test"), List.of(), "placeholder-b", false, Secret.Violation.TERMINATE);
        assertThat(full.placeholder()).isEqualTo("placeholder-b");
        assertThat(full.requireTls()).isFalse();
        assertThat(full.onViolation()).isEqualTo(Secret.Violation.TERMINATE);
    }

    @Test
    void aPersistedConfigKeepsEverythingOfItsSecretsButTheValuesWhichAStartGivesAgain() {
        Secret s = Secret.env("API_KEY", "the-real-value").allowHosts("api.test").allowHostPatterns(".b.test")
                .requireTls(false).onViolation(Secret.Violation.TERMINATE).build();
        SandboxConfig read = SandboxConfig.fromJson(SandboxConfig.builder().image("/img").secret(s).build().toJson());
        Secret back = read.secrets().get(0);
        assertThat(back.hasValue()).isFalse();
        assertThat(back.value()).isNull();
        assertThat(back.toString()).isEqualTo(s.toString());

        assertThatThrownBy(() -> read.withSecretValues(java.util.Map.of(), "sandbox 'x'"))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG))
                .hasMessageContaining("sandbox 'x' uses secrets [API_KEY], whose values are never stored");
        assertThatThrownBy(() -> read.withSecretValues(java.util.Map.of("API_KEY", "v-1", "OTHER", "v-2"), "sandbox 'x'"))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG))
                .hasMessageContaining("has no secrets [OTHER]");
        assertThatThrownBy(() -> read.withSecretValues(java.util.Map.of("API_KEY", "v" + s.placeholder()), "sandbox 'x'"))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG))
                .hasMessageContaining("overlap");

        Secret filled = read.withSecretValues(java.util.Map.of("API_KEY", "the-real-value"), "sandbox 'x'").secrets().get(0);
        assertThat(filled.value()).isEqualTo("the-real-value");
        assertThat(List.of(filled.name(), filled.placeholder(), filled.allowHosts(), filled.allowHostPatterns(), filled.requireTls(), filled.onViolation()))
                .isEqualTo(List.of(s.name(), s.placeholder(), s.allowHosts(), s.allowHostPatterns(), s.requireTls(), s.onViolation()));
        // a config that carries its values needs none given
        assertThat(SandboxConfig.builder().image("/img").secret(s).build().withSecretValues(java.util.Map.of(), "sandbox 'x'").secrets())
                .containsExactly(s);
    }

    private static final NetworkPolicy INTERCEPTING = NetworkPolicy.publicOnly().toBuilder().tlsInterception(true).build();

    @Test
    void aSecretForInterceptedTlsNeedsAPolicyThatInterceptsIt() {
        Secret s = Secret.env("API_KEY", "the-real-value").allowHosts("api.test").build();
        assertThatThrownBy(() -> SandboxConfig.builder().image("/img").secret(s).build())
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                    assertThat(e.getMessage()).contains("secret API_KEY").contains("tlsInterception(true)").contains("requireTls(false)");
                });
        Secret plain = Secret.env("API_KEY", "the-real-value").allowHosts("api.test").requireTls(false).build();
        assertThat(SandboxConfig.builder().image("/img").secret(plain).build().secrets()).containsExactly(plain);
    }

    /** A configuration recorded before the check (a stopped sandbox, a checkpoint) still starts with its values given. */
    @Test
    void aRecordedConfigurationWithASecretForTlsStillStarts() {
        String recorded = SandboxConfig.builder().image("/img")
                .secret(Secret.env("API_KEY", "v-1").allowHosts("api.test").requireTls(false).build()).build().toJson()
                .replace("\"requireTls\":false", "\"requireTls\":true");
        SandboxConfig read = SandboxConfig.fromJson(recorded);
        assertThat(read.secrets().get(0).requireTls()).isTrue();
        assertThat(read.withSecretValues(java.util.Map.of("API_KEY", "the-real-value"), "sandbox 'x'").secrets().get(0).value())
                .isEqualTo("the-real-value");
    }
}

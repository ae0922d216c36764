package io.microsandbox.spring.actuate;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.Init;
import io.microsandbox.SandboxConfig;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class MicrosandboxEndpointTests {

    /** Every environment in a sandbox's details is masked: its own and a custom init's. */
    @Test
    void environmentValuesAreMaskedWhereverTheyAre() {
        SandboxConfig config = SandboxConfig.builder().image("/images/x")
                .env("API_TOKEN", "s3cret-one")
                .init(Init.cmd("/sbin/init", List.of(), Map.of("INIT_TOKEN", "s3cret-two")))
                .build();
        String shown = String.valueOf(MicrosandboxEndpoint.maskedConfig(config.toJson()));
        assertThat(shown).contains("API_TOKEN").contains("INIT_TOKEN").doesNotContain("s3cret");
    }

    /** Scripts and the content of patched files are masked too: a credentials file written in by a patch is one. */
    @Test
    void scriptsAndPatchedContentAreMasked() {
        SandboxConfig config = SandboxConfig.builder().image("/images/x")
                .script("login", "curl -H 'Authorization: s3cret-three' https://example.test")
                .patch(io.microsandbox.Patch.text("/root/.netrc", "password s3cret-four"))
                .build();
        String shown = String.valueOf(MicrosandboxEndpoint.maskedConfig(config.toJson()));
        assertThat(shown).contains("login").contains("/root/.netrc").doesNotContain("s3cret");
    }
}

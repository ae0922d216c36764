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

    /** Draining a leftover of this pool that has stopped since is the caller's mistake (400), not the endpoint's failure (500). */
    @Test
    void anActionThatNoLongerAppliesIsABadRequest() {
        io.microsandbox.spring.pool.SandboxPool pool = org.mockito.Mockito.mock(io.microsandbox.spring.pool.SandboxPool.class);
        io.microsandbox.SandboxHandle handle = org.mockito.Mockito.mock(io.microsandbox.SandboxHandle.class);
        io.microsandbox.Microsandbox runtime = nonMemberOfPool(pool, "default-old", handle);
        org.mockito.Mockito.doThrow(new io.microsandbox.MicrosandboxException(io.microsandbox.ErrorKind.SANDBOX_NOT_RUNNING, "not running"))
                .when(handle).requestDrain();
        MicrosandboxEndpoint endpoint = new MicrosandboxEndpoint(runtime, pool);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> endpoint.operate("default-old", "drain"))
                .isInstanceOf(org.springframework.boot.actuate.endpoint.InvalidEndpointRequestException.class)
                .hasMessageContaining("not running");
    }

    /** A sandbox the pool is still booting, stopped or killed here, is a boot stopped on purpose, not a failed one. */
    @Test
    void stoppingABootingMemberTellsThePool() {
        io.microsandbox.spring.pool.SandboxPool pool = org.mockito.Mockito.mock(io.microsandbox.spring.pool.SandboxPool.class);
        io.microsandbox.SandboxHandle handle = org.mockito.Mockito.mock(io.microsandbox.SandboxHandle.class);
        io.microsandbox.Microsandbox runtime = nonMemberOfPool(pool, "default-new", handle);
        MicrosandboxEndpoint endpoint = new MicrosandboxEndpoint(runtime, pool);
        endpoint.operate("default-new", "stop");
        endpoint.operate("default-new", "kill");
        org.mockito.Mockito.verify(pool, org.mockito.Mockito.times(2)).cancelBoot("default-new");
        org.mockito.Mockito.verify(handle).requestStop();
        org.mockito.Mockito.verify(handle).kill();
    }

    /**
     * A runtime holding {@code handle} as {@code name}, a sandbox of the pool {@code pool} (named
     * "default", instance "app") by its labels that is not among its members: a leftover, or one booting.
     */
    private static io.microsandbox.Microsandbox nonMemberOfPool(io.microsandbox.spring.pool.SandboxPool pool, String name,
            io.microsandbox.SandboxHandle handle) {
        io.microsandbox.Microsandbox runtime = org.mockito.Mockito.mock(io.microsandbox.Microsandbox.class);
        org.mockito.Mockito.when(pool.name()).thenReturn("default");
        org.mockito.Mockito.when(pool.instanceId()).thenReturn("app");
        org.mockito.Mockito.when(pool.member(name)).thenReturn(java.util.Optional.empty());
        org.mockito.Mockito.when(handle.labels()).thenReturn(Map.of(io.microsandbox.spring.pool.SandboxPool.POOL_LABEL, "default",
                io.microsandbox.spring.pool.SandboxPool.INSTANCE_LABEL, "app"));
        org.mockito.Mockito.when(runtime.find(name)).thenReturn(java.util.Optional.of(handle));
        return runtime;
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

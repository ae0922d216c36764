package io.microsandbox.spring.pool;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.mockito.ArgumentMatchers.any;
import static org.mockito.ArgumentMatchers.anyString;
import static org.mockito.Mockito.mock;
import static org.mockito.Mockito.when;

import io.microsandbox.ErrorKind;
import io.microsandbox.Microsandbox;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.spring.SandboxPoolExhaustedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Sandboxes booted per loan, against a mocked runtime: never more at once than max-size. */
class OnDemandSandboxSourceTest {
    @TempDir
    Path temp;

    @Test
    void aBurstWaitsForARunningSandboxToEndInsteadOfBootingMore() throws Exception {
        Microsandbox runtime = mock(Microsandbox.class);
        when(runtime.create(anyString(), any(SandboxConfig.class))).thenAnswer(inv -> {
            Sandbox sb = mock(Sandbox.class);
            when(sb.name()).thenReturn(inv.getArgument(0));
            return sb;
        });
        SandboxConfig config = SandboxConfig.builder().image(Files.createDirectories(temp.resolve("rootfs")).toString()).build();
        OnDemandSandboxSource source = new OnDemandSandboxSource(runtime, config, "jobs", 1, Duration.ofMillis(200));

        Lease first = source.borrow();
        assertThatThrownBy(source::borrow).isInstanceOfSatisfying(SandboxPoolExhaustedException.class, e -> {
            assertThat(e.getKind()).isEqualTo(ErrorKind.RESOURCE_LIMIT);
            assertThat(e.getMessage()).contains("microsandbox.pool.max-size");
        });
        source.giveBack(first);
        source.giveBack(first); // a second return frees nothing more
        source.giveBack(source.borrow());

        // a boot that fails gives its place back
        when(runtime.create(anyString(), any(SandboxConfig.class))).thenThrow(new MicrosandboxException(ErrorKind.BOOT_FAILED, "no VM"));
        assertThatThrownBy(source::borrow).isInstanceOf(MicrosandboxException.class);
        assertThatThrownBy(source::borrow).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED));
    }
}

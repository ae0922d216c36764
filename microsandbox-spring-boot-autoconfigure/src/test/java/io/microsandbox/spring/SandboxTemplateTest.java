package io.microsandbox.spring;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.mockito.ArgumentMatchers.any;
import static org.mockito.ArgumentMatchers.anyList;
import static org.mockito.ArgumentMatchers.eq;
import static org.mockito.Mockito.mock;
import static org.mockito.Mockito.never;
import static org.mockito.Mockito.verify;
import static org.mockito.Mockito.when;

import io.microsandbox.ErrorKind;
import io.microsandbox.ExecOptions;
import io.microsandbox.ExecOutput;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.spring.pool.ExecObserver;
import io.microsandbox.spring.pool.Lease;
import io.microsandbox.spring.pool.SandboxSource;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.mockito.ArgumentCaptor;

/** The template against a mocked sandbox lent by a source that lends only it. */
class SandboxTemplateTest {

    private static final ExecOutput OK = new ExecOutput(0, new byte[0], new byte[0]);

    private Sandbox sandbox;
    private Lease returned;

    private final SandboxSource source = new SandboxSource() {
        @Override
        public String name() {
            return "test";
        }

        @Override
        public Lease borrow() {
            return new Lease(sandbox, this);
        }

        @Override
        public void giveBack(Lease lease) {
            returned = lease;
        }
    };

    @BeforeEach
    void sandbox() {
        sandbox = mock(Sandbox.class);
        when(sandbox.name()).thenReturn("test-1");
        when(sandbox.exec(eq("sh"), anyList(), any(ExecOptions.class))).thenReturn(OK);
    }

    private SandboxTemplate template(Duration timeout) {
        return new SandboxTemplate(source, ExecObserver.NOOP, timeout);
    }

    /** An Error inside a command reaches the caller as it is, recorded as an error (it was an NPE from the outcome). */
    @Test
    void anErrorInACommandReachesTheCallerUnchanged() {
        when(sandbox.exec(eq("boom"), anyList(), any(ExecOptions.class))).thenThrow(new AssertionError("deep"));
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> template(Duration.ofSeconds(5)).exec("boom", java.util.List.of()))
                .isInstanceOf(AssertionError.class).hasMessage("deep");
        org.assertj.core.api.Assertions.assertThat(returned).isNotNull();
        org.assertj.core.api.Assertions.assertThat(ExecObserver.outcome(null, null)).isEqualTo("error");
    }

    @Test
    void theCodeFileStepsOfARunWithStdinHaveAShortTimeLimit() {
        when(sandbox.exec(eq("python3"), anyList(), any(ExecOptions.class))).thenReturn(OK);
        template(Duration.ofMinutes(5)).withStdin("input").run("python", "print(input())");
        template(Duration.ofSeconds(2)).withStdin("input").run("python", "print(input())");
        ArgumentCaptor<ExecOptions> written = ArgumentCaptor.forClass(ExecOptions.class);
        ArgumentCaptor<ExecOptions> removed = ArgumentCaptor.forClass(ExecOptions.class);
        verify(sandbox, org.mockito.Mockito.times(2)).exec(eq("sh"), anyList(), written.capture());
        verify(sandbox, org.mockito.Mockito.times(2)).exec(eq("rm"), anyList(), removed.capture());
        assertThat(written.getAllValues()).extracting(ExecOptions::timeout).containsExactly(Duration.ofSeconds(10), Duration.ofSeconds(2));
        assertThat(removed.getAllValues()).extracting(ExecOptions::timeout).containsExactly(Duration.ofSeconds(10), Duration.ofSeconds(2));
    }

    @Test
    void aRunThatTimedOutLeavesItsCodeFileToTheDiscardedSandbox() {
        when(sandbox.exec(eq("python3"), anyList(), any(ExecOptions.class)))
                .thenThrow(new MicrosandboxException(ErrorKind.EXEC_TIMEOUT, "killed after 5s"));
        assertThatThrownBy(() -> template(Duration.ofSeconds(5)).withStdin("input").run("python", "while True: pass"))
                .isInstanceOf(SandboxTimeoutException.class);
        verify(sandbox, never()).exec(eq("rm"), anyList(), any(ExecOptions.class));
        verify(sandbox, never()).exec(eq("rm"), anyList());
        assertThat(returned.brokenReason()).isEqualTo("timeout");
    }

    @Test
    void anInterruptedCallerKeepsTheSandboxForThePool() {
        when(sandbox.exec(eq("sleep"), anyList(), any(ExecOptions.class)))
                .thenThrow(new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for 'sleep'"));
        assertThatThrownBy(() -> template(null).exec("sleep", "60"))
                .isInstanceOfSatisfying(SandboxInterruptedException.class, e -> assertThat(e.getKind()).isEqualTo(ErrorKind.CANCELLED));
        assertThat(returned).isNotNull();
        assertThat(returned.brokenReason()).isNull();
    }

    /** A negative timeout is a typo, not "no limit" on untrusted code; zero and null are none. */
    @Test
    void aNegativeTimeoutIsRefusedAndZeroMeansNone() {
        for (Runnable negative : List.<Runnable>of(() -> template(Duration.ofSeconds(-5)), () -> template(null).withTimeout(Duration.ofMillis(-1)))) {
            assertThatThrownBy(negative::run).isInstanceOfSatisfying(SandboxAccessException.class, e -> {
                assertThat(e.getKind()).isEqualTo(ErrorKind.INVALID_ARGUMENT);
                assertThat(e.getMessage()).contains("must not be negative");
            });
        }
        template(Duration.ofSeconds(5)).withTimeout(Duration.ZERO).shell("true");
        ArgumentCaptor<ExecOptions> options = ArgumentCaptor.forClass(ExecOptions.class);
        verify(sandbox).shell(eq("true"), options.capture());
        assertThat(options.getValue().timeout()).isNull();
    }

    @Test
    void aCommandMayBeGivenMoreOutputThanTheDefault() {
        template(null).withMaxOutputBytes(64L << 20).withCwd("/tmp").shell("true");
        ArgumentCaptor<ExecOptions> options = ArgumentCaptor.forClass(ExecOptions.class);
        verify(sandbox).shell(eq("true"), options.capture());
        assertThat(options.getValue().maxOutputBytes()).isEqualTo(64L << 20);
        assertThat(options.getValue().cwd()).isEqualTo("/tmp");
        assertThatThrownBy(() -> template(null).withMaxOutputBytes(0)).isInstanceOfSatisfying(SandboxAccessException.class,
                e -> assertThat(e.getKind()).isEqualTo(ErrorKind.INVALID_ARGUMENT));
    }

    @Test
    void aTimeoutSaysWhichSettingRaisesIt() {
        when(sandbox.shell(eq("sleep 5"), any(ExecOptions.class)))
                .thenThrow(new MicrosandboxException(ErrorKind.EXEC_TIMEOUT, "'sh' did not finish within PT1S and was killed"));
        assertThatThrownBy(() -> template(Duration.ofSeconds(1)).shell("sleep 5")).isInstanceOfSatisfying(SandboxTimeoutException.class,
                e -> assertThat(e.getMessage()).contains("microsandbox.exec-timeout", "withTimeout"));
    }
}

package io.microsandbox.spring.actuate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.mockito.Mockito.mock;
import static org.mockito.Mockito.when;

import io.microsandbox.spring.pool.PoolStats;
import io.microsandbox.spring.pool.SandboxPool;
import io.microsandbox.spring.pool.WarmStartStats;
import org.junit.jupiter.api.Test;
import org.springframework.boot.health.contributor.Status;

class SandboxPoolHealthIndicatorTests {

    private static Status health(PoolStats stats) {
        SandboxPool pool = mock(SandboxPool.class);
        when(pool.name()).thenReturn("default");
        when(pool.stats()).thenReturn(stats);
        when(pool.warmStartStats()).thenReturn(new WarmStartStats("boot", 0, 0, null, 0, 0, null));
        return new SandboxPoolHealthIndicator(pool).health().getStatus();
    }

    @Test
    void downWhileBootsFailAndThePoolHasNothingToLend() {
        assertThat(health(new PoolStats(0, 0, 0, 0, 0, 1, 4, 2, 2, "no kernel"))).isEqualTo(Status.DOWN);
        assertThat(health(new PoolStats(1, 0, 0, 0, 0, 1, 4, 2, 2, "no kernel"))).isEqualTo(Status.UP);
    }

    /** With min-idle 0 nothing boots until someone borrows: a past failure must not hold it DOWN for ever. */
    @Test
    void aPoolThatNeedsNoMemberIsNotHeldDownByAnOldFailure() {
        assertThat(health(new PoolStats(0, 0, 0, 0, 0, 0, 4, 1, 1, "no kernel"))).isEqualTo(Status.UP);
        assertThat(health(new PoolStats(0, 0, 0, 0, 1, 0, 4, 1, 1, "no kernel"))).isEqualTo(Status.DOWN);
    }
}

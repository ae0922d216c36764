package io.microsandbox;

import java.time.Duration;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** cacheReclaimAfter: default, rounding, validation and persisted form. */
class SandboxConfigCacheReclaimTest {
    private static SandboxConfig.Builder base() {
        return SandboxConfig.builder().image("/img");
    }

    @Test
    void defaultsToThirtySecondsAndRoundsUpToSeconds() {
        assertThat(base().build().cacheReclaimAfter()).isEqualTo(SandboxConfig.DEFAULT_CACHE_RECLAIM_AFTER).isEqualTo(Duration.ofSeconds(30));
        assertThat(base().cacheReclaimAfter(Duration.ofMillis(1500)).build().cacheReclaimAfter()).isEqualTo(Duration.ofSeconds(2));
    }

    @Test
    void neverSurvivesTheJsonRoundTripAndAConfigWithoutItReadsAsTheDefault() {
        SandboxConfig never = base().cacheReclaimAfter(Duration.ZERO).build();
        SandboxConfig back = SandboxConfig.fromJson(never.toJson());
        assertThat(back.cacheReclaimAfter()).isZero();
        assertThat(back.toBuilder().build()).isEqualTo(never);
        String older = base().build().toJson().replaceAll(",?\\s*\"cacheReclaimAfterMs\"\\s*:\\s*\\d+", "");
        assertThat(older).doesNotContain("cacheReclaimAfterMs");
        assertThat(SandboxConfig.fromJson(older).cacheReclaimAfter()).isEqualTo(SandboxConfig.DEFAULT_CACHE_RECLAIM_AFTER);
    }

    @Test
    void refusesANegativeOrMissingDuration() {
        for (Duration d : new Duration[] {Duration.ofSeconds(-1), null}) {
            assertThatThrownBy(() -> base().cacheReclaimAfter(d).build()).as("%s", d)
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG))
                    .hasMessageContaining("cacheReclaimAfter");
        }
    }
}

package io.microsandbox.spring.actuate;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.Microsandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.spring.MicrosandboxProperties;
import io.microsandbox.spring.pool.MemberOrigin;
import io.microsandbox.spring.pool.PoolMemberView;
import io.microsandbox.spring.pool.SandboxPool;
import io.micrometer.core.instrument.composite.CompositeMeterRegistry;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Binding to a composite and to the registry inside it (as Spring Boot and the binder may both do) counts once. */
class SandboxPoolMetricsTests {

    @TempDir
    Path temp;

    private SandboxPool newPool() throws java.io.IOException {
        return newPool(false);
    }

    private SandboxPool newPool(boolean sandboxMetrics) throws java.io.IOException {
        Files.createDirectories(temp.resolve("rootfs"));
        MicrosandboxProperties.Pool settings = new MicrosandboxProperties.Pool();
        settings.setSandboxMetrics(sandboxMetrics);
        return new SandboxPool(Microsandbox.builder().home(temp.resolve("home")).build(),
                SandboxConfig.builder().image(temp.resolve("rootfs").toString()).build(), settings, "test");
    }

    /** A member removed before its gauges were made (a kill racing the pool's notice) leaves no gauges behind. */
    @Test
    void gaugesOfAMemberAlreadyGoneAreNotKept() throws Exception {
        SandboxPool pool = newPool(true);
        try {
            SimpleMeterRegistry registry = new SimpleMeterRegistry();
            SandboxPoolMetrics metrics = new SandboxPoolMetrics(pool);
            metrics.bindTo(registry);
            metrics.memberRemoved("gone");
            metrics.memberAdded(member("gone"));
            assertThat(registry.find("microsandbox.sandbox.cpu").tag("sandbox", "gone").gauge()).isNull();
            pool.removeListener(metrics);
        } finally {
            pool.close();
        }
    }

    /** One series per member and rotation is opt-in: by default a member gets no meters of its own. */
    @Test
    void perSandboxMetersOnlyWhenAskedFor() throws Exception {
        for (boolean asked : new boolean[] {false, true}) {
            SandboxPool pool = newPool(asked);
            try {
                SimpleMeterRegistry registry = new SimpleMeterRegistry();
                SandboxPoolMetrics metrics = new SandboxPoolMetrics(pool);
                metrics.bindTo(registry);
                java.util.Set<String> registered = new java.util.HashSet<>();
                registry.config().onMeterAdded(m -> registered.add(m.getId().getName()));
                metrics.memberAdded(member("m1"));
                assertThat(registered.contains("microsandbox.sandbox.cpu")).as("asked: " + asked).isEqualTo(asked);
                pool.removeListener(metrics);
            } finally {
                pool.close();
            }
        }
    }

    /** A registry that outlives the pool (a parent context's) keeps none of its meters, which would show a closed pool. */
    @Test
    void unbindingRemovesThePoolsMeters() throws Exception {
        SandboxPool pool = newPool();
        try {
            SimpleMeterRegistry registry = new SimpleMeterRegistry();
            SandboxPoolMetrics metrics = new SandboxPoolMetrics(pool);
            metrics.bindTo(registry);
            metrics.acquired(Duration.ofMillis(3));
            metrics.created(Duration.ofSeconds(2), MemberOrigin.BOOT);
            assertThat(registry.getMeters()).isNotEmpty();
            metrics.unbind();
            assertThat(registry.getMeters()).isEmpty();
            metrics.acquired(Duration.ofMillis(3));
            assertThat(registry.getMeters()).isEmpty();
        } finally {
            pool.close();
        }
    }

    private static PoolMemberView member(String name) {
        return new PoolMemberView() {
            public String name() { return name; }
            public String state() { return "idle"; }
            public int uses() { return 0; }
            public java.time.Instant createdAt() { return java.time.Instant.now(); }
            public java.time.Instant expiresAt() { return java.time.Instant.now(); }
            public boolean evictionPending() { return false; }
            public boolean adopted() { return false; }
            public MemberOrigin origin() { return MemberOrigin.BOOT; }
            public io.microsandbox.Metrics lastMetrics() { return null; }
        };
    }

    @Test
    void compositeAndItsChildCountOnce() throws Exception {
        SandboxPool pool = newPool();
        try {
            for (boolean childFirst : new boolean[] {true, false}) {
                SimpleMeterRegistry simple = new SimpleMeterRegistry();
                CompositeMeterRegistry composite = new CompositeMeterRegistry();
                composite.add(simple);
                SandboxPoolMetrics metrics = new SandboxPoolMetrics(pool);
                if (childFirst) {
                    metrics.bindTo(simple);
                    metrics.bindTo(composite);
                } else {
                    metrics.bindTo(composite);
                    metrics.bindTo(simple);
                }
                metrics.bindTo(composite);
                metrics.acquired(Duration.ofMillis(3));
                metrics.created(Duration.ofSeconds(2), MemberOrigin.RESTORE);
                assertThat(simple.get("microsandbox.pool.acquire").timer().count()).isEqualTo(1);
                assertThat(simple.get("microsandbox.pool.created").tag("source", "restore").counter().count()).isEqualTo(1.0);
                assertThat(simple.get("microsandbox.pool.boot").tag("source", "restore").timer().count()).isEqualTo(1);
                assertThat(simple.get("microsandbox.pool.sandboxes").tag("state", "idle").gauge().value()).isZero();
                pool.removeListener(metrics);
            }
        } finally {
            pool.close();
        }
    }
}

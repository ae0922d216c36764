package io.microsandbox.spring.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.Microsandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.SandboxFilter;
import io.microsandbox.SandboxStatus;
import io.microsandbox.spring.SandboxTemplate;
import io.microsandbox.spring.pool.SandboxPool;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * on-shutdown=keep leaves the members running; a new context on the same home and instance
 * re-adopts them instead of booting, removes a stopped one, a second open pool with the same
 * instance id runs as another instance, and on-shutdown=drain leaves nothing; members of a
 * later instance that no pool runs as any more are removed.
 */
class PoolReadoptionIT {

    static final Path HOME = VmTestSupport.home("readopt");

    @AfterAll
    static void nothingLeft() throws InterruptedException {
        VmTestSupport.assertNothingLeft(HOME);
    }

    @Test
    void reAdoptsAfterRestart() {
        AtomicReference<String> kept = new AtomicReference<>();
        VmTestSupport.runner(HOME)
                .withPropertyValues("microsandbox.pool.on-shutdown=keep", "microsandbox.pool.instance-id=node-a",
                        "microsandbox.pool.max-size=1")
                .run(context -> {
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    VmTestSupport.await("warm-up", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);
                    context.getBean(SandboxTemplate.class).shell("echo remembered > /tmp/mark");
                    kept.set(pool.members().iterator().next().name());
                });
        Microsandbox runtime = Microsandbox.builder().home(HOME).build();
        assertThat(runtime.get(kept.get()).status()).isEqualTo(SandboxStatus.RUNNING);

        // a stopped member of the same pool and instance, as a crash would leave
        SandboxConfig stale = SandboxConfig.builder().image(VmTestSupport.image()).memoryMib(256)
                .label(SandboxPool.POOL_LABEL, "default").label(SandboxPool.INSTANCE_LABEL, "node-a").build();
        runtime.create("default-stale", stale).close();
        assertThat(runtime.get("default-stale").status()).isEqualTo(SandboxStatus.STOPPED);

        VmTestSupport.runner(HOME)
                .withBean(MeterRegistry.class, SimpleMeterRegistry::new)
                .withPropertyValues("microsandbox.pool.on-shutdown=drain", "microsandbox.pool.instance-id=node-a",
                        "microsandbox.pool.max-size=1")
                .run(context -> {
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    assertThat(pool.member(kept.get())).isPresent();
                    assertThat(pool.member(kept.get()).get().adopted()).isTrue();
                    assertThat(context.getBean(SandboxTemplate.class).exec("cat", "/tmp/mark").stdout()).isEqualTo("remembered\n");
                    assertThat(context.getBean(MeterRegistry.class).find("microsandbox.pool.created").counter())
                            .as("no boot: the running member was re-adopted").isNull();
                    VmTestSupport.await("the stopped member removed", Duration.ofSeconds(30),
                            () -> runtime.find("default-stale").isEmpty());

                    // another application instance on this home with the same id (a second replica)
                    // runs as node-a#2: it neither adopts nor, on its close, drains node-a's members
                    VmTestSupport.runner(HOME)
                            .withPropertyValues("microsandbox.pool.instance-id=node-a", "microsandbox.pool.min-idle=0",
                                    "microsandbox.pool.max-size=1")
                            .run(replica -> {
                                SandboxPool second = replica.getBean(SandboxPool.class);
                                assertThat(second.instanceId()).isEqualTo("node-a#2");
                                assertThat(second.member(kept.get())).isEmpty();
                            });
                    assertThat(pool.member(kept.get())).isPresent();
                    assertThat(runtime.get(kept.get()).status()).isEqualTo(SandboxStatus.RUNNING);
                    assertThat(context.getBean(SandboxTemplate.class).exec("cat", "/tmp/mark").stdout()).isEqualTo("remembered\n");
                });
        // drained on close
        assertThat(runtime.list(SandboxFilter.labels(java.util.Map.of(SandboxPool.INSTANCE_LABEL, "node-a")))).isEmpty();
    }

    /**
     * A second replica (node-b#2) stopped with on-shutdown=keep while the first runs leaves a
     * member that nobody would adopt once the first holds node-b: the next start of node-b
     * removes it once the replica has been gone for longer than a restart takes.
     */
    @Test
    void membersOfALaterInstanceThatNoPoolRunsAsAreRemoved() throws Exception {
        Microsandbox runtime = Microsandbox.builder().home(HOME).build();
        AtomicReference<String> left = new AtomicReference<>();
        VmTestSupport.runner(HOME)
                .withPropertyValues("microsandbox.pool.instance-id=node-b", "microsandbox.pool.min-idle=0")
                .run(first -> VmTestSupport.runner(HOME)
                        .withPropertyValues("microsandbox.pool.instance-id=node-b", "microsandbox.pool.on-shutdown=keep",
                                "microsandbox.pool.max-size=1")
                        .run(replica -> {
                            SandboxPool pool = replica.getBean(SandboxPool.class);
                            assertThat(pool.instanceId()).isEqualTo("node-b#2");
                            VmTestSupport.await("warm-up", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);
                            left.set(pool.members().iterator().next().name());
                        }));
        assertThat(runtime.get(left.get()).status()).isEqualTo(SandboxStatus.RUNNING);
        // the replica left longer ago than a restart takes (its id's lock file says when)
        try (var files = java.nio.file.Files.list(HOME.resolve("pools"))) {
            for (Path f : files.toList()) {
                java.nio.file.Files.setLastModifiedTime(f, java.nio.file.attribute.FileTime.from(
                        java.time.Instant.now().minus(SandboxPool.ABANDONED_AFTER).minusSeconds(60)));
            }
        }

        VmTestSupport.runner(HOME)
                .withPropertyValues("microsandbox.pool.instance-id=node-b", "microsandbox.pool.min-idle=0")
                .run(context -> {
                    assertThat(context.getBean(SandboxPool.class).instanceId()).isEqualTo("node-b");
                    VmTestSupport.await("the abandoned member removed", Duration.ofSeconds(60), () -> runtime.find(left.get()).isEmpty());
                });
        assertThat(runtime.list(SandboxFilter.labels(java.util.Map.of(SandboxPool.INSTANCE_LABEL, "node-b#2")))).isEmpty();
    }
}

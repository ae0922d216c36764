package io.microsandbox.spring.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.Microsandbox;
import io.microsandbox.spring.SandboxTemplate;
import io.microsandbox.spring.pool.SandboxPool;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/** Rotation by max-uses and by max-lifetime; a borrower holding the sandbox is never disturbed. */
class PoolRotationIT {

    static final Path HOME = VmTestSupport.home("rotation");

    @AfterAll
    static void nothingLeft() throws InterruptedException {
        VmTestSupport.assertNothingLeft(HOME);
    }

    @Test
    void maxUsesRotatesOnlyWhenTheBorrowerGivesItBack() {
        VmTestSupport.runner(HOME)
                .withBean(MeterRegistry.class, SimpleMeterRegistry::new)
                .withPropertyValues("microsandbox.pool.max-uses=1", "microsandbox.pool.max-size=2")
                .run(context -> {
                    SandboxTemplate template = context.getBean(SandboxTemplate.class);
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    Microsandbox runtime = context.getBean(Microsandbox.class);
                    MeterRegistry meters = context.getBean(MeterRegistry.class);
                    VmTestSupport.await("warm-up", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);

                    List<String> seen = template.execute(sb -> {
                        String name = ((SandboxTemplate) sb).sandboxName();
                        sb.shell("echo 1 > /tmp/step");
                        // the member reached max-uses with this loan; housekeeping runs meanwhile
                        try {
                            Thread.sleep(3000);
                        } catch (InterruptedException e) {
                            throw new IllegalStateException(e);
                        }
                        assertThat(pool.member(name)).isPresent();
                        assertThat(pool.member(name).get().state()).isEqualTo("active");
                        String out = sb.shell("echo 2 >> /tmp/step; cat /tmp/step").stdout();
                        return List.of(name, out);
                    });
                    assertThat(seen.get(1)).isEqualTo("1\n2\n");
                    String used = seen.get(0);
                    // given back: drained and replaced
                    assertThat(pool.member(used)).isEmpty();
                    assertThat(meters.get("microsandbox.pool.rotated").counter().count()).isEqualTo(1.0);
                    VmTestSupport.await("the rotated sandbox removed", Duration.ofSeconds(60), () -> runtime.find(used).isEmpty());
                    VmTestSupport.await("min-idle again", Duration.ofSeconds(90), () -> pool.stats().idle() >= 1);
                    assertThat(template.exec("true").exitCode()).isZero();
                });
    }

    @Test
    void lifetimeRotatesIdleMembersAndMarksLentOnes() {
        VmTestSupport.runner(HOME)
                .withPropertyValues("microsandbox.pool.max-lifetime=8s", "microsandbox.pool.max-size=2",
                        "microsandbox.pool.name=life")
                .run(context -> {
                    SandboxTemplate template = context.getBean(SandboxTemplate.class);
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    VmTestSupport.await("warm-up", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);
                    // a borrower holds a member across its lifetime: it keeps working, marked only
                    String held = template.execute(sb -> {
                        String name = ((SandboxTemplate) sb).sandboxName();
                        try {
                            VmTestSupport.await("the lent member passes its lifetime", Duration.ofSeconds(30),
                                    () -> pool.member(name).map(m -> m.evictionPending()).orElse(false));
                        } catch (InterruptedException e) {
                            throw new IllegalStateException(e);
                        }
                        assertThat(sb.exec("echo", "still here").stdout()).isEqualTo("still here\n");
                        return name;
                    });
                    assertThat(pool.member(held)).isEmpty();
                    // an idle member is rotated by the housekeeper when its lifetime ends
                    // picked in the same look that finds it idle: the housekeeper may rotate a member
                    // whose 8 s are up between a count of idle members and a second look
                    AtomicReference<String> idle = new AtomicReference<>();
                    VmTestSupport.await("a new idle member", Duration.ofSeconds(90), () -> pool.members().stream()
                            .filter(m -> m.state().equals("idle")).findFirst().map(m -> {
                                idle.set(m.name());
                                return true;
                            }).orElse(false));
                    VmTestSupport.await("the idle member rotated", Duration.ofSeconds(60), () -> pool.member(idle.get()).isEmpty());
                });
    }
}

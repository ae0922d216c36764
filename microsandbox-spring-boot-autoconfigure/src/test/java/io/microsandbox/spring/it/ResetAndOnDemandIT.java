package io.microsandbox.spring.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.Microsandbox;
import io.microsandbox.spring.SandboxTemplate;
import io.microsandbox.spring.pool.SandboxPool;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/** reset=clean gives every loan a fresh upper disk; pool.enabled=false boots one ephemeral sandbox per call. */
class ResetAndOnDemandIT {

    static final Path HOME = VmTestSupport.home("reset");

    @AfterAll
    static void nothingLeft() throws InterruptedException {
        VmTestSupport.assertNothingLeft(HOME);
    }

    @Test
    void cleanResetStartsEachLoanFromAFreshDisk() {
        VmTestSupport.runner(HOME)
                .withPropertyValues("microsandbox.pool.reset=clean", "microsandbox.pool.max-size=2")
                .run(context -> {
                    SandboxTemplate template = context.getBean(SandboxTemplate.class);
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    VmTestSupport.await("warm-up", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);
                    String first = template.execute(sb -> {
                        sb.shell("echo left-behind > /tmp/trace");
                        return ((SandboxTemplate) sb).sandboxName();
                    });
                    String second = template.execute(sb -> {
                        assertThat(sb.shell("cat /tmp/trace 2>/dev/null || echo clean").stdout()).isEqualTo("clean\n");
                        return ((SandboxTemplate) sb).sandboxName();
                    });
                    assertThat(second).isNotEqualTo(first);
                    Microsandbox runtime = context.getBean(Microsandbox.class);
                    VmTestSupport.await("the used member removed", Duration.ofSeconds(60), () -> runtime.find(first).isEmpty());
                });
    }

    @Test
    void poolDisabledBootsOnDemand() {
        VmTestSupport.runner(HOME)
                .withPropertyValues("microsandbox.pool.enabled=false", "microsandbox.pool.name=ondemand")
                .run(context -> {
                    assertThat(context).doesNotHaveBean(SandboxPool.class);
                    SandboxTemplate template = context.getBean(SandboxTemplate.class);
                    assertThat(template.run("python", "print('on demand')").stdout()).isEqualTo("on demand\n");
                    Microsandbox runtime = context.getBean(Microsandbox.class);
                    VmTestSupport.await("the ephemeral sandbox gone", Duration.ofSeconds(30),
                            () -> runtime.list().stream().noneMatch(h -> h.name().startsWith("ondemand-")));
                });
    }

    /** A borrower interrupted while it held the sandbox: the loan still ends, and the sandbox with it. */
    @Test
    void anInterruptedBorrowerStillEndsItsOnDemandSandbox() {
        VmTestSupport.runner(HOME)
                .withPropertyValues("microsandbox.pool.enabled=false", "microsandbox.pool.name=interrupted")
                .run(context -> {
                    SandboxTemplate template = context.getBean(SandboxTemplate.class);
                    String name;
                    try {
                        name = template.execute(sb -> {
                            Thread.currentThread().interrupt();
                            return ((SandboxTemplate) sb).sandboxName();
                        });
                        assertThat(Thread.currentThread().isInterrupted()).as("the interrupt is kept for the caller").isTrue();
                    } finally {
                        Thread.interrupted();
                    }
                    Microsandbox runtime = context.getBean(Microsandbox.class);
                    VmTestSupport.await("the ephemeral sandbox gone", Duration.ofSeconds(30), () -> runtime.find(name).isEmpty());
                });
    }
}

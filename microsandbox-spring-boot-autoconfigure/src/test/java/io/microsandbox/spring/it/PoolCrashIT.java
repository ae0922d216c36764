package io.microsandbox.spring.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.spring.SandboxTemplate;
import io.microsandbox.spring.pool.SandboxPool;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/** A member whose VM is killed from outside is discarded, counted as crashed, and replaced. */
class PoolCrashIT {

    static final Path HOME = VmTestSupport.home("crash");

    @AfterAll
    static void nothingLeft() throws InterruptedException {
        VmTestSupport.assertNothingLeft(HOME);
    }

    /**
     * Metrics read from the sandboxes (the meter binder's, every housekeeping period) do not
     * keep a member from idling out; one that stops so is discarded for that reason, not as a crash.
     */
    @Test
    void aMemberThatIdlesOutIsDiscardedAsSuchNotAsACrash() {
        VmTestSupport.runner(HOME)
                .withBean(MeterRegistry.class, SimpleMeterRegistry::new)
                .withPropertyValues("microsandbox.pool.max-size=1", "microsandbox.idle-timeout=3s",
                        "microsandbox.pool.housekeeping-period=1s")
                .run(context -> {
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    MeterRegistry meters = context.getBean(MeterRegistry.class);
                    VmTestSupport.await("warm-up", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);
                    String first = pool.members().iterator().next().name();
                    VmTestSupport.await("the idle member discarded", Duration.ofSeconds(60), () -> pool.member(first).isEmpty()
                            && meters.find("microsandbox.pool.discarded").counter() != null
                            && meters.get("microsandbox.pool.discarded").counter().count() >= 1);
                    var crashed = meters.find("microsandbox.pool.crashed").counter();
                    assertThat(crashed == null ? 0.0 : crashed.count()).as("members counted as crashed").isZero();
                });
    }

    /**
     * A loan that ends broken after the pool closed (a command that timed out as the application
     * shut down): its sandbox is still destroyed, on the returning thread since the pool's own
     * threads are gone, and the return does not throw.
     */
    @Test
    void aLeaseReturnedBrokenAfterThePoolClosedIsStillDestroyed() {
        VmTestSupport.runner(HOME)
                .withPropertyValues("microsandbox.pool.max-size=1", "microsandbox.pool.on-shutdown=keep")
                .run(context -> {
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    io.microsandbox.Microsandbox runtime = context.getBean(io.microsandbox.Microsandbox.class);
                    VmTestSupport.await("warm-up", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);
                    io.microsandbox.spring.pool.Lease lease = pool.borrow();
                    pool.close();
                    lease.markBroken("a command timed out");
                    pool.giveBack(lease);
                    assertThat(runtime.find(lease.name())).isEmpty();
                });
    }

    /** A borrower waiting for a member when the pool closes is told so at once, not after its acquire timeout. */
    @Test
    void aBorrowerWaitingWhenThePoolClosesIsToldAtOnce() {
        VmTestSupport.runner(HOME)
                .withPropertyValues("microsandbox.pool.max-size=1", "microsandbox.pool.acquire-timeout=60s")
                .run(context -> {
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    VmTestSupport.await("warm-up", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);
                    io.microsandbox.spring.pool.Lease lease = pool.borrow();
                    java.util.concurrent.CompletableFuture<Throwable> waiter = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
                        try {
                            pool.giveBack(pool.borrow());
                            return null;
                        } catch (RuntimeException e) {
                            return e;
                        }
                    });
                    VmTestSupport.await("the second borrower waiting", Duration.ofSeconds(10), () -> pool.stats().waiting() == 1);
                    long closing = System.nanoTime();
                    pool.close();
                    Throwable told = waiter.get(10, java.util.concurrent.TimeUnit.SECONDS);
                    assertThat(Duration.ofNanos(System.nanoTime() - closing)).isLessThan(Duration.ofSeconds(10));
                    assertThat(told).isInstanceOf(io.microsandbox.spring.SandboxPoolExhaustedException.class).hasMessageContaining("is closed");
                    pool.giveBack(lease);
                });
    }

    @Test
    void crashedMemberIsDiscarded() {
        VmTestSupport.runner(HOME)
                .withBean(MeterRegistry.class, SimpleMeterRegistry::new)
                .withPropertyValues("microsandbox.pool.max-size=1")
                .run(context -> {
                    SandboxTemplate template = context.getBean(SandboxTemplate.class);
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    MeterRegistry meters = context.getBean(MeterRegistry.class);
                    VmTestSupport.await("warm-up", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);
                    String victim = pool.members().iterator().next().name();

                    ProcessHandle qemu = VmTestSupport.qemuOf(HOME, victim);
                    assertThat(qemu.destroyForcibly()).isTrue();

                    // the housekeeper takes the member out of the pool a moment before it counts the
                    // discard: wait for both, then check that each happened exactly once
                    VmTestSupport.await("the crashed member discarded", Duration.ofSeconds(30), () -> pool.member(victim).isEmpty()
                            && meters.find("microsandbox.pool.discarded").counter() != null
                            && meters.get("microsandbox.pool.discarded").counter().count() >= 1);
                    assertThat(meters.get("microsandbox.pool.crashed").counter().count()).isEqualTo(1.0);
                    assertThat(meters.get("microsandbox.pool.discarded").counter().count()).isEqualTo(1.0);
                    // never lent again: the next loan gets a new sandbox
                    String next = template.execute(sb -> {
                        sb.exec("true");
                        return ((SandboxTemplate) sb).sandboxName();
                    });
                    assertThat(next).isNotEqualTo(victim);

                    // a VM that dies while lent: the borrower sees SandboxLostException, the member is discarded
                    String lost = template.execute(sb -> {
                        String name = ((SandboxTemplate) sb).sandboxName();
                        VmTestSupport.qemuOf(HOME, name).destroyForcibly();
                        org.assertj.core.api.Assertions.assertThatThrownBy(() -> {
                            // the first call may still be answered while the supervisor notices
                            for (int i = 0; i < 50; i++) {
                                sb.exec("true");
                                Thread.sleep(100);
                            }
                        }).isInstanceOf(io.microsandbox.spring.SandboxLostException.class);
                        return name;
                    });
                    assertThat(pool.member(lost)).isEmpty();
                    assertThat(meters.get("microsandbox.pool.discarded").counter().count()).isEqualTo(2.0);
                    VmTestSupport.await("a replacement", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);
                });
    }
}

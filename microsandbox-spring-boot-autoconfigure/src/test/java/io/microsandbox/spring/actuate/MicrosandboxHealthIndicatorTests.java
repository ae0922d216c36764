package io.microsandbox.spring.actuate;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.Accelerator;
import io.microsandbox.Microsandbox;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MicrosandboxHealthIndicatorTests {

    static final Path SETUP_HOME = Path.of(System.getProperty("msb.setup.home", System.getProperty("user.home") + "/.microsandbox"));

    @TempDir
    Path home;

    private Microsandbox runtime() {
        return Microsandbox.builder().home(home).kernelDir(SETUP_HOME.resolve("kernel/current")).build();
    }

    private static Object inUse(MicrosandboxHealthIndicator health) {
        return health.health().getDetails().get("acceleratorInUse");
    }

    /** The check answers at once while the accelerator is being found (with auto on a KVM host, a probe boot). */
    @Test
    @org.junit.jupiter.api.Timeout(60)
    void theHealthCheckDoesNotWaitForTheAcceleratorProbe() throws Exception {
        CountDownLatch probeMayEnd = new CountDownLatch(1);
        MicrosandboxHealthIndicator health = new MicrosandboxHealthIndicator(runtime(), () -> {
            try {
                probeMayEnd.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return Accelerator.KVM;
        });
        long start = System.nanoTime();
        assertThat(inUse(health)).isEqualTo("resolving");
        assertThat(inUse(health)).isEqualTo("resolving");
        assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(5));
        probeMayEnd.countDown();
        awaitInUse(health, "KVM");
    }

    /** A probe that failed is tried again by a later check. */
    @Test
    void aFailedProbeIsTriedAgain() throws Exception {
        AtomicInteger tries = new AtomicInteger();
        MicrosandboxHealthIndicator health = new MicrosandboxHealthIndicator(runtime(), () -> {
            if (tries.incrementAndGet() == 1) {
                throw new IllegalStateException("initramfs could not be built");
            }
            return Accelerator.TCG;
        });
        inUse(health);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!"TCG".equals(inUse(health)) && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertThat(inUse(health)).isEqualTo("TCG");
        assertThat(tries.get()).isEqualTo(2);
    }

    private static void awaitInUse(MicrosandboxHealthIndicator health, String expected) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!expected.equals(inUse(health)) && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertThat(inUse(health)).isEqualTo(expected);
    }
}

package io.microsandbox.spring.pool;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.mockito.ArgumentMatchers.any;
import static org.mockito.ArgumentMatchers.anyString;
import static org.mockito.Mockito.mock;
import static org.mockito.Mockito.never;
import static org.mockito.Mockito.times;
import static org.mockito.Mockito.timeout;
import static org.mockito.Mockito.verify;
import static org.mockito.Mockito.when;

import io.microsandbox.ErrorKind;
import io.microsandbox.Microsandbox;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.SandboxFilter;
import io.microsandbox.SandboxHandle;
import io.microsandbox.SandboxStatus;
import io.microsandbox.spring.MicrosandboxProperties;
import io.microsandbox.spring.SandboxPoolExhaustedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The pool against a mocked runtime: the sandboxes an earlier run left are handles the test
 * makes, and no VM boots ({@code create} fails unless a test says otherwise).
 */
class SandboxPoolTest {

    @TempDir
    Path temp;

    private Microsandbox runtime;
    private SandboxConfig config;
    /** What the runtime lists: the sandboxes left running by an earlier run. */
    private final List<SandboxHandle> running = new CopyOnWriteArrayList<>();
    private final List<SandboxPool> pools = new CopyOnWriteArrayList<>();

    @BeforeEach
    void runtime() throws Exception {
        Files.createDirectories(temp.resolve("rootfs"));
        config = SandboxConfig.builder().image(temp.resolve("rootfs").toString()).build();
        runtime = mock(Microsandbox.class);
        when(runtime.home()).thenReturn(temp.resolve("home"));
        when(runtime.list(any(SandboxFilter.class))).thenAnswer(inv -> List.copyOf(running));
        when(runtime.find(anyString())).thenReturn(Optional.empty());
        when(runtime.connect(anyString())).thenAnswer(inv -> sandbox(inv.getArgument(0)));
        when(runtime.create(anyString(), any(SandboxConfig.class)))
                .thenThrow(new MicrosandboxException(ErrorKind.BOOT_FAILED, "no VMs in unit tests"));
    }

    @AfterEach
    void closePools() {
        pools.forEach(SandboxPool::close);
    }

    private static MicrosandboxProperties.Pool settings() {
        MicrosandboxProperties.Pool settings = new MicrosandboxProperties.Pool();
        settings.setMinIdle(0);
        settings.setBootBackoff(Duration.ofSeconds(10));
        return settings;
    }

    private SandboxPool pool(SandboxConfig config, MicrosandboxProperties.Pool settings) {
        SandboxPool pool = new SandboxPool(runtime, config, settings, "app");
        pools.add(pool);
        return pool;
    }

    private static Sandbox sandbox(String name) {
        Sandbox sb = mock(Sandbox.class);
        when(sb.name()).thenReturn(name);
        return sb;
    }

    /** A running sandbox left by an earlier run of the pool, with these labels besides the pool's. */
    private SandboxHandle leftRunning(SandboxPool pool, String name, Instant createdAt, Map<String, String> labels) {
        Map<String, String> all = new HashMap<>(pool.labels());
        all.putAll(labels);
        SandboxHandle h = mock(SandboxHandle.class);
        when(h.name()).thenReturn(name);
        when(h.status()).thenReturn(SandboxStatus.RUNNING);
        when(h.labels()).thenReturn(all);
        when(h.createdAt()).thenReturn(createdAt);
        running.add(h);
        return h;
    }

    /** Left by an earlier run with the pool's current configuration. */
    private SandboxHandle leftRunning(SandboxPool pool, String name) {
        return leftRunning(pool, name, Instant.now(), Map.of(SandboxPool.CONFIG_LABEL, configHash(pool)));
    }

    private static String configHash(SandboxPool pool) {
        return pool.config().labels().get(SandboxPool.CONFIG_LABEL);
    }

    private static List<String> memberNames(SandboxPool pool) {
        return pool.members().stream().map(PoolMemberView::name).toList();
    }

    @Test
    void membersCreatedWithAnotherConfigurationAreRemovedNotReadopted() {
        SandboxPool pool = pool(config, settings());
        leftRunning(pool, "default-current");
        leftRunning(pool, "default-stale", Instant.now(), Map.of(SandboxPool.CONFIG_LABEL, "0123456789abcdef"));
        leftRunning(pool, "default-unlabelled", Instant.now(), Map.of());
        pool.start();
        assertThat(memberNames(pool)).containsExactly("default-current");
        verify(runtime, never()).connect("default-stale");
        verify(runtime, timeout(5000).atLeastOnce()).remove("default-stale");
        verify(runtime, timeout(5000).atLeastOnce()).remove("default-unlabelled");
        verify(runtime, never()).remove("default-current");
    }

    @Test
    void theConfigurationHashFollowsTheSandboxConfigAndTheWarmUp() {
        List<String> hashes = new java.util.ArrayList<>();
        MicrosandboxProperties.Pool warmUp = settings();
        warmUp.setWarmUpCommand("python3 -c 'import json'");
        MicrosandboxProperties.Pool checkpoint = settings();
        checkpoint.setWarmStart(MicrosandboxProperties.WarmStart.CHECKPOINT);
        for (var variant : List.of(Map.entry(config, settings()), Map.entry(config, settings()),
                Map.entry(config.toBuilder().memoryMib(1024).build(), settings()),
                Map.entry(config.toBuilder().env("A", "1").build(), settings()),
                Map.entry(config, warmUp), Map.entry(config, checkpoint))) {
            // one at a time: a second open pool would run as another instance id, with other labels
            SandboxPool pool = new SandboxPool(runtime, variant.getKey(), variant.getValue(), "app");
            hashes.add(configHash(pool));
            pool.close();
        }
        assertThat(hashes.get(0)).as("the same configuration").isEqualTo(hashes.get(1));
        assertThat(hashes.subList(1, hashes.size())).doesNotHaveDuplicates();
    }

    /** A secret without a placeholder of its own gets a random one in every run: members are still re-adopted. */
    @Test
    void aSecretsRandomPlaceholderDoesNotChangeTheConfigurationHash() {
        List<String> hashes = new java.util.ArrayList<>();
        for (int run = 0; run < 2; run++) {
            SandboxConfig withSecret = config.toBuilder().secret(io.microsandbox.Secret.env("TOKEN", "s3cret-value").allowHosts("api.test").requireTls(false).build()).build();
            SandboxPool pool = new SandboxPool(runtime, withSecret, settings(), "app");
            hashes.add(configHash(pool));
            pool.close();
        }
        assertThat(hashes.get(0)).isEqualTo(hashes.get(1));
    }

    @Test
    void withResetCleanAMemberLentWhenThePoolClosesIsNotLeftRunning() {
        MicrosandboxProperties.Pool settings = settings();
        settings.setReset(MicrosandboxProperties.Reset.CLEAN);
        settings.setOnShutdown(MicrosandboxProperties.OnShutdown.KEEP);
        SandboxPool pool = pool(config, settings);
        leftRunning(pool, "default-a");
        leftRunning(pool, "default-b");
        pool.start();
        Lease lease = pool.borrow();
        String idleOne = lease.name().equals("default-a") ? "default-b" : "default-a";
        pool.close();
        verify(runtime).remove(lease.name());
        verify(runtime, never()).remove(idleOne); // idle, so clean: kept for the next start
        pool.giveBack(lease);
    }

    @Test
    void unresponsiveMembersDoNotHoldABorrowerPastTheAcquireTimeout() throws Exception {
        MicrosandboxProperties.Pool settings = settings();
        settings.setAcquireTimeout(Duration.ofMillis(300));
        settings.setValidationInterval(Duration.ZERO); // every loan pings
        settings.setValidationTimeout(Duration.ofSeconds(1));
        SandboxPool pool = pool(config, settings);
        for (String name : List.of("default-a", "default-b", "default-c")) {
            leftRunning(pool, name);
        }
        Sandbox silent = sandbox("silent");
        org.mockito.Mockito.doAnswer(inv -> {
            Thread.sleep(10_000);
            return null;
        }).when(silent).touch();
        when(runtime.connect(anyString())).thenReturn(silent);
        pool.start();
        long t0 = System.nanoTime();
        assertThatThrownBy(pool::borrow).isInstanceOfSatisfying(SandboxPoolExhaustedException.class,
                e -> assertThat(e.getKind()).isEqualTo(ErrorKind.RESOURCE_LIMIT));
        assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(2));
        // the ping the deadline cut short goes on: the member is out of idle meanwhile, then, silent
        // for the whole validation timeout, discarded (put back unjudged, every borrower would try it first)
        assertThat(pool.stats().idle()).isEqualTo(2);
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (pool.members().size() > 2 && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertThat(pool.members()).hasSize(2);
        assertThat(pool.stats().idle()).isEqualTo(2);
    }

    @Test
    void aMemberThatAnswersIsLentEvenWithNoTimeToWait() {
        MicrosandboxProperties.Pool settings = settings();
        settings.setAcquireTimeout(Duration.ZERO);
        settings.setValidationInterval(Duration.ZERO);
        SandboxPool pool = pool(config, settings);
        leftRunning(pool, "default-a");
        pool.start();
        assertThat(pool.borrow().name()).isEqualTo("default-a");
    }

    @Test
    void anExhaustedPoolIsAResourceLimit() {
        MicrosandboxProperties.Pool settings = settings();
        settings.setAcquireTimeout(Duration.ofMillis(100));
        SandboxPool pool = pool(config, settings);
        pool.start();
        assertThatThrownBy(pool::borrow).isInstanceOfSatisfying(SandboxPoolExhaustedException.class,
                e -> assertThat(e.getKind()).isEqualTo(ErrorKind.RESOURCE_LIMIT));
    }

    @Test
    void aMemberIsRetiredAheadOfItsSandboxsMaxDuration() {
        Instant createdAt = Instant.now().minus(Duration.ofMinutes(1));
        SandboxPool pool = pool(config.toBuilder().maxDuration(Duration.ofMinutes(10)).build(), settings());
        leftRunning(pool, "default-a", createdAt, Map.of(SandboxPool.CONFIG_LABEL, configHash(pool)));
        pool.start();
        // max-lifetime (30m) is later: max-duration less a tenth, at most a minute
        assertThat(pool.member("default-a").orElseThrow().expiresAt()).isEqualTo(createdAt.plus(Duration.ofMinutes(9)));
    }

    @Test
    void maxLifetimeStillAppliesWhenItIsTheEarlier() {
        Instant createdAt = Instant.now();
        SandboxPool pool = pool(config.toBuilder().maxDuration(Duration.ofHours(2)).build(), settings());
        leftRunning(pool, "default-a", createdAt, Map.of(SandboxPool.CONFIG_LABEL, configHash(pool)));
        pool.start();
        assertThat(pool.member("default-a").orElseThrow().expiresAt())
                .isBetween(createdAt.plus(Duration.ofMinutes(30)).minus(Duration.ofSeconds(45)), createdAt.plus(Duration.ofMinutes(30)));
    }

    @Test
    void closeWaitsForTheRemovalsUnderWay() {
        SandboxPool pool = pool(config, settings());
        leftRunning(pool, "default-a");
        when(runtime.find("default-a")).thenAnswer(inv -> {
            Thread.sleep(1000);
            return Optional.empty();
        });
        pool.start();
        pool.kill("default-a");
        pool.close();
        verify(runtime).remove("default-a");
    }

    /** A graceful shutdown: once quiesced, the pool boots for a borrower waiting, never to keep min-idle. */
    @Test
    void aQuiescedPoolBootsOnlyForAWaitingBorrower() throws Exception {
        when(runtime.create(anyString(), any(SandboxConfig.class))).thenAnswer(inv -> {
            Sandbox sb = sandbox(inv.getArgument(0));
            // listed as running, or housekeeping would take it for crashed and boot another
            SandboxHandle h = mock(SandboxHandle.class);
            when(h.name()).thenReturn(inv.getArgument(0));
            when(h.status()).thenReturn(SandboxStatus.RUNNING);
            running.add(h);
            // a ping slow enough for housekeeping to fill while the borrower checks the member it took
            org.mockito.Mockito.doAnswer(ping -> {
                Thread.sleep(300);
                return null;
            }).when(sb).touch();
            return sb;
        });
        MicrosandboxProperties.Pool settings = settings();
        settings.setMinIdle(1);
        settings.setAcquireTimeout(Duration.ofSeconds(10));
        settings.setValidationInterval(Duration.ZERO);
        settings.setHousekeepingPeriod(Duration.ofMillis(50));
        SandboxPool pool = pool(config, settings);
        pool.start();
        verify(runtime, timeout(5000)).create(anyString(), any(SandboxConfig.class));
        long deadline = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        while (pool.stats().idle() < 1 && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        pool.quiesce();
        Lease first = pool.borrow();
        Thread.sleep(500);
        // min-idle alone would have booted a replacement by now
        verify(runtime, times(1)).create(anyString(), any(SandboxConfig.class));
        Lease second = pool.borrow();
        assertThat(second.sandbox().name()).isNotEqualTo(first.sandbox().name());
        verify(runtime, times(2)).create(anyString(), any(SandboxConfig.class));
        pool.giveBack(second);
        pool.giveBack(first);
    }

    /** The sampler reads its own members' samples, not every sandbox of a shared home over a connection each. */
    @Test
    void metricsAreSampledForTheMembersOnly() {
        SandboxPool pool = pool(config, settings());
        SandboxHandle member = leftRunning(pool, "default-a");
        io.microsandbox.Metrics sample = new io.microsandbox.Metrics(1.5, 0, 1 << 20, null, null, 1 << 29, 0, 0, 0, 0, null, null,
                Duration.ofSeconds(3), null);
        when(member.metrics()).thenReturn(sample);
        when(runtime.find("default-a")).thenReturn(Optional.of(member));
        pool.start();
        pool.sampleMetrics();
        assertThat(pool.member("default-a").orElseThrow().lastMetrics()).isEqualTo(sample);
        verify(runtime, never()).allMetrics();
    }

    /** close() is bounded by shutdown-timeout, not by a boot in flight (which may take minutes). */
    @Test
    void closeWaitsForABootInFlightNoLongerThanTheShutdownTimeout() throws Exception {
        java.util.concurrent.CountDownLatch booting = new java.util.concurrent.CountDownLatch(1);
        java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
        when(runtime.create(anyString(), any(SandboxConfig.class))).thenAnswer(inv -> {
            booting.countDown();
            release.await(60, java.util.concurrent.TimeUnit.SECONDS);
            return sandbox(inv.getArgument(0));
        });
        MicrosandboxProperties.Pool settings = settings();
        settings.setMinIdle(1);
        settings.setShutdownTimeout(Duration.ofSeconds(1));
        SandboxPool pool = pool(config, settings);
        pool.start();
        assertThat(booting.await(5, java.util.concurrent.TimeUnit.SECONDS)).isTrue();
        long started = System.nanoTime();
        try {
            pool.close();
            assertThat(Duration.ofNanos(System.nanoTime() - started)).isLessThan(Duration.ofSeconds(12));
        } finally {
            release.countDown();
        }
        // the boot that finished after the close shuts its own sandbox down
        verify(runtime, timeout(20_000)).remove(anyString());
    }

    @Test
    void anErrorInABootBacksOffLikeAFailure() throws Exception {
        when(runtime.create(anyString(), any(SandboxConfig.class))).thenThrow(new NoClassDefFoundError("io/example/Missing"));
        MicrosandboxProperties.Pool settings = settings();
        settings.setMinIdle(1);
        SandboxPool pool = pool(config, settings);
        pool.start();
        long deadline = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        while (pool.stats().consecutiveBootFailures() == 0 && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        Thread.sleep(300);
        assertThat(pool.stats().consecutiveBootFailures()).isEqualTo(1);
        assertThat(pool.stats().lastBootError()).contains("io/example/Missing");
        verify(runtime, times(1)).create(anyString(), any(SandboxConfig.class));
    }

    /**
     * A boot an operator stops through the endpoint ends as asked, not as a failure: no failed
     * boot counted and no back-off (10 s here) before the next one.
     */
    @Test
    void aBootStoppedOnPurposeIsNoFailedBootAndDoesNotBackOff() throws Exception {
        java.util.concurrent.BlockingQueue<String> boots = new java.util.concurrent.LinkedBlockingQueue<>();
        java.util.concurrent.CountDownLatch stopped = new java.util.concurrent.CountDownLatch(1);
        java.util.concurrent.atomic.AtomicReference<String> stoppedOne = new java.util.concurrent.atomic.AtomicReference<>();
        when(runtime.create(anyString(), any(SandboxConfig.class))).thenAnswer(inv -> {
            String name = inv.getArgument(0);
            boots.add(name);
            if (stoppedOne.compareAndSet(null, name) || name.equals(stoppedOne.get())) {
                stopped.await();
                throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "sandbox '" + name + "' stopped while it booted");
            }
            return sandbox(name);
        });
        MicrosandboxProperties.Pool settings = settings();
        settings.setMinIdle(1);
        SandboxPool pool = pool(config, settings);
        pool.start();
        String first = boots.poll(5, java.util.concurrent.TimeUnit.SECONDS);
        assertThat(first).isNotNull();
        assertThat(pool.cancelBoot("default-unknown")).isFalse();
        assertThat(pool.cancelBoot(first)).isTrue();
        stopped.countDown();
        assertThat(boots.poll(5, java.util.concurrent.TimeUnit.SECONDS)).as("the next boot, at once").isNotNull();
        assertThat(pool.stats().consecutiveBootFailures()).as(String.valueOf(pool.stats().lastBootError())).isZero();
        assertThat(pool.stats().totalBootFailures()).isZero();
    }

    /** max-size bounds VMs: a retired member still draining counts until it has stopped. */
    @Test
    void aReplacementWaitsForTheRetiredMembersVmWhenThePoolIsFull() throws Exception {
        java.util.concurrent.atomic.AtomicReference<SandboxStatus> draining = new java.util.concurrent.atomic.AtomicReference<>(SandboxStatus.RUNNING);
        SandboxHandle handle = mock(SandboxHandle.class);
        when(handle.status()).thenAnswer(inv -> draining.get());
        when(handle.refresh()).thenReturn(handle);
        when(runtime.find("default-a")).thenReturn(Optional.of(handle));
        when(runtime.create(anyString(), any(SandboxConfig.class))).thenAnswer(inv -> sandbox(inv.getArgument(0)));
        MicrosandboxProperties.Pool settings = settings();
        settings.setMinIdle(1);
        settings.setMaxSize(1);
        settings.setShutdownTimeout(Duration.ofSeconds(30));
        settings.setAcquireTimeout(Duration.ofMillis(300));
        SandboxPool pool = pool(config, settings);
        leftRunning(pool, "default-a");
        pool.start();
        pool.evict("default-a");
        verify(handle, timeout(5000)).requestDrain();
        Thread.sleep(500);
        verify(runtime, never()).create(anyString(), any(SandboxConfig.class));
        assertThatThrownBy(() -> pool.borrow()).hasMessageContaining("stopping 1");
        assertThat(pool.stats().stopping()).isEqualTo(1);
        draining.set(SandboxStatus.STOPPED);
        verify(runtime, timeout(5000)).create(anyString(), any(SandboxConfig.class));
        verify(runtime).remove("default-a");
        assertThat(pool.stats().stopping()).isZero();
    }
}

package io.microsandbox.spring.autoconfigure;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.Accelerator;
import io.microsandbox.Microsandbox;
import io.microsandbox.PullPolicy;
import io.microsandbox.RegistryAuth;
import io.microsandbox.SandboxConfig;
import io.microsandbox.spring.MicrosandboxProperties;
import io.microsandbox.spring.SandboxConfigCustomizer;
import io.microsandbox.spring.SandboxOperations;
import io.microsandbox.spring.SandboxTemplate;
import io.microsandbox.spring.actuate.MicrosandboxEndpoint;
import io.microsandbox.spring.actuate.MicrosandboxHealthIndicator;
import io.microsandbox.spring.actuate.SandboxPoolHealthIndicator;
import io.microsandbox.spring.actuate.SandboxPoolMetrics;
import io.microsandbox.spring.pool.ExecObserver;
import io.microsandbox.spring.pool.OnDemandSandboxSource;
import io.microsandbox.spring.pool.SandboxPool;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.micrometer.observation.ObservationRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.springframework.boot.actuate.autoconfigure.endpoint.EndpointAutoConfiguration;
import org.springframework.boot.actuate.autoconfigure.endpoint.jmx.JmxEndpointAutoConfiguration;
import org.springframework.boot.actuate.endpoint.InvalidEndpointRequestException;
import org.springframework.boot.actuate.endpoint.OperationType;
import org.springframework.boot.actuate.endpoint.jmx.JmxEndpointsSupplier;
import org.springframework.boot.autoconfigure.jmx.JmxAutoConfiguration;
import org.springframework.boot.actuate.endpoint.annotation.Endpoint;
import org.springframework.boot.autoconfigure.AutoConfigurations;
import org.springframework.boot.diagnostics.FailureAnalysis;
import org.springframework.boot.health.contributor.HealthIndicator;
import org.springframework.boot.health.contributor.Status;
import org.springframework.boot.test.context.FilteredClassLoader;
import org.springframework.boot.test.context.runner.ApplicationContextRunner;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.core.annotation.Order;

/** Conditions and property binding, with no VM: the pool's min-idle is 0 so nothing boots. */
class MicrosandboxAutoConfigurationTests {

    static final Path SETUP_HOME = Path.of(System.getProperty("msb.setup.home", System.getProperty("user.home") + "/.microsandbox"));

    @TempDir
    static Path temp;

    private static ApplicationContextRunner runner() {
        return new ApplicationContextRunner().withConfiguration(MICROSANDBOX).withPropertyValues(properties());
    }

    private static final AutoConfigurations MICROSANDBOX = AutoConfigurations.of(MicrosandboxAutoConfiguration.class,
            MicrosandboxMetricsAutoConfiguration.class, MicrosandboxHealthAutoConfiguration.class,
            MicrosandboxEndpointAutoConfiguration.class);

    private static String[] properties() {
        Path image = temp.resolve("rootfs");
        try {
            Files.createDirectories(image);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        return new String[] {
                "microsandbox.home=" + temp.resolve("home"),
                "microsandbox.kernel-dir=" + SETUP_HOME.resolve("kernel/current"),
                "microsandbox.fail-fast=false",
                "microsandbox.image=" + image,
                "microsandbox.pool.min-idle=0"};
    }

    private static FailureAnalysis analyze(Throwable failure) {
        return new MicrosandboxFailureAnalyzer().analyze(failure);
    }

    @Test
    void defaultBeans() {
        runner().run(context -> {
            assertThat(context).hasNotFailed();
            assertThat(context).hasSingleBean(Microsandbox.class);
            assertThat(context).hasSingleBean(SandboxConfig.class);
            assertThat(context).hasSingleBean(SandboxPool.class);
            assertThat(context).hasSingleBean(SandboxTemplate.class);
            assertThat(context).hasSingleBean(ExecObserver.class);
            assertThat(context).doesNotHaveBean(OnDemandSandboxSource.class);
            assertThat(context.getBean(Microsandbox.class).home()).isEqualTo(temp.resolve("home").toAbsolutePath());
            SandboxPool pool = context.getBean(SandboxPool.class);
            assertThat(pool.name()).isEqualTo("default");
            assertThat(pool.instanceId()).isEqualTo("app");
            assertThat(pool.config().detached()).isTrue();
            assertThat(pool.config().labels()).containsEntry(SandboxPool.POOL_LABEL, "default")
                    .containsEntry(SandboxPool.INSTANCE_LABEL, "app");
        });
    }

    @Test
    void propertiesBindToTheSandboxConfig() {
        runner().withPropertyValues("microsandbox.memory=256MB", "microsandbox.cpus=2", "microsandbox.env.GREETING=hi",
                        "microsandbox.labels.team=blue", "microsandbox.workdir=/tmp", "microsandbox.user=nobody",
                        "microsandbox.shell=/bin/bash", "microsandbox.idle-timeout=5m", "microsandbox.cache-reclaim-after=2m", "microsandbox.max-duration=1h",
                        "microsandbox.boot-timeout=90s", "microsandbox.accelerator=tcg", "microsandbox.exec-timeout=7s",
                        "microsandbox.pool.name=py", "microsandbox.pool.instance-id=node-1", "microsandbox.pool.max-size=3",
                        "microsandbox.pool.max-lifetime=10m", "microsandbox.pool.max-uses=5", "microsandbox.pool.reset=clean",
                        "microsandbox.pool.on-shutdown=keep", "microsandbox.pool.acquire-timeout=2s")
                .run(context -> {
                    assertThat(context).hasNotFailed();
                    SandboxConfig c = context.getBean(SandboxConfig.class);
                    assertThat(c.memoryMib()).isEqualTo(256);
                    assertThat(c.cpus()).isEqualTo(2);
                    assertThat(c.env()).containsEntry("GREETING", "hi");
                    assertThat(c.labels()).containsEntry("team", "blue");
                    assertThat(c.workdir()).isEqualTo("/tmp");
                    assertThat(c.user()).isEqualTo("nobody");
                    assertThat(c.shell()).isEqualTo("/bin/bash");
                    assertThat(c.idleTimeout()).isEqualTo(Duration.ofMinutes(5));
                    assertThat(c.cacheReclaimAfter()).isEqualTo(Duration.ofMinutes(2));
                    assertThat(c.maxDuration()).isEqualTo(Duration.ofHours(1));
                    assertThat(c.bootTimeout()).isEqualTo(Duration.ofSeconds(90));
                    assertThat(c.accelerator()).isEqualTo(Accelerator.TCG);
                    MicrosandboxProperties p = context.getBean(MicrosandboxProperties.class);
                    assertThat(p.getExecTimeout()).isEqualTo(Duration.ofSeconds(7));
                    assertThat(p.getPool().getReset()).isEqualTo(MicrosandboxProperties.Reset.CLEAN);
                    assertThat(p.getPool().getOnShutdown()).isEqualTo(MicrosandboxProperties.OnShutdown.KEEP);
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    assertThat(pool.name()).isEqualTo("py");
                    assertThat(pool.instanceId()).isEqualTo("node-1");
                    assertThat(pool.config().labels()).containsEntry("team", "blue").containsEntry(SandboxPool.POOL_LABEL, "py");
                    assertThat(pool.stats().maxSize()).isEqualTo(3);
                });
    }

    @Test
    void warmStartDefaultsToBootWithNoWarmUp() {
        runner().run(context -> {
            MicrosandboxProperties.Pool p = context.getBean(MicrosandboxProperties.class).getPool();
            assertThat(p.getWarmStart()).isEqualTo(MicrosandboxProperties.WarmStart.BOOT);
            assertThat(p.getWarmUpCommand()).isNull();
            assertThat(p.getWarmUpTimeout()).isEqualTo(Duration.ofSeconds(60));
            SandboxPool pool = context.getBean(SandboxPool.class);
            assertThat(pool.checkpointName()).isNull();
            assertThat(pool.warmStartStats().mode()).isEqualTo("boot");
            var health = context.getBean(SandboxPoolHealthIndicator.class).health();
            assertThat(health.getDetails()).containsEntry("warmStart", "boot").containsEntry("booted", 0L)
                    .containsEntry("restored", 0L).doesNotContainKey("checkpoint");
        });
    }

    @Test
    void warmStartCheckpointBinds() {
        runner().withPropertyValues("microsandbox.pool.warm-start=checkpoint",
                        "microsandbox.pool.warm-up-command=python3 -c 'import json' && touch /tmp/warm",
                        "microsandbox.pool.warm-up-timeout=2m", "microsandbox.pool.name=py", "microsandbox.pool.instance-id=node/1")
                .run(context -> {
                    assertThat(context).hasNotFailed();
                    MicrosandboxProperties.Pool p = context.getBean(MicrosandboxProperties.class).getPool();
                    assertThat(p.getWarmStart()).isEqualTo(MicrosandboxProperties.WarmStart.CHECKPOINT);
                    assertThat(p.getWarmUpCommand()).isEqualTo("python3 -c 'import json' && touch /tmp/warm");
                    assertThat(p.getWarmUpTimeout()).isEqualTo(Duration.ofMinutes(2));
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    // one checkpoint per pool and instance, a bare name under the home (no '/' from the instance id)
                    assertThat(pool.checkpointName()).matches("spring-pool-py-node_1-[0-9a-f]{16}");
                    assertThat(pool.warmStartStats()).isEqualTo(new io.microsandbox.spring.pool.WarmStartStats(
                            "checkpoint", 0, 0, null, 0, 0, null));
                    var health = context.getBean(SandboxPoolHealthIndicator.class).health();
                    assertThat(health.getStatus()).isEqualTo(Status.UP);
                    assertThat(health.getDetails()).containsEntry("warmStart", "checkpoint").containsEntry("checkpoint", "none")
                            .containsEntry("checkpointRefreshes", 0L);
                });
    }

    @Test
    void warmStartValueThatDoesNotBind() {
        runner().withPropertyValues("microsandbox.pool.warm-start=snapshot").run(context -> {
            assertThat(context).hasFailed();
            assertThat(context.getStartupFailure()).rootCause().hasMessageContaining("snapshot");
        });
    }

    @Test
    void warmUpTimeoutMustBePositive() {
        runner().withPropertyValues("microsandbox.pool.warm-up-timeout=0s").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("microsandbox.pool.warm-up-timeout").contains("must be positive");
        });
    }

    /** An application with two pools of its own starts; the beans made for one pool step aside. */
    @Test
    void twoPoolsOfTheApplicationsOwnDoNotStopTheStart() {
        runner().withUserConfiguration(UserOperations.class, TwoPools.class)
                .withBean(MeterRegistry.class, SimpleMeterRegistry::new)
                .withPropertyValues("management.endpoints.web.exposure.include=microsandbox")
                .run(context -> {
                    assertThat(context).hasNotFailed();
                    assertThat(context.getBeansOfType(SandboxPool.class)).hasSize(2);
                    assertThat(context).doesNotHaveBean(SandboxPoolHealthIndicator.class);
                    assertThat(context).doesNotHaveBean(SandboxPoolMetrics.class);
                    assertThat(context.getBean(MicrosandboxEndpoint.class).sandboxes()).doesNotContainKey("pool");
                });
    }

    @Configuration(proxyBeanMethods = false)
    static class TwoPools {
        private static SandboxPool pool(Microsandbox runtime, SandboxConfig config, String name) {
            MicrosandboxProperties.Pool settings = new MicrosandboxProperties.Pool();
            settings.setName(name);
            settings.setMinIdle(0);
            return new SandboxPool(runtime, config, settings, "node");
        }

        @Bean(destroyMethod = "close")
        SandboxPool python(Microsandbox runtime, SandboxConfig config) {
            return pool(runtime, config, "py");
        }

        @Bean(destroyMethod = "close")
        SandboxPool node(Microsandbox runtime, SandboxConfig config) {
            return pool(runtime, config, "node");
        }
    }

    /** Pool settings are checked even when the application supplies its own sandbox configuration. */
    @Test
    void poolSettingsAreCheckedWhateverSuppliesTheConfig() {
        runner().withUserConfiguration(UserConfig.class).withPropertyValues("microsandbox.pool.max-size=0").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("max-size (0)");
        });
        runner().withUserConfiguration(UserConfig.class).withPropertyValues("microsandbox.pool.validation-timeout=0s").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("microsandbox.pool.validation-timeout").contains("must be positive");
            assertThat(a.getAction()).contains("5s");
        });
    }

    @Test
    void instanceIdDefaultsToTheApplicationName() {
        runner().withPropertyValues("spring.application.name=orders")
                .run(context -> assertThat(context.getBean(SandboxPool.class).instanceId()).isEqualTo("orders"));
    }

    @Test
    void customizersRunInOrder() {
        runner().withUserConfiguration(Customizers.class).run(context -> {
            SandboxConfig c = context.getBean(SandboxConfig.class);
            assertThat(c.env()).containsEntry("STEP", "second").containsEntry("FIRST", "yes");
            assertThat(c.hostname()).isEqualTo("custom");
        });
    }

    @Test
    void backsOffFromAUserRuntime() {
        runner().withUserConfiguration(UserRuntime.class).run(context -> {
            assertThat(context).hasSingleBean(Microsandbox.class);
            assertThat(context.getBean(Microsandbox.class)).isSameAs(context.getBean("myRuntime"));
        });
    }

    @Test
    void backsOffFromUserOperationsAndConfig() {
        runner().withUserConfiguration(UserOperations.class).run(context -> {
            assertThat(context).hasSingleBean(SandboxOperations.class);
            assertThat(context).doesNotHaveBean("sandboxTemplate");
            assertThat(context.getBean(SandboxConfig.class).memoryMib()).isEqualTo(128);
            assertThat(context.getBean(SandboxPool.class).config().memoryMib()).isEqualTo(128);
        });
    }

    @Test
    void poolDisabledLendsOnDemand() {
        runner().withPropertyValues("microsandbox.pool.enabled=false").run(context -> {
            assertThat(context).doesNotHaveBean(SandboxPool.class);
            assertThat(context).hasSingleBean(OnDemandSandboxSource.class);
            assertThat(context).hasSingleBean(SandboxTemplate.class);
            assertThat(context).doesNotHaveBean(SandboxPoolHealthIndicator.class);
            assertThat(context).hasSingleBean(MicrosandboxHealthIndicator.class);
            assertThat(context).doesNotHaveBean(SandboxPoolMetrics.class);
        });
        // max-size bounds on-demand sandboxes too: a zero would fail every borrow
        runner().withPropertyValues("microsandbox.pool.enabled=false", "microsandbox.pool.max-size=0").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("max-size (0)");
        });
    }

    /** Any boolean spelling Spring binds picks one source; a property condition matched neither for "off". */
    @Test
    void poolEnabledTakesEveryBooleanSpelling() {
        for (String off : new String[] {"off", "no", "0", "FALSE"}) {
            runner().withPropertyValues("microsandbox.pool.enabled=" + off).run(context -> {
                assertThat(context).as(off).hasSingleBean(OnDemandSandboxSource.class);
                assertThat(context).doesNotHaveBean(SandboxPool.class);
            });
        }
        runner().withPropertyValues("microsandbox.pool.enabled=maybe").run(context ->
                assertThat(context.getStartupFailure()).hasStackTraceContaining("microsandbox.pool.enabled"));
    }

    /** IDEs know every property the starter reads, with its default: the health switch and the reclaim delay too. */
    @Test
    void theConfigurationMetadataNamesTheHealthSwitchAndTheReclaimDefault() throws Exception {
        try (java.io.InputStream in = getClass().getClassLoader().getResourceAsStream("META-INF/spring-configuration-metadata.json")) {
            com.fasterxml.jackson.databind.JsonNode metadata = new com.fasterxml.jackson.databind.ObjectMapper().readTree(in);
            Map<String, com.fasterxml.jackson.databind.JsonNode> byName = new java.util.HashMap<>();
            metadata.get("properties").forEach(p -> byName.put(p.get("name").asText(), p));
            assertThat(byName).containsKeys("management.health.microsandbox.enabled", "microsandbox.pool.sandbox-metrics");
            assertThat(byName.get("microsandbox.cache-reclaim-after").path("defaultValue").asText()).isEqualTo("30s");
        }
    }

    /** A negative exec-timeout would have meant no limit at all. */
    @Test
    void aNegativeExecTimeoutIsRefused() {
        runner().withPropertyValues("microsandbox.exec-timeout=-10s").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("microsandbox.exec-timeout");
        });
    }

    @Test
    void metersWithAMeterRegistry() {
        runner().withBean(MeterRegistry.class, SimpleMeterRegistry::new).run(context -> {
            assertThat(context).hasSingleBean(SandboxPoolMetrics.class);
            MeterRegistry registry = context.getBean(MeterRegistry.class);
            assertThat(registry.get("microsandbox.pool.sandboxes").tag("state", "idle").tag("pool", "default").gauge().value()).isZero();
            assertThat(registry.get("microsandbox.pool.sandboxes").tag("state", "active").gauge()).isNotNull();
            assertThat(registry.get("microsandbox.pool.sandboxes").tag("state", "pending").gauge()).isNotNull();
            assertThat(registry.get("microsandbox.pool.sandboxes").tag("state", "stopping").gauge().value()).isZero();
            assertThat(registry.get("microsandbox.pool.sandboxes.max").gauge().value()).isEqualTo(4.0);
            assertThat(registry.get("microsandbox.pool.sandboxes.min").gauge().value()).isZero();
        });
    }

    @Test
    void micrometerAbsent() {
        runner().withClassLoader(new FilteredClassLoader(MeterRegistry.class, ObservationRegistry.class)).run(context -> {
            assertThat(context).hasNotFailed();
            assertThat(context).doesNotHaveBean(SandboxPoolMetrics.class);
            assertThat(context).doesNotHaveBean(ExecObserver.class);
            assertThat(context).hasSingleBean(SandboxTemplate.class);
        });
    }

    @Test
    void observationRegistryIsUsedWhenPresent() {
        runner().withBean(ObservationRegistry.class, ObservationRegistry::create).run(context -> {
            assertThat(context.getBean(ExecObserver.class)).isInstanceOf(ObservationExecObserver.class);
        });
    }

    @Test
    void actuatorAbsent() {
        runner().withClassLoader(new FilteredClassLoader(Endpoint.class, HealthIndicator.class)).run(context -> {
            assertThat(context).hasNotFailed();
            assertThat(context).doesNotHaveBean(MicrosandboxEndpoint.class);
            assertThat(context).doesNotHaveBean(MicrosandboxHealthIndicator.class);
            assertThat(context).hasSingleBean(SandboxTemplate.class);
        });
    }

    @Test
    void endpointWhenExposed() {
        runner().withPropertyValues("management.endpoints.web.exposure.include=microsandbox",
                        "management.endpoints.jmx.exposure.include=microsandbox")
                .run(context -> {
                    assertThat(context).hasSingleBean(MicrosandboxEndpoint.class);
                    Map<String, Object> body = context.getBean(MicrosandboxEndpoint.class).sandboxes();
                    assertThat(body).containsKeys("runtime", "pool", "sandboxes");
                });
        runner().withPropertyValues("management.endpoint.microsandbox.access=NONE")
                .run(context -> assertThat(context).doesNotHaveBean(MicrosandboxEndpoint.class));
    }

    /** Like Boot's shutdown endpoint: exposing it shows the sandboxes; stopping them takes access=unrestricted (JMX and web share the rule). */
    @Test
    void endpointWritesAreOffUntilEnabled() {
        ApplicationContextRunner jmx = runner()
                .withConfiguration(AutoConfigurations.of(EndpointAutoConfiguration.class, JmxAutoConfiguration.class, JmxEndpointAutoConfiguration.class))
                .withPropertyValues("spring.jmx.enabled=true", "management.endpoints.jmx.exposure.include=*");
        jmx.run(context -> assertThat(microsandboxOperations(context)).containsOnly(OperationType.READ));
        jmx.withPropertyValues("management.endpoint.microsandbox.access=UNRESTRICTED")
                .run(context -> assertThat(microsandboxOperations(context)).contains(OperationType.READ, OperationType.WRITE));
    }

    private static List<OperationType> microsandboxOperations(org.springframework.context.ApplicationContext context) {
        return context.getBean(JmxEndpointsSupplier.class).getEndpoints().stream()
                .filter(e -> e.getEndpointId().toString().equals("microsandbox"))
                .flatMap(e -> e.getOperations().stream())
                .map(o -> o.getType())
                .toList();
    }

    /** Bad requests are 400s that say why; sandboxes other than this pool's members are never touched. */
    @Test
    void endpointRefusesBadActionsAndSandboxesOutsideItsPool() {
        ApplicationContextRunner exposed = runner().withPropertyValues("management.endpoints.web.exposure.include=microsandbox");
        exposed.run(context -> {
            MicrosandboxEndpoint endpoint = context.getBean(MicrosandboxEndpoint.class);
            assertThatThrownBy(() -> endpoint.operate("x", "explode"))
                    .isInstanceOf(InvalidEndpointRequestException.class).hasMessageContaining("drain, stop or kill");
            assertThatThrownBy(() -> endpoint.operate("no-such", "kill"))
                    .isInstanceOf(InvalidEndpointRequestException.class).hasMessageContaining("not a member of pool 'default'");
            assertThatThrownBy(() -> endpoint.operate("../bad", "kill"))
                    .isInstanceOf(InvalidEndpointRequestException.class);
            assertThatThrownBy(() -> endpoint.sandbox("../bad"))
                    .isInstanceOf(InvalidEndpointRequestException.class);
            assertThatThrownBy(() -> endpoint.drainPool("stop"))
                    .isInstanceOf(InvalidEndpointRequestException.class).hasMessageContaining("must be drain");
        });
        exposed.withPropertyValues("microsandbox.pool.enabled=false").run(context -> {
            MicrosandboxEndpoint endpoint = context.getBean(MicrosandboxEndpoint.class);
            assertThatThrownBy(() -> endpoint.operate("any", "stop"))
                    .isInstanceOf(InvalidEndpointRequestException.class).hasMessageContaining("no single pool");
            assertThatThrownBy(() -> endpoint.drainPool("drain"))
                    .isInstanceOf(InvalidEndpointRequestException.class).hasMessageContaining("no single pool");
        });
    }

    @Test
    void healthIndicatorsCanBeDisabled() {
        runner().withPropertyValues("management.health.microsandbox.enabled=false").run(context -> {
            assertThat(context).doesNotHaveBean(MicrosandboxHealthIndicator.class);
            assertThat(context).doesNotHaveBean(SandboxPoolHealthIndicator.class);
        });
    }

    @Test
    void healthIsUpWhenInstalledAndPoolHasNoFailures() {
        runner().withPropertyValues("microsandbox.accelerator=tcg").run(context -> {
            assertThat(context.getBean(MicrosandboxHealthIndicator.class).health().getStatus()).isEqualTo(Status.UP);
            assertThat(context.getBean(SandboxPoolHealthIndicator.class).health().getStatus()).isEqualTo(Status.UP);
        });
    }

    @Test
    void healthIsDownWhenTheKernelIsMissing() {
        runner().withPropertyValues("microsandbox.kernel-dir=" + temp.resolve("no-kernel")).run(context -> {
            assertThat(context).hasNotFailed();
            var health = context.getBean(MicrosandboxHealthIndicator.class).health();
            assertThat(health.getStatus()).isEqualTo(Status.DOWN);
            assertThat(String.valueOf(health.getDetails().get("reason"))).contains("no-kernel").contains("setup.sh");
        });
    }

    @Test
    void missingKernelFailsStartUpWhenFailFast() {
        runner().withPropertyValues("microsandbox.fail-fast=true", "microsandbox.kernel-dir=" + temp.resolve("no-kernel"))
                .run(context -> {
                    assertThat(context).hasFailed();
                    FailureAnalysis a = analyze(context.getStartupFailure());
                    assertThat(a.getDescription()).contains("cannot boot sandboxes").contains("no-kernel");
                    assertThat(a.getAction()).contains("scripts/setup.sh").contains("microsandbox.fail-fast=false");
                });
    }

    @Test
    void missingImageProperty() {
        new ApplicationContextRunner()
                .withConfiguration(AutoConfigurations.of(MicrosandboxAutoConfiguration.class))
                .withPropertyValues("microsandbox.home=" + temp.resolve("home"), "microsandbox.fail-fast=false")
                .run(context -> {
                    assertThat(context).hasFailed();
                    FailureAnalysis a = analyze(context.getStartupFailure());
                    assertThat(a.getDescription()).contains("microsandbox.image is not set");
                    assertThat(a.getAction()).contains("Set microsandbox.image");
                });
    }

    @Test
    void imageDirectoryMissing() {
        runner().withPropertyValues("microsandbox.image=" + temp.resolve("nope")).run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("does not exist");
            assertThat(a.getAction()).contains("existing local directory").contains("OCI image reference");
        });
    }

    @Test
    void anOciImageReferenceWithItsPullPolicyAndCredentials() {
        runner().withPropertyValues("microsandbox.image=registry.example.com/team/python:3.12", "microsandbox.pull-policy=always",
                        "microsandbox.registry.username=ci", "microsandbox.registry.password=token")
                .run(context -> {
                    assertThat(context).hasNotFailed();
                    SandboxConfig c = context.getBean(SandboxConfig.class);
                    assertThat(c.image()).isEqualTo("registry.example.com/team/python:3.12");
                    assertThat(c.pullPolicy()).isEqualTo(PullPolicy.ALWAYS);
                    assertThat(c.registryAuth()).isEqualTo(new RegistryAuth("ci", "token"));
                });
    }

    @Test
    void anOciArchiveIsAnImageToo() throws Exception {
        Path archive = Files.write(temp.resolve("image.tar"), new byte[0]);
        runner().withPropertyValues("microsandbox.image=" + archive).run(context -> {
            assertThat(context).hasNotFailed();
            assertThat(context.getBean(SandboxConfig.class).image()).isEqualTo(archive.toString());
        });
    }

    @Test
    void aMalformedImageReference() {
        runner().withPropertyValues("microsandbox.image=Python:3.12").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("invalid image reference 'Python:3.12'");
        });
    }

    /** A value no file can have (a NUL in it) is a bad reference, not an exception from the file system. */
    @Test
    void anImageNoPathCanName() {
        runner().withPropertyValues("microsandbox.image=python\u0000:3.12").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("invalid image reference");
        });
        runner().withPropertyValues("microsandbox.image=./rootfs\u0000").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("does not exist");
        });
    }

    @Test
    void aRegistryUserWithoutPassword() {
        runner().withPropertyValues("microsandbox.image=python:3.12", "microsandbox.registry.username=ci").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("microsandbox.registry.password is not");
        });
    }

    @Test
    void memoryBelowTheMinimum() {
        runner().withPropertyValues("microsandbox.memory=32MB").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("microsandbox.memory").contains("64MB");
            assertThat(a.getAction()).contains("64MB or more");
        });
    }

    @Test
    void poolSizesThatDoNotFit() {
        runner().withPropertyValues("microsandbox.pool.min-idle=5", "microsandbox.pool.max-size=2").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("min-idle (5)").contains("max-size (2)");
        });
    }

    @Test
    void invalidValueFromTheCore() {
        runner().withPropertyValues("microsandbox.cpus=0").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("cpus must be between 1 and 64");
            assertThat(a.getAction()).contains("microsandbox.*");
        });
    }

    @Test
    void badPoolName() {
        runner().withPropertyValues("microsandbox.pool.name=a/b").run(context -> {
            FailureAnalysis a = analyze(context.getStartupFailure());
            assertThat(a.getDescription()).contains("microsandbox.pool.name 'a/b'");
        });
    }

    @Test
    void failedBootsBackOffAndShowInHealth() {
        runner().withPropertyValues("microsandbox.kernel-dir=" + temp.resolve("no-kernel"), "microsandbox.pool.min-idle=1",
                        "microsandbox.pool.boot-backoff=300ms", "microsandbox.pool.boot-backoff-max=600ms",
                        "microsandbox.pool.acquire-timeout=200ms", "microsandbox.pool.name=failing")
                .withBean(MeterRegistry.class, SimpleMeterRegistry::new)
                .run(context -> {
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
                    while (pool.stats().totalBootFailures() < 2 && System.nanoTime() < deadline) {
                        Thread.sleep(50);
                    }
                    assertThat(pool.stats().totalBootFailures()).isGreaterThanOrEqualTo(2);
                    var health = context.getBean(SandboxPoolHealthIndicator.class).health();
                    assertThat(health.getStatus()).isEqualTo(Status.DOWN);
                    assertThat(String.valueOf(health.getDetails().get("reason"))).contains("fail to boot").contains("no-kernel");
                    // backing off, not spinning: one try at a time, at most every 300-600 ms
                    long before = pool.stats().totalBootFailures();
                    Thread.sleep(2000);
                    assertThat(pool.stats().totalBootFailures() - before).isBetween(1L, 8L);
                    assertThat(context.getBean(MeterRegistry.class).get("microsandbox.pool.boot.failures").counter().count())
                            .isGreaterThanOrEqualTo(3.0);
                    // a borrower gets pool-exhausted with the reason, not a hang
                    org.assertj.core.api.Assertions.assertThatThrownBy(() -> context.getBean(SandboxTemplate.class).exec("true"))
                            .isInstanceOf(io.microsandbox.spring.SandboxPoolExhaustedException.class)
                            .hasMessageContaining("within 200 ms").hasMessageContaining("fail to boot");
                });
    }

    @Configuration(proxyBeanMethods = false)
    static class Customizers {
        @Bean
        @Order(2)
        SandboxConfigCustomizer second() {
            return b -> b.env("STEP", "second").hostname("custom");
        }

        @Bean
        @Order(1)
        SandboxConfigCustomizer first() {
            return b -> b.env("STEP", "first").env("FIRST", "yes");
        }
    }

    @Configuration(proxyBeanMethods = false)
    static class UserRuntime {
        @Bean
        Microsandbox myRuntime() {
            return Microsandbox.builder().home(temp.resolve("user-home")).build();
        }
    }

    @Configuration(proxyBeanMethods = false)
    static class UserConfig {
        @Bean
        SandboxConfig myConfig() {
            return SandboxConfig.builder().image(temp.resolve("rootfs").toString()).memoryMib(128).build();
        }
    }

    @Configuration(proxyBeanMethods = false)
    static class UserOperations {
        @Bean
        SandboxOperations myOperations() {
            return new SandboxTemplate(null, null, null);
        }

        @Bean
        SandboxConfig myConfig() {
            return SandboxConfig.builder().image(temp.resolve("rootfs").toString()).memoryMib(128).build();
        }
    }
}

package io.microsandbox.spring.autoconfigure;

import io.microsandbox.Microsandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.spring.MicrosandboxProperties;
import io.microsandbox.spring.SandboxConfigCustomizer;
import io.microsandbox.spring.SandboxOperations;
import io.microsandbox.spring.SandboxTemplate;
import io.microsandbox.spring.pool.ExecObserver;
import io.microsandbox.spring.pool.OnDemandSandboxSource;
import io.microsandbox.spring.pool.SandboxPool;
import io.microsandbox.spring.pool.SandboxSource;
import io.micrometer.observation.ObservationRegistry;
import java.time.Duration;
import org.springframework.beans.factory.ObjectProvider;
import org.springframework.boot.autoconfigure.AutoConfiguration;
import org.springframework.boot.autoconfigure.condition.ConditionalOnClass;
import org.springframework.boot.autoconfigure.condition.ConditionalOnMissingBean;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.context.SmartLifecycle;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Conditional;
import org.springframework.context.annotation.Configuration;
import org.springframework.core.env.Environment;

/**
 * Auto-configuration of microsandbox: the {@link Microsandbox} runtime, the
 * {@link SandboxConfig} built from {@code microsandbox.*}, the {@link SandboxPool} and the
 * {@link SandboxTemplate}. Every bean backs off when the application defines its own.
 */
@AutoConfiguration
@ConditionalOnClass(Microsandbox.class)
@EnableConfigurationProperties(MicrosandboxProperties.class)
public class MicrosandboxAutoConfiguration {

    @Bean
    @ConditionalOnMissingBean
    public Microsandbox microsandbox(MicrosandboxProperties properties) {
        Microsandbox.Builder builder = Microsandbox.builder()
                .home(properties.getHome() != null ? properties.getHome().toAbsolutePath() : Microsandbox.defaultRuntime().home())
                .accelerator(properties.getAccelerator());
        if (properties.getQemu() != null) {
            builder.qemu(properties.getQemu());
        }
        if (properties.getKernelDir() != null) {
            builder.kernelDir(properties.getKernelDir());
        }
        Microsandbox runtime = builder.build();
        if (properties.isFailFast()) {
            String problem = runtime.describeInstallProblem();
            if (problem != null) {
                throw new MicrosandboxConfigurationException("microsandbox cannot boot sandboxes on this host: " + problem,
                        "Install what is missing (bash scripts/setup.sh installs QEMU, the guest kernel and the test image), "
                                + "point microsandbox.qemu / microsandbox.kernel-dir at them, or set "
                                + "microsandbox.fail-fast=false to start anyway and report it in health.", null);
            }
        }
        return runtime;
    }

    @Bean
    @ConditionalOnMissingBean
    public SandboxConfig microsandboxSandboxConfig(MicrosandboxProperties properties,
                                                   ObjectProvider<SandboxConfigCustomizer> customizers) {
        return SandboxConfigFactory.create(properties, customizers.orderedStream().toList());
    }

    @Bean(initMethod = "start", destroyMethod = "close")
    @ConditionalOnMissingBean(SandboxSource.class)
    @Conditional(PoolEnabledCondition.On.class)
    public SandboxPool microsandboxPool(Microsandbox runtime, SandboxConfig config, MicrosandboxProperties properties,
                                        Environment environment) {
        PoolSettings.check(properties.getPool());
        String instance = properties.getPool().getInstanceId();
        if (instance == null || instance.isBlank()) {
            instance = environment.getProperty("spring.application.name", "app");
        }
        return new SandboxPool(runtime, config, properties.getPool(), instance);
    }

    /** Stops the pools' warming as the context begins to stop (see {@link PoolQuiescer}). */
    @Bean
    public SmartLifecycle microsandboxPoolQuiescer(ObjectProvider<SandboxPool> pools) {
        return new PoolQuiescer(pools);
    }

    @Bean
    @ConditionalOnMissingBean(SandboxSource.class)
    @Conditional(PoolEnabledCondition.Off.class)
    public OnDemandSandboxSource microsandboxOnDemandSource(Microsandbox runtime, SandboxConfig config,
                                                           MicrosandboxProperties properties) {
        MicrosandboxProperties.Pool pool = properties.getPool();
        PoolSettings.check(pool); // max-size and acquire-timeout bound on-demand sandboxes too
        return new OnDemandSandboxSource(runtime, config, pool.getName(), pool.getMaxSize(), pool.getAcquireTimeout());
    }

    @Bean
    @ConditionalOnMissingBean(SandboxOperations.class)
    public SandboxTemplate sandboxTemplate(SandboxSource source, ObjectProvider<ExecObserver> observer,
                                           MicrosandboxProperties properties) {
        Duration execTimeout = properties.getExecTimeout();
        if (execTimeout != null && execTimeout.isNegative()) {
            // the template reads a negative timeout as none: a typo must not lift the limit on untrusted code
            throw new MicrosandboxConfigurationException("microsandbox.exec-timeout is " + execTimeout + ": it must not be negative.",
                    "Set microsandbox.exec-timeout to a duration such as 30s, or 0 for no limit.", null);
        }
        return new SandboxTemplate(source, observer.getIfAvailable(() -> ExecObserver.NOOP), execTimeout);
    }

    /** Records every command through the Observation API when Micrometer's is on the class path. */
    @Configuration(proxyBeanMethods = false)
    @ConditionalOnClass(ObservationRegistry.class)
    static class ObservationConfiguration {

        @Bean
        @ConditionalOnMissingBean
        ExecObserver microsandboxExecObserver(ObjectProvider<ObservationRegistry> registry) {
            return new ObservationExecObserver(registry);
        }
    }
}

package io.microsandbox.spring.autoconfigure;

import io.microsandbox.spring.MicrosandboxProperties;
import io.microsandbox.spring.actuate.SandboxPoolMetrics;
import io.microsandbox.spring.pool.SandboxPool;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.springframework.beans.factory.DisposableBean;
import org.springframework.beans.factory.ObjectProvider;
import org.springframework.beans.factory.SmartInitializingSingleton;
import org.springframework.boot.autoconfigure.AutoConfiguration;
import org.springframework.boot.autoconfigure.condition.ConditionalOnSingleCandidate;
import org.springframework.boot.autoconfigure.condition.ConditionalOnClass;
import org.springframework.boot.autoconfigure.condition.ConditionalOnMissingBean;
import org.springframework.context.annotation.Bean;

/**
 * Binds {@link SandboxPoolMetrics} to the context's primary {@link MeterRegistry} (Spring
 * Boot's composite when there are several; else the first), once all singletons exist, so it
 * does not depend on the order of Spring Boot's metrics auto-configuration, and samples the members' core metrics every
 * {@code microsandbox.pool.housekeeping-period}.
 */
@AutoConfiguration(after = MicrosandboxAutoConfiguration.class)
@ConditionalOnClass(MeterRegistry.class)
@ConditionalOnSingleCandidate(SandboxPool.class)
public class MicrosandboxMetricsAutoConfiguration {

    @Bean
    @ConditionalOnMissingBean
    public SandboxPoolMetrics sandboxPoolMetrics(SandboxPool pool) {
        return new SandboxPoolMetrics(pool);
    }

    @Bean
    static SandboxPoolMetricsBinder sandboxPoolMetricsBinder(ObjectProvider<SandboxPoolMetrics> metrics,
                                                             ObjectProvider<MeterRegistry> registries,
                                                             ObjectProvider<SandboxPool> pool,
                                                             ObjectProvider<MicrosandboxProperties> properties) {
        return new SandboxPoolMetricsBinder(metrics, registries, pool, properties);
    }

    /** Binds after start-up and runs the sampler. */
    static final class SandboxPoolMetricsBinder implements SmartInitializingSingleton, DisposableBean {
        private final ObjectProvider<SandboxPoolMetrics> metrics;
        private final ObjectProvider<MeterRegistry> registries;
        private final ObjectProvider<SandboxPool> pool;
        private final ObjectProvider<MicrosandboxProperties> properties;
        private ScheduledExecutorService sampler;

        SandboxPoolMetricsBinder(ObjectProvider<SandboxPoolMetrics> metrics, ObjectProvider<MeterRegistry> registries,
                                 ObjectProvider<SandboxPool> pool, ObjectProvider<MicrosandboxProperties> properties) {
            this.metrics = metrics;
            this.registries = registries;
            this.pool = pool;
            this.properties = properties;
        }

        @Override
        public void afterSingletonsInstantiated() {
            SandboxPoolMetrics m = metrics.getIfAvailable();
            SandboxPool p = pool.getIfUnique();
            if (m == null || p == null) {
                return;
            }
            MeterRegistry registry;
            try {
                // the primary one (Spring Boot's composite) when there are several
                registry = registries.getIfAvailable();
            } catch (org.springframework.beans.BeansException e) {
                registry = registries.orderedStream().findFirst().orElse(null);
            }
            if (registry == null) {
                return;
            }
            m.bindTo(registry);
            MicrosandboxProperties props = properties.getIfAvailable();
            long period = props == null ? 5000 : Math.max(100, props.getPool().getHousekeepingPeriod().toMillis());
            sampler = Executors.newSingleThreadScheduledExecutor(r -> {
                Thread t = new Thread(r, "msb-pool-" + p.name() + "-metrics");
                t.setDaemon(true);
                return t;
            });
            sampler.scheduleWithFixedDelay(p::sampleMetrics, period, period, TimeUnit.MILLISECONDS);
        }

        @Override
        public void destroy() {
            if (sampler != null) {
                sampler.shutdownNow();
                SandboxPoolMetrics m = metrics.getIfAvailable();
                if (m != null) {
                    m.unbind();
                }
            }
        }
    }
}

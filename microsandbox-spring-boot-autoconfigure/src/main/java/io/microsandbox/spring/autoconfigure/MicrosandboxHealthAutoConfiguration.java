package io.microsandbox.spring.autoconfigure;

import io.microsandbox.Microsandbox;
import io.microsandbox.spring.actuate.MicrosandboxHealthIndicator;
import io.microsandbox.spring.actuate.SandboxPoolHealthIndicator;
import io.microsandbox.spring.pool.SandboxPool;
import org.springframework.boot.autoconfigure.AutoConfiguration;
import org.springframework.boot.autoconfigure.condition.ConditionalOnBean;
import org.springframework.boot.autoconfigure.condition.ConditionalOnClass;
import org.springframework.boot.autoconfigure.condition.ConditionalOnMissingBean;
import org.springframework.boot.autoconfigure.condition.ConditionalOnSingleCandidate;
import org.springframework.boot.health.autoconfigure.contributor.ConditionalOnEnabledHealthIndicator;
import org.springframework.boot.health.contributor.HealthIndicator;
import org.springframework.context.annotation.Bean;

/**
 * Health indicators {@code microsandbox} (the runtime) and {@code microsandboxPool} (the pool),
 * when Spring Boot's health support is on the class path; {@code management.health.microsandbox.enabled=false}
 * turns both off.
 */
@AutoConfiguration(after = MicrosandboxAutoConfiguration.class)
@ConditionalOnClass({HealthIndicator.class, ConditionalOnEnabledHealthIndicator.class})
@ConditionalOnBean(Microsandbox.class)
@ConditionalOnEnabledHealthIndicator("microsandbox")
public class MicrosandboxHealthAutoConfiguration {

    @Bean
    @ConditionalOnMissingBean(name = "microsandboxHealthIndicator")
    public MicrosandboxHealthIndicator microsandboxHealthIndicator(Microsandbox runtime) {
        return new MicrosandboxHealthIndicator(runtime);
    }

    @Bean
    @ConditionalOnSingleCandidate(SandboxPool.class)
    @ConditionalOnMissingBean(name = "microsandboxPoolHealthIndicator")
    public SandboxPoolHealthIndicator microsandboxPoolHealthIndicator(SandboxPool pool) {
        return new SandboxPoolHealthIndicator(pool);
    }
}

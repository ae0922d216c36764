package io.microsandbox.spring.autoconfigure;

import io.microsandbox.Microsandbox;
import io.microsandbox.spring.actuate.MicrosandboxEndpoint;
import io.microsandbox.spring.pool.SandboxPool;
import org.springframework.beans.factory.ObjectProvider;
import org.springframework.boot.actuate.autoconfigure.endpoint.condition.ConditionalOnAvailableEndpoint;
import org.springframework.boot.actuate.endpoint.annotation.Endpoint;
import org.springframework.boot.autoconfigure.AutoConfiguration;
import org.springframework.boot.autoconfigure.condition.ConditionalOnBean;
import org.springframework.boot.autoconfigure.condition.ConditionalOnClass;
import org.springframework.boot.autoconfigure.condition.ConditionalOnMissingBean;
import org.springframework.context.annotation.Bean;

/** The {@code microsandbox} actuator endpoint, when the actuator is on the class path and the endpoint is exposed. */
@AutoConfiguration(after = MicrosandboxAutoConfiguration.class)
@ConditionalOnClass({Endpoint.class, ConditionalOnAvailableEndpoint.class})
@ConditionalOnBean(Microsandbox.class)
@ConditionalOnAvailableEndpoint(MicrosandboxEndpoint.class)
public class MicrosandboxEndpointAutoConfiguration {

    @Bean
    @ConditionalOnMissingBean
    public MicrosandboxEndpoint microsandboxEndpoint(Microsandbox runtime, ObjectProvider<SandboxPool> pool) {
        return new MicrosandboxEndpoint(runtime, pool.getIfUnique());
    }
}

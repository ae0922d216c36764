package io.microsandbox.spring;

import io.microsandbox.SandboxConfig;

/**
 * Adjusts the {@link SandboxConfig} that the {@code microsandbox.*} properties produce, before
 * the pool boots sandboxes with it. Several may be defined; they run in {@code @Order} /
 * {@link org.springframework.core.Ordered} order.
 */
@FunctionalInterface
public interface SandboxConfigCustomizer {

    /** Changes the builder in place. */
    void customize(SandboxConfig.Builder builder);
}

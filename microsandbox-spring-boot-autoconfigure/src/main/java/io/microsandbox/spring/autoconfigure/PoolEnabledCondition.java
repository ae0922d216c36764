package io.microsandbox.spring.autoconfigure;

import org.springframework.boot.autoconfigure.condition.ConditionOutcome;
import org.springframework.boot.autoconfigure.condition.SpringBootCondition;
import org.springframework.boot.context.properties.bind.Binder;
import org.springframework.context.annotation.ConditionContext;
import org.springframework.core.type.AnnotatedTypeMetadata;

/**
 * {@code microsandbox.pool.enabled} read as Spring binds a boolean ({@code true}/{@code false},
 * {@code on}/{@code off}, {@code yes}/{@code no}, {@code 1}/{@code 0}), unset meaning on, so the
 * pool and the on-demand source always have exactly one taker. A property condition compares
 * the text with {@code "true"} and {@code "false"} only: {@code off} matched neither, leaving
 * the template without a source; a value that is no boolean fails binding with its name.
 */
abstract class PoolEnabledCondition extends SpringBootCondition {
    static final String PROPERTY = "microsandbox.pool.enabled";

    private final boolean wanted;

    private PoolEnabledCondition(boolean wanted) {
        this.wanted = wanted;
    }

    @Override
    public ConditionOutcome getMatchOutcome(ConditionContext context, AnnotatedTypeMetadata metadata) {
        boolean enabled = Binder.get(context.getEnvironment()).bind(PROPERTY, Boolean.class).orElse(true);
        String message = PROPERTY + " is " + enabled;
        return enabled == wanted ? ConditionOutcome.match(message) : ConditionOutcome.noMatch(message);
    }

    /** The pool is on (the default). */
    static final class On extends PoolEnabledCondition {
        On() {
            super(true);
        }
    }

    /** The pool is off: sandboxes on demand. */
    static final class Off extends PoolEnabledCondition {
        Off() {
            super(false);
        }
    }
}

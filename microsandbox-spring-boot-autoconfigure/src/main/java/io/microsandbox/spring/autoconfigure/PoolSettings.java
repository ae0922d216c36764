package io.microsandbox.spring.autoconfigure;

import io.microsandbox.spring.MicrosandboxProperties;
import java.time.Duration;

/**
 * Checks the {@code microsandbox.pool.*} settings before the pool is made, whoever supplies the
 * sandbox configuration: a pool with no room, or a zero where waiting is meant, would start and
 * then fail every borrow.
 */
final class PoolSettings {

    private PoolSettings() {
    }

    static void check(MicrosandboxProperties.Pool pool) {
        if (pool.getMaxSize() < 1 || pool.getMinIdle() < 0 || pool.getMinIdle() > pool.getMaxSize()) {
            throw new MicrosandboxConfigurationException("microsandbox.pool.min-idle (" + pool.getMinIdle()
                    + ") and max-size (" + pool.getMaxSize() + ") do not fit.",
                    "Set microsandbox.pool.max-size to 1 or more and microsandbox.pool.min-idle between 0 and max-size.", null);
        }
        if (pool.getName() == null || !pool.getName().matches("[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")) {
            throw new MicrosandboxConfigurationException("microsandbox.pool.name '" + pool.getName() + "' is not a valid name.",
                    "Use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.", null);
        }
        if (pool.getMaxUses() < 0) {
            throw new MicrosandboxConfigurationException("microsandbox.pool.max-uses must not be negative.",
                    "Set microsandbox.pool.max-uses to 0 (no limit) or more.", null);
        }
        notNegative("acquire-timeout", pool.getAcquireTimeout(), "30s");
        notNegative("max-lifetime", pool.getMaxLifetime(), "30m, or 0 for no limit");
        notNegative("validation-interval", pool.getValidationInterval(), "500ms");
        notNegative("shutdown-timeout", pool.getShutdownTimeout(), "30s");
        positive("validation-timeout", pool.getValidationTimeout(), "5s");
        positive("housekeeping-period", pool.getHousekeepingPeriod(), "5s");
        positive("boot-backoff", pool.getBootBackoff(), "1s");
        positive("boot-backoff-max", pool.getBootBackoffMax(), "60s");
        positive("warm-up-timeout", pool.getWarmUpTimeout(), "60s");
    }

    private static void notNegative(String property, Duration value, String example) {
        if (value == null || value.isNegative()) {
            throw new MicrosandboxConfigurationException("microsandbox.pool." + property + " is " + value + ": it must be set and not negative.",
                    "Set microsandbox.pool." + property + " to a duration such as " + example + ".", null);
        }
    }

    private static void positive(String property, Duration value, String example) {
        if (value == null || value.isNegative() || value.isZero()) {
            throw new MicrosandboxConfigurationException("microsandbox.pool." + property + " is " + value + ": it must be positive"
                    + " (a zero here would fail every check at once).", "Set microsandbox.pool." + property + " to a duration such as " + example + ".", null);
        }
    }
}

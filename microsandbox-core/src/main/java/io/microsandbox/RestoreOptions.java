package io.microsandbox;

import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * How {@link Microsandbox#restore(String, Checkpoint, RestoreOptions)} and
 * {@link Microsandbox#fork(Checkpoint, String, int, RestoreOptions)} start sandboxes from a
 * checkpoint: a new guest hostname (default: the source's), labels added to the source's,
 * detached and ephemeral as in {@link SandboxConfig}, the values of the source's secrets,
 * which a checkpoint never stores, and published ports other than the source's.
 */
public final class RestoreOptions {
    private final String hostname;
    private final Map<String, String> labels;
    private final boolean detached;
    private final boolean ephemeral;
    private final Map<String, String> secretValues;
    private final List<PortBinding> portBindings;

    private RestoreOptions(Builder b) {
        this.portBindings = b.portBindings == null ? null : List.copyOf(b.portBindings);
        this.secretValues = Map.copyOf(b.secretValues);
        this.hostname = b.hostname;
        this.labels = Map.copyOf(b.labels);
        this.detached = b.detached;
        this.ephemeral = b.ephemeral;
    }

    /** The source's hostname, no extra labels, attached, not ephemeral. */
    public static RestoreOptions defaults() {
        return builder().build();
    }

    /** Options to build, starting from {@link #defaults()}. */
    public static Builder builder() {
        return new Builder();
    }

    /** The guest's new hostname, or null to keep the source's. */
    public String hostname() {
        return hostname;
    }

    /** Labels added to the source's (a label of the same key replaces the source's). */
    public Map<String, String> labels() {
        return labels;
    }

    /** Whether the restored sandbox outlives this process, as {@link SandboxConfig#detached()}. */
    public boolean detached() {
        return detached;
    }

    /** Whether the restored sandbox is removed when it stops, as {@link SandboxConfig#ephemeral()}. */
    public boolean ephemeral() {
        return ephemeral;
    }

    /** The values of the source's secrets, by secret name. */
    public Map<String, String> secretValues() {
        return secretValues;
    }

    /** The ports to publish instead of the source's, or null to publish the source's. */
    public List<PortBinding> portBindings() {
        return portBindings;
    }

    /** Builds {@link RestoreOptions}. */
    public static final class Builder {
        private String hostname;
        private final Map<String, String> labels = new LinkedHashMap<>();
        private boolean detached;
        private boolean ephemeral;
        private final Map<String, String> secretValues = new LinkedHashMap<>();
        private List<PortBinding> portBindings;

        private Builder() {
        }

        /** Sets the restored guest's hostname (at most 64 bytes); each fork may want its own. */
        public Builder hostname(String hostname) {
            this.hostname = hostname;
            return this;
        }

        /** Adds labels to the source's (a label of the same key replaces the source's). */
        public Builder labels(Map<String, String> labels) {
            this.labels.putAll(Objects.requireNonNull(labels, "labels"));
            return this;
        }

        /** The restored sandbox outlives this process (see {@link SandboxConfig.Builder#detached(boolean)}); attached by default. */
        public Builder detached(boolean detached) {
            this.detached = detached;
            return this;
        }

        /** The restored sandbox is removed when it stops (see {@link SandboxConfig.Builder#ephemeral(boolean)}); kept by default. */
        public Builder ephemeral(boolean ephemeral) {
            this.ephemeral = ephemeral;
            return this;
        }

        /**
         * The values of the source sandbox's secrets, by secret name; required when it has
         * secrets. Placeholders and allowed hosts stay the source's: the restored guest's
         * processes already hold those placeholders.
         */
        public Builder secretValues(Map<String, String> values) {
            this.secretValues.putAll(Objects.requireNonNull(values, "values"));
            return this;
        }

        /**
         * Publishes these ports instead of the source's ({@link SandboxConfig#ports()}); an
         * empty list publishes none. The guest's services listen where they did; only the host
         * side moves: a restore while the source still holds its ports, or a
         * {@link Microsandbox#fork fork} of more than one, which cannot publish one host port
         * twice.
         */
        public Builder portBindings(Collection<PortBinding> bindings) {
            this.portBindings = List.copyOf(Objects.requireNonNull(bindings, "bindings"));
            return this;
        }

        /** The options as set. */
        public RestoreOptions build() {
            return new RestoreOptions(this);
        }
    }
}

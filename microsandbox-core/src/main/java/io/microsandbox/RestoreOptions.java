package io.microsandbox;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * How {@link Microsandbox#restore(String, Checkpoint, RestoreOptions)} and
 * {@link Microsandbox#fork(Checkpoint, String, int, RestoreOptions)} start sandboxes from a
 * checkpoint: a new guest hostname (default: the source's), labels added to the source's,
 * detached and ephemeral as in {@link SandboxConfig}.
 */
public final class RestoreOptions {
    private final String hostname;
    private final Map<String, String> labels;
    private final boolean detached;
    private final boolean ephemeral;

    private RestoreOptions(Builder b) {
        this.hostname = b.hostname;
        this.labels = Map.copyOf(b.labels);
        this.detached = b.detached;
        this.ephemeral = b.ephemeral;
    }

    /** The source's hostname, no extra labels, attached, not ephemeral. */
    public static RestoreOptions defaults() {
        return builder().build();
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The guest's new hostname, or null to keep the source's. */
    public String hostname() {
        return hostname;
    }

    public Map<String, String> labels() {
        return labels;
    }

    public boolean detached() {
        return detached;
    }

    public boolean ephemeral() {
        return ephemeral;
    }

    /** Builds {@link RestoreOptions}. */
    public static final class Builder {
        private String hostname;
        private final Map<String, String> labels = new LinkedHashMap<>();
        private boolean detached;
        private boolean ephemeral;

        private Builder() {
        }

        /** Sets the restored guest's hostname (at most 64 bytes); each fork may want its own. */
        public Builder hostname(String hostname) {
            this.hostname = hostname;
            return this;
        }

        public Builder labels(Map<String, String> labels) {
            this.labels.putAll(Objects.requireNonNull(labels, "labels"));
            return this;
        }

        public Builder detached(boolean detached) {
            this.detached = detached;
            return this;
        }

        public Builder ephemeral(boolean ephemeral) {
            this.ephemeral = ephemeral;
            return this;
        }

        public RestoreOptions build() {
            return new RestoreOptions(this);
        }
    }
}

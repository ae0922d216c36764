package io.microsandbox;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * How {@link SandboxHandle#snapshot(String, SnapshotOptions)} takes a snapshot: labels to
 * record, and whether to record an integrity hash of the upper disk (default yes: it costs a
 * read of the data already being copied, and boots from the snapshot then check it).
 */
public final class SnapshotOptions {
    private final Map<String, String> labels;
    private final boolean integrity;

    private SnapshotOptions(Builder b) {
        this.labels = Map.copyOf(b.labels);
        this.integrity = b.integrity;
    }

    /** No labels, integrity hash recorded. */
    public static SnapshotOptions defaults() {
        return builder().build();
    }

    /** Options to build, starting from {@link #defaults()}. */
    public static Builder builder() {
        return new Builder();
    }

    /** Labels recorded in the manifest. */
    public Map<String, String> labels() {
        return labels;
    }

    /** Whether the upper disk's content digest is recorded (checked by {@link Snapshot#verify()} and at boot). */
    public boolean integrity() {
        return integrity;
    }

    /** Builds {@link SnapshotOptions}. */
    public static final class Builder {
        private final Map<String, String> labels = new LinkedHashMap<>();
        private boolean integrity = true;

        private Builder() {
        }

        /** Labels recorded in the manifest. */
        public Builder labels(Map<String, String> labels) {
            this.labels.putAll(Objects.requireNonNull(labels, "labels"));
            return this;
        }

        /** Whether to record the upper disk's content digest (checked by verify and at boot). */
        public Builder integrity(boolean integrity) {
            this.integrity = integrity;
            return this;
        }

        /** The options as set. */
        public SnapshotOptions build() {
            return new SnapshotOptions(this);
        }
    }
}

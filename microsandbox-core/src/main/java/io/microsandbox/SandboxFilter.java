package io.microsandbox;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Narrows {@link Sandbox#list(SandboxFilter)}. Labels are AND-matched: a sandbox matches only
 * when it carries every label of the filter. Immutable; {@link #withLabels(Map)} returns a new filter.
 */
public final class SandboxFilter {
    private static final SandboxFilter ALL = new SandboxFilter(Map.of());

    private final Map<String, String> labels;

    private SandboxFilter(Map<String, String> labels) {
        this.labels = Collections.unmodifiableMap(new LinkedHashMap<>(labels));
    }

    /** A filter that matches every sandbox. */
    public static SandboxFilter all() {
        return ALL;
    }

    /** A filter requiring all of {@code labels}. */
    public static SandboxFilter labels(Map<String, String> labels) {
        return ALL.withLabels(labels);
    }

    /** This filter with {@code labels} added; later keys overwrite earlier ones. */
    public SandboxFilter withLabels(Map<String, String> labels) {
        Map<String, String> merged = new LinkedHashMap<>(this.labels);
        merged.putAll(labels);
        return new SandboxFilter(merged);
    }

    /** The required labels. */
    public Map<String, String> labels() {
        return labels;
    }
}

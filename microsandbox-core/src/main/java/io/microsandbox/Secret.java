package io.microsandbox;

import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.List;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * A secret the guest may use without ever holding it: the guest's environment gets
 * {@code name=placeholder}, and the host's network relay puts the real value in place of the
 * placeholder in outgoing HTTP request lines, headers and bodies ({@code Content-Length} bodies
 * up to 1 MiB, chunked ones of any size), toward the allowed hosts only (docs/network.md,
 * "Secrets"). A placeholder sent anywhere else, or in a larger {@code Content-Length} body, is a
 * violation, handled by {@link #onViolation()}. The value lives only in the host's memory and in an owner-only file
 * that the supervisor deletes once it has read it; {@link #toString()} never shows it.
 *
 * <pre>{@code
 * Secret key = Secret.env("API_KEY", System.getenv("API_KEY"))
 *         .allowHosts("api.example.com").allowHostPatterns("*.example.org").build();
 * SandboxConfig.builder().image(...).secret(key);
 * }</pre>
 */
public final class Secret {
    /** What the host does when a placeholder is sent where it may not go. */
    public enum Violation {
        /** Reset the connection. */
        BLOCK,
        /** Reset the connection and write a {@code system} log entry (naming the secret, never its value). */
        BLOCK_AND_LOG,
        /** Reset the connection, log, and stop the sandbox. */
        TERMINATE
    }

    private static final Pattern ENV_NAME = Pattern.compile("[A-Za-z_][A-Za-z0-9_]*");
    private static final SecureRandom RANDOM = new SecureRandom();

    private final String name;
    private final String value;
    private final List<String> allowHosts;
    private final List<String> allowHostPatterns;
    private final String placeholder;
    private final boolean requireTls;
    private final Violation onViolation;

    private Secret(Builder b) {
        this.name = b.name;
        this.value = b.value;
        this.allowHosts = List.copyOf(b.allowHosts);
        this.allowHostPatterns = List.copyOf(b.allowHostPatterns);
        this.placeholder = b.placeholder != null ? b.placeholder : "msb-secret-" + HexFormat.of().formatHex(randomBytes());
        this.requireTls = b.requireTls;
        this.onViolation = b.onViolation;
        if (!ENV_NAME.matcher(name).matches()) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "secret name " + name + " is not an environment variable name");
        }
        if (value != null && value.isEmpty()) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "secret " + name + " has an empty value");
        }
        // short placeholders would match ordinary traffic, and one inside the value would be found again after substitution
        if (placeholder.length() < 8 || !placeholder.chars().allMatch(c -> c > 0x20 && c < 0x7f)) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG,
                    "secret " + name + ": the placeholder must be at least 8 printable ASCII characters without spaces");
        }
        if (value != null && (value.contains(placeholder) || placeholder.contains(value))) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "secret " + name + ": the placeholder and the value overlap");
        }
        for (String p : allowHostPatterns) {
            if (p.isBlank() || p.chars().anyMatch(Character::isWhitespace)) {
                throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "secret " + name + ": bad host pattern '" + p + "'");
            }
        }
    }

    private static byte[] randomBytes() {
        byte[] b = new byte[16];
        RANDOM.nextBytes(b);
        return b;
    }

    /**
     * A secret exposed to the guest as environment variable {@code name}; allowed nowhere until
     * {@link Builder#allowHosts} or {@link Builder#allowHostPatterns} says where.
     */
    public static Builder env(String name, String value) {
        return new Builder(name, Objects.requireNonNull(value, "value"));
    }

    /** All settings at once, as the reference SDK's {@code Secret.Env}; {@code placeholder} null for a random one. */
    public static Secret env(String name, String value, List<String> allowHosts, List<String> allowHostPatterns,
                             String placeholder, boolean requireTls, Violation onViolation) {
        return of(name, Objects.requireNonNull(value, "value"), allowHosts, allowHostPatterns, placeholder, requireTls, onViolation);
    }

    /** The guest environment variable that holds the placeholder. */
    public String name() {
        return name;
    }

    /**
     * The real value: for the host's relay only. Null in a secret read back from a persisted
     * sandbox ({@link SandboxHandle#config()}, a checkpoint), whose values are never stored:
     * they are given again when it starts ({@link Microsandbox#start(String, java.util.Map)},
     * {@link RestoreOptions.Builder#secretValues(java.util.Map)}).
     */
    public String value() {
        return value;
    }

    /** Whether this secret carries its value (see {@link #value()}). */
    public boolean hasValue() {
        return value != null;
    }

    /** A secret read back from where it was persisted: everything but its value. */
    static Secret withoutValue(String name, String placeholder, List<String> allowHosts, List<String> allowHostPatterns,
                               boolean requireTls, Violation onViolation) {
        return of(name, null, allowHosts, allowHostPatterns, placeholder, requireTls, onViolation);
    }

    /** This secret (read back without its value) with {@code value}, placeholder and hosts unchanged. */
    Secret withValue(String value) {
        return of(name, Objects.requireNonNull(value, "value"), allowHosts, allowHostPatterns, placeholder, requireTls, onViolation);
    }

    /** A secret with every setting given; {@code value} null for one read back without it. */
    private static Secret of(String name, String value, List<String> allowHosts, List<String> allowHostPatterns,
                             String placeholder, boolean requireTls, Violation onViolation) {
        return new Builder(name, value).allowHosts(allowHosts.toArray(String[]::new))
                .allowHostPatterns(allowHostPatterns.toArray(String[]::new)).placeholder(placeholder)
                .requireTls(requireTls).onViolation(onViolation).build();
    }

    /** Exact host names the value may be sent to (case-insensitive). */
    public List<String> allowHosts() {
        return allowHosts;
    }

    /** Host patterns the value may be sent to: {@code *.example.com} (any subdomain) or {@code .example.com} (it and its subdomains). */
    public List<String> allowHostPatterns() {
        return allowHostPatterns;
    }

    /** What the guest sees instead of the value. */
    public String placeholder() {
        return placeholder;
    }

    /** Whether the value is put in only on intercepted TLS connections (default true); plaintext then counts as a violation. */
    public boolean requireTls() {
        return requireTls;
    }

    /** What happens on a violation (default {@link Violation#BLOCK_AND_LOG}). */
    public Violation onViolation() {
        return onViolation;
    }

    /** Whether {@code host} is one this secret may be sent to. */
    public boolean allows(String host) {
        if (host == null || host.isEmpty()) {
            return false;
        }
        String h = host.toLowerCase(java.util.Locale.ROOT);
        if (h.endsWith(".")) {
            h = h.substring(0, h.length() - 1);
        }
        for (String a : allowHosts) {
            if (a.equalsIgnoreCase(h)) {
                return true;
            }
        }
        for (String p : allowHostPatterns) {
            String q = p.toLowerCase(java.util.Locale.ROOT);
            if (q.startsWith("*.") && h.endsWith(q.substring(1)) && h.length() > q.length() - 1) {
                return true;
            }
            if (q.startsWith(".") && (h.equals(q.substring(1)) || h.endsWith(q))) {
                return true;
            }
            if (!q.startsWith("*.") && !q.startsWith(".") && q.equals(h)) {
                return true;
            }
        }
        return false;
    }

    @Override
    public String toString() {
        return "Secret[" + name + "=" + placeholder + ", allowHosts=" + allowHosts + ", allowHostPatterns=" + allowHostPatterns
                + ", requireTls=" + requireTls + ", onViolation=" + onViolation + "]";
    }

    /** Builds a {@link Secret}; see {@link Secret#env(String, String)}. */
    public static final class Builder {
        private final String name;
        private final String value;
        private final java.util.List<String> allowHosts = new java.util.ArrayList<>();
        private final java.util.List<String> allowHostPatterns = new java.util.ArrayList<>();
        private String placeholder;
        private boolean requireTls = true;
        private Violation onViolation = Violation.BLOCK_AND_LOG;

        private Builder(String name, String value) {
            this.name = Objects.requireNonNull(name, "name");
            this.value = value;
        }

        /** Exact host names the value may go to; adds to earlier calls. */
        public Builder allowHosts(String... hosts) {
            allowHosts.addAll(List.of(hosts));
            return this;
        }

        /** Host patterns ({@code *.example.com}, {@code .example.com}) the value may go to; adds to earlier calls. */
        public Builder allowHostPatterns(String... patterns) {
            allowHostPatterns.addAll(List.of(patterns));
            return this;
        }

        /** The placeholder the guest sees; null (the default) for {@code msb-secret-<32 random hex digits>}. */
        public Builder placeholder(String placeholder) {
            this.placeholder = placeholder;
            return this;
        }

        /** Whether the value goes only into intercepted TLS (default true). */
        public Builder requireTls(boolean requireTls) {
            this.requireTls = requireTls;
            return this;
        }

        /** What a violation does (default {@link Violation#BLOCK_AND_LOG}). */
        public Builder onViolation(Violation onViolation) {
            this.onViolation = Objects.requireNonNull(onViolation, "onViolation");
            return this;
        }

        public Secret build() {
            return new Secret(this);
        }
    }
}

package io.microsandbox;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Everything needed to boot a sandbox. Immutable; build one with {@link #builder()}.
 *
 * <pre>{@code
 * SandboxConfig config = SandboxConfig.builder()
 *         .image("/srv/images/python")
 *         .memoryMib(512)
 *         .cpus(1)
 *         .env(Map.of("GREETING", "hi"))
 *         .build();
 * }</pre>
 */
public final class SandboxConfig {
    /** Default guest memory. */
    public static final int DEFAULT_MEMORY_MIB = 512;
    /** Default writable upper disk size; the file is sparse, so this is a limit, not a cost. */
    public static final int DEFAULT_UPPER_SIZE_MIB = 4096;
    /** Default time to wait for the guest agent, generous enough for software emulation. */
    public static final Duration DEFAULT_BOOT_TIMEOUT = Duration.ofSeconds(60);
    /** How long a sandbox is idle before its guest gives back its page cache (see {@link Builder#cacheReclaimAfter}). */
    public static final Duration DEFAULT_CACHE_RECLAIM_AFTER = Duration.ofSeconds(30);

    private static final List<String> RESERVED_LABEL_PREFIXES = List.of("sandbox.", "microsandbox.", "service.");
    /** Labels are for selecting sandboxes, kept in the database and listed with every sandbox: a few short ones. */
    static final int MAX_LABELS = 64;
    static final int MAX_LABEL_KEY_LENGTH = 128;
    static final int MAX_LABEL_VALUE_LENGTH = 1024;
    private static final ObjectMapper JSON = new ObjectMapper();

    private final String image;
    // OCI images (issue 8): how the image is pulled; auth and progress are never persisted
    private final PullPolicy pullPolicy;
    private final RegistryAuth registryAuth;
    private final PullProgressListener pullProgress;
    private final java.util.List<String> entrypoint;
    private final java.util.List<Patch> patches;
    private final String imageDisk;
    private final String imageDiskFsType;
    // issue 11: a disk snapshot to boot from instead of an image
    private final String snapshot;
    private final int memoryMib;
    private final int cpus;
    private final int upperSizeMib;
    private final String workdir;
    private final String shell;
    private final String hostname;
    private final String user;
    private final Map<String, String> env;
    private final Map<String, String> labels;
    private final boolean detached;
    private final Accelerator accelerator;
    private final Duration bootTimeout;
    private final boolean ephemeral;
    private final Duration idleTimeout;
    private final Duration cacheReclaimAfter;
    private final Duration maxDuration;
    private final Duration replaceTimeout;
    private final LogLevel logLevel;
    private final boolean quietLogs;
    // issue 13: volumes, scripts, security profile (validated by GuestOptions)
    private final Map<String, Mount> mounts;
    private final Map<String, String> scripts;
    private final SecurityProfile securityProfile;
    private final Init init;
    private final NetworkPolicy network;
    private final java.util.List<PortBinding> ports;
    private final java.util.List<Secret> secrets;

    private SandboxConfig(Builder b) {
        this.image = b.image;
        this.pullPolicy = b.pullPolicy;
        this.registryAuth = b.registryAuth;
        this.pullProgress = b.pullProgress;
        this.entrypoint = b.entrypoint;
        this.patches = java.util.List.copyOf(b.patches);
        this.imageDisk = b.imageDisk;
        this.imageDiskFsType = b.imageDiskFsType;
        this.snapshot = b.snapshot;
        this.memoryMib = b.memoryMib;
        this.cpus = b.cpus;
        this.upperSizeMib = b.upperSizeMib;
        this.workdir = b.workdir;
        this.shell = b.shell;
        this.hostname = b.hostname;
        this.user = b.user;
        this.env = Collections.unmodifiableMap(new LinkedHashMap<>(b.env));
        this.labels = Collections.unmodifiableMap(new LinkedHashMap<>(b.labels));
        this.detached = b.detached;
        this.accelerator = b.accelerator;
        this.bootTimeout = b.bootTimeout;
        this.ephemeral = b.ephemeral;
        this.idleTimeout = b.idleTimeout;
        this.cacheReclaimAfter = b.cacheReclaimAfter;
        this.maxDuration = b.maxDuration;
        this.replaceTimeout = b.replaceTimeout;
        this.logLevel = b.logLevel;
        this.quietLogs = b.quietLogs;
        this.mounts = Collections.unmodifiableMap(new java.util.TreeMap<>(b.mounts));
        this.scripts = Collections.unmodifiableMap(new java.util.TreeMap<>(b.scripts));
        this.securityProfile = b.securityProfile;
        this.init = b.init;
        this.network = b.network;
        this.ports = java.util.List.copyOf(b.ports);
        this.secrets = java.util.List.copyOf(b.secrets);
    }

    private static java.util.Set<String> namesOf(java.util.List<Secret> secrets) {
        return secrets.stream().map(Secret::name).collect(java.util.stream.Collectors.toUnmodifiableSet());
    }

    /** A builder with the defaults (no image: {@link Builder#image} is required). */
    public static Builder builder() {
        return new Builder();
    }

    /** A builder holding a copy of this configuration. */
    public Builder toBuilder() {
        Builder b = new Builder();
        // what this configuration holds was checked when it was built, or read back from a record: a copy keeps it
        b.recordedLabels = labels;
        b.recordedImage = image;
        b.recordedSecrets = namesOf(secrets);
        return b
                .image(image).pullPolicy(pullPolicy).registryAuth(registryAuth).pullProgress(pullProgress).entrypoint(entrypoint).patches(patches).imageDisk(imageDisk, imageDiskFsType)
                .snapshot(snapshot)
                .memoryMib(memoryMib).cpus(cpus).upperSizeMib(upperSizeMib)
                .workdir(workdir).shell(shell).hostname(hostname).user(user)
                .env(env).labels(labels).detached(detached).accelerator(accelerator).bootTimeout(bootTimeout)
                .ephemeral(ephemeral).idleTimeout(idleTimeout).cacheReclaimAfter(cacheReclaimAfter).maxDuration(maxDuration).replaceTimeout(replaceTimeout)
                .logLevel(logLevel).quietLogs(quietLogs)
                .mounts(mounts).scripts(scripts).securityProfile(securityProfile).init(init)
                .network(network).portBindings(ports).secrets(secrets);
    }

    /** Root filesystem source: an OCI image reference, an OCI layout or archive, or a root filesystem directory. */
    public String image() {
        return image;
    }

    /** Guest memory in MiB. */
    public int memoryMib() {
        return memoryMib;
    }

    /** Virtual CPUs. */
    public int cpus() {
        return cpus;
    }

    /** Size limit of the writable upper disk in MiB. */
    public int upperSizeMib() {
        return upperSizeMib;
    }

    /** Default working directory of commands, or null for the OCI image's {@code WorkingDir}, else the user's home. */
    public String workdir() {
        return workdir;
    }

    /** Shell used by {@link Sandbox#shell(String)}. */
    public String shell() {
        return shell;
    }

    /** Guest hostname, or null for the sandbox name. */
    public String hostname() {
        return hostname;
    }

    /** Default guest user (name, uid or uid:gid), or null for the OCI image's {@code User}, else root. */
    public String user() {
        return user;
    }

    /** Environment variables visible to every command. */
    public Map<String, String> env() {
        return env;
    }

    /** Labels for filtering and metrics attribution. */
    public Map<String, String> labels() {
        return labels;
    }

    /** Whether the sandbox outlives the JVM that created it. */
    public boolean detached() {
        return detached;
    }

    /** How QEMU runs the guest. */
    public Accelerator accelerator() {
        return accelerator;
    }

    /** How long to wait for the guest agent before the boot counts as failed. */
    public Duration bootTimeout() {
        return bootTimeout;
    }

    /** Whether all state is removed once the sandbox has stopped. */
    public boolean ephemeral() {
        return ephemeral;
    }

    /** Stop after this long without exec activity; {@link Duration#ZERO} for never. */
    public Duration idleTimeout() {
        return idleTimeout;
    }

    /**
     * After this long without commands or file transfers the guest drops its page cache, if it
     * holds much of it, and the memory goes back to the host; {@link Duration#ZERO} for never.
     */
    public Duration cacheReclaimAfter() {
        return cacheReclaimAfter;
    }

    /** Drain, then stop, after this long in total; {@link Duration#ZERO} for never. */
    public Duration maxDuration() {
        return maxDuration;
    }

    /**
     * When a sandbox of the same name exists: null to fail with
     * {@link ErrorKind#SANDBOX_ALREADY_EXISTS}, else the graceful window given to the old one
     * before it is killed and replaced ({@link Duration#ZERO} kills it at once).
     */
    public Duration replaceTimeout() {
        return replaceTimeout;
    }

    /** The configured diagnostics level, or null for the runtime default ({@link LogLevel#INFO}). */
    public LogLevel logLevel() {
        return logLevel;
    }

    /** Whether the sandbox's own diagnostics are silenced (see {@link Builder#quietLogs()}). */
    public boolean quietLogs() {
        return quietLogs;
    }

    /**
     * The diagnostics level in effect, as the supervisor and the agent read it: {@code "off"}
     * when {@linkplain #quietLogs() quiet}, else the {@link #logLevel()}'s name, {@code "info"} by default.
     */
    public String effectiveLogLevel() {
        return quietLogs ? "off" : logLevel == null ? LogLevel.INFO.value() : logLevel.value();
    }

    // OCI images

    /** When an OCI image is pulled (default {@link PullPolicy#IF_MISSING}). */
    public PullPolicy pullPolicy() {
        return pullPolicy;
    }

    /** Credentials for a private registry, or null; not persisted. */
    public RegistryAuth registryAuth() {
        return registryAuth;
    }

    /** Receives pull progress, or null; not persisted. */
    public PullProgressListener pullProgress() {
        return pullProgress;
    }

    /** The entrypoint that overrides the image's, or null to keep the image's. */
    public java.util.List<String> entrypoint() {
        return entrypoint;
    }

    /** A disk image (qcow2, raw, vmdk) used as the root instead of {@link #image()}, or null. */
    public String imageDisk() {
        return imageDisk;
    }

    /** The disk snapshot (bare name or path) this sandbox boots from instead of an image, or null. */
    public String snapshot() {
        return snapshot;
    }

    /** The filesystem inside {@link #imageDisk()} (null or "ext4"). */
    public String imageDiskFsType() {
        return imageDiskFsType;
    }

    /** Root filesystem patches written into the upper layer before the first boot, in order. */
    public java.util.List<Patch> patches() {
        return patches;
    }

    /** What is mounted where, by guest path (sorted, so parents come before what is mounted inside them). */
    public Map<String, Mount> mounts() {
        return mounts;
    }

    /** Named scripts installed at {@code /.msb/scripts/<name>} and on the PATH, by name. */
    public Map<String, String> scripts() {
        return scripts;
    }

    /** The in-guest security profile (default {@link SecurityProfile#DEFAULT}). */
    public SecurityProfile securityProfile() {
        return securityProfile;
    }

    /** The custom init that becomes PID 1, or null: the agent stays PID 1. */
    public Init init() {
        return init;
    }

    /** The network policy the host enforces; {@link NetworkPolicy#publicOnly()} unless set. */
    public NetworkPolicy network() {
        return network;
    }

    /** Published ports. */
    public java.util.List<PortBinding> ports() {
        return ports;
    }

    /**
     * Secrets the guest sees only as placeholders (see {@link Secret}). {@link #toJson()} keeps
     * everything of them but their values, so a configuration read back from a persisted
     * sandbox or a checkpoint has secrets without values ({@link Secret#hasValue()}), which a
     * start or restore must be given again.
     */
    public java.util.List<Secret> secrets() {
        return secrets;
    }

    /**
     * This configuration with the values of its secrets (read back without them) put back, by
     * secret name; secrets that carry a value keep it unless {@code values} names them.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_CONFIG} naming the secrets still
     *         without a value, or values for secrets this configuration does not have
     */
    SandboxConfig withSecretValues(java.util.Map<String, String> values, String what) {
        java.util.Set<String> unknown = new java.util.TreeSet<>(values.keySet());
        secrets.forEach(secret -> unknown.remove(secret.name()));
        if (!unknown.isEmpty()) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, what + " has no secrets " + unknown
                    + " (its secrets: " + secrets.stream().map(Secret::name).toList() + ")");
        }
        java.util.List<Secret> filled = secrets.stream()
                .map(secret -> values.containsKey(secret.name()) ? secret.withValue(values.get(secret.name())) : secret).toList();
        java.util.List<String> missing = filled.stream().filter(secret -> !secret.hasValue()).map(Secret::name).toList();
        if (!missing.isEmpty()) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, what + " uses secrets " + missing
                    + ", whose values are never stored: give them again by name (Microsandbox.start(name, secretValues),"
                    + " SandboxHandle.start(secretValues), RestoreOptions.builder().secretValues(...))");
        }
        Builder b = toBuilder();
        b.secrets.clear();
        b.secrets(filled);
        return b.build();
    }

    /**
     * This configuration with a relative image or disk-image path that names a local file or
     * directory made absolute, against the working directory now: a persisted sandbox must find
     * the same files when a later process, elsewhere, starts it again.
     */
    SandboxConfig withAbsolutePaths() {
        String absoluteImage = Builder.absoluteIfOnDisk(image);
        String absoluteDisk = Builder.absoluteIfOnDisk(imageDisk);
        if (Objects.equals(absoluteImage, image) && Objects.equals(absoluteDisk, imageDisk)) {
            return this;
        }
        Builder b = toBuilder();
        if (imageDisk != null) {
            b.imageDisk(absoluteDisk, imageDiskFsType);
        } else {
            b.image(absoluteImage);
        }
        return b.build();
    }

    /** This configuration as JSON, the form in which sandboxes are persisted (its secrets without their values). */
    public String toJson() {
        ObjectNode n = JSON.createObjectNode();
        n.put("image", image);
        n.put("memoryMib", memoryMib);
        n.put("cpus", cpus);
        n.put("upperSizeMib", upperSizeMib);
        n.put("workdir", workdir);
        n.put("shell", shell);
        n.put("hostname", hostname);
        n.put("user", user);
        n.set("env", JSON.valueToTree(env));
        n.set("labels", JSON.valueToTree(labels));
        n.put("detached", detached);
        n.put("accelerator", accelerator.name().toLowerCase(java.util.Locale.ROOT));
        n.put("bootTimeoutMs", bootTimeout.toMillis());
        n.put("ephemeral", ephemeral);
        n.put("idleTimeoutMs", idleTimeout.toMillis());
        n.put("cacheReclaimAfterMs", cacheReclaimAfter.toMillis());
        n.put("maxDurationMs", maxDuration.toMillis());
        n.put("pullPolicy", pullPolicy.value());
        if (logLevel != null) {
            n.put("logLevel", logLevel.value());
        }
        if (quietLogs) {
            n.put("quietLogs", true);
        }
        if (entrypoint != null) {
            n.set("entrypoint", JSON.valueToTree(entrypoint));
        }
        if (snapshot != null) {
            n.put("snapshot", snapshot);
        }
        n.set("network", network.toJsonNode());
        if (!secrets.isEmpty()) {
            var arr = n.putArray("secrets");
            for (Secret secret : secrets) {
                ObjectNode sn = arr.addObject();
                sn.put("name", secret.name());
                sn.put("placeholder", secret.placeholder());
                sn.set("allowHosts", JSON.valueToTree(secret.allowHosts()));
                sn.set("allowHostPatterns", JSON.valueToTree(secret.allowHostPatterns()));
                sn.put("requireTls", secret.requireTls());
                sn.put("onViolation", secret.onViolation().name());
            }
        }
        if (!ports.isEmpty()) {
            n.set("ports", io.microsandbox.runtime.network.NetworkSettings.portsToJson(ports));
        }
        if (imageDisk != null) {
            n.put("imageDisk", imageDisk);
            n.put("imageDiskFsType", imageDiskFsType);
        }
        if (!mounts.isEmpty()) {
            ObjectNode mn = n.putObject("mounts");
            mounts.forEach((path, m) -> mn.set(path, m.toJson()));
        }
        if (!scripts.isEmpty()) {
            n.set("scripts", JSON.valueToTree(scripts));
        }
        if (securityProfile != SecurityProfile.DEFAULT) {
            n.put("securityProfile", securityProfile.value());
        }
        if (init != null) {
            n.set("init", init.toJson());
        }
        if (!patches.isEmpty()) {
            var arr = n.putArray("patches");
            for (Patch p : patches) {
                ObjectNode pn = arr.addObject();
                pn.put("kind", p.kind().name().toLowerCase(java.util.Locale.ROOT));
                pn.put("path", p.path());
                pn.put("content", p.content());
                pn.put("source", p.source());
                if (p.options().mode() != null) {
                    pn.put("mode", p.options().mode());
                }
                pn.put("replace", p.options().replace());
            }
        }
        return n.toString();
    }

    /** Parses the JSON written by {@link #toJson()}. */
    public static SandboxConfig fromJson(String json) {
        try {
            JsonNode n = JSON.readTree(json);
            Builder b = builder()
                    .image(text(n, "image"))
                    .memoryMib(n.path("memoryMib").asInt(DEFAULT_MEMORY_MIB))
                    .cpus(n.path("cpus").asInt(1))
                    .upperSizeMib(n.path("upperSizeMib").asInt(DEFAULT_UPPER_SIZE_MIB))
                    .workdir(text(n, "workdir"))
                    .shell(n.path("shell").asText("/bin/sh"))
                    .hostname(text(n, "hostname"))
                    .user(text(n, "user"))
                    .detached(n.path("detached").asBoolean(false))
                    .accelerator(Accelerator.parse(n.path("accelerator").asText("auto")))
                    .bootTimeout(Duration.ofMillis(n.path("bootTimeoutMs").asLong(DEFAULT_BOOT_TIMEOUT.toMillis())))
                    .ephemeral(n.path("ephemeral").asBoolean(false))
                    .idleTimeout(Duration.ofMillis(n.path("idleTimeoutMs").asLong(0)))
                    .cacheReclaimAfter(Duration.ofMillis(n.path("cacheReclaimAfterMs").asLong(DEFAULT_CACHE_RECLAIM_AFTER.toMillis())))
                    .maxDuration(Duration.ofMillis(n.path("maxDurationMs").asLong(0)));
            n.path("env").fields().forEachRemaining(e -> b.env(e.getKey(), e.getValue().asText()));
            n.path("labels").fields().forEachRemaining(e -> b.label(e.getKey(), e.getValue().asText()));
            b.pullPolicy(PullPolicy.parse(n.path("pullPolicy").asText("")));
            if (n.hasNonNull("snapshot")) {
                b.snapshot(n.get("snapshot").asText());
            }
            if (n.hasNonNull("logLevel")) {
                b.logLevel(LogLevel.parse(n.get("logLevel").asText()));
            }
            b.quietLogs(n.path("quietLogs").asBoolean(false));
            if (n.hasNonNull("network")) {
                b.network(NetworkPolicy.fromJsonNode(n.get("network")));
            }
            b.portBindings(io.microsandbox.runtime.network.NetworkSettings.portsFromJson(n.path("ports")));
            for (JsonNode sn : n.path("secrets")) {
                b.secret(Secret.withoutValue(sn.path("name").asText(), sn.path("placeholder").asText(), texts(sn.path("allowHosts")),
                        texts(sn.path("allowHostPatterns")), sn.path("requireTls").asBoolean(true),
                        Secret.Violation.valueOf(sn.path("onViolation").asText("BLOCK_AND_LOG"))));
            }
            if (n.hasNonNull("imageDisk")) {
                b.imageDisk(n.get("imageDisk").asText(), text(n, "imageDiskFsType"));
            }
            for (JsonNode pn : n.path("patches")) {
                b.patch(new Patch(Patch.Kind.valueOf(pn.path("kind").asText().toUpperCase(java.util.Locale.ROOT)), pn.path("path").asText(),
                        text(pn, "content"), text(pn, "source"),
                        new PatchOptions(pn.hasNonNull("mode") ? pn.get("mode").asInt() : null, pn.path("replace").asBoolean(false))));
            }
            n.path("mounts").fields().forEachRemaining(e -> b.mount(e.getKey(), Mount.fromJson(e.getValue())));
            n.path("scripts").fields().forEachRemaining(e -> b.script(e.getKey(), e.getValue().asText()));
            b.securityProfile(SecurityProfile.parse(text(n, "securityProfile")));
            if (n.hasNonNull("init")) {
                b.init(Init.fromJson(n.get("init")));
            }
            if (n.path("entrypoint").isArray()) {
                b.entrypoint(texts(n.get("entrypoint")));
            }
            // labels an older version recorded stay readable (they were not checked then), its secrets too
            b.recordedLabels = Map.copyOf(b.labels);
            b.recordedImage = b.image;
            b.recordedSecrets = namesOf(b.secrets);
            return b.build();
        } catch (java.io.IOException e) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "sandbox configuration is not valid JSON: " + e.getMessage(), e);
        } catch (IllegalArgumentException e) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "sandbox configuration holds an unknown value: " + e.getMessage(), e);
        }
    }

    /** The elements of a JSON array as text; none for a missing node. */
    private static java.util.List<String> texts(JsonNode array) {
        java.util.List<String> out = new java.util.ArrayList<>();
        array.forEach(x -> out.add(x.asText()));
        return out;
    }

    private static String text(JsonNode n, String field) {
        JsonNode v = n.get(field);
        return v == null || v.isNull() ? null : v.asText();
    }

    @Override
    public String toString() {
        return "SandboxConfig" + toJson();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof SandboxConfig other && toJson().equals(other.toJson());
    }

    @Override
    public int hashCode() {
        return toJson().hashCode();
    }

    /** Builder of {@link SandboxConfig}; map setters merge, later keys win. */
    public static final class Builder {
        private String image;
        private PullPolicy pullPolicy = PullPolicy.IF_MISSING;
        private RegistryAuth registryAuth;
        private PullProgressListener pullProgress;
        private java.util.List<String> entrypoint;
        private final java.util.List<Patch> patches = new java.util.ArrayList<>();
        private String imageDisk;
        private String imageDiskFsType;
        private String snapshot;
        private int memoryMib = DEFAULT_MEMORY_MIB;
        private int cpus = 1;
        private int upperSizeMib = DEFAULT_UPPER_SIZE_MIB;
        private String workdir;
        private String shell = "/bin/sh";
        private String hostname;
        private String user;
        private final Map<String, String> env = new LinkedHashMap<>();
        private final Map<String, String> labels = new LinkedHashMap<>();
        /** Labels of a recorded configuration, taken as they are: an older version did not check them. */
        private Map<String, String> recordedLabels = Map.of();
        /** The image of a recorded configuration, taken as it is: an older version did not check it (nor a directory since removed). */
        private String recordedImage;
        /** Secrets (by name) of a recorded configuration, taken as they are. */
        private java.util.Set<String> recordedSecrets = java.util.Set.of();
        private boolean detached;
        private Accelerator accelerator = Accelerator.AUTO;
        private Duration bootTimeout = DEFAULT_BOOT_TIMEOUT;
        private boolean ephemeral;
        private Duration idleTimeout = Duration.ZERO;
        private Duration cacheReclaimAfter = DEFAULT_CACHE_RECLAIM_AFTER;
        private Duration maxDuration = Duration.ZERO;
        private Duration replaceTimeout;
        private LogLevel logLevel;
        private boolean quietLogs;
        private final Map<String, Mount> mounts = new LinkedHashMap<>();
        private final Map<String, String> scripts = new LinkedHashMap<>();
        private SecurityProfile securityProfile = SecurityProfile.DEFAULT;
        private Init init;
        private NetworkPolicy network = NetworkPolicy.publicOnly();
        private final java.util.List<PortBinding> ports = new java.util.ArrayList<>();
        private final java.util.List<Secret> secrets = new java.util.ArrayList<>();

        private Builder() {
        }

        /** Hands PID 1 to a custom init after the agent's setup ({@link Init#auto()}, {@link Init#cmd(String)}); null: none. */
        public Builder init(Init init) {
            this.init = init;
            return this;
        }

        /**
         * Adds mounts keyed by absolute guest path; repeated calls merge, a later mount at the
         * same path wins. At most 16, paths of at most 511 bytes; not at {@code /}, {@code /proc}, {@code /sys},
         * {@code /dev}, {@code /.msb} or {@code /run/msb}, nor under them.
         */
        public Builder mounts(Map<String, Mount> mounts) {
            this.mounts.putAll(mounts);
            return this;
        }

        /** Adds one mount at an absolute guest path (see {@link #mounts(Map)}). */
        public Builder mount(String guestPath, Mount mount) {
            this.mounts.put(guestPath, Objects.requireNonNull(mount, "mount"));
            return this;
        }

        /**
         * Adds named scripts, installed executable and read-only at {@code /.msb/scripts/<name>},
         * which is on the PATH of every command; repeated calls merge, later names win. Names
         * are 1 to 64 letters, digits, '.', '_' or '-'; at most 64 scripts, 1 MiB in all.
         */
        public Builder scripts(Map<String, String> scripts) {
            this.scripts.putAll(scripts);
            return this;
        }

        /** Adds one named script (see {@link #scripts(Map)}). */
        public Builder script(String name, String content) {
            this.scripts.put(name, Objects.requireNonNull(content, "content"));
            return this;
        }

        /** The in-guest security profile (default {@link SecurityProfile#DEFAULT}). */
        public Builder securityProfile(SecurityProfile securityProfile) {
            this.securityProfile = Objects.requireNonNull(securityProfile, "securityProfile");
            return this;
        }

        /**
         * The network policy the host enforces for this sandbox (default
         * {@link NetworkPolicy#publicOnly()}: the public internet and DNS); {@link NetworkPolicy#none()}
         * gives the guest no network at all. See docs/network.md.
         */
        public Builder network(NetworkPolicy policy) {
            this.network = Objects.requireNonNull(policy, "policy");
            return this;
        }

        /**
         * Adds a secret: the guest's environment gets its placeholder, the host puts the value in
         * outgoing HTTP toward the secret's allowed hosts only (docs/network.md, "Secrets").
         */
        public Builder secret(Secret secret) {
            Objects.requireNonNull(secret, "secret");
            if (secrets.stream().anyMatch(s -> s.name().equals(secret.name()))) {
                throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "secret " + secret.name() + " is given twice");
            }
            secrets.add(secret);
            return this;
        }

        /** Adds secrets, as {@link #secret(Secret)} each. */
        public Builder secrets(java.util.Collection<Secret> secrets) {
            secrets.forEach(this::secret);
            return this;
        }

        /**
         * Publishes guest TCP ports on host ports of 127.0.0.1 (key: host port, value: guest port);
         * merges with earlier calls as maps do: a host port given again goes to its latest guest port.
         */
        public Builder ports(Map<Integer, Integer> hostToGuest) {
            hostToGuest.forEach((host, guestPort) -> mergePort(PortBinding.tcp(host, guestPort)));
            return this;
        }

        /**
         * Publishes guest UDP ports on host ports of 127.0.0.1 (key: host port, value: guest port);
         * merges with earlier calls as maps do: a host port given again goes to its latest guest port.
         */
        public Builder portsUdp(Map<Integer, Integer> hostToGuest) {
            hostToGuest.forEach((host, guestPort) -> mergePort(PortBinding.udp(host, guestPort)));
            return this;
        }

        private void mergePort(PortBinding binding) {
            // a host port is one binding whatever its address (build() refuses two)
            ports.removeIf(p -> p.protocol() == binding.protocol() && p.hostPort() == binding.hostPort());
            ports.add(binding);
        }

        /** Drops the published ports given so far (a restore publishing others than its checkpoint's). */
        Builder withoutPorts() {
            ports.clear();
            return this;
        }

        /** Publishes ports with explicit bind addresses; adds to earlier calls (a host port published twice is refused by {@link #build()}). */
        public Builder portBindings(java.util.Collection<PortBinding> bindings) {
            ports.addAll(bindings);
            return this;
        }

        /** Publishes ports with explicit bind addresses; adds to earlier calls. */
        public Builder portBindings(PortBinding... bindings) {
            return portBindings(java.util.List.of(bindings));
        }

        /**
         * Root filesystem, required (unless {@link #imageDisk} or {@link #snapshot}): an OCI image
         * reference ({@code python:3.12}, {@code registry.example.com/team/app@sha256:...}), pulled
         * by {@link #pullPolicy}; an OCI image layout directory or archive; or a local directory
         * holding an unpacked root filesystem. A name that is not on disk must read as a reference.
         */
        public Builder image(String image) {
            this.image = image;
            return this;
        }

        /** When the OCI image is pulled from its registry (default {@link PullPolicy#IF_MISSING}). */
        public Builder pullPolicy(PullPolicy pullPolicy) {
            this.pullPolicy = Objects.requireNonNull(pullPolicy, "pullPolicy");
            return this;
        }

        /** Credentials for a private registry (basic auth, or exchanged for a bearer token). */
        public Builder registryAuth(RegistryAuth registryAuth) {
            this.registryAuth = registryAuth;
            return this;
        }

        /** Receives per-layer progress of the image pull. */
        public Builder pullProgress(PullProgressListener pullProgress) {
            this.pullProgress = pullProgress;
            return this;
        }

        /** Size of the writable upper layer of an OCI image in MiB (the same as {@link #upperSizeMib(int)}; default 4096, sparse). */
        public Builder ociUpperSizeMib(int mebibytes) {
            return upperSizeMib(mebibytes);
        }

        /** Overrides the image's entrypoint (and drops its cmd). */
        public Builder entrypoint(java.util.List<String> entrypoint) {
            this.entrypoint = entrypoint == null ? null : java.util.List.copyOf(entrypoint);
            return this;
        }

        /**
         * Boots from a disk snapshot ({@link SandboxHandle#snapshot(String)}), by bare name or
         * by directory path (anything with a '/'), instead of an image: the sandbox gets its own
         * copy of the snapshot's upper disk over the snapshot's image. Mutually exclusive with
         * {@link #image(String)}, {@link #imageDisk(String, String)} and {@link #patch patches};
         * the upper disk keeps the snapshot's size ({@link #upperSizeMib} does not apply). The
         * persisted configuration names the image, so the sandbox restarts without the snapshot.
         */
        public Builder snapshot(String nameOrPath) {
            this.snapshot = nameOrPath;
            return this;
        }

        /**
         * Boots from a disk image (format by extension: {@code .qcow2}, {@code .raw}/{@code .img},
         * {@code .vmdk}) holding a whole-disk ext4 filesystem; the file is never modified (each
         * sandbox writes to a qcow2 overlay backed by it, and to its own upper disk).
         *
         * @param fstype null, empty or "ext4"
         */
        public Builder imageDisk(String path, String fstype) {
            this.imageDisk = path;
            this.imageDiskFsType = fstype == null || fstype.isEmpty() ? null : fstype;
            return this;
        }

        /** Adds root filesystem patches, applied in order into the upper layer before the first boot. */
        public Builder patches(java.util.List<Patch> patches) {
            this.patches.addAll(patches);
            return this;
        }

        public Builder patch(Patch... patches) {
            return patches(java.util.List.of(patches));
        }

        public Builder entrypoint(String... entrypoint) {
            return entrypoint(java.util.List.of(entrypoint));
        }

        /** Guest memory in MiB (default 512, at least 64). */
        public Builder memoryMib(int memoryMib) {
            this.memoryMib = memoryMib;
            return this;
        }

        /** Virtual CPUs (default 1, 1 to 64). */
        public Builder cpus(int cpus) {
            this.cpus = cpus;
            return this;
        }

        /** Size limit of the sparse writable upper disk in MiB (default 4096, at least 64). */
        public Builder upperSizeMib(int upperSizeMib) {
            this.upperSizeMib = upperSizeMib;
            return this;
        }

        /**
         * Default working directory of commands (absolute guest path, at most 4095 bytes); when
         * unset, an OCI image's {@code WorkingDir}, else the user's home.
         */
        public Builder workdir(String workdir) {
            this.workdir = workdir;
            return this;
        }

        /** Shell binary used by {@code shell(...)} calls, default {@code /bin/sh}. */
        public Builder shell(String shell) {
            this.shell = shell;
            return this;
        }

        /** Guest hostname, at most 64 bytes; defaults to the sandbox name. */
        public Builder hostname(String hostname) {
            this.hostname = hostname;
            return this;
        }

        /**
         * Default guest user for every command: a name, a uid or uid:gid (at most 255 bytes);
         * when unset, an OCI image's {@code User}, else root.
         */
        public Builder user(String user) {
            this.user = user;
            return this;
        }

        /**
         * Adds environment variables; repeated calls merge. Names are non-empty without '=' or
         * NUL, values without NUL; each NAME=value at most 128 KiB, all of them at most 1 MiB.
         */
        public Builder env(Map<String, String> env) {
            this.env.putAll(env);
            return this;
        }

        /** Adds one environment variable. */
        public Builder env(String name, String value) {
            this.env.put(name, value);
            return this;
        }

        /** Adds labels; repeated calls merge. Keys must not start with sandbox., microsandbox. or service. */
        public Builder labels(Map<String, String> labels) {
            this.labels.putAll(labels);
            return this;
        }

        /** Adds one label. */
        public Builder label(String key, String value) {
            this.labels.put(key, value);
            return this;
        }

        /** Keep the sandbox running after this JVM exits; reconnect with {@link Sandbox#connect(String)}. */
        public Builder detached() {
            return detached(true);
        }

        public Builder detached(boolean detached) {
            this.detached = detached;
            return this;
        }

        /** How QEMU runs the guest (default {@link Accelerator#AUTO}). */
        public Builder accelerator(Accelerator accelerator) {
            this.accelerator = accelerator;
            return this;
        }

        /** How long to wait for the guest agent (default 60 s). */
        public Builder bootTimeout(Duration bootTimeout) {
            this.bootTimeout = bootTimeout;
            return this;
        }

        /** Remove all state (disks, logs, database rows) once the sandbox has stopped. */
        public Builder ephemeral(boolean ephemeral) {
            this.ephemeral = ephemeral;
            return this;
        }

        /** Stop the sandbox after this long without exec activity (rounded up to seconds; zero: never). */
        public Builder idleTimeout(Duration idleTimeout) {
            this.idleTimeout = roundUpToSeconds(idleTimeout);
            return this;
        }

        /**
         * After this long without commands or file transfers (default 30 s; rounded up to
         * seconds; zero: never), a guest that holds at least 32 MiB of page cache drops it and
         * compacts its free memory, which free page reporting hands back to the host. A guest
         * keeps what it once read for ever otherwise, though the host's page cache holds the
         * same disk blocks. Once per idle spell; the next command may read its files again.
         */
        public Builder cacheReclaimAfter(Duration cacheReclaimAfter) {
            this.cacheReclaimAfter = roundUpToSeconds(cacheReclaimAfter);
            return this;
        }

        /**
         * Caps the sandbox's run (rounded up to seconds; zero: never). When it is reached the
         * sandbox drains: new commands are refused and running ones get 10 s to finish; then it
         * stops (processes get SIGTERM, then the usual 10 s grace). The run ends with reason
         * {@code max-duration}.
         */
        public Builder maxDuration(Duration maxDuration) {
            this.maxDuration = roundUpToSeconds(maxDuration);
            return this;
        }

        /** Replace a sandbox of the same name: stop it gracefully within 10 s, then kill, remove and recreate. */
        public Builder replace() {
            return replaceTimeout(Duration.ofSeconds(10));
        }

        /** Like {@link #replace()} with another graceful window; zero kills the old sandbox at once. */
        public Builder replaceTimeout(Duration replaceTimeout) {
            this.replaceTimeout = replaceTimeout;
            return this;
        }

        /**
         * How much the sandbox's own diagnostics say (see {@link LogLevel}); null for the
         * default, {@link LogLevel#INFO}. {@link LogLevel#DEBUG} adds the supervisor's client and
         * session traffic and the agent's session starts and exits.
         */
        public Builder logLevel(LogLevel logLevel) {
            this.logLevel = logLevel;
            return this;
        }

        /**
         * Silences the sandbox's own diagnostics entirely: the supervisor writes nothing to
         * {@code supervisor.log} and the agent prints nothing on the console once configured.
         * Command output is still captured. Boot failures still report their cause to the caller.
         */
        public Builder quietLogs() {
            return quietLogs(true);
        }

        /** Sets or clears {@link #quietLogs()}. */
        public Builder quietLogs(boolean quietLogs) {
            this.quietLogs = quietLogs;
            return this;
        }

        private static Duration roundUpToSeconds(Duration d) {
            if (d == null) {
                return null;
            }
            long seconds = d.getSeconds() + (d.getNano() > 0 ? 1 : 0);
            return Duration.ofSeconds(seconds);
        }

        /**
         * Validates and builds the configuration.
         *
         * @throws MicrosandboxException of kind {@link ErrorKind#INVALID_CONFIG} naming the bad field
         */
        public SandboxConfig build() {
            if (snapshot != null) {
                if (image != null || imageDisk != null) {
                    throw invalid("snapshot is mutually exclusive with image and imageDisk: a snapshot names its image itself");
                }
                if (snapshot.isBlank()) {
                    throw invalid("snapshot must name a snapshot or a snapshot directory");
                }
                if (upperSizeMib != DEFAULT_UPPER_SIZE_MIB) {
                    // as the Go SDK: the size is the snapshot's, whose upper disk the sandbox boots on a copy of
                    throw invalid("upperSizeMib does not apply to a snapshot: the sandbox boots on a copy of the snapshot's upper disk, of its size");
                }
                if (!patches.isEmpty()) {
                    // they are written into a new upper disk; a snapshot brings its own, whose files they would miss
                    throw invalid("patches are not supported with a snapshot: the sandbox boots on a copy of the snapshot's upper disk;"
                            + " patch the sandbox the snapshot is taken from, or write the files with fs() once it runs");
                }
            } else if (imageDisk != null) {
                if (image != null) {
                    throw invalid("image and imageDisk are mutually exclusive");
                }
                if (!patches.isEmpty()) {
                    throw invalid("patches are not supported on disk-image roots (imageDisk); they need an OCI image or a directory");
                }
                if (imageDiskFsType != null && !imageDiskFsType.equals("ext4")) {
                    throw invalid("imageDisk filesystem '" + imageDiskFsType + "' is not supported (ext4 only)");
                }
                if (!hasDiskImageExtension(imageDisk)) {
                    throw invalid("imageDisk '" + imageDisk + "' must end in .qcow2, .raw, .img or .vmdk (the format is taken from the extension)");
                }
            } else if (image == null || image.isBlank()) {
                throw invalid("image is required (an OCI image reference such as python:3.12, or a local root filesystem directory)");
            } else if (!image.equals(recordedImage) && isDiskImageFile(image)) {
                throw invalid("image '" + image + "' is a disk image file: boot it with imageDisk(\"" + image + "\", \"ext4\")"
                        + " (image takes an OCI reference, layout or archive, or a root filesystem directory)");
            } else if (!image.equals(recordedImage) && !io.microsandbox.image.oci.ImageReference.looksLikePath(image) && !onDisk(image)) {
                // not on disk, so it must read as a reference: "Python:3.12" is a bad reference, not a missing directory;
                // a record keeps what it was created with (a relative directory since removed, an older version's reference)
                try {
                    io.microsandbox.image.oci.ImageReference.parse(image);
                } catch (MicrosandboxException e) {
                    throw invalid(e.getMessage() + ", and no local directory or archive has that name");
                }
            }
            if (memoryMib < 64) {
                throw invalid("memoryMib must be at least 64, got " + memoryMib);
            }
            if (cpus < 1 || cpus > 64) {
                throw invalid("cpus must be between 1 and 64, got " + cpus);
            }
            if (upperSizeMib < 64) {
                throw invalid("upperSizeMib must be at least 64, got " + upperSizeMib);
            }
            // what the guest agent would refuse only at boot, or drop or cut silently
            for (String problem : new String[] {
                    GuestLimits.directoryProblem("workdir", workdir),
                    GuestLimits.programProblem("shell", shell),
                    GuestLimits.hostnameProblem(hostname),
                    GuestLimits.userProblem(user),
                    GuestLimits.envProblem(env),
                    GuestOptions.mountsProblem(mounts),
                    GuestOptions.scriptsProblem(scripts),
                    init == null ? null : init.problem()}) {
                if (problem != null) {
                    throw invalid(problem);
                }
            }
            for (Patch p : patches) {
                String path = p.path();
                if (!path.startsWith("/") || path.indexOf('\0') >= 0 || path.indexOf('\n') >= 0 || path.indexOf('"') >= 0
                        || java.util.Arrays.asList(path.split("/")).contains("..")) {
                    throw invalid("patch path '" + path + "' must be an absolute guest path without '..', quotes or newlines");
                }
            }
            Objects.requireNonNull(accelerator, "accelerator");
            if (bootTimeout == null || bootTimeout.isNegative() || bootTimeout.isZero()) {
                throw invalid("bootTimeout must be positive, got " + bootTimeout);
            }
            for (Duration d : new Duration[] {idleTimeout, cacheReclaimAfter, maxDuration}) {
                if (d == null || d.isNegative()) {
                    throw invalid("idleTimeout, cacheReclaimAfter and maxDuration must be zero or positive, got " + d);
                }
            }
            if (replaceTimeout != null && replaceTimeout.isNegative()) {
                throw invalid("replaceTimeout must not be negative, got " + replaceTimeout);
            }
            for (Secret secret : secrets) {
                // it would never be put anywhere: plain HTTP is refused it, and TLS is not looked into
                if (secret.requireTls() && !network.tlsInterception() && !recordedSecrets.contains(secret.name())) {
                    throw invalid("secret " + secret.name() + " is put only into intercepted TLS (requireTls), but the network "
                            + "policy does not intercept TLS: add tlsInterception(true) to the NetworkPolicy, or requireTls(false) "
                            + "to the secret to have it put into plain HTTP");
                }
            }
            java.util.Set<String> published = new java.util.HashSet<>();
            for (PortBinding p : ports) {
                if (!published.add(p.protocol() + " " + p.hostPort())) {
                    throw invalid("host port " + p.hostPort() + " is published twice");
                }
            }
            checkLabels();
            return new SandboxConfig(this);
        }

        private void checkLabels() {
            if (labels.size() > MAX_LABELS && labels.size() > recordedLabels.size()) {
                throw invalid("at most " + MAX_LABELS + " labels, got " + labels.size());
            }
            for (Map.Entry<String, String> label : labels.entrySet()) {
                String key = label.getKey();
                String value = label.getValue();
                if (key != null && value != null && value.equals(recordedLabels.get(key))) {
                    continue;
                }
                if (key == null || key.isEmpty() || key.length() > MAX_LABEL_KEY_LENGTH || value == null || value.length() > MAX_LABEL_VALUE_LENGTH
                        || key.chars().anyMatch(Character::isISOControl) || value.chars().anyMatch(Character::isISOControl)) {
                    throw invalid("label " + (key == null ? "null" : "'" + io.microsandbox.runtime.Printable.brief(key, 40) + "'") + " must have a key of 1 to "
                            + MAX_LABEL_KEY_LENGTH + " characters and a value of at most " + MAX_LABEL_VALUE_LENGTH
                            + " (not null), without control characters");
                }
                for (String prefix : RESERVED_LABEL_PREFIXES) {
                    if (key.startsWith(prefix)) {
                        throw invalid("label '" + key + "' uses the reserved prefix '" + prefix + "'");
                    }
                }
            }
        }

        /** Whether {@code path} ends as a disk image {@link #imageDisk} takes (the format is taken from it). */
        private static boolean hasDiskImageExtension(String path) {
            String lower = path.toLowerCase(java.util.Locale.ROOT);
            return lower.endsWith(".qcow2") || lower.endsWith(".raw") || lower.endsWith(".img") || lower.endsWith(".vmdk");
        }

        /** A regular file named as {@link #imageDisk} takes them: not an OCI archive. */
        private static boolean isDiskImageFile(String path) {
            if (!hasDiskImageExtension(path)) {
                return false;
            }
            try {
                return java.nio.file.Files.isRegularFile(java.nio.file.Path.of(path));
            } catch (java.nio.file.InvalidPathException e) {
                return false;
            }
        }

        static String absoluteIfOnDisk(String path) {
            if (path == null || !onDisk(path)) {
                return path;
            }
            java.nio.file.Path p = java.nio.file.Path.of(path);
            return p.isAbsolute() ? path : p.toAbsolutePath().normalize().toString();
        }

        private static boolean onDisk(String path) {
            try {
                return java.nio.file.Files.exists(java.nio.file.Path.of(path));
            } catch (java.nio.file.InvalidPathException e) {
                return false;
            }
        }

        private static MicrosandboxException invalid(String message) {
            return new MicrosandboxException(ErrorKind.INVALID_CONFIG, message);
        }
    }
}

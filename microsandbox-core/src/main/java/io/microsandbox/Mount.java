package io.microsandbox;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Objects;

/**
 * What is mounted at one guest path, keyed by that path in
 * {@link SandboxConfig.Builder#mount(String, Mount)}. Built with the factories:
 *
 * <pre>{@code
 * SandboxConfig.builder()
 *         .mount("/src", Mount.bind("/home/me/project", MountOptions.defaults()))   // live host directory
 *         .mount("/data", Mount.named("cache", MountOptions.defaults()))            // a named volume
 *         .mount("/scratch", Mount.tmpfs(256, MountOptions.defaults()))             // guest memory, 256 MiB
 *         .mount("/db", Mount.disk("pgdata", "ext4", MountOptions.defaults()))      // an ext4 disk volume
 * }</pre>
 *
 * Host directories (bind mounts and directory volumes) are shared live over virtio-9p: both
 * sides see each other's writes. See docs/volumes.md for ownership and the escape rules.
 */
public final class Mount {
    /** The kinds of mount. */
    public enum Kind {
        /** A host directory shared live. */
        BIND,
        /** A named volume of the home ({@link Volumes}): a shared directory or an ext4 disk. */
        NAMED,
        /** A tmpfs in guest memory, empty at every boot. */
        TMPFS,
        /** An ext4 disk: an image file on the host or a named disk volume. */
        DISK
    }

    private final Kind kind;
    private final String source;
    private final String fstype;
    private final MountOptions options;

    private Mount(Kind kind, String source, String fstype, MountOptions options) {
        this.kind = kind;
        this.source = source;
        this.fstype = fstype;
        this.options = options == null ? MountOptions.defaults() : options;
    }

    /** A host directory, shared live with the guest (it must exist when the sandbox boots). */
    public static Mount bind(String hostPath, MountOptions options) {
        return new Mount(Kind.BIND, Objects.requireNonNull(hostPath, "hostPath"), null, options);
    }

    /** A host directory, shared live with the guest (it must exist when the sandbox boots). */
    public static Mount bind(Path hostPath, MountOptions options) {
        return bind(Objects.requireNonNull(hostPath, "hostPath").toAbsolutePath().toString(), options);
    }

    /** A named volume (created with {@link Volumes#create(String)} or {@link Volumes#createDisk(String, int)}). */
    public static Mount named(String volume, MountOptions options) {
        return new Mount(Kind.NAMED, Objects.requireNonNull(volume, "volume"), null, options);
    }

    /** A tmpfs of at most {@code sizeMib} MiB of guest memory (which wins over a size in {@code options}). */
    public static Mount tmpfs(int sizeMib, MountOptions options) {
        MountOptions o = options == null ? MountOptions.defaults() : options;
        return new Mount(Kind.TMPFS, null, null, MountOptions.builder().readonly(o.readonly()).noexec(o.noexec())
                .nosuid(o.nosuid()).nodev(o.nodev()).sizeMib(sizeMib).build());
    }

    /**
     * An ext4 disk: an absolute path to a raw (or {@code .qcow2}) image file on the host, or
     * the name of a disk volume. Its size is the disk's; ENOSPC inside when it is full.
     *
     * @param fstype null or "ext4"
     */
    public static Mount disk(String pathOrVolume, String fstype, MountOptions options) {
        return new Mount(Kind.DISK, Objects.requireNonNull(pathOrVolume, "pathOrVolume"), fstype == null ? "ext4" : fstype, options);
    }

    /** What backs the mount. */
    public Kind kind() {
        return kind;
    }

    /** The host path, volume name or disk; null for tmpfs. */
    public String source() {
        return source;
    }

    /** The filesystem of a disk ("ext4"); null for other kinds. */
    public String fstype() {
        return fstype;
    }

    /** Read-only, noexec, nosuid, nodev, size. */
    public MountOptions options() {
        return options;
    }

    /** Why this mount at {@code guestPath} cannot work, or null. */
    String problem(String guestPath) {
        String path = "mount " + guestPath;
        if (options.sizeMib() != null && kind != Kind.TMPFS) {
            return path + ": a size limit applies to tmpfs only (a disk volume's size is fixed when it is created)";
        }
        return switch (kind) {
            case BIND -> !Path.of(source).isAbsolute() || source.indexOf('\0') >= 0 ? path + ": the host path '" + source + "' must be absolute" : null;
            case NAMED -> Volumes.nameProblem(source) != null ? path + ": " + Volumes.nameProblem(source) : null;
            case TMPFS -> options.sizeMib() == null || options.sizeMib() < 1 ? path + ": the tmpfs size must be at least 1 MiB" : null;
            case DISK -> !"ext4".equals(fstype) ? path + ": filesystem '" + fstype + "' is not supported (ext4 only)"
                    : source.startsWith("/") || Volumes.nameProblem(source) == null ? null
                    : path + ": '" + source + "' is neither an absolute image path nor a volume name";
        };
    }

    ObjectNode toJson() {
        ObjectNode n = JsonNodeFactory.instance.objectNode();
        n.put("kind", kind.name().toLowerCase(Locale.ROOT));
        if (source != null) {
            n.put("source", source);
        }
        if (fstype != null) {
            n.put("fstype", fstype);
        }
        n.put("readonly", options.readonly());
        n.put("noexec", options.noexec());
        n.put("nosuid", options.nosuid());
        n.put("nodev", options.nodev());
        if (options.sizeMib() != null) {
            n.put("sizeMib", options.sizeMib());
        }
        return n;
    }

    static Mount fromJson(JsonNode n) {
        MountOptions options = MountOptions.builder()
                .readonly(n.path("readonly").asBoolean()).noexec(n.path("noexec").asBoolean())
                .nosuid(n.path("nosuid").asBoolean()).nodev(n.path("nodev").asBoolean())
                .sizeMib(n.hasNonNull("sizeMib") ? n.get("sizeMib").asInt() : null).build();
        Kind kind = Kind.valueOf(n.path("kind").asText().toUpperCase(Locale.ROOT));
        String source = n.hasNonNull("source") ? n.get("source").asText() : null;
        String fstype = n.hasNonNull("fstype") ? n.get("fstype").asText() : null;
        return new Mount(kind, source, fstype, options);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Mount m && kind == m.kind && Objects.equals(source, m.source) && Objects.equals(fstype, m.fstype)
                && options.equals(m.options);
    }

    @Override
    public int hashCode() {
        return Objects.hash(kind, source, fstype, options);
    }

    @Override
    public String toString() {
        return "Mount" + toJson();
    }
}

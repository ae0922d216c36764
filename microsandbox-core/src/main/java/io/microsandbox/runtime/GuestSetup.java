package io.microsandbox.runtime;

import io.microsandbox.ErrorKind;
import io.microsandbox.Init;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Mount;
import io.microsandbox.SandboxConfig;
import io.microsandbox.Volume;
import io.microsandbox.Volumes;
import io.microsandbox.image.HostDiskImages;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.UserDefinedFileAttributeView;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The host side of a sandbox's mounts and scripts: the QEMU devices that back each mount and
 * the agent's part of {@code core.configure} ({@code mounts}, {@code scripts},
 * {@code security}; see docs/protocol.md).
 *
 * <p>Host directories go over virtio-9p with QEMU's {@code mapped-xattr} security model: the
 * guest's owners, modes and symlinks are kept in extended attributes of what QEMU creates
 * (files {@code 0600}, directories {@code 0700}, owned by the user running QEMU), so the guest
 * can neither plant set-user-id files nor real symlinks on the host, and QEMU resolves every
 * guest path inside the shared directory without following host symlinks. Disks are extra
 * virtio-blk devices the agent finds by serial; tmpfs needs no device.
 */
public final class GuestSetup {
    /** The guest directory of the named scripts (agent.h's SCRIPTS_DIR); appended to the PATH. */
    public static final String SCRIPTS_DIR = "/.msb/scripts";
    /** The agent's PATH for commands whose environment has none (agent.h's DEFAULT_PATH). */
    static final String GUEST_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    /**
     * @param qemuArgs    extra QEMU arguments, device by device
     * @param agentConfig entries to add to {@code core.configure}
     */
    public record Plan(List<String> qemuArgs, Map<String, Object> agentConfig) {
    }

    private GuestSetup() {
    }

    /**
     * Resolves the mounts of {@code config} against the host and the home's volumes, and its
     * init against the image's {@code entrypoint} (null when there is none).
     *
     * @throws MicrosandboxException INVALID_CONFIG for a bind source that is no directory, a
     *         disk that is no file or a directory volume named as a disk; VOLUME_NOT_FOUND
     */
    public static Plan plan(Path home, SandboxConfig config, List<String> entrypoint) {
        List<String> qemu = new ArrayList<>();
        List<Map<String, Object>> mounts = new ArrayList<>();
        int index = 0;
        for (Map.Entry<String, Mount> e : config.mounts().entrySet()) {
            String guestPath = e.getKey();
            Mount m = e.getValue();
            Map<String, Object> entry = new LinkedHashMap<>();
            entry.put("path", guestPath);
            switch (m.kind()) {
                case BIND -> share(qemu, entry, index, hostDirectory(home, guestPath, Path.of(m.source())), m);
                case NAMED -> {
                    Volume v = Volumes.at(home).withData(m.source());
                    if (v.kind() == Volume.Kind.DIRECTORY) {
                        share(qemu, entry, index, v.path(), m);
                    } else {
                        disk(qemu, entry, index, v.path(), m);
                    }
                }
                case DISK -> disk(qemu, entry, index, diskFile(home, guestPath, m.source()), m);
                case TMPFS -> {
                    entry.put("type", "tmpfs");
                    entry.put("size_mib", m.options().sizeMib());
                }
            }
            entry.put("readonly", m.options().readonly());
            entry.put("noexec", m.options().noexec());
            entry.put("nosuid", m.options().nosuid());
            entry.put("nodev", m.options().nodev());
            mounts.add(entry);
            index++;
        }
        Map<String, Object> agent = new LinkedHashMap<>();
        if (!mounts.isEmpty()) {
            agent.put("mounts", mounts);
        }
        if (!config.scripts().isEmpty()) {
            agent.put("scripts", config.scripts());
        }
        agent.put("security", config.securityProfile().value());
        if (config.init() != null) {
            Init init = config.init().resolve(entrypoint);
            agent.put("init", Map.of("cmd", init.command(), "args", init.args(), "env", init.env()));
        }
        return new Plan(List.copyOf(qemu), agent);
    }

    /** {@code env} with {@link #SCRIPTS_DIR} at the end of its PATH when there are scripts. */
    public static Map<String, String> withScriptsOnPath(Map<String, String> env, SandboxConfig config) {
        if (config.scripts().isEmpty()) {
            return env;
        }
        Map<String, String> out = new LinkedHashMap<>(env);
        String path = out.getOrDefault("PATH", GUEST_DEFAULT_PATH);
        out.put("PATH", path.isEmpty() ? SCRIPTS_DIR : path + ":" + SCRIPTS_DIR);
        return out;
    }

    private static void share(List<String> qemu, Map<String, Object> entry, int index, Path dir, Mount m) {
        String id = "vol" + index;
        // multidevs=remap: inode numbers stay unique when the directory spans host filesystems
        qemu.addAll(List.of("-fsdev", "local,id=" + id + ",path=" + escape(dir) + ",security_model=mapped-xattr,multidevs=remap"
                + (m.options().readonly() ? ",readonly=on" : "")));
        qemu.addAll(List.of("-device", "virtio-9p-device,fsdev=" + id + ",mount_tag=msb" + id));
        entry.put("type", "9p");
        entry.put("source", "msb" + id);
    }

    private static void disk(List<String> qemu, Map<String, Object> entry, int index, Path file, Mount m) {
        String id = "vol" + index;
        String format = isQcow2(file) ? "qcow2" : "raw";
        qemu.addAll(List.of("-drive", "id=" + id + ",file=" + escape(file) + ",format=" + format + ",if=none"
                + (m.options().readonly() ? ",readonly=on" : "")));
        qemu.addAll(List.of("-device", "virtio-blk-device,drive=" + id + ",serial=msb-" + id));
        entry.put("type", "ext4");
        entry.put("source", "msb-" + id);
    }

    private static Path hostDirectory(Path home, String guestPath, Path source) {
        try {
            Path real = source.toRealPath();
            if (!Files.isDirectory(real, LinkOption.NOFOLLOW_LINKS)) {
                throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "mount " + guestPath + ": " + source + " is not a directory");
            }
            if (RuntimeFiles.overlapsHome(home, real)) {
                throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "mount " + guestPath + ": " + source
                        + " is, holds or lies inside the microsandbox home " + home
                        + ", whose sandboxes' disks, keys and state the guest must not reach; share a directory of its own (or use a named volume)");
            }
            // mapped-xattr keeps the guest's owners and modes in user xattrs: without them every guest write would fail
            if (!Files.getFileStore(real).supportsFileAttributeView(UserDefinedFileAttributeView.class)) {
                throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "mount " + guestPath + ": " + source
                        + " is on a filesystem without user extended attributes, which the share needs (ext4, xfs, btrfs; tmpfs from Linux 6.6)");
            }
            return real;
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "mount " + guestPath + ": host directory " + source
                    + " is missing or unreadable: " + e.getMessage(), e);
        }
    }

    private static Path diskFile(Path home, String guestPath, String source) {
        if (!source.startsWith("/")) {
            Volume v = Volumes.at(home).withData(source);
            if (v.kind() != Volume.Kind.DISK) {
                throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "mount " + guestPath + ": volume '" + source
                        + "' is a directory, not a disk; mount it with Mount.named");
            }
            return v.path();
        }
        Path file;
        try {
            file = Path.of(source).toRealPath();
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "mount " + guestPath + ": disk image " + source
                    + " is missing or unreadable: " + e.getMessage(), e);
        }
        if (!Files.isRegularFile(file, LinkOption.NOFOLLOW_LINKS)) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "mount " + guestPath + ": disk image " + source + " is not a file");
        }
        String what = "mount " + guestPath + ": disk image " + source;
        HostDiskImages.requireOutsideHome(file, home, what, "mount a disk volume by name instead");
        if (isQcow2(file)) {
            HostDiskImages.requireSelfContained(file, "qcow2", what);
        }
        return file;
    }

    private static boolean isQcow2(Path file) {
        return file.getFileName().toString().toLowerCase(Locale.ROOT).endsWith(".qcow2");
    }

    /** QEMU option values double a comma to keep it literal. */
    private static String escape(Path path) {
        return path.toString().replace(",", ",,");
    }
}

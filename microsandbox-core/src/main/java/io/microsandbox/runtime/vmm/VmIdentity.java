package io.microsandbox.runtime.vmm;

import io.microsandbox.runtime.HostCommand;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * What a memory checkpoint is tied to, read from a sandbox's QEMU command line: the QEMU
 * version, machine type, accelerator, CPU model, memory and vCPU count, devices, the kernel's and the
 * initramfs's SHA-256 (the guest agent the VM was booted with, not the one this JVM would start
 * now: a sandbox started by an earlier SDK runs that SDK's agent), and the lower disk (path, size and build time). Saved guest memory holds that kernel and agent
 * running on that virtual hardware over that lower disk: restored under anything else the
 * guest would crash or hang, so restores compare these before they launch QEMU. File digests
 * and QEMU versions are cached by path, size and modification time.
 */
public final class VmIdentity {
    private static final Map<String, String> CACHE = new ConcurrentHashMap<>();
    private static final java.time.Duration VERSION_TIMEOUT = java.time.Duration.ofSeconds(30);

    private static final String LOWER_DISK = "lowerDisk";
    /** Between the lower disk's path and its size in {@link #of}'s entry: " (" + size + ")". */
    private static final String LOWER_SIZE_OPEN = " (";
    /** Between the lower disk's size and its modification time in {@link #of}'s entry. */
    private static final String LOWER_BUILT = " bytes, built ";

    private VmIdentity() {
    }

    /** The lower disk's path in an identity from {@link #of}, or null when it names none. */
    public static Path lowerDisk(Map<String, String> identity) {
        String entry = identity.get(LOWER_DISK);
        int size = entry == null ? -1 : entry.lastIndexOf(LOWER_SIZE_OPEN);
        return size > 0 ? Path.of(entry.substring(0, size)) : null;
    }

    /** The identity of the VM {@code argv} starts. */
    public static Map<String, String> of(List<String> argv) throws IOException {
        Map<String, String> id = new LinkedHashMap<>();
        id.put("qemuVersion", qemuVersion(Path.of(argv.get(0))));
        id.put("machine", after(argv, "-M"));
        id.put("accelerator", after(argv, "-accel"));
        id.put("cpu", after(argv, "-cpu"));
        id.put("memoryMib", after(argv, "-m"));
        id.put("cpus", after(argv, "-smp"));
        id.put("kernel", fileDigest(Path.of(after(argv, "-kernel"))));
        id.put("initramfs", fileDigest(Path.of(after(argv, "-initrd"))));
        // the virtual hardware the saved device state describes (no paths in these)
        List<String> devices = new java.util.ArrayList<>();
        for (int i = 0; i + 1 < argv.size(); i++) {
            if (argv.get(i).equals("-device")) {
                devices.add(argv.get(i + 1));
            }
        }
        id.put("devices", String.join(" ", devices));
        Path lower = LowerDiskFile.pathIn(argv);
        if (lower != null) {
            // the time a disk was built tells a rebuilt one (a pruned cache builds it again, at the
            // same path and size, laid out anew) from the one the saved guest has cached
            id.put(LOWER_DISK, lower + LOWER_SIZE_OPEN + (Files.exists(lower) ? Files.size(lower) + LOWER_BUILT
                    + Files.getLastModifiedTime(lower).toInstant().truncatedTo(java.time.temporal.ChronoUnit.MILLIS) : "missing") + ")");
        }
        return id;
    }

    /**
     * The first field in which {@code actual} differs from {@code recorded}, described, or null
     * when they agree.
     */
    public static String mismatch(Map<String, String> recorded, Map<String, String> actual) {
        for (var e : recorded.entrySet()) {
            String now = actual.get(e.getKey());
            if (!e.getValue().equals(now)) {
                // an earlier version recorded the size alone: the same disk no longer matches
                boolean earlierFormat = e.getKey().equals(LOWER_DISK) && !e.getValue().contains(LOWER_BUILT);
                return e.getKey() + " was " + e.getValue() + " when the checkpoint was taken and is " + now + " now"
                        + (earlierFormat ? " (an earlier microsandbox took the checkpoint: take it again)" : "");
            }
        }
        for (String key : actual.keySet()) {
            if (!recorded.containsKey(key)) {
                return key + " is " + actual.get(key) + " now and was not recorded (an earlier microsandbox took the checkpoint: take it again)";
            }
        }
        return null;
    }

    private static String after(List<String> argv, String option) {
        int i = argv.indexOf(option);
        if (i < 0 || i + 1 >= argv.size()) {
            throw new IllegalArgumentException("the QEMU command line has no " + option);
        }
        return argv.get(i + 1);
    }

    /** {@code sha256:} of a file's content. */
    static String fileDigest(Path file) throws IOException {
        return cached(file, "sha256", () -> {
            MessageDigest sha = sha256();
            try (InputStream in = new DigestInputStream(Files.newInputStream(file), sha)) {
                in.transferTo(java.io.OutputStream.nullOutputStream());
            }
            return "sha256:" + HexFormat.of().formatHex(sha.digest());
        });
    }

    /** The first line of {@code qemu --version}. */
    static String qemuVersion(Path qemu) throws IOException {
        return cached(qemu, "version", () -> askVersion(qemu, VERSION_TIMEOUT));
    }

    /** Runs {@code qemu --version}, killed after {@code timeout} (a hung QEMU must not hang checkpoints and restores). */
    static String askVersion(Path qemu, java.time.Duration timeout) throws IOException {
        HostCommand.Result r = HostCommand.run(List.of(qemu.toString(), "--version"), timeout, 64 << 10);
        if (!r.succeeded()) {
            throw new IOException(qemu + " --version failed: " + r.output().strip());
        }
        return r.output().lines().findFirst().orElse("").strip();
    }

    private interface Compute {
        String get() throws IOException;
    }

    private static String cached(Path file, String what, Compute compute) throws IOException {
        Path real = file.toRealPath();
        String key = what + ":" + real + ":" + Files.size(real) + ":" + Files.getLastModifiedTime(real).toMillis();
        String known = CACHE.get(key);
        if (known == null) {
            known = compute.get();
            CACHE.put(key, known);
        }
        return known;
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}

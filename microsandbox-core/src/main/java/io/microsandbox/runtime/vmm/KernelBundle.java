package io.microsandbox.runtime.vmm;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.RuntimeFiles;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.zip.GZIPInputStream;
import org.apache.commons.compress.archivers.cpio.CpioArchiveEntry;
import org.apache.commons.compress.archivers.cpio.CpioArchiveOutputStream;
import org.apache.commons.compress.archivers.cpio.CpioConstants;

/**
 * A guest kernel: an uncompressed {@code vmlinux} (booted directly through PVH) and, for a
 * kernel with loadable modules, the modules the guest needs and {@code modules.order}, their
 * load order. {@link #initramfs(Path, Path)} packs the agent and those modules into the initramfs.
 *
 * <p>Which kernel boots ({@link #locate(Path)}): by default microsandbox's own, built from
 * Debian's {@code linux-source-6.1} with everything built in and carried by the
 * {@code microsandbox-kernel} jar; it is unpacked once to {@code <home>/kernel/microsandbox-<key>/}.
 * The system property {@value #KERNEL_PROPERTY} (or {@code MSB_KERNEL}) selects another:
 * {@code debian} for Debian's generic kernel that {@code scripts/fetch-kernel.sh} (or
 * {@link #install(Path)}) puts in {@code <home>/kernel/current}, or a kernel directory. The
 * older {@code microsandbox.kernel.dir} ({@code MSB_KERNEL_DIR}) names a directory too and wins.
 *
 * @param dir the kernel directory, e.g. {@code ~/.microsandbox/kernel/current}
 */
public record KernelBundle(Path dir) {

    /** System property selecting the kernel: {@code microsandbox} (the default), {@code debian} or a directory. */
    public static final String KERNEL_PROPERTY = "microsandbox.kernel";
    /** Class-path folder of the {@code microsandbox-kernel} jar. */
    public static final String RESOURCE_DIR = "/io/microsandbox/kernel/linux-x86_64/";

    /** The rate of QEMU's emulated local APIC timer (its APIC bus), 1 GHz. */
    private static final long QEMU_APIC_TIMER_HZ = 1_000_000_000L;
    private static final ConcurrentMap<Path, KernelBundle> UNPACKED = new ConcurrentHashMap<>();

    /**
     * The kernel the configuration selects (see the class comment).
     *
     * @throws MicrosandboxException of kind {@link ErrorKind#BOOT_FAILED} when it is missing,
     *     {@link ErrorKind#INVALID_CONFIG} for a selection that is none of the above
     */
    public static KernelBundle locate(Path home) {
        String dirOverride = setting("microsandbox.kernel.dir", "MSB_KERNEL_DIR");
        if (dirOverride != null) {
            return fromDir(Path.of(dirOverride));
        }
        String choice = setting(KERNEL_PROPERTY, "MSB_KERNEL");
        if (choice == null || choice.equals("microsandbox")) {
            return bundled(home);
        }
        if (choice.equals("debian")) {
            return debian(home);
        }
        if (choice.contains("/")) {
            return fromDir(Path.of(choice));
        }
        throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, KERNEL_PROPERTY + " is '" + choice
                + "': expected 'microsandbox' (the default), 'debian' or a kernel directory");
    }

    /**
     * The kernel in {@code kernelDir} (a runtime's own, from {@code Microsandbox.Builder.kernelDir}),
     * or when it is null the one the configuration selects ({@link #locate(Path)}).
     */
    public static KernelBundle locate(Path home, Path kernelDir) {
        return kernelDir != null ? fromDir(kernelDir) : locate(home);
    }

    /**
     * What keeps {@link #locate(Path, Path)} from finding a kernel, or null when it would find
     * one; without side effects (nothing is unpacked).
     */
    public static String problem(Path home, Path kernelDir) {
        Path dir = kernelDir;
        if (dir == null) {
            String dirOverride = setting("microsandbox.kernel.dir", "MSB_KERNEL_DIR");
            String choice = setting(KERNEL_PROPERTY, "MSB_KERNEL");
            if (dirOverride != null) {
                dir = Path.of(dirOverride);
            } else if (choice == null || choice.equals("microsandbox")) {
                return KernelBundle.class.getResource(RESOURCE_DIR + "kernel.properties") != null ? null
                        : "the guest kernel is not on the class path: add io.microsandbox:microsandbox-kernel"
                        + " (or build it: mvn install, after scripts/setup.sh), or select Debian's kernel with -D"
                        + KERNEL_PROPERTY + "=debian";
            } else if (choice.equals("debian")) {
                dir = home.resolve("kernel").resolve("current");
            } else {
                dir = Path.of(choice);
            }
        }
        return Files.isRegularFile(dir.resolve("vmlinux")) ? null : "no guest kernel at " + dir
                + " (expected vmlinux there); install Debian's with Sandbox.ensureInstalled() or scripts/setup.sh";
    }

    /** True when the configuration selects Debian's kernel under the home. */
    public static boolean debianSelected() {
        return setting("microsandbox.kernel.dir", "MSB_KERNEL_DIR") == null
                && "debian".equals(setting(KERNEL_PROPERTY, "MSB_KERNEL"));
    }

    /** Debian's kernel as fetch-kernel.sh installs it: {@code <home>/kernel/current}. */
    public static KernelBundle debian(Path home) {
        return fromDir(home.resolve("kernel").resolve("current"));
    }

    private static KernelBundle fromDir(Path dir) {
        KernelBundle bundle = new KernelBundle(dir);
        if (!Files.isRegularFile(bundle.vmlinux())) {
            throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "no guest kernel at " + dir
                    + " (expected vmlinux there, and modules.order for a kernel with modules); install Debian's"
                    + " with Sandbox.ensureInstalled() or scripts/setup.sh, or leave " + KERNEL_PROPERTY
                    + " unset for the kernel of the microsandbox-kernel jar");
        }
        return bundle;
    }

    /**
     * microsandbox's own kernel from the class path, unpacked (and decompressed) once to
     * {@code <home>/kernel/microsandbox-<key>/}, where the key names the source version and
     * the config the jar's kernel was built from. Any number of JVMs may race on it: each
     * unpacks into a directory of its own and renames it into place.
     */
    public static KernelBundle bundled(Path home) {
        Properties props = new Properties();
        try (InputStream in = KernelBundle.class.getResourceAsStream(RESOURCE_DIR + "kernel.properties")) {
            if (in == null) {
                throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "the guest kernel is not on the class path:"
                        + " add io.microsandbox:microsandbox-kernel (or build it: mvn install, after scripts/setup.sh),"
                        + " or select Debian's kernel with -D" + KERNEL_PROPERTY + "=debian");
            }
            props.load(in);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the kernel's properties", e);
        }
        String key = props.getProperty("key", "unknown").replaceAll("[^A-Za-z0-9._+-]", "_");
        long size = Long.parseLong(props.getProperty("vmlinux.size", "-1"));
        Path kernelRoot = home.resolve("kernel");
        Path dir = kernelRoot.resolve("microsandbox-" + key);
        return UNPACKED.computeIfAbsent(dir, d -> {
            try {
                OwnerOnly.directories(home, kernelRoot);
                if (!isComplete(d, size)) {
                    unpack(kernelRoot, d, size);
                }
                return new KernelBundle(d);
            } catch (IOException e) {
                throw new MicrosandboxException(ErrorKind.IO, "cannot unpack the guest kernel to " + d + ": " + e.getMessage(), e);
            }
        });
    }

    private static boolean isComplete(Path dir, long size) throws IOException {
        Path vmlinux = dir.resolve("vmlinux");
        return Files.isRegularFile(vmlinux) && (size < 0 || Files.size(vmlinux) == size);
    }

    private static void unpack(Path kernelRoot, Path dir, long size) throws IOException {
        Path tmp = Files.createTempDirectory(kernelRoot, "." + dir.getFileName() + ".");
        try {
            OwnerOnly.directory(tmp);
            try (InputStream in = new GZIPInputStream(resource("vmlinux.gz"), 1 << 16)) {
                copy(in, tmp.resolve("vmlinux"));
            }
            for (String name : List.of("config", "kernel.properties")) {
                try (InputStream in = resource(name)) {
                    copy(in, tmp.resolve(name));
                }
            }
            if (size >= 0 && Files.size(tmp.resolve("vmlinux")) != size) {
                throw new IOException("the unpacked vmlinux has " + Files.size(tmp.resolve("vmlinux")) + " bytes, expected " + size);
            }
            try {
                Files.move(tmp, dir, StandardCopyOption.ATOMIC_MOVE);
            } catch (java.nio.file.FileAlreadyExistsException | java.nio.file.DirectoryNotEmptyException raced) {
                // another JVM was first; an incomplete leftover is replaced
                if (!isComplete(dir, size)) {
                    io.microsandbox.runtime.SandboxPreparer.deleteTree(dir);
                    Files.move(tmp, dir, StandardCopyOption.ATOMIC_MOVE);
                }
            }
        } finally {
            io.microsandbox.runtime.SandboxPreparer.deleteTree(tmp);
        }
    }

    private static InputStream resource(String name) throws IOException {
        InputStream in = KernelBundle.class.getResourceAsStream(RESOURCE_DIR + name);
        if (in == null) {
            throw new IOException("class-path resource " + RESOURCE_DIR + name + " is missing");
        }
        return in;
    }

    private static void copy(InputStream in, Path target) throws IOException {
        try (OutputStream out = OwnerOnly.newOutputStream(target, StandardOpenOption.CREATE_NEW)) {
            in.transferTo(out);
        }
    }

    private static String setting(String property, String env) {
        String value = System.getProperty(property, System.getenv(env));
        return value == null || value.isBlank() ? null : value.strip();
    }

    /**
     * Installs Debian's kernel under {@code home} with the fetch-kernel.sh the jar carries
     * (the one scripts/setup.sh runs): {@code apt-get download}, then the uncompressed
     * vmlinux and the needed modules. Idempotent.
     *
     * @throws MicrosandboxException {@link ErrorKind#BOOT_FAILED} with the script's output when it fails
     */
    public static KernelBundle install(Path home) {
        Path script = RuntimeFiles.extract("fetch-kernel.sh");
        ProcessBuilder pb = new ProcessBuilder("bash", script.toString()).redirectErrorStream(true);
        pb.environment().put(RuntimeFiles.HOME_ENV, home.toString());
        try {
            Process p = pb.start();
            String output = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
            if (p.waitFor() != 0) {
                throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "cannot install the guest kernel under " + home
                        + ":\n" + output.strip());
            }
            // the script runs under umask 077; an older install may have left wider modes
            OwnerOnly.directories(home, home.resolve("kernel"));
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "cannot run " + script + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while installing the guest kernel");
        }
        return debian(home);
    }

    public Path vmlinux() {
        return dir.resolve("vmlinux");
    }

    /**
     * Kernel parameters for every boot, where microsandbox's kernel patches add them (its
     * kernel.properties lists them in {@code boot.params}): {@code virtio_mmio.max_queue_size=256},
     * since QEMU's virtio-mmio offers 1024 entries for every queue and the guest's console
     * driver posts a 4 KiB buffer for each (8 MiB of an idle guest).
     */
    public List<String> bootParams() {
        return offeredParams(properties()).contains(VIRTIO_QUEUE_SIZE_PARAM) ? List.of(VIRTIO_QUEUE_SIZE_PARAM + "=" + VIRTIO_QUEUE_SIZE) : List.of();
    }

    private static final String VIRTIO_QUEUE_SIZE_PARAM = "virtio_mmio.max_queue_size";
    /** What a device on PCI would ask for (virtio-blk's and virtio-net's default). */
    private static final int VIRTIO_QUEUE_SIZE = 256;

    /** The boot parameters this kernel's patches add, from kernel.properties' {@code boot.params}; none for Debian's. */
    private static List<String> offeredParams(Properties props) {
        return List.of(props.getProperty("boot.params", "").split(","));
    }

    /** This kernel's kernel.properties; empty for a kernel without (Debian's). */
    private Properties properties() {
        Properties props = new Properties();
        Path file = dir.resolve("kernel.properties");
        if (Files.isRegularFile(file)) {
            try (InputStream in = Files.newInputStream(file)) {
                props.load(in);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read " + file, e);
            }
        }
        return props;
    }

    /**
     * Kernel parameters that spare the guest work that is slow to emulate and cheap with KVM,
     * added to every boot under TCG (about 0.35 s of a 0.8 s boot here):
     * {@code noreplace-smp} keeps the kernel's SMP lock prefixes on a one-CPU guest instead of
     * rewriting thousands of instructions, each rewrite flushing TCG's TLB; and where
     * microsandbox's kernel patches add them (its kernel.properties lists them in
     * {@code boot.params}), {@code noinitpoison}, which skips filling freed init code with a
     * poison byte (a write to translated code goes through TCG's self-modifying-code check),
     * and {@code lapic_timer_period}, QEMU's APIC timer rate per jiffy, which skips the
     * kernel's 100 ms calibration of it.
     */
    public List<String> emulationParams() {
        List<String> params = new java.util.ArrayList<>(List.of("noreplace-smp"));
        Properties props = properties();
        List<String> offered = offeredParams(props);
        if (offered.contains("noinitpoison")) {
            params.add("noinitpoison");
        }
        String hz = props.getProperty("hz");
        if (offered.contains("lapic_timer_period") && hz != null) {
            params.add("lapic_timer_period=" + QEMU_APIC_TIMER_HZ / Long.parseLong(hz.strip()));
        }
        return params;
    }

    public Path modulesOrder() {
        return dir.resolve("modules.order");
    }

    /** Module file names in load order; none for a kernel with everything built in (no modules.order). */
    public List<String> modules() throws IOException {
        if (!Files.exists(modulesOrder())) {
            return List.of();
        }
        return Files.readAllLines(modulesOrder()).stream().map(String::strip).filter(s -> !s.isEmpty()).toList();
    }

    /**
     * The initramfs holding {@code agent} as {@code /init} plus the kernel's modules, built once
     * into {@code cacheDir} and named by the hash of its inputs; the file is its owner's only
     * ({@code 0600}).
     */
    public Path initramfs(Path agent, Path cacheDir) throws IOException {
        List<String> modules = modules();
        String key = digest(agent, modules);
        Path target = cacheDir.resolve("initramfs-" + key + ".cpio");
        if (Files.isRegularFile(target)) {
            OwnerOnly.restrictFile(target);
            return target;
        }
        OwnerOnly.directory(cacheDir);
        Path tmp = OwnerOnly.createTempFile(cacheDir, "initramfs-", ".tmp");
        try (OutputStream out = Files.newOutputStream(tmp);
             CpioArchiveOutputStream cpio = new CpioArchiveOutputStream(out, CpioConstants.FORMAT_NEW)) {
            for (String d : List.of("dev", "proc", "sys", "mnt", "newroot")) {
                directory(cpio, d);
            }
            CpioArchiveEntry console = new CpioArchiveEntry(CpioConstants.FORMAT_NEW, "dev/console", 0);
            console.setMode(CpioConstants.C_ISCHR | 0600);
            console.setRemoteDeviceMaj(5);
            console.setRemoteDeviceMin(1);
            cpio.putArchiveEntry(console);
            cpio.closeArchiveEntry();
            file(cpio, "init", Files.readAllBytes(agent), 0755);
            // with everything built in, the agent alone: its module loading finds nothing to do
            if (!modules.isEmpty()) {
                directory(cpio, "lib");
                directory(cpio, "lib/modules");
                file(cpio, "modules.order", String.join("\n", modules).concat("\n").getBytes(java.nio.charset.StandardCharsets.UTF_8), 0644);
                for (String module : modules) {
                    file(cpio, "lib/modules/" + module, Files.readAllBytes(dir.resolve("modules").resolve(module)), 0644);
                }
            }
        } catch (IOException e) {
            Files.deleteIfExists(tmp);
            throw e;
        }
        Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        return target;
    }

    /**
     * Names the initramfs by its inputs without reading them: the agent's path already carries
     * its content hash (see {@link RuntimeFiles}), and the modules, written once by
     * fetch-kernel.sh, are told apart by name, size and modification time.
     */
    private String digest(Path agent, List<String> modules) throws IOException {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            sha.update(agent.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8));
            for (String module : modules) {
                Path file = dir.resolve("modules").resolve(module);
                String identity = module + "\0" + Files.size(file) + "\0" + Files.getLastModifiedTime(file).toMillis() + "\n";
                sha.update(identity.getBytes(java.nio.charset.StandardCharsets.UTF_8));
            }
            return HexFormat.of().formatHex(sha.digest(), 0, 8);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static void directory(CpioArchiveOutputStream cpio, String name) throws IOException {
        CpioArchiveEntry entry = new CpioArchiveEntry(CpioConstants.FORMAT_NEW, name, 0);
        entry.setMode(CpioConstants.C_ISDIR | 0755);
        entry.setNumberOfLinks(2);
        cpio.putArchiveEntry(entry);
        cpio.closeArchiveEntry();
    }

    private static void file(CpioArchiveOutputStream cpio, String name, byte[] content, int mode) throws IOException {
        CpioArchiveEntry entry = new CpioArchiveEntry(CpioConstants.FORMAT_NEW, name, content.length);
        entry.setMode(CpioConstants.C_ISREG | mode);
        entry.setNumberOfLinks(1);
        cpio.putArchiveEntry(entry);
        cpio.write(content);
        cpio.closeArchiveEntry();
    }
}

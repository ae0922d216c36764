package io.microsandbox.runtime.vmm;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.RuntimeFiles;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import org.apache.commons.compress.archivers.cpio.CpioArchiveEntry;
import org.apache.commons.compress.archivers.cpio.CpioArchiveOutputStream;
import org.apache.commons.compress.archivers.cpio.CpioConstants;

/**
 * The guest kernel installed by {@code scripts/setup.sh}: an uncompressed {@code vmlinux}
 * (booted directly through PVH), the modules the guest needs and {@code modules.order}, their
 * load order. {@link #initramfs(Path)} packs the agent and those modules into the initramfs.
 *
 * @param dir the kernel directory, e.g. {@code ~/.microsandbox/kernel/current}
 */
public record KernelBundle(Path dir) {

    /**
     * The kernel under {@code home}, or in the directory named by the system property
     * {@code microsandbox.kernel.dir} or the environment variable {@code MSB_KERNEL_DIR}.
     *
     * @throws MicrosandboxException of kind {@link ErrorKind#BOOT_FAILED} when it is missing
     */
    public static KernelBundle locate(Path home) {
        return locate(home, null);
    }

    /**
     * The kernel in {@code kernelDir}, or when it is null where {@link #locate(Path)} looks.
     *
     * @throws MicrosandboxException of kind {@link ErrorKind#BOOT_FAILED} when it is missing
     */
    public static KernelBundle locate(Path home, Path kernelDir) {
        KernelBundle bundle = new KernelBundle(kernelDir != null ? kernelDir : defaultDir(home));
        String problem = bundle.problem();
        if (problem != null) {
            throw new MicrosandboxException(ErrorKind.BOOT_FAILED, problem);
        }
        return bundle;
    }

    /**
     * Where the kernel of {@code home} is looked for by default: the system property
     * {@code microsandbox.kernel.dir}, else the environment variable {@code MSB_KERNEL_DIR},
     * else {@code <home>/kernel/current}. Read at each call.
     */
    public static Path defaultDir(Path home) {
        String override = System.getProperty("microsandbox.kernel.dir", System.getenv("MSB_KERNEL_DIR"));
        return override != null && !override.isBlank() ? Path.of(override) : home.resolve("kernel").resolve("current");
    }

    /** What is missing from this kernel directory, or null when it is complete. No side effects. */
    public String problem() {
        if (!Files.isRegularFile(vmlinux()) || !Files.isRegularFile(modulesOrder())) {
            return "no guest kernel at " + dir
                    + " (expected vmlinux and modules.order there); install it with Sandbox.ensureInstalled()"
                    + " (Microsandbox.ensureInstalled() for a runtime of your own) or scripts/setup.sh";
        }
        return null;
    }

    /**
     * Installs Debian's kernel under {@code home} with the fetch-kernel.sh the jar carries
     * (the one scripts/setup.sh runs): {@code apt-get download}, then the uncompressed
     * vmlinux and the needed modules. Idempotent.
     *
     * @throws MicrosandboxException {@link ErrorKind#BOOT_FAILED} with the script's output when it fails
     */
    public static KernelBundle install(Path home) {
        Path script = RuntimeFiles.extract(home, "fetch-kernel.sh");
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
        return locate(home);
    }

    public Path vmlinux() {
        return dir.resolve("vmlinux");
    }

    public Path modulesOrder() {
        return dir.resolve("modules.order");
    }

    /** Module file names in load order. */
    public List<String> modules() throws IOException {
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
            for (String d : List.of("dev", "proc", "sys", "mnt", "newroot", "lib", "lib/modules")) {
                directory(cpio, d);
            }
            CpioArchiveEntry console = new CpioArchiveEntry(CpioConstants.FORMAT_NEW, "dev/console", 0);
            console.setMode(CpioConstants.C_ISCHR | 0600);
            console.setRemoteDeviceMaj(5);
            console.setRemoteDeviceMin(1);
            cpio.putArchiveEntry(console);
            cpio.closeArchiveEntry();
            file(cpio, "init", Files.readAllBytes(agent), 0755);
            file(cpio, "modules.order", String.join("\n", modules).concat("\n").getBytes(java.nio.charset.StandardCharsets.UTF_8), 0644);
            for (String module : modules) {
                file(cpio, "lib/modules/" + module, Files.readAllBytes(dir.resolve("modules").resolve(module)), 0644);
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

package io.microsandbox.runtime;

import io.microsandbox.Accelerator;
import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.SandboxConfig;
import io.microsandbox.image.ImageRoots;
import io.microsandbox.image.RootDisks;
import io.microsandbox.image.UpperPatches;
import io.microsandbox.runtime.supervisor.SupervisorSpec;
import io.microsandbox.runtime.vmm.Accelerators;
import io.microsandbox.runtime.vmm.KernelBundle;
import io.microsandbox.runtime.vmm.QemuCommand;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * Turns a {@link SandboxConfig} into a bootable sandbox on disk: the kernel and initramfs,
 * the lower and upper disks, the accelerator, and the supervisor spec with the QEMU command.
 */
public final class SandboxPreparer {
    private SandboxPreparer() {
    }

    /**
     * Prepares everything under {@code layout} and writes the supervisor spec.
     *
     * @param freshUpper create a new empty upper disk; false keeps the one a previous run left
     */
    public static SupervisorSpec prepare(Path home, SandboxLayout layout, SandboxConfig config, boolean freshUpper) throws IOException {
        return prepare(home, findQemu(), KernelBundle.locate(home), Accelerator.AUTO, layout, config, freshUpper, null);
    }

    /**
     * Prepares everything under {@code layout} with the given QEMU binary and kernel, and
     * writes the supervisor spec.
     *
     * @param runtimeAccelerator the runtime's accelerator, used when the config asks for AUTO
     * @param freshUpper create a new empty upper disk; false keeps the one a previous run left
     * @param knownRoot the image's root when the caller already has it (a restore has its
     *     checkpoint's directory-image disk, {@link ImageRoots#builtDirectoryImage}), or null to
     *     resolve the config's image
     */
    public static SupervisorSpec prepare(Path home, String qemu, KernelBundle kernel, Accelerator runtimeAccelerator,
            SandboxLayout layout, SandboxConfig config, boolean freshUpper, ImageRoots.Root knownRoot) throws IOException {
        // a published port that is taken fails the create before anything is made (INVALID_CONFIG)
        new io.microsandbox.runtime.network.NetworkSettings(config.network(), config.ports()).checkPortsFree();
        layout.createDirectories(home);
        sweepHalfMade(layout.dir());
        // mke2fs runs as its own process: let it work while this thread fingerprints the image
        CompletableFuture<Void> upper;
        // patches (issue 8) need the lower disk: their upper is made after the image is resolved
        boolean patched = !config.patches().isEmpty() && (freshUpper || !Files.isRegularFile(layout.upperDisk()));
        if (patched) {
            upper = CompletableFuture.completedFuture(null);
        } else if (freshUpper || !Files.isRegularFile(layout.upperDisk())) {
            upper = CompletableFuture.runAsync(() -> RootDisks.createUpperDisk(layout.upperDisk(), config.upperSizeMib()),
                    DedicatedThreads.named("msb-upper-disk-" + layout.name()));
        } else {
            RootDisks.restrictUpperDisk(layout.upperDisk());
            upper = CompletableFuture.completedFuture(null);
        }
        Path agent;
        Path initramfs;
        ImageRoots.Root root;
        try {
            agent = RuntimeFiles.extract(home, "msb-agent");
            initramfs = kernel.initramfs(agent, agent.getParent());
            // a directory tree, or an OCI image pulled into the cache (issue 8: image/ImageRoots)
            if (knownRoot != null) {
                // a directory image's cached disk (a checkpoint's): kept while this sandbox is, as one resolved is
                io.microsandbox.image.DirectoryImageCache.pin(home, layout.dir(), knownRoot.lowerDisk());
                root = knownRoot;
            } else {
                root = ImageRoots.resolve(home, config, layout.dir(), freshUpper);
            }
        } finally {
            // never leave mke2fs writing into a directory the caller is about to clean up
            try {
                upper.join();
            } catch (CompletionException e) {
                if (e.getCause() instanceof RuntimeException r) {
                    throw r;
                }
                throw e;
            }
        }
        Path lower = root.lowerDisk();
        if (patched) {
            UpperPatches.createUpperDisk(layout.upperDisk(), config.upperSizeMib(), lower, config.patches());
        }
        // mounts (issue 13): resolved before QEMU starts, so a missing volume fails by name
        GuestSetup.Plan guest = GuestSetup.plan(home, config, config.entrypoint() != null ? config.entrypoint()
                : root.defaults() != null ? root.defaults().entrypoint() : null);
        Path runtimeDir = agent.getParent();
        Accelerator wanted = config.accelerator() != Accelerator.AUTO ? config.accelerator() : runtimeAccelerator;
        Accelerator accelerator = Accelerators.resolve(wanted, qemu, kernel, initramfs, runtimeDir);

        QemuCommand command = new QemuCommand();
        // Debugging aid: e.g. "loglevel=7" to see the whole kernel log in logs/kernel.log.
        String extraParams = System.getProperty("microsandbox.kernel.extraParams", System.getenv("MSB_KERNEL_EXTRA_PARAMS"));
        if (extraParams != null) {
            for (String param : extraParams.trim().split("\\s+")) {
                if (!param.isEmpty()) {
                    command.kernelParam(param);
                }
            }
        }
        var argv = command
                .qemuBinary(qemu)
                .accelerator(accelerator)
                .memoryMib(config.memoryMib())
                .cpus(config.cpus())
                .guestAslr(config.securityProfile() == io.microsandbox.SecurityProfile.RESTRICTED)
                .guestMemoryPassed()
                .kernel(kernel, initramfs)
                .consoleSocket(layout.consoleSocket())
                .lowerFormat(root.lowerFormat(), root.lowerReadOnly())
                .disks(lower, layout.upperDisk())
                .agentSocket(layout.vmSocket())
                .qmpSocket(layout.qmpSocket())
                .statsMonitorSocket(layout.statsMonitorSocket())
                .extraArgs(guest.qemuArgs())
                .argv();
        // Benchmark aid (bench/net.sh): extra QEMU arguments, e.g. QEMU's own user-mode network
        // to compare with; never set in normal use, the guest then has a NIC outside the policy.
        String extraQemu = System.getProperty("microsandbox.qemu.extraArgs");
        if (extraQemu != null && !extraQemu.isBlank()) {
            argv = new java.util.ArrayList<>(argv);
            argv.addAll(java.util.List.of(extraQemu.trim().split("\\s+")));
        }
        Map<String, Object> configure = new LinkedHashMap<>();
        configure.put("hostname", config.hostname() != null ? config.hostname() : hostnameFor(layout.name()));
        // the image config's env, working dir and user are defaults the sandbox config overrides
        // secrets: the guest sees only their placeholders
        Map<String, String> env = new LinkedHashMap<>(config.env());
        config.secrets().forEach(secret -> env.put(secret.name(), secret.placeholder()));
        configure.put("env", GuestSetup.withScriptsOnPath(root.env(env), config));
        configure.put("workdir", root.workdir(config.workdir()));
        configure.put("user", root.user(config.user()));
        configure.put("log_level", config.effectiveLogLevel());
        configure.putAll(guest.agentConfig());
        // the policy and published ports are the supervisor's (network.json); the agent only sets up its side
        var network = new io.microsandbox.runtime.network.NetworkSettings(config.network(), config.ports());
        network.write(layout.dir());
        io.microsandbox.runtime.network.SecretFile.write(layout.dir(), config.secrets());
        configure.put("network", network.enabled());
        if (config.network().tlsInterception()) {
            configure.put("tls_ca", io.microsandbox.runtime.network.TlsAuthority.open(home).caPem());
        }
        SupervisorSpec spec = new SupervisorSpec(layout.name(), argv, layout.dir().toString(), layout.runDir().toString(),
                configure, config.bootTimeout().toMillis(), config.detached(), home.toString(),
                config.ephemeral(), config.idleTimeout().toMillis(), config.cacheReclaimAfter().toMillis(), config.maxDuration().toMillis(), null);
        spec.write(layout.specFile());
        return spec;
    }

    /**
     * The sandbox name cut down to a valid hostname (letters, digits, hyphens, 63 bytes): the
     * guest hostname of a sandbox whose config names none. Public so that a bulk creator
     * restoring members from one checkpoint can give each the hostname a cold boot would.
     */
    public static String hostnameFor(String name) {
        String host = name.toLowerCase(java.util.Locale.ROOT).replaceAll("[^a-z0-9-]", "-").replaceAll("^-+|-+$", "");
        if (host.length() > 63) {
            host = host.substring(0, 63).replaceAll("-+$", "");
        }
        return host.isEmpty() ? "sandbox" : host;
    }

    /** System property {@code microsandbox.qemu}, else {@code MSB_QEMU}, else {@code qemu-system-x86_64} on the PATH. */
    public static String findQemu() {
        return findQemu(null);
    }

    /**
     * {@code configured} when it is not null (it must be an executable), else as {@link #findQemu()}.
     *
     * @throws MicrosandboxException {@link ErrorKind#BOOT_FAILED} naming what is missing
     */
    public static String findQemu(Path configured) {
        if (configured != null) {
            if (!Files.isExecutable(configured)) {
                throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "the configured QEMU " + configured
                        + " (Microsandbox.builder().qemu(...)) is not an executable");
            }
            return configured.toAbsolutePath().toString();
        }
        String override = System.getProperty("microsandbox.qemu", System.getenv("MSB_QEMU"));
        if (override != null && !override.isBlank()) {
            if (!Files.isExecutable(Path.of(override))) {
                throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "the configured QEMU " + override + " (microsandbox.qemu / MSB_QEMU) is not an executable");
            }
            return override;
        }
        String path = System.getenv().getOrDefault("PATH", "/usr/bin:/bin");
        for (String dir : path.split(File.pathSeparator)) {
            Path candidate = Path.of(dir, "qemu-system-x86_64");
            if (Files.isExecutable(candidate)) {
                return candidate.toString();
            }
        }
        throw new MicrosandboxException(ErrorKind.BOOT_FAILED,
                "QEMU (qemu-system-x86_64) is not installed; install it with scripts/setup.sh (apt-get install qemu-system-x86), "
                        + "or set -Dmicrosandbox.qemu / MSB_QEMU to its path");
    }

    /** Deletes a directory tree, ignoring what is already gone. */
    /**
     * Deletes what a preparation killed half-way left in a sandbox's directory: patch staging
     * trees and files made aside ({@code .part}) to be renamed once whole. Only called under the
     * sandbox's creation lock, so nothing else is making them.
     */
    static void sweepHalfMade(Path sandboxDir) throws IOException {
        try (java.util.stream.Stream<Path> entries = Files.list(sandboxDir)) {
            for (Path p : entries.toList()) {
                String name = p.getFileName().toString();
                if (name.startsWith("upper-stage.") || name.endsWith(".part")) {
                    deleteTree(p);
                }
            }
        }
    }

    public static void deleteTree(Path dir) {
        try {
            // what disappears meanwhile (another deleter) is as good as deleted
            Files.walkFileTree(dir, new java.nio.file.SimpleFileVisitor<>() {
                @Override
                public java.nio.file.FileVisitResult visitFile(Path file, java.nio.file.attribute.BasicFileAttributes attrs) throws IOException {
                    Files.deleteIfExists(file);
                    return java.nio.file.FileVisitResult.CONTINUE;
                }

                @Override
                public java.nio.file.FileVisitResult visitFileFailed(Path file, IOException e) throws IOException {
                    if (e instanceof java.nio.file.NoSuchFileException) {
                        return java.nio.file.FileVisitResult.CONTINUE;
                    }
                    throw e;
                }

                @Override
                public java.nio.file.FileVisitResult postVisitDirectory(Path d, IOException e) throws IOException {
                    if (e != null && !(e instanceof java.nio.file.NoSuchFileException)) {
                        throw e;
                    }
                    Files.deleteIfExists(d);
                    return java.nio.file.FileVisitResult.CONTINUE;
                }
            });
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IO, "cannot delete " + dir + ": " + e.getMessage(), e);
        }
    }
}

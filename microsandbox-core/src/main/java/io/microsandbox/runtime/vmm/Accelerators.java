package io.microsandbox.runtime.vmm;

import io.microsandbox.Accelerator;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.SandboxLayout;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;

/**
 * Picks KVM or TCG. {@link Accelerator#AUTO} boots the sandbox kernel once under KVM with the
 * agent in probe mode; if the guest reaches userspace in time, KVM is used, otherwise TCG.
 * The verdict is remembered in the runtime directory per kernel and initramfs, so the probe
 * runs once per host. A host without a usable {@code /dev/kvm} goes straight to TCG.
 */
public final class Accelerators {
    private static final Logger LOG = Logger.getLogger(Accelerators.class.getName());
    private static final Duration PROBE_TIMEOUT = Duration.ofSeconds(15);
    /** How much of the probe's console is searched for its marker. */
    private static final int CONSOLE_READ_BYTES = 1 << 20;

    private Accelerators() {
    }

    /** The configured accelerator, with {@code MSB_ACCEL} overriding AUTO and AUTO resolved. */
    public static Accelerator resolve(Accelerator configured, String qemu, KernelBundle kernel, Path initramfs, Path runtimeDir) {
        Accelerator known = withoutProbe(configured);
        if (known != null) {
            return known;
        }
        try {
            Path verdict = runtimeDir.resolve("accel-"
                    + SandboxLayout.shortHash(kernel.vmlinux().toRealPath() + "\0" + initramfs.getFileName()) + ".txt");
            if (Files.isRegularFile(verdict)) {
                return Accelerator.parse(Files.readString(verdict));
            }
            Accelerator result = probeKvm(qemu, kernel, initramfs, runtimeDir, PROBE_TIMEOUT) ? Accelerator.KVM : Accelerator.TCG;
            OwnerOnly.directory(runtimeDir);
            OwnerOnly.write(verdict, result.name().getBytes(java.nio.charset.StandardCharsets.UTF_8));
            return result;
        } catch (IOException e) {
            LOG.warning("KVM probe failed, using TCG: " + e.getMessage());
            return Accelerator.TCG;
        }
    }

    /**
     * What {@link #resolve} answers when it needs no probe: the configured accelerator unless
     * it is AUTO, then {@code MSB_ACCEL}, then TCG on a host without a usable {@code /dev/kvm};
     * null when only the probe can tell.
     */
    public static Accelerator withoutProbe(Accelerator configured) {
        Accelerator wanted = configured;
        String env = System.getenv("MSB_ACCEL");
        if (wanted == Accelerator.AUTO && env != null && !env.isBlank()) {
            wanted = Accelerator.parse(env);
        }
        if (wanted != Accelerator.AUTO) {
            return wanted;
        }
        Path kvm = Path.of("/dev/kvm");
        if (!Files.isReadable(kvm) || !Files.isWritable(kvm)) {
            return Accelerator.TCG;
        }
        return null;
    }

    /** Whether the first {@value #CONSOLE_READ_BYTES} bytes of the probe's console hold {@code marker} (whatever else the guest wrote). */
    private static boolean consoleShows(Path console, String marker) throws IOException {
        try (var in = Files.newInputStream(console)) {
            return new String(in.readNBytes(CONSOLE_READ_BYTES), java.nio.charset.StandardCharsets.ISO_8859_1).contains(marker);
        }
    }

    /** Boots the kernel under KVM to the agent's probe marker; false on any failure or timeout. */
    static boolean probeKvm(String qemu, KernelBundle kernel, Path initramfs, Path workDir, Duration timeout) throws IOException {
        OwnerOnly.directory(workDir);
        Path console = OwnerOnly.createTempFile(workDir, "kvm-probe-", ".log");
        try {
            List<String> argv = new QemuCommand().qemuBinary(qemu).accelerator(Accelerator.KVM).memoryMib(128).balloon(false)
                    .kernel(kernel, initramfs).kernelParam(QemuCommand.PROBE_PARAM)
                    .consoleLog(console).argv();
            Process vmm = new ProcessBuilder(argv).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            try {
                if (!vmm.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                    vmm.destroyForcibly().waitFor();
                    return false;
                }
            } catch (InterruptedException e) {
                // no verdict: an interrupted probe says nothing about the host, and is not remembered
                vmm.destroyForcibly();
                Thread.currentThread().interrupt();
                throw new IOException("the KVM probe was interrupted");
            }
            return vmm.exitValue() == 0 && consoleShows(console, QemuCommand.PROBE_MARKER);
        } finally {
            Files.deleteIfExists(console);
        }
    }
}

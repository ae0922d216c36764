package io.microsandbox;

import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxPreparer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * TEMPORARY STAND-IN on branch {@code spring}: the real runtime object lands on branch
 * {@code runtime}, whose version replaces this file on merge. Same public API; it delegates to
 * the static {@link Sandbox} methods (one global home) so the starter compiles and runs meanwhile.
 */
public final class Microsandbox {
    private static final Microsandbox DEFAULT = new Microsandbox(null, null, null, Accelerator.AUTO);
    private final Path home;
    private final Path qemu;
    private final Path kernelDir;
    private final Accelerator accelerator;

    private Microsandbox(Path home, Path qemu, Path kernelDir, Accelerator accelerator) {
        this.home = home;
        this.qemu = qemu;
        this.kernelDir = kernelDir;
        this.accelerator = accelerator;
    }

    public static Microsandbox defaultRuntime() {
        return DEFAULT;
    }

    public static Builder builder() {
        return new Builder();
    }

    public Path home() {
        return home != null ? home : RuntimeFiles.defaultHome();
    }

    public Accelerator accelerator() {
        return accelerator;
    }

    public Sandbox create(String name, SandboxConfig config) {
        return Sandbox.create(name, config);
    }

    public Sandbox start(String name) {
        return Sandbox.start(name);
    }

    public Sandbox startDetached(String name) {
        return Sandbox.startDetached(name);
    }

    public Sandbox connect(String name) {
        return Sandbox.connect(name);
    }

    public SandboxHandle get(String name) {
        return Sandbox.get(name);
    }

    public Optional<SandboxHandle> find(String name) {
        try {
            return Optional.of(Sandbox.get(name));
        } catch (MicrosandboxException e) {
            if (e.kind() == ErrorKind.SANDBOX_NOT_FOUND) {
                return Optional.empty();
            }
            throw e;
        }
    }

    public List<SandboxHandle> list() {
        return Sandbox.list();
    }

    public List<SandboxHandle> list(SandboxFilter filter) {
        return Sandbox.list(filter);
    }

    public void remove(String name) {
        Sandbox.remove(name);
    }

    public Map<String, Metrics> allMetrics() {
        return Sandbox.allMetrics();
    }

    public void ensureInstalled() {
        Sandbox.ensureInstalled();
    }

    public boolean isInstalled() {
        return describeInstallProblem() == null;
    }

    public String describeInstallProblem() {
        StringBuilder problems = new StringBuilder();
        if (qemu != null) {
            if (!Files.isExecutable(qemu)) {
                problems.append("QEMU ").append(qemu).append(" is not an executable; install it with: apt-get install -y qemu-system-x86");
            }
        } else {
            try {
                SandboxPreparer.findQemu();
            } catch (MicrosandboxException e) {
                problems.append("QEMU (qemu-system-x86_64) is not installed; install it with: apt-get install -y qemu-system-x86");
            }
        }
        Path dir = kernelDir;
        if (dir == null) {
            String override = System.getProperty("microsandbox.kernel.dir", System.getenv("MSB_KERNEL_DIR"));
            dir = override != null && !override.isBlank() ? Path.of(override) : home().resolve("kernel").resolve("current");
        }
        if (!Files.isRegularFile(dir.resolve("vmlinux")) || !Files.isRegularFile(dir.resolve("modules.order"))) {
            if (problems.length() > 0) {
                problems.append("; ");
            }
            problems.append("no guest kernel at ").append(dir)
                    .append("; install it with: bash scripts/setup.sh (or call Microsandbox.ensureInstalled())");
        }
        return problems.length() == 0 ? null : problems.toString();
    }

    public Accelerator resolvedAccelerator() {
        return accelerator;
    }

    public static final class Builder {
        private Path home;
        private Path qemu;
        private Path kernelDir;
        private Accelerator accelerator = Accelerator.AUTO;

        public Builder home(Path home) {
            this.home = home;
            return this;
        }

        public Builder qemu(Path qemu) {
            this.qemu = qemu;
            return this;
        }

        public Builder kernelDir(Path kernelDir) {
            this.kernelDir = kernelDir;
            return this;
        }

        public Builder accelerator(Accelerator accelerator) {
            this.accelerator = accelerator;
            return this;
        }

        public Microsandbox build() {
            return new Microsandbox(home, qemu, kernelDir, accelerator);
        }
    }
}

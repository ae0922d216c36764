package io.microsandbox.spring.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.spring.autoconfigure.MicrosandboxAutoConfiguration;
import io.microsandbox.spring.autoconfigure.MicrosandboxEndpointAutoConfiguration;
import io.microsandbox.spring.autoconfigure.MicrosandboxHealthAutoConfiguration;
import io.microsandbox.spring.autoconfigure.MicrosandboxMetricsAutoConfiguration;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.function.BooleanSupplier;
import org.springframework.boot.autoconfigure.AutoConfigurations;
import org.springframework.boot.test.context.runner.ApplicationContextRunner;

/** Shared set-up of the VM integration tests: a home per test class, small sandboxes, fast housekeeping. */
final class VmTestSupport {

    private VmTestSupport() {
    }

    /**
     * A fresh home for a test class: whatever an earlier run left (detached sandboxes survive a
     * killed JVM) is killed and removed. The base is the checkout's own: a build of another
     * checkout on the same machine, running the same class meanwhile, would otherwise share the
     * home, and each would kill the other's sandboxes.
     */
    static Path home(String name) {
        String base = System.getProperty("msb.test.home.base", System.getProperty("java.io.tmpdir") + "/msb-spring-it");
        Path home = Path.of(base + "-" + checkoutTag(), name).toAbsolutePath();
        if (java.nio.file.Files.isDirectory(home)) {
            io.microsandbox.Microsandbox runtime = io.microsandbox.Microsandbox.builder().home(home).build();
            for (io.microsandbox.SandboxHandle h : runtime.list()) {
                try {
                    if (!h.status().isTerminal()) {
                        h.kill();
                    }
                    runtime.remove(h.name());
                } catch (RuntimeException e) {
                    // best effort
                }
            }
        }
        return home;
    }

    /**
     * Eight hex digits of the module directory (failsafe's working directory): the same for every
     * build of this checkout, so that a run still removes what a killed run of it left, and short,
     * so that socket paths under the home fit the 108 bytes of a unix socket address.
     */
    static String checkoutTag() {
        return String.format("%08x", Path.of("").toAbsolutePath().normalize().toString().hashCode());
    }

    static String image() {
        String rootfs = System.getProperty("msb.test.rootfs");
        assertThat(rootfs).as("msb.test.rootfs (set by failsafe)").isNotBlank();
        return rootfs;
    }

    static ApplicationContextRunner runner(Path home) {
        return new ApplicationContextRunner()
                .withConfiguration(AutoConfigurations.of(MicrosandboxAutoConfiguration.class,
                        MicrosandboxMetricsAutoConfiguration.class, MicrosandboxHealthAutoConfiguration.class,
                        MicrosandboxEndpointAutoConfiguration.class))
                .withPropertyValues(
                        "microsandbox.home=" + home,
                        "microsandbox.image=" + image(),
                        "microsandbox.memory=256MB",
                        "microsandbox.pool.min-idle=1",
                        "microsandbox.pool.max-size=2",
                        "microsandbox.pool.housekeeping-period=500ms",
                        "microsandbox.pool.acquire-timeout=90s",
                        "management.endpoints.web.exposure.include=microsandbox",
                        "management.endpoints.jmx.exposure.include=microsandbox");
    }

    static void await(String what, Duration timeout, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + timeout + " waiting for " + what);
            }
            Thread.sleep(100);
        }
    }

    /** QEMU and supervisor processes that work on this home. */
    static List<ProcessHandle> processesOf(Path home) {
        String h = home.toString();
        return ProcessHandle.allProcesses()
                .filter(p -> p.info().commandLine().map(c -> c.contains(h)).orElse(false))
                .toList();
    }

    /**
     * The QEMU process of one sandbox: the child of the supervisor its pid file names (QEMU's
     * command line may name the spare's directory it was pre-booted in, not the sandbox).
     */
    static ProcessHandle qemuOf(Path home, String sandbox) {
        java.nio.file.Path pidFile = io.microsandbox.runtime.SandboxLayout.of(home, sandbox).pidFile();
        try {
            long supervisor = Long.parseLong(java.nio.file.Files.readString(pidFile).strip());
            return ProcessHandle.of(supervisor).stream().flatMap(ProcessHandle::children)
                    .filter(p -> p.info().command().orElse("").contains("qemu"))
                    .findFirst()
                    .orElseThrow(() -> new AssertionError("no QEMU process for " + sandbox));
        } catch (java.io.IOException e) {
            throw new AssertionError("no pid file for sandbox " + sandbox, e);
        }
    }

    /** The base of the test homes goes with the last of them: a test run leaves nothing in the temporary directory. */
    private static void removeBaseIfEmpty(Path base) throws java.io.IOException {
        try {
            java.nio.file.Files.deleteIfExists(base);
        } catch (java.nio.file.DirectoryNotEmptyException e) {
            // another test class's home is still there; the last one removes the base
        }
    }

    /** Checks that no process works on the home any more, then removes the home: tests leave nothing behind. */
    static void assertNothingLeft(Path home) throws InterruptedException {
        io.microsandbox.runtime.supervisor.SpareSupervisors.release(home);
        await("no process left on " + home, Duration.ofSeconds(30), () -> processesOf(home).isEmpty());
        // a supervisor that has just exited may still be removing its ephemeral sandbox's files
        for (int attempt = 1; ; attempt++) {
            try (var paths = java.nio.file.Files.walk(home)) {
                for (Path p : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
                    java.nio.file.Files.deleteIfExists(p);
                }
                removeBaseIfEmpty(home.getParent());
                return;
            } catch (java.nio.file.NoSuchFileException e) {
                // removed meanwhile: walk again
            } catch (java.io.IOException e) {
                if (attempt == 10) {
                    // processes are checked above; a file the test JVM still holds is not worth a failure
                    System.err.println("could not remove the test home " + home + ": " + e);
                    return;
                }
            }
            Thread.sleep(300);
        }
    }
}

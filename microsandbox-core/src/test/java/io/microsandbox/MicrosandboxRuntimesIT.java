package io.microsandbox;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxPreparer;
import io.microsandbox.runtime.supervisor.Supervisor;
import io.microsandbox.runtime.supervisor.SupervisorProcess;
import io.microsandbox.runtime.supervisor.SpareSupervisors;
import io.microsandbox.runtime.supervisor.SupervisorSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two runtimes with two homes in one JVM boot real sandboxes and stay independent: separate
 * databases, separate sandboxes, separate supervisors; the QEMU and kernel given to the
 * builder are the ones that boot.
 */
class MicrosandboxRuntimesIT {

    @Test
    void runtimesOnTwoHomesAreIndependent(@TempDir Path dir) throws Exception {
        // the kernel the default configuration boots, given to the builder explicitly
        Path kernelDir = io.microsandbox.runtime.vmm.KernelBundle.locate(io.microsandbox.runtime.RuntimeFiles.defaultHome()).dir();
        // a QEMU of our own: a wrapper around the real one, so the spec shows which one boots
        Path wrapper = dir.resolve("bin").resolve("my-qemu");
        Files.createDirectories(wrapper.getParent());
        Files.writeString(wrapper, "#!/bin/sh\nexec " + SandboxPreparer.findQemu() + " \"$@\"\n");
        Files.setPosixFilePermissions(wrapper, PosixFilePermissions.fromString("rwx------"));

        Microsandbox a = Microsandbox.builder().home(dir.resolve("a")).kernelDir(kernelDir).build();
        Microsandbox b = Microsandbox.builder().home(dir.resolve("b")).kernelDir(kernelDir).qemu(wrapper)
                .accelerator(Accelerator.TCG).build();
        assertThat(a.isInstalled()).as(a.describeInstallProblem()).isTrue();
        assertThat(b.isInstalled()).as(b.describeInstallProblem()).isTrue();
        assertThat(b.resolvedAccelerator()).isEqualTo(Accelerator.TCG);

        String alpha = TestSandboxes.uniqueName("home-a");
        String beta = TestSandboxes.uniqueName("home-b");
        try (Sandbox sa = a.create(alpha, TestSandboxes.config().env(Map.of("RUNTIME", "a")).build());
                Sandbox sb = b.create(beta, TestSandboxes.config().env(Map.of("RUNTIME", "b")).build())) {
            assertThat(sa.runtime()).isSameAs(a);
            assertThat(sb.runtime()).isSameAs(b);
            assertThat(sa.shell("echo $RUNTIME").stdout()).isEqualTo("a\n");
            assertThat(sb.shell("echo $RUNTIME").stdout()).isEqualTo("b\n");

            // each sees only its own
            assertThat(a.list()).extracting(SandboxHandle::name).containsExactly(alpha);
            assertThat(b.list()).extracting(SandboxHandle::name).containsExactly(beta);
            assertThat(a.list()).allSatisfy(h -> assertThat(h.runtime()).isSameAs(a));
            assertThat(Sandbox.list()).extracting(SandboxHandle::name).doesNotContain(alpha, beta);
            assertThat(a.find(beta)).isEmpty();
            assertThat(b.find(alpha)).isEmpty();
            for (Runnable lookup : List.<Runnable>of(() -> a.get(beta), () -> b.get(alpha), () -> b.connect(alpha),
                    () -> a.start(beta), () -> Sandbox.get(alpha))) {
                assertThatThrownBy(lookup::run).isInstanceOfSatisfying(MicrosandboxException.class,
                        e -> assertThat(e.kind()).isEqualTo(ErrorKind.SANDBOX_NOT_FOUND));
            }
            assertThat(a.allMetrics()).containsOnlyKeys(alpha);
            assertThat(b.allMetrics()).containsOnlyKeys(beta);

            // separate databases and state directories
            assertThat(a.home().resolve("db/msb.db")).isRegularFile();
            assertThat(b.home().resolve("db/msb.db")).isRegularFile();
            assertThat(SandboxLayout.of(a.home(), alpha).dir()).isDirectory();
            assertThat(SandboxLayout.of(b.home(), alpha).dir()).doesNotExist();
            assertThat(SandboxLayout.of(b.home(), beta).dir()).isDirectory();

            // the builder's QEMU and kernel are what booted
            List<String> argvB = SupervisorSpec.read(SandboxLayout.of(b.home(), beta).specFile()).vmmArgv();
            assertThat(argvB.get(0)).isEqualTo(wrapper.toString());
            assertThat(argvB).contains(kernelDir.resolve("vmlinux").toString()).anySatisfy(arg -> assertThat(arg).startsWith("tcg"));
            List<String> argvA = SupervisorSpec.read(SandboxLayout.of(a.home(), alpha).specFile()).vmmArgv();
            assertThat(argvA.get(0)).isEqualTo(SandboxPreparer.findQemu());
            assertThat(argvA).contains(kernelDir.resolve("vmlinux").toString());

            // each runtime's supervisors (and spare) run on its own home
            assertThat(supervisorHomes(alpha, a)).containsExactly(a.home().toString());
            assertThat(supervisorHomes(beta, b)).containsExactly(b.home().toString());
            waitForSpares(a.home(), b.home());

            // handles act on the runtime they came from
            SandboxHandle handleA = a.get(alpha);
            handleA.stop(Duration.ofSeconds(10));
            assertThat(a.get(alpha).status()).isEqualTo(SandboxStatus.STOPPED);
            assertThat(handleA.logs(LogOptions.defaults())).extracting(LogEntry::text).contains("a\n");
            assertThat(b.get(beta).status()).isEqualTo(SandboxStatus.RUNNING);
            assertThat(sb.exec("true", List.of()).exitCode()).isZero();
            handleA.remove();
            assertThat(a.list()).isEmpty();
            assertThat(b.list()).extracting(SandboxHandle::name).containsExactly(beta);
        }
        assertThat(b.get(beta).status().isTerminal()).isTrue();
        b.remove(beta);
        assertThat(b.list()).isEmpty();
        assertThat(SandboxLayout.of(b.home(), beta).dir()).doesNotExist();
        // done with both homes: their spare supervisors go now, not when this JVM exits
        SpareSupervisors.release(a.home());
        SpareSupervisors.release(b.home());
        // a home's first supervisor writes its class-data archive as it exits, and a JVM started
        // on the archive checks it (bounded by SupervisorCds.CHECK_TIMEOUT): gone a moment later
        long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
        while (!processesOf(a.home(), b.home()).isEmpty() && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertThat(processesOf(a.home(), b.home())).isEmpty();
    }

    /** This JVM's child processes whose command line names one of {@code homes}. */
    private static List<String> processesOf(Path... homes) {
        return ProcessHandle.current().children().map(p -> p.info().commandLine().orElse(""))
                .filter(cmd -> java.util.Arrays.stream(homes).anyMatch(home -> cmd.contains(home.toString()))).toList();
    }

    /** The {@code microsandbox.home} of the supervisor running {@code name}, from its pid file and command line. */
    private static List<String> supervisorHomes(String name, Microsandbox runtime) throws Exception {
        long pid = Long.parseLong(Files.readString(SandboxLayout.of(runtime.home(), name).pidFile()).strip());
        String commandLine = ProcessHandle.of(pid).orElseThrow().info().commandLine().orElseThrow();
        return homesIn(commandLine);
    }

    private static List<String> homesIn(String commandLine) {
        return java.util.Arrays.stream(commandLine.split(" "))
                .filter(arg -> arg.startsWith("-Dmicrosandbox.home="))
                .map(arg -> arg.substring("-Dmicrosandbox.home=".length()))
                .toList();
    }

    /** Each home gets a spare supervisor of its own, started by this JVM with that home. */
    private static void waitForSpares(Path... homes) throws InterruptedException {
        Set<String> wanted = java.util.Arrays.stream(homes).map(Path::toString).collect(Collectors.toSet());
        Set<String> seen = Set.of();
        for (int i = 0; i < 200 && !seen.containsAll(wanted); i++) {
            Thread.sleep(100);
            seen = ProcessHandle.current().children()
                    .map(p -> p.info().commandLine().orElse(""))
                    .filter(cmd -> cmd.contains(Supervisor.class.getName()))
                    .flatMap(cmd -> homesIn(cmd).stream())
                    .collect(Collectors.toSet());
        }
        assertThat(seen).containsAll(wanted);
    }
}

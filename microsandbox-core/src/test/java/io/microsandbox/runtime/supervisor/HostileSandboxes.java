package io.microsandbox.runtime.supervisor;

import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.store.SandboxStore;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Sandboxes whose "VM" is a {@link HostileAgent}: a real supervisor, a real database record
 * and real client connections, with the stand-in agent launched where QEMU would be. No
 * production code knows about it: the test writes the supervisor spec itself.
 */
final class HostileSandboxes {
    private static final AtomicInteger COUNTER = new AtomicInteger();

    private HostileSandboxes() {
    }

    /** A booted sandbox and the creator pipe that keeps it attached to this JVM. */
    record Booted(String name, Sandbox sandbox, SupervisorProcess supervisor) implements AutoCloseable {
        /**
         * Ends the test's hold on it (the connection, then the creator pipe, which stops an
         * attached sandbox) and removes it once it has ended: tests leave nothing behind.
         */
        @Override
        public void close() {
            try {
                sandbox.detach();
            } catch (RuntimeException ignored) {
                // already released by the test
            }
            supervisor.release();
            try {
                HostileGuestIT.awaitTerminal(name);
                Sandbox.remove(name);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (RuntimeException | AssertionError e) {
                // the test itself removed it, or it would not end: the failure shows elsewhere
            }
        }
    }

    static Booted boot(String scenario) throws Exception {
        return boot(scenario, 30_000);
    }

    static Booted boot(String scenario, long bootTimeoutMs) throws Exception {
        return boot(scenario, bootTimeoutMs, null, false);
    }

    /**
     * Boots a stand-in whose boot fails, as a {@code start} of an existing sandbox would: its
     * record stays (only a failed creation removes it) for the test to read and remove.
     *
     * @return the sandbox's name
     */
    static Failed bootFailingKeepingRecord(String scenario) throws Exception {
        String name = uniqueName(scenario);
        try {
            boot(name, scenario, 30_000, null, true).close();
        } catch (io.microsandbox.MicrosandboxException e) {
            return new Failed(name, e);
        }
        throw new AssertionError("the boot of scenario " + scenario + " did not fail");
    }

    /**
     * Boots a stand-in whose boot may fail or succeed (and end before the connection): its
     * record stays either way, and a sandbox that booted is left to end by itself.
     *
     * @return the sandbox's name
     */
    static String bootKeepingRecord(String scenario) throws Exception {
        String name = uniqueName(scenario);
        try {
            boot(name, scenario, 30_000, null, true).sandbox().detach();
        } catch (io.microsandbox.MicrosandboxException e) {
            // failed, or booted and ended before the connection
            assertThat(e.kind()).isIn(io.microsandbox.ErrorKind.BOOT_FAILED, io.microsandbox.ErrorKind.SANDBOX_NOT_RUNNING);
        }
        return name;
    }

    /** A boot that failed: the sandbox's name and what its creator was told. */
    record Failed(String name, io.microsandbox.MicrosandboxException failure) {
    }

    private static String uniqueName(String scenario) {
        return "hostile-" + scenario + "-" + ProcessHandle.current().pid() + "-" + COUNTER.incrementAndGet();
    }

    /**
     * Boots a stand-in resumed from a checkpoint ({@code restore-*} scenarios): the supervisor
     * runs the restore handshake, the stand-in serves the QMP socket.
     */
    static Booted bootRestored(String scenario, long bootTimeoutMs) throws Exception {
        return boot(scenario, bootTimeoutMs, Map.of("memory_uri", "exec:true"), false);
    }

    /** {@link #bootRestored(String, long)} with {@code ramFile} as the checkpoint's guest memory. */
    static Booted bootRestored(String scenario, long bootTimeoutMs, Path ramFile) throws Exception {
        return boot(scenario, bootTimeoutMs, Map.of("memory_uri", "exec:true", "ram_file", ramFile.toString()), false);
    }

    private static Booted boot(String scenario, long bootTimeoutMs, Map<String, Object> restore, boolean keepRecord) throws Exception {
        return boot(uniqueName(scenario), scenario, bootTimeoutMs, restore, keepRecord);
    }

    private static Booted boot(String name, String scenario, long bootTimeoutMs, Map<String, Object> restore, boolean keepRecord)
            throws Exception {
        Path home = RuntimeFiles.defaultHome();
        SandboxLayout layout = SandboxLayout.of(home, name);
        Files.createDirectories(layout.logsDir());
        Files.createDirectories(layout.runDir());
        SandboxConfig config = SandboxConfig.builder().image("/hostile-agent-has-no-image").build();
        SandboxStore.open(home).insert(name, config.toJson(), Map.of(), false, "running");
        List<String> agent = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xmx64m", "-cp", System.getProperty("java.class.path"), HostileAgent.class.getName(), scenario,
                layout.vmSocket().toString(), layout.qmpSocket().toString(), layout.statsMonitorSocket().toString());
        if (restore != null && !restore.containsKey("ram_file")) {
            // the supervisor fills the guest's memory from it while the stand-in starts
            Path ram = layout.dir().resolve("ram.bin");
            Files.write(ram, "guest memory".getBytes(java.nio.charset.StandardCharsets.UTF_8));
            restore = new java.util.HashMap<>(restore);
            restore.put("ram_file", ram.toString());
        }
        SupervisorSpec spec = new SupervisorSpec(name, agent, layout.dir().toString(), layout.runDir().toString(),
                Map.of("hostname", "hostile"), bootTimeoutMs, false, home.toString(), false, 0, 0, 0, restore);
        spec.write(layout.specFile());
        SupervisorProcess supervisor = SpareSupervisors.acquire();
        try {
            supervisor.boot(spec);
        } catch (RuntimeException e) {
            supervisor.abandon();
            if (!keepRecord) {
                SandboxStore.open(home).delete(name);
                layout.deleteFiles();
            }
            throw e;
        }
        return new Booted(name, Sandbox.connect(name), supervisor);
    }
}

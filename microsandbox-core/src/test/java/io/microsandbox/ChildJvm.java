package io.microsandbox;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A second JVM for lifecycle tests: creates a sandbox, prints {@code READY <supervisor pid>
 * <vmm pid>}, then either sleeps until killed ({@code attached}) or exits ({@code detached}).
 */
public final class ChildJvm {
    private ChildJvm() {
    }

    public static void main(String[] args) throws Exception {
        String mode = args[0];
        String name = args[1];
        SandboxConfig.Builder config = SandboxConfig.builder().image(args[2]).memoryMib(256);
        if (mode.equals("detached")) {
            config.detached();
        }
        Sandbox sb = Sandbox.create(name, config.build());
        var welcome = sb.exec("true", List.of());
        System.out.println("READY " + SandboxPids.of(name).supervisorPid() + " " + SandboxPids.of(name).vmmPid() + " " + welcome.exitCode());
        System.out.flush();
        if (mode.equals("attached")) {
            Thread.sleep(TimeUnit.MINUTES.toMillis(5));
        }
        // detached: exit without closing; the sandbox keeps running
        System.exit(0);
    }

    /** Starts this main in a new JVM with the test class path. */
    static Process start(String mode, String name) throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        return new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"),
                "-Dmicrosandbox.home=" + io.microsandbox.runtime.RuntimeFiles.defaultHome(),
                "-Dmicrosandbox.kernel.dir=" + System.getProperty("microsandbox.kernel.dir", ""),
                ChildJvm.class.getName(), mode, name, TestSandboxes.rootfs())
                .redirectError(ProcessBuilder.Redirect.INHERIT)
                .start();
    }

    /** Waits for the READY line and returns {supervisorPid, vmmPid}. */
    static long[] awaitReady(Process child) throws Exception {
        BufferedReader reader = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8));
        String line = reader.readLine();
        if (line == null || !line.startsWith("READY ")) {
            throw new AssertionError("child JVM did not get its sandbox ready: " + line);
        }
        String[] parts = line.split(" ");
        return new long[] {Long.parseLong(parts[1]), Long.parseLong(parts[2])};
    }
}

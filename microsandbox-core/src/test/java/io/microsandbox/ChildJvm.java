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
 * In {@code stream} mode ({@code stream-tty}: on a terminal, with a stdin pipe) it creates
 * nothing: it connects to the running sandbox, starts {@link #orphanMarker(String) a command
 * that prints forever}, prints {@code STREAMING <guest pid>} once output flows, and reads that
 * output until it is killed.
 */
public final class ChildJvm {
    private ChildJvm() {
    }

    public static void main(String[] args) throws Exception {
        String mode = args[0];
        String name = args[1];
        if (mode.startsWith("stream")) {
            stream(name, mode.equals("stream-tty"));
            return;
        }
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

    private static void stream(String name, boolean tty) {
        Sandbox sb = Sandbox.connect(name);
        ExecHandle handle = sb.execStream("sh", List.of("-c", "n=0; while :; do echo tick-$n; n=$((n+1)); sleep 0.1; done",
                orphanMarker(name)), tty ? ExecOptions.builder().tty(24, 80).stdinPipe().build() : ExecOptions.defaults());
        ExecEvent event = handle.recv();
        if (!(event instanceof ExecEvent.Started started)) {
            throw new IllegalStateException("the streamed command did not start: " + event);
        }
        while (!((event = handle.recv()) instanceof ExecEvent.Stdout)) {
            if (event == null || event instanceof ExecEvent.Done) {
                throw new IllegalStateException("the streamed command ended before its first output");
            }
        }
        System.out.println("STREAMING " + started.pid());
        System.out.flush();
        while (handle.recv() != null) {
            // keep reading until this JVM is killed
        }
        System.exit(1);
    }

    /** What the command of {@code stream} mode carries in its guest command line ({@code $0}), for pgrep -f. */
    static String orphanMarker(String name) {
        return "msb-orphan-" + name;
    }

    /** Starts this main in a new JVM with the test class path. */
    static Process start(String mode, String name) throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        // no hsperfdata file: these JVMs are killed with SIGKILL, which would leave it in /tmp
        return new ProcessBuilder(java, "-XX:-UsePerfData", "-cp", System.getProperty("java.class.path"),
                "-Dmicrosandbox.home=" + io.microsandbox.runtime.RuntimeFiles.defaultHome(),
                "-Dmicrosandbox.kernel.dir=" + System.getProperty("microsandbox.kernel.dir", ""),
                ChildJvm.class.getName(), mode, name, TestSandboxes.rootfs())
                .redirectError(ProcessBuilder.Redirect.INHERIT)
                .start();
    }

    /** Waits for the READY line and returns {supervisorPid, vmmPid}. */
    static long[] awaitReady(Process child) throws Exception {
        String[] parts = awaitLine(child, "READY");
        return new long[] {Long.parseLong(parts[1]), Long.parseLong(parts[2])};
    }

    /** Waits for the child's first line, which must start with {@code word}, and returns its words. */
    static String[] awaitLine(Process child, String word) throws Exception {
        BufferedReader reader = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8));
        String line = reader.readLine();
        if (line == null || !line.startsWith(word + " ")) {
            throw new AssertionError("child JVM did not say " + word + ": " + line);
        }
        return line.split(" ");
    }
}

package io.microsandbox;

import io.microsandbox.runtime.RuntimeFiles;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;
import static org.assertj.core.api.Assertions.assertThat;

/** Shared helpers of the VM integration tests. */
public final class TestSandboxes {
    private static final AtomicInteger COUNTER = new AtomicInteger();

    private TestSandboxes() {
    }

    /** The Debian test image that scripts/build-test-image.sh builds. */
    public static String rootfs() {
        String configured = System.getProperty("msb.test.rootfs");
        Path path = configured != null && !configured.isBlank()
                ? Path.of(configured)
                : RuntimeFiles.defaultHome().resolve("test-images").resolve("debian-python");
        if (!Files.isDirectory(path)) {
            throw new IllegalStateException("test image " + path + " is missing; run scripts/setup.sh");
        }
        return path.toString();
    }

    /** The heap in use after a few collections, to compare before and after some work. */
    public static long usedHeapAfterGc() throws InterruptedException {
        Runtime rt = Runtime.getRuntime();
        for (int i = 0; i < 3; i++) {
            System.gc();
            Thread.sleep(50);
        }
        return rt.totalMemory() - rt.freeMemory();
    }

    /** A sandbox name unique to this test run. */
    public static String uniqueName(String prefix) {
        return "it-" + prefix + "-" + ProcessHandle.current().pid() + "-" + COUNTER.incrementAndGet();
    }

    /**
     * What a running command printed on stdout up to its first line's end (a command that
     * signals it reached a state and then waits), failing if it ends or fails first.
     */
    public static String firstLine(ExecHandle command, String what) throws Exception {
        StringBuilder printed = new StringBuilder();
        while (!printed.toString().endsWith("\n")) {
            ExecEvent event = command.recv(Duration.ofSeconds(120));
            assertThat(event).as(what + ", after printing %s", printed)
                    .isInstanceOfAny(ExecEvent.Started.class, ExecEvent.Stdout.class, ExecEvent.Stderr.class);
            if (event instanceof ExecEvent.Stdout out) {
                printed.append(out.text());
            }
        }
        return printed.toString();
    }

    /** A host port free now, for a sandbox to publish. */
    public static int freePort() throws java.io.IOException {
        try (java.net.ServerSocket free = new java.net.ServerSocket(0)) {
            return free.getLocalPort();
        }
    }

    public static SandboxConfig.Builder config() {
        return SandboxConfig.builder().image(rootfs()).memoryMib(256);
    }
}

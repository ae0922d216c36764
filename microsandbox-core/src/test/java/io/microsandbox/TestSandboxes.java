package io.microsandbox;

import io.microsandbox.runtime.RuntimeFiles;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicInteger;

/** Shared helpers of the VM integration tests. */
final class TestSandboxes {
    private static final AtomicInteger COUNTER = new AtomicInteger();

    private TestSandboxes() {
    }

    /** The Debian test image that scripts/build-test-image.sh builds. */
    static String rootfs() {
        String configured = System.getProperty("msb.test.rootfs");
        Path path = configured != null && !configured.isBlank()
                ? Path.of(configured)
                : RuntimeFiles.defaultHome().resolve("test-images").resolve("debian-python");
        if (!Files.isDirectory(path)) {
            throw new IllegalStateException("test image " + path + " is missing; run scripts/setup.sh");
        }
        return path.toString();
    }

    /** A sandbox name unique to this test run. */
    static String uniqueName(String prefix) {
        return "it-" + prefix + "-" + ProcessHandle.current().pid() + "-" + COUNTER.incrementAndGet();
    }

    static SandboxConfig.Builder config() {
        return SandboxConfig.builder().image(rootfs()).memoryMib(256);
    }
}

package io.microsandbox.samples;

import io.microsandbox.ExecOutput;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import java.util.List;
import java.util.Map;

/**
 * Boots a sandbox from an image, runs Python in it and shuts it down. The image is a root
 * filesystem directory, an OCI image reference (pulled with a progress bar on the terminal),
 * an OCI layout directory or an image tarball.
 *
 * <pre>
 * java -cp ... io.microsandbox.samples.HelloSandbox /path/to/rootfs
 * java -cp ... io.microsandbox.samples.HelloSandbox python:3.12
 * </pre>
 */
public final class HelloSandbox {
    private HelloSandbox() {
    }

    public static void main(String[] args) {
        String image = args.length > 0 ? args[0] : System.getProperty("user.home") + "/.microsandbox/test-images/debian-python";
        long start = System.nanoTime();
        try (Sandbox sb = Sandbox.create("hello", SandboxConfig.builder()
                .image(image)
                .pullProgress(new PullProgressBar())  // per-layer progress of an OCI pull
                .memoryMib(512)
                .cpus(1)
                .env(Map.of("GREETING", "hi"))
                .ephemeral(true)                      // nothing is kept once it stops
                .build())) {
            System.out.printf("sandbox '%s' booted in %d ms%n", sb.name(), (System.nanoTime() - start) / 1_000_000);
            ExecOutput out = sb.exec("python3", List.of("-c",
                    "import os, platform; print(os.environ['GREETING'], 'from', platform.node(), '-', 2 + 2)"));
            System.out.print(out.stdout());
            System.out.println("exit code " + out.exitCode());
        }
    }
}

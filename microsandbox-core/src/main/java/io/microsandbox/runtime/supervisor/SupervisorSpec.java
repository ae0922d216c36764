package io.microsandbox.runtime.supervisor;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.SandboxLayout;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * Everything a supervisor process needs to boot and serve one sandbox, written by the
 * creating client to {@code supervisor.json} in the sandbox directory.
 *
 * @param name          sandbox name
 * @param vmmArgv       the complete QEMU command line
 * @param sandboxDir    the sandbox's state directory
 * @param runDir        directory of its sockets (short path, Unix socket paths are limited)
 * @param configure     payload of {@code core.configure}: hostname, env, workdir, user
 * @param bootTimeoutMs how long to wait for {@code core.ready}
 * @param detached      whether the sandbox ignores the end of its creator from the start
 * @param home          the microsandbox home, for the sandbox database
 * @param ephemeral     remove all state once the sandbox has stopped
 * @param idleTimeoutMs stop after this long without exec activity, 0 for never
 * @param maxDurationMs stop after this long, 0 for never
 * @param restore       null for a boot; for a restore from a memory checkpoint (QEMU started with
 *                      {@code -incoming}), what {@code core.restore} carries beside fresh entropy
 *                      and the clock: an optional {@code hostname}
 */
public record SupervisorSpec(String name, List<String> vmmArgv, String sandboxDir, String runDir,
                             Map<String, Object> configure, long bootTimeoutMs, boolean detached,
                             String home, boolean ephemeral, long idleTimeoutMs, long maxDurationMs,
                             Map<String, Object> restore) {
    private static final ObjectMapper JSON = new ObjectMapper();

    public SandboxLayout layout() {
        return new SandboxLayout(name, Path.of(sandboxDir), Path.of(runDir));
    }

    /** Writes the spec atomically, {@code 0600}: it holds the sandbox's environment values. */
    public void write(Path file) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        OwnerOnly.write(tmp, JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(this));
        Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    public static SupervisorSpec read(Path file) throws IOException {
        return JSON.readValue(file.toFile(), SupervisorSpec.class);
    }

    /**
     * Writes and reads back a spec shaped like a real one, so that a spare supervisor has
     * Jackson's record and map handling ready before its spec arrives (done cold, reading the
     * spec took about 40 ms of every boot here).
     */
    static void warmUp() throws IOException {
        Map<String, Object> nested = Map.of("list", List.of("text", 1, true), "map", Map.of("n", 1L));
        SupervisorSpec sample = new SupervisorSpec("warm-up", List.of("qemu", "-m", "512"), "/", "/", nested, 1,
                false, "/", true, 1, 1, nested);
        JSON.readValue(JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(sample), SupervisorSpec.class);
    }
}

package io.microsandbox.runtime.supervisor;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.SandboxLayout;
import java.io.IOException;
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
 * @param cacheReclaimAfterMs have the guest drop its page cache after this long without exec
 *                      activity, 0 for never
 * @param maxDurationMs stop after this long, 0 for never
 * @param restore       null for a boot; for a restore from a memory checkpoint (QEMU started with
 *                      {@code -incoming}), what {@code core.restore} carries beside fresh entropy
 *                      and the clock: an optional {@code hostname}
 */
public record SupervisorSpec(String name, List<String> vmmArgv, String sandboxDir, String runDir,
                             Map<String, Object> configure, long bootTimeoutMs, boolean detached,
                             String home, boolean ephemeral, long idleTimeoutMs, long cacheReclaimAfterMs, long maxDurationMs,
                             Map<String, Object> restore) {
    public SandboxLayout layout() {
        return new SandboxLayout(name, Path.of(sandboxDir), Path.of(runDir));
    }

    /** Writes the spec atomically, {@code 0600}: it holds the sandbox's environment values. */
    public void write(Path file) throws IOException {
        OwnerOnly.write(file, Json.pretty(toJson()));
    }

    /**
     * Reads a spec {@link #write} wrote.
     *
     * @throws IOException when the file cannot be read or is no spec, naming the field that is wrong
     */
    public static SupervisorSpec read(Path file) throws IOException {
        return fromJson(Json.parse(file));
    }

    ObjectNode toJson() {
        ObjectNode n = Json.object();
        n.put("name", name);
        n.set("vmmArgv", Json.tree(vmmArgv));
        n.put("sandboxDir", sandboxDir);
        n.put("runDir", runDir);
        n.set("configure", Json.tree(configure));
        n.put("bootTimeoutMs", bootTimeoutMs);
        n.put("detached", detached);
        n.put("home", home);
        n.put("ephemeral", ephemeral);
        n.put("idleTimeoutMs", idleTimeoutMs);
        n.put("cacheReclaimAfterMs", cacheReclaimAfterMs);
        n.put("maxDurationMs", maxDurationMs);
        n.set("restore", Json.tree(restore));
        return n;
    }

    static SupervisorSpec fromJson(JsonNode n) throws IOException {
        if (!n.isObject()) {
            throw new IOException("a supervisor spec must be a JSON object, not " + n.getNodeType());
        }
        return new SupervisorSpec(Json.string(n, "name"), Json.strings(n, "vmmArgv"), Json.string(n, "sandboxDir"),
                Json.string(n, "runDir"), map(n, "configure"), Json.integer(n, "bootTimeoutMs"), Json.bool(n, "detached"),
                Json.string(n, "home"), Json.bool(n, "ephemeral"), Json.integer(n, "idleTimeoutMs"),
                Json.integer(n, "cacheReclaimAfterMs"), Json.integer(n, "maxDurationMs"), map(n, "restore"));
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> map(JsonNode n, String field) throws IOException {
        ObjectNode value = Json.object(n, field);
        return value == null ? null : (Map<String, Object>) Json.plain(value);
    }

    /**
     * Writes and reads back a spec shaped like a real one, so that a spare supervisor has the
     * JSON parser and generator ready before its spec arrives.
     */
    static void warmUp() throws IOException {
        Map<String, Object> nested = Map.of("list", List.of("text", 1, true), "map", Map.of("n", 1L));
        SupervisorSpec sample = new SupervisorSpec("warm-up", List.of("qemu", "-m", "512"), "/", "/", nested, 1,
                false, "/", true, 1, 1, 1, nested);
        fromJson(Json.parse(Json.pretty(sample.toJson())));
    }
}

package io.microsandbox.runtime.network;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.Secret;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.OwnerOnly;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The hand-over of a sandbox's secrets from the creator to its supervisor: {@code secrets.json}
 * in the sandbox directory, owner-only (0600), written just before the supervisor starts and
 * deleted by the supervisor as soon as it has read it, so the values live on only in the
 * supervisor's memory. Nothing else (config JSON, database, logs, the guest) ever holds them.
 */
public final class SecretFile {

    private SecretFile() {
    }

    static Path file(Path sandboxDir) {
        return sandboxDir.resolve("secrets.json");
    }

    /** Writes the secrets for the next supervisor to read; with none, removes a stale file. */
    public static void write(Path sandboxDir, List<Secret> secrets) throws IOException {
        Files.deleteIfExists(file(sandboxDir));
        if (secrets.isEmpty()) {
            return;
        }
        ArrayNode arr = Json.array();
        for (Secret s : secrets) {
            ObjectNode n = arr.addObject();
            n.put("name", s.name()).put("value", s.value()).put("placeholder", s.placeholder())
                    .put("requireTls", s.requireTls()).put("onViolation", s.onViolation().name());
            s.allowHosts().forEach(n.putArray("allowHosts")::add);
            s.allowHostPatterns().forEach(n.putArray("allowHostPatterns")::add);
        }
        OwnerOnly.write(file(sandboxDir), Json.bytes(arr));
    }

    /** Deletes the file if it is still there (the supervisor did not start); never fails. */
    public static void discard(Path sandboxDir) {
        try {
            Files.deleteIfExists(file(sandboxDir));
        } catch (IOException e) {
            // the sandbox directory itself is removed with a failed create
        }
    }

    /** Reads the secrets and deletes the file; none when there is no file. */
    public static List<Secret> take(Path sandboxDir) throws IOException {
        Path f = file(sandboxDir);
        if (!Files.exists(f)) {
            return List.of();
        }
        try {
            List<Secret> out = new ArrayList<>();
            for (JsonNode n : Json.parse(f)) {
                List<String> hosts = new ArrayList<>();
                n.path("allowHosts").forEach(h -> hosts.add(h.asText()));
                List<String> patterns = new ArrayList<>();
                n.path("allowHostPatterns").forEach(h -> patterns.add(h.asText()));
                out.add(Secret.env(n.path("name").asText(), n.path("value").asText(), hosts, patterns,
                        n.path("placeholder").asText(), n.path("requireTls").asBoolean(true),
                        Secret.Violation.valueOf(n.path("onViolation").asText("BLOCK_AND_LOG"))));
            }
            return out;
        } finally {
            Files.deleteIfExists(f);
        }
    }
}

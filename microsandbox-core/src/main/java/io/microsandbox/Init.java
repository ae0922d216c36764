package io.microsandbox;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A custom init for the guest's PID 1, see {@link SandboxConfig.Builder#init(Init)}: after the
 * agent's boot-time setup (root, mounts, scripts), PID 1 becomes the init (systemd, tini, ...)
 * while the agent keeps serving from a child process. A graceful stop asks the init to power
 * off ({@code SIGRTMIN+4} for systemd, {@code SIGTERM} for others), then the agent powers off
 * itself if the init has not within a few seconds, then the usual escalation.
 *
 * <pre>{@code
 * .init(Init.auto())
 * .init(Init.cmd("/lib/systemd/systemd", List.of("--unit=multi-user.target"), Map.of()))
 * }</pre>
 */
public final class Init {
    /** The command value that asks for detection. */
    public static final String AUTO = "auto";
    /** Inits recognised at the start of an image's entrypoint by {@link #auto()}. */
    static final List<String> KNOWN_INITS = List.of("systemd", "init", "tini", "dumb-init", "catatonit", "s6-svscan", "runit", "openrc-init");

    private final String cmd;
    private final List<String> args;
    private final Map<String, String> env;

    private Init(String cmd, List<String> args, Map<String, String> env) {
        this.cmd = cmd;
        this.args = List.copyOf(args);
        this.env = java.util.Collections.unmodifiableMap(new LinkedHashMap<>(env));
    }

    /**
     * A known init at the start of the image's entrypoint (with the entrypoint's further
     * arguments), else the first of {@code /sbin/init}, {@code /lib/systemd/systemd},
     * {@code /usr/lib/systemd/systemd} that the guest has.
     */
    public static Init auto() {
        return new Init(AUTO, List.of(), Map.of());
    }

    /** The init at {@code path} (absolute, inside the guest), with these arguments and extra environment variables. */
    public static Init cmd(String path, List<String> args, Map<String, String> env) {
        return new Init(Objects.requireNonNull(path, "path"), Objects.requireNonNull(args, "args"), Objects.requireNonNull(env, "env"));
    }

    /** The init at {@code path} (absolute, inside the guest) without arguments. */
    public static Init cmd(String path) {
        return cmd(path, List.of(), Map.of());
    }

    /** The init's absolute guest path, or {@link #AUTO}. */
    public String command() {
        return cmd;
    }

    /** Arguments after argv[0] (which is the command). */
    public List<String> args() {
        return args;
    }

    /** Variables added to the environment the kernel gives PID 1. */
    public Map<String, String> env() {
        return env;
    }

    /** Why this init cannot work, or null. */
    String problem() {
        if (!cmd.equals(AUTO) && (!cmd.startsWith("/") || cmd.indexOf('\0') >= 0)) {
            return "init command '" + cmd + "' must be an absolute guest path or \"auto\"";
        }
        if (cmd.equals(AUTO) && !args.isEmpty()) {
            return "Init.auto() takes no arguments";
        }
        for (String a : args) {
            if (a == null || a.indexOf('\0') >= 0) {
                return "init arguments must be text without NUL";
            }
        }
        return GuestLimits.envProblem(env);
    }

    /**
     * The init the agent gets: for {@link #auto()} the image's entrypoint when it starts with a
     * known init, else {@code this} (the agent probes).
     */
    public Init resolve(List<String> imageEntrypoint) {
        if (!cmd.equals(AUTO) || imageEntrypoint == null || imageEntrypoint.isEmpty()) {
            return this;
        }
        String first = imageEntrypoint.get(0);
        String base = first.substring(first.lastIndexOf('/') + 1);
        if (first.startsWith("/") && KNOWN_INITS.contains(base)) {
            return new Init(first, imageEntrypoint.subList(1, imageEntrypoint.size()), env);
        }
        return this;
    }

    ObjectNode toJson() {
        ObjectNode n = JsonNodeFactory.instance.objectNode();
        n.put("cmd", cmd);
        n.set("args", JsonNodeFactory.instance.arrayNode().addAll(args.stream().map(JsonNodeFactory.instance::textNode).toList()));
        ObjectNode e = n.putObject("env");
        env.forEach(e::put);
        return n;
    }

    static Init fromJson(JsonNode n) {
        List<String> args = new ArrayList<>();
        n.path("args").forEach(a -> args.add(a.asText()));
        Map<String, String> env = new LinkedHashMap<>();
        n.path("env").fields().forEachRemaining(f -> env.put(f.getKey(), f.getValue().asText()));
        return new Init(n.path("cmd").asText(AUTO), args, env);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Init i && cmd.equals(i.cmd) && args.equals(i.args) && env.equals(i.env);
    }

    @Override
    public int hashCode() {
        return Objects.hash(cmd, args, env);
    }

    @Override
    public String toString() {
        return "Init" + toJson();
    }
}

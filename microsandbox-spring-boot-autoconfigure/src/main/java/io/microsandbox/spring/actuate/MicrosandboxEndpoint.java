package io.microsandbox.spring.actuate;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.Metrics;
import io.microsandbox.Microsandbox;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxHandle;
import io.microsandbox.runtime.Json;
import io.microsandbox.spring.pool.PoolMemberView;
import io.microsandbox.spring.pool.PoolStats;
import io.microsandbox.spring.pool.SandboxPool;
import io.microsandbox.spring.pool.WarmStartStats;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.springframework.boot.actuate.endpoint.Access;
import org.springframework.boot.actuate.endpoint.InvalidEndpointRequestException;
import org.springframework.boot.actuate.endpoint.annotation.Endpoint;
import org.springframework.boot.actuate.endpoint.annotation.ReadOperation;
import org.springframework.boot.actuate.endpoint.annotation.Selector;
import org.springframework.boot.actuate.endpoint.annotation.WriteOperation;
import org.springframework.lang.Nullable;

/**
 * Actuator endpoint {@code microsandbox}:
 * <ul>
 * <li>{@code GET /actuator/microsandbox}: the runtime, the pool's counts and every sandbox under
 *     the home with status, pool state and latest metrics;</li>
 * <li>{@code GET /actuator/microsandbox/{name}}: one sandbox, with live metrics when it runs and
 *     its configuration, environment values masked;</li>
 * <li>{@code POST /actuator/microsandbox/{name}} {@code {"action":"drain|stop|kill"}}: acts on one
 *     of this application's pool members (a sandbox labelled with this pool and instance):
 *     {@code drain} and {@code stop} retire a member softly (a lent one once it comes back, so
 *     no borrower is disturbed), {@code kill} ends it at once; a sandbox of this pool that is
 *     not a member (still booting, or left over) is drained, stopped or killed directly;</li>
 * <li>{@code POST /actuator/microsandbox} {@code {"action":"drain"}}: drain every pool member (the pool warms up again).</li>
 * </ul>
 * Like Spring Boot's {@code shutdown} endpoint, its write operations are off unless enabled
 * ({@code management.endpoint.microsandbox.access=unrestricted}): exposing the endpoint shows
 * the sandboxes, it does not let every caller stop them.
 */
@Endpoint(id = "microsandbox", defaultAccess = Access.READ_ONLY)
public class MicrosandboxEndpoint {

    private final Microsandbox runtime;
    private final SandboxPool pool;

    /** The endpoint over {@code runtime}'s sandboxes and, when there is one, {@code pool}'s members. */
    public MicrosandboxEndpoint(Microsandbox runtime, @Nullable SandboxPool pool) {
        this.runtime = runtime;
        this.pool = pool;
    }

    /** {@code GET /actuator/microsandbox}: every sandbox of the home and the pool's state. */
    @ReadOperation
    public Map<String, Object> sandboxes() {
        Map<String, Object> body = new LinkedHashMap<>();
        Map<String, Object> rt = new LinkedHashMap<>();
        rt.put("home", String.valueOf(runtime.home()));
        rt.put("accelerator", String.valueOf(runtime.accelerator()));
        String problem = runtime.describeInstallProblem();
        rt.put("installed", problem == null);
        if (problem != null) {
            rt.put("problem", problem);
        }
        body.put("runtime", rt);
        if (pool != null) {
            body.put("pool", poolInfo());
        }
        List<Map<String, Object>> list = new ArrayList<>();
        for (SandboxHandle h : runtime.list()) {
            list.add(describe(h, null));
        }
        body.put("sandboxes", list);
        return body;
    }

    /** {@code GET /actuator/microsandbox/{name}}: one sandbox, its live metrics and masked configuration; 404 when none. */
    @ReadOperation
    public Map<String, Object> sandbox(@Selector String name) {
        Optional<SandboxHandle> h = find(name);
        if (h.isEmpty()) {
            return null;
        }
        Metrics live = null;
        if (!h.get().status().isTerminal()) {
            try {
                Sandbox sb = runtime.connect(name);
                try {
                    live = sb.metrics();
                } finally {
                    sb.detach();
                }
            } catch (MicrosandboxException e) {
                // stopped meanwhile
            }
        }
        Map<String, Object> d = describe(h.get(), live);
        d.put("config", maskedConfig(h.get().configJson()));
        h.get().lastStop().ifPresent(stop -> d.put("lastStop", String.valueOf(stop)));
        return d;
    }

    /** {@code POST /actuator/microsandbox/{name}} with {@code drain}, {@code stop} or {@code kill}. */
    @WriteOperation
    public Map<String, Object> operate(@Selector String name, String action) {
        if (!List.of("drain", "stop", "kill").contains(action)) {
            throw new InvalidEndpointRequestException("action must be drain, stop or kill, got '" + action + "'", "bad action");
        }
        SandboxHandle handle = ownMember(name);
        boolean member = pool.member(name).isPresent();
        if (!member && !action.equals("drain")) {
            pool.cancelBoot(name); // stopped on purpose, should it be booting: no failed boot, no back-off
        }
        try {
            switch (action) {
                case "drain" -> {
                    if (member) {
                        pool.evict(name);
                    } else {
                        handle.requestDrain();
                    }
                }
                case "stop" -> {
                    if (member) {
                        pool.evict(name);
                    } else {
                        handle.requestStop(); // asked, not waited for: the request thread is not held for the stop
                    }
                }
                default -> {
                    if (member) {
                        pool.kill(name);
                    } else {
                        handle.kill();
                    }
                }
            }
        } catch (MicrosandboxException e) {
            // a leftover already stopped, say: the caller's request does not apply, the endpoint has not failed
            throw new InvalidEndpointRequestException("cannot " + action + " sandbox '" + name + "': " + e.getMessage(), e.kind().name());
        }
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("name", name);
        result.put("action", action);
        result.put("poolMember", member);
        // a lent member is only marked: it is drained when its borrower returns it
        pool.member(name).ifPresent(m -> result.put("poolState", m.state()));
        return result;
    }

    /** {@code POST /actuator/microsandbox} with {@code drain}: drains every pool member. */
    @WriteOperation
    public Map<String, Object> drainPool(String action) {
        if (!"drain".equals(action)) {
            throw new InvalidEndpointRequestException("action must be drain, got '" + action + "'", "bad action");
        }
        requirePool("drain");
        int n = pool.members().size();
        pool.evictAll();
        return Map.of("action", "drain", "pool", pool.name(), "members", n);
    }

    /** Refuses, saying why, when the application has no single pool for the endpoint to {@code act} on. */
    private void requirePool(String act) {
        if (pool == null) {
            throw new InvalidEndpointRequestException("there is no single pool to " + act
                    + " (microsandbox.pool.enabled=false, or several pools)", "no pool");
        }
    }

    private Optional<SandboxHandle> find(String name) {
        try {
            return runtime.find(name);
        } catch (MicrosandboxException e) {
            if (e.kind() == io.microsandbox.ErrorKind.INVALID_ARGUMENT) {
                throw new InvalidEndpointRequestException(e.getMessage(), "bad sandbox name");
            }
            throw e;
        }
    }

    /**
     * The sandbox, when it belongs to this application's pool (its labels name this pool and
     * instance, booting members included): the endpoint never stops another application's
     * sandboxes, or another replica's members, that share the home.
     */
    private SandboxHandle ownMember(String name) {
        requirePool("act on");
        Optional<SandboxHandle> handle = find(name)
                .filter(h -> pool.name().equals(h.labels().get(SandboxPool.POOL_LABEL))
                        && pool.instanceId().equals(h.labels().get(SandboxPool.INSTANCE_LABEL)));
        if (handle.isEmpty()) {
            throw new InvalidEndpointRequestException("sandbox '" + name + "' is not a member of pool '" + pool.name()
                    + "' (instance '" + pool.instanceId() + "'): the endpoint stops only this application's pool members", "not a pool member");
        }
        return handle.get();
    }

    /**
     * The stored configuration with every value that may hold a credential masked, as Spring
     * Boot's {@code env} endpoint does: environment values (the sandbox's and a custom init's),
     * scripts, and the content of files patched in.
     */
    static Object maskedConfig(String configJson) {
        try {
            JsonNode config = Json.parse(configJson);
            mask(config);
            return Json.plain(config);
        } catch (java.io.IOException e) {
            return "unreadable: " + e.getMessage();
        }
    }

    private static final String MASK = "******";

    private static void mask(JsonNode node) {
        if (node instanceof ObjectNode object) {
            maskValues(object.get("env"));
            maskValues(object.get("scripts"));
            if (object.get("patches") instanceof ArrayNode patches) {
                patches.forEach(patch -> {
                    if (patch instanceof ObjectNode p && p.hasNonNull("content")) {
                        p.put("content", MASK);
                    }
                });
            }
            object.elements().forEachRemaining(MicrosandboxEndpoint::mask);
        } else if (node != null && node.isArray()) {
            node.elements().forEachRemaining(MicrosandboxEndpoint::mask);
        }
    }

    private static void maskValues(JsonNode node) {
        if (node instanceof ObjectNode values) {
            List<String> keys = new ArrayList<>();
            values.fieldNames().forEachRemaining(keys::add);
            keys.forEach(key -> values.put(key, MASK));
        }
    }

    private Map<String, Object> poolInfo() {
        PoolStats s = pool.stats();
        Map<String, Object> p = new LinkedHashMap<>();
        p.put("name", pool.name());
        p.put("instance", pool.instanceId());
        p.put("idle", s.idle());
        p.put("active", s.active());
        p.put("pending", s.pending());
        p.put("stopping", s.stopping());
        p.put("waiting", s.waiting());
        p.put("minIdle", s.minIdle());
        p.put("maxSize", s.maxSize());
        p.put("failedBoots", s.totalBootFailures());
        if (s.lastBootError() != null) {
            p.put("lastBootError", s.lastBootError());
        }
        WarmStartStats w = pool.warmStartStats();
        Map<String, Object> warm = new LinkedHashMap<>();
        warm.put("mode", w.mode());
        warm.put("booted", w.booted());
        warm.put("restored", w.restored());
        if (w.mode().equals("checkpoint")) {
            warm.put("checkpoint", w.checkpoint());
            warm.put("checkpointsTaken", w.checkpointsTaken());
            warm.put("checkpointRefreshes", w.checkpointRefreshes());
            warm.put("lastCheckpointError", w.lastCheckpointError());
        }
        p.put("warmStart", warm);
        return p;
    }

    private Map<String, Object> describe(SandboxHandle h, Metrics live) {
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("name", h.name());
        d.put("status", h.status().wireName());
        d.put("labels", h.labels());
        d.put("createdAt", String.valueOf(h.createdAt()));
        String poolName = h.labels().get(SandboxPool.POOL_LABEL);
        if (poolName != null) {
            d.put("pool", poolName);
        }
        Metrics metrics = live;
        if (pool != null) {
            Optional<PoolMemberView> m = pool.member(h.name());
            if (m.isPresent()) {
                d.put("poolState", m.get().state());
                d.put("origin", m.get().origin().tag());
                d.put("uses", m.get().uses());
                d.put("expiresAt", String.valueOf(m.get().expiresAt()));
                d.put("evictionPending", m.get().evictionPending());
                if (metrics == null) {
                    metrics = m.get().lastMetrics();
                }
            }
        }
        if (metrics != null) {
            Map<String, Object> md = new LinkedHashMap<>();
            md.put("cpuPercent", metrics.cpuPercent());
            md.put("memoryBytes", metrics.memoryBytes());
            md.put("memoryHostResidentBytes", metrics.memoryHostResidentBytes());
            md.put("memoryLimitBytes", metrics.memoryLimitBytes());
            md.put("diskReadBytes", metrics.diskReadBytes());
            md.put("diskWriteBytes", metrics.diskWriteBytes());
            md.put("upperUsedBytes", metrics.upperUsedBytes());
            md.put("uptimeMs", metrics.uptime() == null ? null : metrics.uptime().toMillis());
            d.put("metrics", md);
        }
        return d;
    }
}

package io.microsandbox.spring.actuate;

import io.microsandbox.Metrics;
import io.microsandbox.spring.pool.MemberOrigin;
import io.microsandbox.spring.pool.PoolListener;
import io.microsandbox.spring.pool.PoolMemberView;
import io.microsandbox.spring.pool.SandboxPool;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.binder.MeterBinder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.ToDoubleFunction;

/**
 * Meters of a {@link SandboxPool}, named like HikariCP's {@code hikaricp.connections.*}:
 * <ul>
 * <li>{@code microsandbox.pool.sandboxes} gauges tagged {@code state=idle|active|pending|stopping}, and
 *     {@code microsandbox.pool.sandboxes.min}, {@code .max}, {@code .waiting};</li>
 * <li>timers {@code microsandbox.pool.acquire}, {@code microsandbox.pool.boot},
 *     {@code microsandbox.pool.usage} (time lent), {@code microsandbox.pool.exec} (tag outcome);</li>
 * <li>counters {@code microsandbox.pool.created} (tag {@code source=boot|restore}: booted cold or
 *     restored from the pool's checkpoint; the boot timer carries the same tag), {@code .rotated}, {@code .discarded},
 *     {@code .crashed}, {@code .boot.failures}, {@code .timeouts} (acquire timeouts);</li>
 * <li>per sandbox with {@code microsandbox.pool.sandbox-metrics=true}, from the core's metrics,
 *     tagged {@code pool} and {@code sandbox} and removed when the sandbox goes: {@code microsandbox.sandbox.cpu} (percent of one core),
 *     {@code microsandbox.sandbox.memory.used}, {@code .memory.resident},
 *     {@code microsandbox.sandbox.disk.read}, {@code .disk.written} (bytes).</li>
 * </ul>
 * Every meter carries the tag {@code pool}.
 */
public class SandboxPoolMetrics implements MeterBinder, PoolListener {

    private final SandboxPool pool;
    private final Tags tags;
    private final List<MeterRegistry> registries = new ArrayList<>();
    private final Map<String, List<Meter>> perSandbox = new ConcurrentHashMap<>();

    public SandboxPoolMetrics(SandboxPool pool) {
        this.pool = pool;
        this.tags = Tags.of("pool", pool.name());
    }

    @Override
    public synchronized void bindTo(MeterRegistry registry) {
        // Spring Boot binds MeterBinder beans itself when its metrics auto-configuration is there
        // and a registry inside a bound composite already gets what the composite records
        for (MeterRegistry bound : registries) {
            if (bound == registry || contains(bound, registry)) {
                return;
            }
        }
        boolean first = registries.isEmpty();
        registries.removeIf(bound -> contains(registry, bound));
        registries.add(registry);
        gauge(registry, "microsandbox.pool.sandboxes", tags.and("state", "idle"), p -> p.stats().idle(), "Idle sandboxes");
        gauge(registry, "microsandbox.pool.sandboxes", tags.and("state", "active"), p -> p.stats().active(), "Lent sandboxes");
        gauge(registry, "microsandbox.pool.sandboxes", tags.and("state", "pending"), p -> p.stats().pending(), "Booting sandboxes");
        gauge(registry, "microsandbox.pool.sandboxes", tags.and("state", "stopping"), p -> p.stats().stopping(),
                "Sandboxes out of the pool still stopping (they count toward the maximum)");
        gauge(registry, "microsandbox.pool.sandboxes.min", tags, p -> p.settings().getMinIdle(), "Minimum idle sandboxes");
        gauge(registry, "microsandbox.pool.sandboxes.max", tags, p -> p.settings().getMaxSize(), "Maximum sandboxes");
        gauge(registry, "microsandbox.pool.sandboxes.waiting", tags, p -> p.stats().waiting(), "Borrowers waiting");
        if (first) {
            pool.addListener(this);
        } else {
            for (PoolMemberView m : pool.members()) {
                registerSandbox(registry, m);
            }
        }
    }

    /**
     * Stops recording and removes this pool's meters from the registries it was bound to: a
     * registry that outlives the pool (a parent context's) would go on showing a closed pool.
     */
    public synchronized void unbind() {
        pool.removeListener(this);
        for (MeterRegistry r : registries) {
            for (Meter m : List.copyOf(r.getMeters())) {
                if (m.getId().getName().startsWith("microsandbox.") && pool.name().equals(m.getId().getTag("pool"))) {
                    r.remove(m);
                }
            }
        }
        registries.clear();
        perSandbox.clear();
    }

    private static boolean contains(MeterRegistry outer, MeterRegistry inner) {
        return outer instanceof io.micrometer.core.instrument.composite.CompositeMeterRegistry composite
                && composite.getRegistries().contains(inner);
    }

    private void gauge(MeterRegistry registry, String name, Tags t, ToDoubleFunction<SandboxPool> f, String description) {
        Gauge.builder(name, pool, f).tags(t).description(description).register(registry);
    }

    private synchronized void each(java.util.function.Consumer<MeterRegistry> action) {
        for (MeterRegistry r : registries) {
            action.accept(r);
        }
    }

    private static Timer timer(MeterRegistry r, String name, Tags t, String description) {
        return Timer.builder(name).tags(t).description(description).register(r);
    }

    private static Counter counter(MeterRegistry r, String name, Tags t, String description) {
        return Counter.builder(name).tags(t).description(description).register(r);
    }

    @Override
    public void acquired(Duration waited) {
        each(r -> timer(r, "microsandbox.pool.acquire", tags, "Time to obtain a sandbox from the pool").record(waited));
    }

    @Override
    public void acquireTimedOut(Duration waited) {
        each(r -> counter(r, "microsandbox.pool.timeouts", tags, "Borrowers that got no sandbox in time").increment());
    }

    @Override
    public void created(Duration took, MemberOrigin origin) {
        Tags t = tags.and("source", origin.tag());
        each(r -> {
            timer(r, "microsandbox.pool.boot", t, "Time to start a pool sandbox (cold boot with warm-up, or restore)").record(took);
            counter(r, "microsandbox.pool.created", t, "Sandboxes started by the pool").increment();
        });
    }

    @Override
    public void bootFailed(Throwable error) {
        each(r -> counter(r, "microsandbox.pool.boot.failures", tags, "Sandboxes that did not boot").increment());
    }

    @Override
    public void returned(Duration lent) {
        each(r -> timer(r, "microsandbox.pool.usage", tags, "Time a sandbox was lent").record(lent));
    }

    @Override
    public void rotated(String name, String reason) {
        each(r -> counter(r, "microsandbox.pool.rotated", tags, "Members replaced for lifetime, uses or reset").increment());
    }

    @Override
    public void discarded(String name, String reason) {
        each(r -> counter(r, "microsandbox.pool.discarded", tags, "Members thrown away (timeout, unresponsive, lost, crashed)").increment());
    }

    @Override
    public void crashed(String name) {
        each(r -> counter(r, "microsandbox.pool.crashed", tags, "Members found stopped or crashed").increment());
    }

    @Override
    public void exec(long nanos, String outcome) {
        each(r -> Timer.builder("microsandbox.pool.exec").tags(tags.and("outcome", outcome))
                .description("Commands run through SandboxTemplate").register(r).record(Duration.ofNanos(nanos)));
    }

    @Override
    public void memberAdded(PoolMemberView member) {
        each(r -> registerSandbox(r, member));
    }

    /** The member's own meters in {@code r}, when they are asked for ({@code sandbox-metrics}). */
    private void registerSandbox(MeterRegistry r, PoolMemberView member) {
        if (!pool.settings().isSandboxMetrics()) {
            return;
        }
        Tags t = tags.and("sandbox", member.name());
        List<Meter> meters = perSandbox.computeIfAbsent(member.name(), k -> new java.util.concurrent.CopyOnWriteArrayList<>());
        meters.add(Gauge.builder("microsandbox.sandbox.cpu", member, m -> value(m, x -> x.cpuPercent()))
                .tags(t).description("CPU use of the VM, percent of one host core").register(r));
        meters.add(Gauge.builder("microsandbox.sandbox.memory.used", member, m -> value(m, x -> x.memoryBytes()))
                .tags(t).baseUnit("bytes").description("Memory in use inside the guest").register(r));
        meters.add(Gauge.builder("microsandbox.sandbox.memory.resident", member,
                        m -> value(m, x -> x.memoryHostResidentBytes() == null ? Double.NaN : x.memoryHostResidentBytes()))
                .tags(t).baseUnit("bytes").description("Host RSS of the VM").register(r));
        meters.add(Gauge.builder("microsandbox.sandbox.disk.read", member, m -> value(m, x -> x.diskReadBytes()))
                .tags(t).baseUnit("bytes").description("Bytes read from the VM's disks").register(r));
        meters.add(Gauge.builder("microsandbox.sandbox.disk.written", member, m -> value(m, x -> x.diskWriteBytes()))
                .tags(t).baseUnit("bytes").description("Bytes written to the VM's disks").register(r));
        if (pool.member(member.name()).isEmpty()) {
            // removed while these were made (the removal saw none of them): they would stay for ever
            memberRemoved(member.name());
            meters.forEach(r::remove);
        }
    }

    private static double value(PoolMemberView m, ToDoubleFunction<Metrics> f) {
        Metrics metrics = m.lastMetrics();
        return metrics == null ? Double.NaN : f.applyAsDouble(metrics);
    }

    @Override
    public void memberRemoved(String name) {
        List<Meter> meters = perSandbox.remove(name);
        if (meters != null) {
            each(r -> meters.forEach(r::remove));
        }
    }
}

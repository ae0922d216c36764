package io.microsandbox.spring.pool;

import io.microsandbox.Checkpoint;
import io.microsandbox.ErrorKind;
import io.microsandbox.ExecOptions;
import io.microsandbox.ExecOutput;
import io.microsandbox.Metrics;
import io.microsandbox.Microsandbox;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.RestoreOptions;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import io.microsandbox.SandboxFilter;
import io.microsandbox.SandboxHandle;
import io.microsandbox.SandboxStopResult;
import io.microsandbox.SandboxStatus;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxPreparer;
import io.microsandbox.spring.MicrosandboxProperties;
import io.microsandbox.spring.SandboxPoolExhaustedException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingDeque;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.commons.logging.Log;
import org.apache.commons.logging.LogFactory;

/**
 * A pool of detached sandboxes, in the manner of HikariCP.
 *
 * <ul>
 * <li>Members are detached sandboxes labelled {@value #POOL_LABEL}=pool name,
 *     {@value #INSTANCE_LABEL}=application instance and {@value #CONFIG_LABEL}=a hash of the
 *     configuration they were created with; their names start with the pool name.</li>
 * <li>A housekeeper thread keeps {@code min-idle} members booted, creation runs on pool threads
 *     (never on a borrower's), and failed boots back off exponentially.</li>
 * <li>{@link #borrow()} waits up to {@code acquire-timeout} and pings a member that has been idle
 *     a while before lending it, within the validation timeout and the time the borrower has left.</li>
 * <li>Each member has a lifetime ({@code max-lifetime} less up to 2.5% jitter, and ending a
 *     margin before the sandbox's own {@code max-duration}) and a use limit ({@code max-uses}).
 *     An idle member past either is drained and replaced; a lent one is only marked and is
 *     drained when it comes back, so a borrower is never disturbed.</li>
 * <li>A member whose command timed out, that stopped answering or crashed is discarded.</li>
 * <li>On start the pool re-adopts its running members by label and removes the stopped or
 *     crashed ones, and those created with another configuration; on close it drains them or
 *     leaves them running ({@code on-shutdown}; with {@code reset=clean} a member lent at the
 *     close is drained either way).</li>
 * <li>A cold-booted member runs {@code warm-up-command} before it is lent. With
 *     {@code warm-start=checkpoint} the first one is then checkpointed and further members are
 *     restored from that checkpoint, each with its own name, hostname, upper disk, entropy and
 *     clock; a restore that fails drops the checkpoint and the member boots cold (and is
 *     checkpointed again) instead.</li>
 * </ul>
 */
public final class SandboxPool implements SandboxSource, AutoCloseable {

    /** Label holding the pool's name. */
    public static final String POOL_LABEL = "spring.pool";
    /** Label holding the application instance. */
    public static final String INSTANCE_LABEL = "spring.instance";
    /**
     * Label holding a short hash of what a member was created with (its sandbox configuration,
     * warm-up command and warm-start mode): a member an earlier run left with another hash is
     * removed on start, not re-adopted.
     */
    public static final String CONFIG_LABEL = "spring.config";

    private static final Log log = LogFactory.getLog(SandboxPool.class);
    /** How long an instance id must have been left unused before another instance removes what it left. */
    public static final Duration ABANDONED_AFTER = Duration.ofMinutes(5);
    /** How often a borrower waiting for a member looks whether the pool has closed. */
    private static final long CLOSED_CHECK_NANOS = TimeUnit.MILLISECONDS.toNanos(100);
    /**
     * The least time a ping before a loan gets, even when the borrower's time is (nearly) up: a
     * healthy agent answers well within it, and {@code acquire-timeout=0} can still lend.
     */
    private static final long MIN_VALIDATION_NANOS = TimeUnit.MILLISECONDS.toNanos(100);
    /** The longest margin by which a member is retired before its sandbox's own {@code max-duration}. */
    private static final Duration MAX_DURATION_MARGIN = Duration.ofMinutes(1);
    /** How much longer than {@code shutdown-timeout} a close waits for the members to stop and be removed. */
    private static final Duration STOP_GRACE = Duration.ofSeconds(10);

    private final Microsandbox runtime;
    private final SandboxConfig config;
    private final MicrosandboxProperties.Pool settings;
    private final String requestedInstanceId;
    private final PoolInstanceLock instanceLock;
    private final String instanceId;
    private final Map<String, String> poolLabels;
    /** The {@value #CONFIG_LABEL} of this run's members. */
    private final String configHash;
    private final Map<String, Member> members = new ConcurrentHashMap<>();
    private final LinkedBlockingDeque<Member> idle = new LinkedBlockingDeque<>();
    private final AtomicInteger pending = new AtomicInteger();
    /** Sandboxes out of the pool that are still being stopped and removed: their VMs still count toward {@code max-size}. */
    private final AtomicInteger removing = new AtomicInteger();
    private final AtomicInteger waiting = new AtomicInteger();
    private final AtomicLong consecutiveFailures = new AtomicLong();
    private final AtomicLong totalFailures = new AtomicLong();
    private final AtomicLong booted = new AtomicLong();
    private final AtomicLong restored = new AtomicLong();
    /** Sandboxes being created for the pool, by name (not members yet). */
    private final java.util.Set<String> booting = ConcurrentHashMap.newKeySet();
    /** Boots an operator stopped ({@link #cancelBoot}): their failure is no boot failure, and one that made it is not kept. */
    private final java.util.Set<String> cancelledBoots = ConcurrentHashMap.newKeySet();
    /** The checkpoint members are restored from; null with warm-start=boot. */
    private final PoolCheckpoint checkpoint;
    private final List<PoolListener> listeners = new CopyOnWriteArrayList<>();
    private volatile String lastBootError;
    private volatile long nextBootNanos = System.nanoTime();
    private volatile boolean closed;
    /** Shutting down: no boot for min-idle or rotation any more, only for a borrower waiting ({@link #quiesce()}). */
    private volatile boolean quiescing;
    /** Whether a fill is scheduled for when a boot back-off ends (guarded by this). */
    private boolean fillScheduled;
    private volatile boolean started;
    private final ScheduledExecutorService housekeeper;
    private final ExecutorService creators;
    private final ExecutorService reapers;
    private final ExecutorService pingers;

    /**
     * A pool of sandboxes of {@code runtime}. Its instance id is {@code requestedInstanceId} unless
     * another open pool of the same name already runs as that id on the runtime's home (another
     * replica of the application on this host): then the first free {@code requestedInstanceId#N}, see
     * {@link #instanceId()}.
     */
    public SandboxPool(Microsandbox runtime, SandboxConfig config, MicrosandboxProperties.Pool settings, String requestedInstanceId) {
        this.runtime = runtime;
        this.settings = settings;
        this.requestedInstanceId = requestedInstanceId;
        this.instanceLock = PoolInstanceLock.claim(runtime.home(), settings.getName(), requestedInstanceId);
        this.instanceId = instanceLock.instanceId();
        if (!instanceId.equals(requestedInstanceId)) {
            log.info("pool '" + settings.getName() + "': instance id '" + requestedInstanceId + "' is taken by another open pool on "
                    + runtime.home() + "; this one runs as '" + this.instanceId + "'");
        }
        this.poolLabels = Map.of(POOL_LABEL, settings.getName(), INSTANCE_LABEL, instanceId);
        try {
            SandboxConfig pooled = config.toBuilder().labels(merged(config.labels(), poolLabels)).detached(true).ephemeral(false).build();
            this.configHash = configHash(pooled, settings);
            this.config = pooled.toBuilder().label(CONFIG_LABEL, configHash).build();
        } catch (RuntimeException e) {
            instanceLock.close(); // no pool: the id is free again
            throw e;
        }
        if (this.config.idleTimeout().compareTo(Duration.ZERO) > 0) {
            log.warn("pool '" + settings.getName() + "': microsandbox.idle-timeout is " + this.config.idleTimeout() + ", so idle members"
                    + " stop after that long and are booted again, over and over; leave it at 0 for a pool (max-lifetime retires members)");
        }
        this.checkpoint = settings.getWarmStart() == MicrosandboxProperties.WarmStart.CHECKPOINT
                ? new PoolCheckpoint(runtime, settings.getName(), instanceId) : null;
        String prefix = "msb-pool-" + settings.getName();
        this.housekeeper = Executors.newSingleThreadScheduledExecutor(threads(prefix + "-housekeeper"));
        this.creators = Executors.newFixedThreadPool(Math.max(1, Math.min(settings.getMaxSize(), 2)), threads(prefix + "-boot"));
        this.reapers = Executors.newCachedThreadPool(threads(prefix + "-reaper"));
        this.pingers = Executors.newCachedThreadPool(threads(prefix + "-ping"));
    }

    /**
     * A short hash of what makes a member: its sandbox configuration (without secret values,
     * which are never stored) and how it is warmed. A member an earlier run left with another
     * hash is not re-adopted: the application changed {@code microsandbox.*} or the warm-up since.
     */
    private static String configHash(SandboxConfig config, MicrosandboxProperties.Pool settings) {
        String warmUp = settings.getWarmUpCommand() == null ? "" : settings.getWarmUpCommand().strip();
        String json;
        try {
            com.fasterxml.jackson.databind.JsonNode n = io.microsandbox.runtime.Json.parse(config.toJson());
            // a secret's placeholder is random unless one is given: it would differ in every run
            n.path("secrets").forEach(secret -> ((com.fasterxml.jackson.databind.node.ObjectNode) secret).remove("placeholder"));
            json = n.toString();
        } catch (java.io.IOException e) {
            throw new IllegalStateException("the pool's own configuration does not read back: " + e.getMessage(), e);
        }
        return SandboxLayout.shortHash(json + "\n" + settings.getWarmStart() + "\n" + warmUp);
    }

    private static Map<String, String> merged(Map<String, String> a, Map<String, String> b) {
        Map<String, String> m = new HashMap<>(a);
        m.putAll(b);
        return m;
    }

    private static ThreadFactory threads(String prefix) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, prefix + "-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
    }

    /** Tells {@code listener} of the pool's events, starting with a {@code memberAdded} for each current member. */
    public void addListener(PoolListener listener) {
        listeners.add(listener);
        for (Member m : members.values()) {
            listener.memberAdded(m);
        }
    }

    /** Stops telling {@code listener} of the pool's events. */
    public void removeListener(PoolListener listener) {
        listeners.remove(listener);
    }

    @Override
    public String name() {
        return settings.getName();
    }

    /** The instance id of this pool's members (their {@value #INSTANCE_LABEL} label), see the constructor. */
    public String instanceId() {
        return instanceId;
    }

    /** The labels every member carries (the pool's name and instance id among them). */
    public Map<String, String> labels() {
        return poolLabels;
    }

    /** The configuration members are created with. */
    public SandboxConfig config() {
        return config;
    }

    /** The pool's settings ({@code microsandbox.pool.*}). */
    public MicrosandboxProperties.Pool settings() {
        return settings;
    }

    /** Re-adopts running members left by an earlier run, then starts warming up in the background. */
    public synchronized void start() {
        if (started) {
            return;
        }
        started = true;
        if (checkpoint != null) {
            try {
                checkpoint.removeLeftover();
            } catch (RuntimeException e) {
                log.warn("pool '" + name() + "': cannot remove the checkpoint left by an earlier run: " + e.getMessage());
            }
        }
        try {
            adopt();
        } catch (RuntimeException e) {
            log.warn("pool '" + name() + "': cannot look for sandboxes to re-adopt: " + e.getMessage());
        }
        removeAbandonedInstances();
        long period = Math.max(50, settings.getHousekeepingPeriod().toMillis());
        housekeeper.scheduleWithFixedDelay(this::housekeep, period, period, TimeUnit.MILLISECONDS);
        requestFill();
    }

    /**
     * Removes, in the background, the members and warm-start checkpoint of this pool's later
     * ids ({@code id#N} after this one's) that no open pool runs as any more, nor claimed or
     * released in the last {@link #ABANDONED_AFTER} (a second replica that crashed, or was
     * stopped with {@code on-shutdown=keep} and did not come back): nobody would ever adopt
     * them while this one holds the earlier id. Earlier ids, and later ones used lately, are
     * left alone: their pool may be restarting to re-adopt its members.
     */
    private void removeAbandonedInstances() {
        for (int n = instanceLock.ordinal() + 1; n <= PoolInstanceLock.MAX_INSTANCES; n++) {
            PoolInstanceLock abandoned = PoolInstanceLock.claimAbandoned(runtime.home(), name(), requestedInstanceId, n, ABANDONED_AFTER);
            if (abandoned == null) {
                continue;
            }
            Runnable removal = () -> {
                // held until its members are gone: a replica starting meanwhile takes another id
                try (abandoned) {
                    String id = abandoned.instanceId();
                    for (SandboxHandle h : runtime.list(SandboxFilter.labels(Map.of(POOL_LABEL, name(), INSTANCE_LABEL, id)))) {
                        log.info("pool '" + name() + "': removing " + h.name() + " of instance '" + id + "', which no open pool runs as");
                        destroy(h.name(), null, false);
                    }
                    new PoolCheckpoint(runtime, name(), id).removeLeftover();
                } catch (RuntimeException e) {
                    log.warn("pool '" + name() + "': cannot remove what instance '" + abandoned.instanceId() + "' left: " + e.getMessage());
                }
            };
            try {
                reapers.execute(removal);
            } catch (java.util.concurrent.RejectedExecutionException closedMeanwhile) {
                abandoned.close();
            }
        }
    }

    private void adopt() {
        List<SandboxHandle> found = runtime.list(SandboxFilter.labels(poolLabels));
        for (SandboxHandle h : found) {
            SandboxStatus status = h.status();
            boolean current = configHash.equals(h.labels().get(CONFIG_LABEL));
            if (status == SandboxStatus.RUNNING && !current) {
                log.info("pool '" + name() + "': removing running sandbox " + h.name()
                        + ", created with another configuration (microsandbox.* or the warm-up changed since)");
            }
            if (status == SandboxStatus.RUNNING && current && members.size() < settings.getMaxSize()) {
                try {
                    Sandbox sb = runtime.connect(h.name());
                    // the record's creation: no later than the VM's start, which max-duration counts from
                    Member m = new Member(h.name(), sb, h.createdAt(), h.createdAt(), MemberOrigin.ADOPTED);
                    members.put(m.name, m);
                    idle.offerLast(m);
                    fire(l -> l.memberAdded(m));
                    log.info("pool '" + name() + "': re-adopted running sandbox " + h.name());
                    continue;
                } catch (MicrosandboxException e) {
                    log.info("pool '" + name() + "': cannot re-adopt " + h.name() + ": " + e.getMessage());
                }
            }
            reap(h.name(), null, false);
        }
    }

    @Override
    public Lease borrow() {
        ensureOpen();
        long start = System.nanoTime();
        long deadline = start + settings.getAcquireTimeout().toNanos();
        boolean pinged = false;
        while (true) {
            // a pass that only skipped a member took no time; one that pinged may have taken the rest
            if (pinged && System.nanoTime() - deadline >= 0) {
                throw timedOut(start);
            }
            Member m = idle.pollFirst();
            if (m == null) {
                // counted as waiting only while it has no member, and before the fill it asks for:
                // a fill must not boot one for a borrower checking the member it took (quiesced, a
                // pool boots for waiting borrowers only)
                waiting.incrementAndGet();
                try {
                    requestFill();
                    m = awaitIdle(deadline);
                } finally {
                    waiting.decrementAndGet();
                }
                if (m == null) {
                    throw timedOut(start);
                }
            }
            if (!m.state.compareAndSet(State.IDLE, State.ACTIVE)) {
                continue;
            }
            if (m.lostReason != null) {
                discard(m, m.lostReason);
                continue;
            }
            if (m.evict || m.expired()) {
                retire(m, rotationReason(m));
                continue;
            }
            if (System.nanoTime() - m.lastReturnedNanos > settings.getValidationInterval().toNanos()) {
                pinged = true;
                Validation validation = validate(m, deadline);
                if (validation == Validation.UNRESPONSIVE) {
                    discard(m, "unresponsive");
                    continue;
                }
                if (validation == Validation.OUT_OF_TIME) {
                    throw timedOut(start); // the ping goes on without the borrower and settles the member
                }
            }
            m.uses.incrementAndGet();
            Duration waited = Duration.ofNanos(System.nanoTime() - start);
            fire(l -> l.acquired(waited));
            return new Lease(m.sandbox, m);
        }
    }

    /** The next idle member by {@code deadline}, or null; a pool that closes meanwhile ends the wait within 100 ms. */
    private Member awaitIdle(long deadline) {
        while (true) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return null;
            }
            Member m;
            try {
                m = idle.pollFirst(Math.min(left, CLOSED_CHECK_NANOS), TimeUnit.NANOSECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while waiting for a sandbox");
            }
            if (m != null) {
                return m;
            }
            ensureOpen();
        }
    }

    /** Ends a borrow that got no member by its deadline (or, when the pool closed meanwhile, says so). */
    private SandboxPoolExhaustedException timedOut(long start) {
        ensureOpen();
        Duration waited = Duration.ofNanos(System.nanoTime() - start);
        fire(l -> l.acquireTimedOut(waited));
        return exhausted();
    }

    private SandboxPoolExhaustedException exhausted() {
        PoolStats s = stats();
        String message = "no sandbox became free in pool '" + name() + "' within " + settings.getAcquireTimeout().toMillis() + " ms"
                + " (idle " + s.idle() + ", active " + s.active() + ", booting " + s.pending()
                + (s.stopping() > 0 ? ", stopping " + s.stopping() : "") + ", max-size " + s.maxSize() + ")";
        if (s.lastBootError() != null && s.consecutiveBootFailures() > 0) {
            message += "; sandboxes fail to boot: " + s.lastBootError();
        } else {
            message += "; raise microsandbox.pool.max-size or microsandbox.pool.acquire-timeout, or hold each sandbox for less time";
        }
        return new SandboxPoolExhaustedException(ErrorKind.RESOURCE_LIMIT, message, null);
    }

    private enum Validation { ANSWERED, UNRESPONSIVE, OUT_OF_TIME }

    /**
     * Pings a member before a loan, within {@code validation-timeout} or the borrower's time left
     * when that is shorter (but {@link #MIN_VALIDATION_NANOS} at least). A member that fails, or
     * stays silent for the whole validation timeout, is unresponsive; one whose ping the
     * borrower's deadline cut short ({@link Validation#OUT_OF_TIME}) is judged by that ping once
     * it ends, off the borrower's thread: back to idle when it answers, discarded when it does not
     * within the validation timeout (put back unjudged, a hung member would be tried first by
     * every borrower, for ever).
     */
    private Validation validate(Member m, long deadline) {
        long validationTimeout = settings.getValidationTimeout().toNanos();
        long allowed = Math.min(validationTimeout, Math.max(deadline - System.nanoTime(), MIN_VALIDATION_NANOS));
        CompletableFuture<Void> ping = CompletableFuture.runAsync(m.sandbox::touch, pingers);
        try {
            ping.get(allowed, TimeUnit.NANOSECONDS);
            return Validation.ANSWERED;
        } catch (InterruptedException e) {
            // the borrower was cancelled, not the member: it goes back as it was
            Thread.currentThread().interrupt();
            backToIdle(m);
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while checking a sandbox of pool '" + name() + "'");
        } catch (TimeoutException e) {
            if (allowed < validationTimeout) {
                ping.orTimeout(validationTimeout - allowed, TimeUnit.NANOSECONDS).whenComplete((answered, failure) -> {
                    if (failure == null) {
                        backToIdle(m);
                    } else {
                        log.info("pool '" + name() + "': sandbox " + m.name + " did not answer a ping within " + settings.getValidationTimeout());
                        discard(m, "unresponsive");
                    }
                });
                return Validation.OUT_OF_TIME;
            }
            log.info("pool '" + name() + "': sandbox " + m.name + " did not answer a ping within " + settings.getValidationTimeout());
            return Validation.UNRESPONSIVE;
        } catch (Exception e) {
            log.info("pool '" + name() + "': sandbox " + m.name + " did not answer a ping: " + e);
            return Validation.UNRESPONSIVE;
        }
    }

    @Override
    public void giveBack(Lease lease) {
        if (!(lease.owner() instanceof Member m) || !lease.markReturned()) {
            return;
        }
        Duration lent = Duration.ofNanos(System.nanoTime() - lease.borrowedNanos());
        fire(l -> l.returned(lent));
        if (lease.brokenReason() != null || m.lostReason != null) {
            discard(m, lease.brokenReason() != null ? lease.brokenReason() : m.lostReason);
        } else if (closed) {
            // with reset=clean close() has drained it already: a used member is dirty, not one to re-adopt
            shutdownMember(m);
        } else if (m.evict || m.expired()) {
            retire(m, rotationReason(m));
        } else if (settings.getReset() == MicrosandboxProperties.Reset.CLEAN) {
            retire(m, "reset");
        } else {
            m.lastReturnedNanos = System.nanoTime();
            backToIdle(m);
        }
    }

    /**
     * A lent member made idle again, unless a kill or housekeeping retired it meanwhile; an
     * eviction or loss noticed while it was lent (which could not take it then) takes it now.
     */
    private void backToIdle(Member m) {
        if (closed) {
            // a ping judged after close() (which left it, as not idle): stopped or handed on like the rest
            if (m.state.compareAndSet(State.ACTIVE, State.RETIRING)) {
                shutdownMember(m);
            }
            return;
        }
        if (!m.state.compareAndSet(State.ACTIVE, State.IDLE)) {
            return;
        }
        idle.offerFirst(m);
        if ((m.lostReason != null || m.evict) && m.state.compareAndSet(State.IDLE, State.ACTIVE)) {
            idle.remove(m);
            if (m.lostReason != null) {
                discard(m, m.lostReason);
            } else {
                retire(m, "evicted");
            }
        }
    }

    private static String rotationReason(Member m) {
        return m.evict ? "evicted" : m.usesExhausted() ? "max-uses" : "max-lifetime";
    }

    @Override
    public void recordExec(long nanos, String outcome) {
        fire(l -> l.exec(nanos, outcome));
    }

    /** Drains one member: at once when idle, when it comes back when lent. False when it is no member. */
    public boolean evict(String name) {
        Member m = members.get(name);
        if (m == null) {
            return false;
        }
        m.evict = true;
        if (m.state.compareAndSet(State.IDLE, State.ACTIVE)) {
            idle.remove(m);
            retire(m, "evicted");
        }
        return true;
    }

    /** Drains every member the same way (soft eviction); the pool warms up again. */
    public void evictAll() {
        for (String name : List.copyOf(members.keySet())) {
            evict(name);
        }
    }

    /**
     * Marks the sandbox being booted as {@code name} as stopped on purpose (an operator stopping
     * it through the endpoint, which then stops it): it ends without counting as a failed boot or
     * backing the pool off, and is not kept should it finish booting. False when no boot of that
     * name is under way.
     */
    public boolean cancelBoot(String name) {
        if (!booting.contains(name)) {
            return false;
        }
        cancelledBoots.add(name);
        return true;
    }

    /** Kills one member at once, even when lent (its borrower sees the sandbox lost). */
    public boolean kill(String name) {
        Member m = members.get(name);
        if (m == null) {
            return false;
        }
        m.lostReason = "killed";
        State prior = m.state.getAndSet(State.RETIRING);
        idle.remove(m);
        if (prior != State.RETIRING) {
            discard(m, "killed");
        }
        return true;
    }

    /** The members by state, borrowers waiting, and boot failures, as of now. */
    public PoolStats stats() {
        int active = 0;
        int idleCount = 0;
        for (Member m : members.values()) {
            State s = m.state.get();
            if (s == State.ACTIVE) {
                active++;
            } else if (s == State.IDLE) {
                idleCount++;
            }
        }
        return new PoolStats(idleCount, active, pending.get(), removing.get(), waiting.get(), settings.getMinIdle(), settings.getMaxSize(),
                consecutiveFailures.get(), totalFailures.get(), lastBootError);
    }

    /** How members were started: by boot or restore, and the checkpoint's state. */
    public WarmStartStats warmStartStats() {
        if (checkpoint == null) {
            return new WarmStartStats("boot", booted.get(), restored.get(), null, 0, 0, null);
        }
        return checkpoint.stats(booted.get(), restored.get());
    }

    /** The name of the pool's checkpoint under the home's checkpoints, or null with warm-start=boot. */
    public String checkpointName() {
        return checkpoint == null ? null : checkpoint.name();
    }

    /** The current members, as of now. */
    public Collection<PoolMemberView> members() {
        return List.copyOf(members.values());
    }

    /** The member of this name, if it is one. */
    public Optional<PoolMemberView> member(String name) {
        return Optional.ofNullable(members.get(name));
    }

    /**
     * Reads the metrics of every member from its supervisor's latest sample (a file: no
     * connection, nothing asked of the guest), kept for {@link PoolMemberView#lastMetrics()}.
     * Only the pool's own members: other sandboxes of a shared home are not its business. A
     * member without a sample yet (just booted) or gone meanwhile keeps its last one.
     */
    public void sampleMetrics() {
        for (Member m : members.values()) {
            if (closed) {
                return;
            }
            try {
                runtime.find(m.name).ifPresent(h -> m.lastMetrics = h.metrics());
            } catch (RuntimeException e) {
                // no sample yet, or it stopped since
            }
        }
    }

    // ---- housekeeping, creation, destruction (pool threads only) ----

    /** Stop reasons of a member that its sandbox configuration set, not a failure. */
    private static final java.util.Set<String> STOPPED_BY_ITS_CONFIG = java.util.Set.of("idle-timeout", "max-duration");

    private void housekeep() {
        try {
            if (closed) {
                return;
            }
            // the members that the listing below can know of: one created after it has no status yet, not a crash
            List<Member> listed = List.copyOf(members.values());
            Map<String, SandboxStatus> status = new HashMap<>();
            Map<String, String> timedOut = new HashMap<>();
            try {
                for (SandboxHandle h : runtime.list(SandboxFilter.labels(poolLabels))) {
                    status.put(h.name(), h.status());
                    if (h.status() == SandboxStatus.STOPPED) {
                        h.lastStop().map(SandboxStopResult::reason).filter(STOPPED_BY_ITS_CONFIG::contains)
                                .ifPresent(reason -> timedOut.put(h.name(), reason));
                    }
                }
            } catch (RuntimeException e) {
                status = null;
            }
            for (Member m : listed) {
                if (members.get(m.name) != m) {
                    continue; // retired since: its sandbox may be gone from the listing without having crashed
                }
                SandboxStatus s = status == null ? SandboxStatus.RUNNING : status.get(m.name);
                boolean gone = s == null || s == SandboxStatus.STOPPED || s == SandboxStatus.CRASHED;
                if (gone) {
                    if (m.lostReason == null) {
                        // a member that ran out its idle timeout or maximum duration did what its configuration says
                        m.lostReason = timedOut.getOrDefault(m.name, "crashed");
                        if (!timedOut.containsKey(m.name)) {
                            fire(l -> l.crashed(m.name));
                        }
                    }
                    if (m.state.compareAndSet(State.IDLE, State.RETIRING)) {
                        idle.remove(m);
                        discard(m, m.lostReason);
                    }
                } else if (m.evict || m.expired()) {
                    if (m.state.compareAndSet(State.IDLE, State.ACTIVE)) {
                        idle.remove(m);
                        retire(m, rotationReason(m));
                    } else {
                        m.evict = true;
                    }
                }
            }
            fill();
        } catch (RuntimeException | Error e) {
            // an Error too: a scheduled task that throws is never run again, silently
            log.warn("pool '" + name() + "': housekeeping failed", e);
        }
    }

    private void requestFill() {
        if (!closed) {
            try {
                housekeeper.execute(this::fill);
            } catch (java.util.concurrent.RejectedExecutionException e) {
                // closing
            }
        }
    }

    private synchronized void fill() {
        if (closed) {
            return;
        }
        long wait = nextBootNanos - System.nanoTime();
        if (wait > 0) {
            // backing off after a failed boot: one fill comes back when it ends, however many asked meanwhile
            if (!fillScheduled) {
                fillScheduled = true;
                housekeeper.schedule(this::scheduledFill, wait, TimeUnit.NANOSECONDS);
            }
            return;
        }
        // members retired between a return or creation and its offer linger in the queue: not warm
        idle.removeIf(m -> m.state.get() != State.IDLE);
        int total = members.size() + pending.get() + removing.get();
        int idleOrBooting = idle.size() + pending.get();
        int minIdle = quiescing ? 0 : settings.getMinIdle();
        int want = Math.max(minIdle - idleOrBooting, waiting.get() - idle.size() - pending.get());
        if (consecutiveFailures.get() > 0) {
            want = Math.min(want, 1 - pending.get());
        }
        int n = Math.min(want, settings.getMaxSize() - total);
        for (int i = 0; i < n; i++) {
            pending.incrementAndGet();
            try {
                creators.execute(this::createOne);
            } catch (java.util.concurrent.RejectedExecutionException closing) {
                pending.decrementAndGet(); // this boot never runs
                return;
            }
        }
    }

    private synchronized void scheduledFill() {
        fillScheduled = false;
        fill();
    }

    private void createOne() {
        String sandboxName = name() + "-" + UUID.randomUUID().toString().substring(0, 8);
        long t0 = System.nanoTime();
        Instant started = Instant.now();
        booting.add(sandboxName);
        try {
            if (closed) {
                return;
            }
            Created created = create(sandboxName);
            Duration took = Duration.ofNanos(System.nanoTime() - t0);
            consecutiveFailures.set(0);
            (created.origin() == MemberOrigin.RESTORE ? restored : booted).incrementAndGet();
            Member m = new Member(sandboxName, created.sandbox(), Instant.now(), started, created.origin());
            fire(l -> l.created(took, created.origin()));
            if (closed) {
                shutdownMember(m);
                return;
            }
            if (cancelledBoots.contains(sandboxName)) {
                reap(sandboxName, created.sandbox(), false); // booted before the stop reached it: stopped all the same
                return;
            }
            members.put(m.name, m);
            fire(l -> l.memberAdded(m));
            idle.offerLast(m);
        } catch (InterruptedException e) {
            // the pool is closing
            Thread.currentThread().interrupt();
        } catch (RuntimeException | Error e) {
            // an Error too: else the fill that follows would try again at once, and again
            if (cancelledBoots.contains(sandboxName)) {
                log.info("pool '" + name() + "': the boot of sandbox " + sandboxName + " was stopped: " + e.getMessage());
            } else if (!closed) {
                bootFailed(sandboxName, e);
            }
            if (e instanceof Error error) {
                throw error;
            }
        } finally {
            booting.remove(sandboxName);
            cancelledBoots.remove(sandboxName);
            pending.decrementAndGet();
            requestFill();
        }
    }

    /** Counts a failed boot and backs off before the next one. */
    private void bootFailed(String sandboxName, Throwable e) {
        long failures = consecutiveFailures.incrementAndGet();
        totalFailures.incrementAndGet();
        lastBootError = e.getMessage() != null ? e.getMessage() : e.toString();
        long base = settings.getBootBackoff().toNanos();
        long delay = Math.min(settings.getBootBackoffMax().toNanos(), base << Math.min(20, failures - 1));
        nextBootNanos = System.nanoTime() + delay;
        fire(l -> l.bootFailed(e));
        log.warn("pool '" + name() + "': sandbox " + sandboxName + " did not boot (failure " + failures
                + ", next try in " + Duration.ofNanos(delay) + "): " + lastBootError);
    }

    private record Created(Sandbox sandbox, MemberOrigin origin) {
    }

    /**
     * Starts one member: restored from the checkpoint when there is one, else booted cold and
     * warmed up (and, with warm-start=checkpoint, checkpointed by the one creator holding the
     * template role while the others wait to restore from it).
     */
    private Created create(String sandboxName) throws InterruptedException {
        if (checkpoint == null) {
            return new Created(bootWarm(sandboxName), MemberOrigin.BOOT);
        }
        // a second failed restore in a row (another creator's fresh checkpoint failing too) boots cold
        for (int attempt = 0; attempt < 2; attempt++) {
            Checkpoint cp = checkpoint.current();
            if (cp == null && checkpoint.wanted()) {
                Duration wait = config.bootTimeout().plus(settings.getWarmUpTimeout()).plusSeconds(30);
                if (checkpoint.lockTemplate(wait)) {
                    try {
                        cp = checkpoint.current();
                        if (closed) {
                            throw new MicrosandboxException(ErrorKind.CANCELLED, "pool '" + name() + "' closed");
                        }
                        if (cp == null && checkpoint.wanted()) {
                            Sandbox sb = bootWarm(sandboxName);
                            checkpoint.take(sb, settings.getBootBackoffMax(), () -> closed);
                            return new Created(sb, MemberOrigin.BOOT);
                        }
                    } finally {
                        checkpoint.unlockTemplate();
                    }
                }
            }
            if (cp == null) {
                break;
            }
            try {
                return new Created(runtime.restore(sandboxName, cp, restoreOptions(sandboxName)), MemberOrigin.RESTORE);
            } catch (MicrosandboxException e) {
                if (e.kind() == ErrorKind.SANDBOX_ALREADY_EXISTS || e.kind() == ErrorKind.CANCELLED || closed) {
                    throw e;
                }
                // SNAPSHOT_INCOMPATIBLE after a QEMU or kernel change, missing or corrupt files, a stream QEMU refuses
                checkpoint.invalidate(cp, e);
            }
        }
        return new Created(bootWarm(sandboxName), MemberOrigin.BOOT);
    }

    /** A member's own identity: its name, and the hostname a cold boot would give it (unless the config fixes one). */
    private RestoreOptions restoreOptions(String sandboxName) {
        RestoreOptions.Builder b = RestoreOptions.builder().detached(true).ephemeral(false);
        // a checkpoint never stores secret values: the pool's configuration holds them
        config.secrets().forEach(secret -> b.secretValues(java.util.Map.of(secret.name(), secret.value())));
        if (config.hostname() == null) {
            b.hostname(SandboxPreparer.hostnameFor(sandboxName));
        }
        return b.build();
    }

    /** Boots a member cold and runs the warm-up command in it; a member whose warm-up fails is removed. */
    private Sandbox bootWarm(String sandboxName) {
        Sandbox sb = runtime.create(sandboxName, config);
        String warmUp = settings.getWarmUpCommand();
        if (warmUp == null || warmUp.isBlank()) {
            return sb;
        }
        try {
            ExecOutput out = sb.shell(warmUp, ExecOptions.builder().timeout(settings.getWarmUpTimeout()).build());
            if (!out.success()) {
                String stderr = out.stderr().strip();
                throw new MicrosandboxException(ErrorKind.EXEC_FAILED, "the warm-up command exited with " + out.exitCode() + " (microsandbox.pool.warm-up-command)"
                        + (stderr.isEmpty() ? "" : ": " + (stderr.length() > 300 ? stderr.substring(stderr.length() - 300) : stderr)));
            }
            return sb;
        } catch (RuntimeException e) {
            destroy(sandboxName, sb, false);
            throw e;
        }
    }

    private void retire(Member m, String reason) {
        m.state.set(State.RETIRING);
        // counted as stopping before it leaves the members: a fill in between would see room for one more
        reap(m.name, m.sandbox, true);
        if (members.remove(m.name, m)) {
            fire(l -> l.memberRemoved(m.name));
            fire(l -> l.rotated(m.name, reason));
        }
        requestFill();
    }

    private void discard(Member m, String reason) {
        m.state.set(State.RETIRING);
        log.info("pool '" + name() + "': discarding sandbox " + m.name + " (" + reason + ")");
        reap(m.name, m.sandbox, false); // before it leaves the members, as in retire
        if (members.remove(m.name, m)) {
            fire(l -> l.memberRemoved(m.name));
            fire(l -> l.discarded(m.name, reason));
        }
        requestFill();
    }

    /**
     * Stops and removes a sandbox on a reaper, or here once the pool has closed and its reapers
     * with it. Until it is gone it counts toward {@code max-size} (a drain can take up to
     * {@code shutdown-timeout}), and its end lets a replacement boot.
     */
    private void reap(String sandboxName, Sandbox sb, boolean drain) {
        removing.incrementAndGet();
        Runnable destruction = () -> {
            try {
                destroy(sandboxName, sb, drain);
            } finally {
                removing.decrementAndGet();
                requestFill();
            }
        };
        try {
            reapers.execute(destruction);
        } catch (java.util.concurrent.RejectedExecutionException closing) {
            destruction.run();
        }
    }

    /** Stops (drain or kill) and removes a sandbox; never throws. */
    private void destroy(String sandboxName, Sandbox sb, boolean drain) {
        try {
            Optional<SandboxHandle> handle = runtime.find(sandboxName);
            if (handle.isPresent() && !handle.get().status().isTerminal()) {
                if (drain) {
                    handle.get().requestDrain();
                    long deadline = System.nanoTime() + settings.getShutdownTimeout().toNanos();
                    while (System.nanoTime() < deadline && !handle.get().refresh().status().isTerminal()) {
                        Thread.sleep(100);
                    }
                }
                if (!handle.get().refresh().status().isTerminal()) {
                    handle.get().kill();
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (RuntimeException e) {
            log.debug("pool '" + name() + "': stopping " + sandboxName + ": " + e.getMessage());
            try {
                runtime.find(sandboxName).ifPresent(h -> {
                    if (!h.status().isTerminal()) {
                        h.kill();
                    }
                });
            } catch (RuntimeException ignored) {
                // reported below when the removal fails too
            }
        }
        if (sb != null) {
            try {
                sb.detach();
            } catch (RuntimeException ignored) {
                // already released
            }
        }
        // the supervisor lets go of the sandbox a moment after the VM stopped
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        while (true) {
            try {
                runtime.remove(sandboxName);
                return;
            } catch (MicrosandboxException e) {
                if (e.kind() == ErrorKind.SANDBOX_NOT_FOUND) {
                    return;
                }
                if (System.nanoTime() > deadline) {
                    log.warn("pool '" + name() + "': cannot remove sandbox " + sandboxName + ": " + e.getMessage());
                    return;
                }
            }
            try {
                Thread.sleep(200);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    private boolean keepOnShutdown() {
        return settings.getOnShutdown() == MicrosandboxProperties.OnShutdown.KEEP;
    }

    /** Takes a member out of the closing pool: left running for the next start to re-adopt ({@code keep}), or drained. */
    private void shutdownMember(Member m) {
        // out of the map before the listeners hear of it: one binding meanwhile must not see it as a member
        if (members.remove(m.name, m)) {
            fire(l -> l.memberRemoved(m.name));
        }
        if (keepOnShutdown()) {
            try {
                m.sandbox.detach();
            } catch (RuntimeException ignored) {
                // already released
            }
        } else {
            destroy(m.name, m.sandbox, true);
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new SandboxPoolExhaustedException(ErrorKind.SANDBOX_NOT_RUNNING, "pool '" + name() + "' is closed", null);
        }
    }

    /**
     * Begins shutting down while borrowers may still come (an application's graceful shutdown):
     * no sandbox is booted any more to keep {@code min-idle} or to replace a retired member, only
     * for a borrower waiting with nothing idle. {@link #close()} follows.
     */
    public void quiesce() {
        quiescing = true;
    }

    /**
     * Drains or keeps the members ({@code on-shutdown}) and stops the pool's threads, within
     * {@code shutdown-timeout} (and a grace for the stops under way to report): a boot still in
     * flight then is left to finish on its own thread, which shuts its sandbox down.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        quiescing = true;
        long stopDeadline = System.nanoTime() + settings.getShutdownTimeout().plus(STOP_GRACE).toNanos();
        housekeeper.shutdownNow();
        creators.shutdown();
        try {
            // a boot in flight finishes and is shut down with the rest, if it finishes in time
            long bootBudget = config.bootTimeout().plus(settings.getWarmUpTimeout()).toNanos() + TimeUnit.SECONDS.toNanos(5);
            creators.awaitTermination(Math.min(bootBudget, settings.getShutdownTimeout().toNanos()), TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        // with reset=clean a lent member is dirty: it is not left running for the next start either
        boolean keepLent = keepOnShutdown() && settings.getReset() != MicrosandboxProperties.Reset.CLEAN;
        List<CompletableFuture<Void>> stopping = new ArrayList<>();
        for (Member m : List.copyOf(members.values())) {
            if (m.state.compareAndSet(State.IDLE, State.RETIRING)) {
                idle.remove(m);
                stopping.add(CompletableFuture.runAsync(() -> shutdownMember(m), reapers));
            } else if (!keepLent && m.state.get() == State.ACTIVE) {
                // lent: the drain lets its command finish; the borrower's return then finds it gone
                stopping.add(CompletableFuture.runAsync(() -> {
                    if (members.remove(m.name, m)) {
                        fire(l -> l.memberRemoved(m.name));
                    }
                    destroy(m.name, null, true);
                }, reapers));
            }
        }
        try {
            CompletableFuture.allOf(stopping.toArray(CompletableFuture[]::new))
                    .get(Math.max(0, stopDeadline - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (Exception e) {
            log.warn("pool '" + name() + "': members still stopping after the shutdown timeout: " + e);
        }
        for (Member m : List.copyOf(members.values())) {
            // kept (on-shutdown=keep) or still stopping: no member of this pool any more either way
            if (members.remove(m.name, m)) {
                fire(l -> l.memberRemoved(m.name));
            }
        }
        if (checkpoint != null) {
            // restored members have their own copies; a creator still in flight drops one it takes after this
            checkpoint.drop();
        }
        reapers.shutdown();
        try {
            // retirements and discards still under way: a member left half-stopped would be re-adopted by the next start
            if (!reapers.awaitTermination(Math.max(0, stopDeadline - System.nanoTime()), TimeUnit.NANOSECONDS)) {
                log.warn("pool '" + name() + "': sandboxes still being removed after the shutdown timeout");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        pingers.shutdownNow();
        // members are stopped or handed on: the next start of this instance may adopt them
        instanceLock.close();
    }

    private void fire(java.util.function.Consumer<PoolListener> event) {
        for (PoolListener l : listeners) {
            try {
                event.accept(l);
            } catch (RuntimeException e) {
                log.debug("pool listener failed", e);
            }
        }
    }

    private enum State { IDLE, ACTIVE, RETIRING }

    /** When a member created at {@code created} reaches {@code max-lifetime}, less its jitter; null without a limit. */
    private Instant lifetimeEnd(Instant created) {
        long lifetime = settings.getMaxLifetime().toMillis();
        if (lifetime <= 0) {
            return null;
        }
        // HikariCP: up to 2.5% shorter, so that members do not all rotate at once
        long variance = lifetime > 10_000 ? ThreadLocalRandom.current().nextLong(lifetime / 40) : 0;
        return created.plusMillis(lifetime - variance);
    }

    /**
     * When a member whose VM started at {@code started} is retired ahead of its sandbox's own
     * {@code max-duration} (which would drain it under a borrower): a tenth of it before, at most
     * {@link #MAX_DURATION_MARGIN}, so that a loan begun just before has time to end. Null without one.
     */
    private Instant maxDurationEnd(Instant started) {
        Duration maxDuration = config.maxDuration();
        if (maxDuration.isZero() || maxDuration.isNegative()) {
            return null;
        }
        Duration margin = maxDuration.dividedBy(10);
        return started.plus(maxDuration).minus(margin.compareTo(MAX_DURATION_MARGIN) > 0 ? MAX_DURATION_MARGIN : margin);
    }

    private static Instant earliest(Instant a, Instant b) {
        return a == null ? b : b == null || a.isBefore(b) ? a : b;
    }

    private final class Member implements PoolMemberView {
        final String name;
        final Sandbox sandbox;
        final Instant created;
        final Instant expires;
        final MemberOrigin origin;
        final AtomicReference<State> state = new AtomicReference<>(State.IDLE);
        final AtomicInteger uses = new AtomicInteger();
        volatile long lastReturnedNanos = System.nanoTime();
        volatile boolean evict;
        volatile String lostReason;
        volatile Metrics lastMetrics;

        /** {@code started}: when its VM started, or earlier; the sandbox's {@code max-duration} counts from then. */
        Member(String name, Sandbox sandbox, Instant created, Instant started, MemberOrigin origin) {
            this.name = name;
            this.sandbox = sandbox;
            this.created = created;
            this.origin = origin;
            this.expires = earliest(lifetimeEnd(created), maxDurationEnd(started));
        }

        boolean usesExhausted() {
            return settings.getMaxUses() > 0 && uses.get() >= settings.getMaxUses();
        }

        boolean expired() {
            return usesExhausted() || (expires != null && !Instant.now().isBefore(expires));
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public String state() {
            return state.get().name().toLowerCase(java.util.Locale.ROOT);
        }

        @Override
        public int uses() {
            return uses.get();
        }

        @Override
        public Instant createdAt() {
            return created;
        }

        @Override
        public Instant expiresAt() {
            return expires;
        }

        @Override
        public boolean evictionPending() {
            return evict || lostReason != null;
        }

        @Override
        public boolean adopted() {
            return origin == MemberOrigin.ADOPTED;
        }

        @Override
        public MemberOrigin origin() {
            return origin;
        }

        @Override
        public Metrics lastMetrics() {
            return lastMetrics;
        }
    }
}

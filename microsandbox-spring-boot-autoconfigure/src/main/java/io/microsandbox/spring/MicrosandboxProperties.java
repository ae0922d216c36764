package io.microsandbox.spring;

import io.microsandbox.Accelerator;
import io.microsandbox.PullPolicy;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import org.springframework.boot.context.properties.ConfigurationProperties;
import org.springframework.util.unit.DataSize;

/**
 * Configuration properties for microsandbox, under {@code microsandbox.*}. They describe the
 * runtime (home, accelerator, QEMU, kernel), the sandboxes the application runs (image,
 * memory, CPUs, environment, ...) and the pool that lends them ({@code microsandbox.pool.*}).
 */
@ConfigurationProperties("microsandbox")
public class MicrosandboxProperties {

    /** Smallest guest memory a sandbox boots with. */
    public static final DataSize MIN_MEMORY = DataSize.ofMegabytes(64);

    /**
     * Directory holding microsandbox's state: database, disks, sockets, the guest kernel.
     * Defaults to the system property microsandbox.home, then MSB_HOME, then ~/.microsandbox.
     */
    private Path home;

    /** Hardware acceleration of the VMs: auto (KVM when the host allows it, else TCG), kvm or tcg. */
    private Accelerator accelerator = Accelerator.AUTO;

    /** Path of the qemu-system-x86_64 binary; by default microsandbox.qemu, then MSB_QEMU, then the PATH. */
    private Path qemu;

    /**
     * Directory of a guest kernel of the application's own (vmlinux); by default the kernel of
     * the microsandbox-kernel jar (or the one microsandbox.kernel.dir / microsandbox.kernel selects).
     */
    private Path kernelDir;

    /**
     * Root filesystem of the sandboxes: an OCI image reference (python:3.12,
     * registry.example.com/team/app@sha256:...), pulled on first use and cached in the home; an
     * OCI image layout directory or archive; or a local directory holding an unpacked root
     * filesystem.
     */
    private String image;

    /** When an OCI image is pulled from its registry: always, if-missing or never. */
    private PullPolicy pullPolicy = PullPolicy.IF_MISSING;

    /** Credentials for a private registry of the image. */
    private final Registry registry = new Registry();

    /** Guest memory of each sandbox; at least 64MB. */
    private DataSize memory = DataSize.ofMegabytes(512);

    /** Virtual CPUs of each sandbox, 1 to 64. */
    private int cpus = 1;

    /** Environment variables set for every command in the sandboxes. */
    private Map<String, String> env = new LinkedHashMap<>();

    /** Labels attached to every sandbox, in addition to the pool's own labels. */
    private Map<String, String> labels = new LinkedHashMap<>();

    /** Working directory of commands inside the sandboxes; the OCI image's WorkingDir, else the user's home, when unset. */
    private String workdir;

    /** User that commands run as inside the sandboxes (a name from the image's /etc/passwd, a uid or uid:gid); the OCI image's User, else root, when unset. */
    private String user;

    /** Shell used by SandboxTemplate.shell(...) inside the sandboxes; /bin/sh when unset. */
    private String shell;

    /** A sandbox that runs no command for this long stops by itself; 0 means never. */
    private Duration idleTimeout = Duration.ZERO;

    /**
     * After this long without commands, a sandbox whose guest holds much page cache has it
     * dropped, and the memory goes back to the host (idle pool members too); 0 means never.
     */
    private Duration cacheReclaimAfter = io.microsandbox.SandboxConfig.DEFAULT_CACHE_RECLAIM_AFTER;

    /** A sandbox stops by itself after running this long; 0 means never. */
    private Duration maxDuration = Duration.ZERO;

    /** How long to wait for a sandbox's guest agent after starting its VM. */
    private Duration bootTimeout = Duration.ofSeconds(60);

    /** Default time limit of one command run through SandboxTemplate; the process is killed past it. 0 means none. */
    private Duration execTimeout = Duration.ofSeconds(30);

    /** Whether start-up fails when QEMU or the guest kernel is missing (false: the application starts and health reports DOWN). */
    private boolean failFast = true;

    private final Pool pool = new Pool();

    public Path getHome() {
        return home;
    }

    public void setHome(Path home) {
        this.home = home;
    }

    public Accelerator getAccelerator() {
        return accelerator;
    }

    public void setAccelerator(Accelerator accelerator) {
        this.accelerator = accelerator;
    }

    public Path getQemu() {
        return qemu;
    }

    public void setQemu(Path qemu) {
        this.qemu = qemu;
    }

    public Path getKernelDir() {
        return kernelDir;
    }

    public void setKernelDir(Path kernelDir) {
        this.kernelDir = kernelDir;
    }

    public String getImage() {
        return image;
    }

    public void setImage(String image) {
        this.image = image;
    }

    public PullPolicy getPullPolicy() {
        return pullPolicy;
    }

    public void setPullPolicy(PullPolicy pullPolicy) {
        this.pullPolicy = pullPolicy;
    }

    public Registry getRegistry() {
        return registry;
    }

    public DataSize getMemory() {
        return memory;
    }

    public void setMemory(DataSize memory) {
        this.memory = memory;
    }

    public int getCpus() {
        return cpus;
    }

    public void setCpus(int cpus) {
        this.cpus = cpus;
    }

    public Map<String, String> getEnv() {
        return env;
    }

    public void setEnv(Map<String, String> env) {
        this.env = env;
    }

    public Map<String, String> getLabels() {
        return labels;
    }

    public void setLabels(Map<String, String> labels) {
        this.labels = labels;
    }

    public String getWorkdir() {
        return workdir;
    }

    public void setWorkdir(String workdir) {
        this.workdir = workdir;
    }

    public String getUser() {
        return user;
    }

    public void setUser(String user) {
        this.user = user;
    }

    public String getShell() {
        return shell;
    }

    public void setShell(String shell) {
        this.shell = shell;
    }

    public Duration getIdleTimeout() {
        return idleTimeout;
    }

    public void setIdleTimeout(Duration idleTimeout) {
        this.idleTimeout = idleTimeout;
    }

    public Duration getCacheReclaimAfter() {
        return cacheReclaimAfter;
    }

    public void setCacheReclaimAfter(Duration cacheReclaimAfter) {
        this.cacheReclaimAfter = cacheReclaimAfter;
    }

    public Duration getMaxDuration() {
        return maxDuration;
    }

    public void setMaxDuration(Duration maxDuration) {
        this.maxDuration = maxDuration;
    }

    public Duration getBootTimeout() {
        return bootTimeout;
    }

    public void setBootTimeout(Duration bootTimeout) {
        this.bootTimeout = bootTimeout;
    }

    public Duration getExecTimeout() {
        return execTimeout;
    }

    public void setExecTimeout(Duration execTimeout) {
        this.execTimeout = execTimeout;
    }

    public boolean isFailFast() {
        return failFast;
    }

    public void setFailFast(boolean failFast) {
        this.failFast = failFast;
    }

    public Pool getPool() {
        return pool;
    }

    /** What a returned sandbox goes through before it is lent again. */
    public enum Reset {
        /**
         * Nothing: the next borrower sees the files the previous one left, and processes it left
         * running in the background. Fast, and right when borrowers trust each other (one
         * tenant's jobs); use {@link #CLEAN} when they must not see each other's work.
         */
        NONE,
        /**
         * The member is replaced by a freshly booted sandbox with a clean upper disk; one lent
         * when the application closes is drained, whatever on-shutdown says.
         */
        CLEAN
    }

    /** What the pool does with its sandboxes when the application context closes. */
    public enum OnShutdown {
        /** Running commands finish, then every member stops and is removed. */
        DRAIN,
        /** Members keep running, detached, and are re-adopted by the next start of the same instance. */
        KEEP
    }

    /** How the pool starts its members. */
    public enum WarmStart {
        /** Every member boots cold (and runs the warm-up command, if any). */
        BOOT,
        /**
         * The first member boots cold, runs the warm-up command and is checkpointed; further
         * members are restored from that memory checkpoint instead of booting.
         */
        CHECKPOINT
    }

    /** Credentials for the registry of an OCI image (basic auth, or exchanged for a bearer token). */
    public static class Registry {

        /** User name at the registry; anonymous when unset. */
        private String username;

        /** Password or access token at the registry. */
        private String password;

        public String getUsername() {
            return username;
        }

        public void setUsername(String username) {
            this.username = username;
        }

        public String getPassword() {
            return password;
        }

        public void setPassword(String password) {
            this.password = password;
        }
    }

    /** The pool of detached sandboxes that SandboxTemplate borrows from. */
    public static class Pool {

        /** Whether SandboxTemplate borrows from a pool; false boots no sandbox until asked. */
        private boolean enabled = true;

        /** Name of the pool: a label on its sandboxes, a tag on its meters, a prefix of its sandbox names. */
        private String name = "default";

        /**
         * Whether each member also gets the microsandbox.sandbox.* meters (CPU, memory, disk),
         * tagged with its name: a time series per member, new with every rotation (and every
         * loan with reset=clean), each of which a metrics backend keeps; off by default, as
         * HikariCP publishes nothing per connection.
         */
        private boolean sandboxMetrics;

        /**
         * Identity of this application instance, a label on its sandboxes: a restart with the same
         * instance id re-adopts the sandboxes left running. Defaults to spring.application.name, else "app".
         */
        private String instanceId;

        /** Sandboxes kept booted and idle, warmed up in the background. */
        private int minIdle = 1;

        /**
         * Most sandboxes the pool holds, idle, lent, booting and still stopping together: a
         * retired member's VM counts until it has stopped, so its replacement may wait for that.
         */
        private int maxSize = 4;

        /** How long a borrower waits for a sandbox, pinging idle ones included, before failing with SandboxPoolExhaustedException. */
        private Duration acquireTimeout = Duration.ofSeconds(30);

        /**
         * Longest life of a member; a few percent of jitter spreads rotations. 0 means no limit. A
         * member is also retired a tenth (at most a minute) before microsandbox.max-duration.
         */
        private Duration maxLifetime = Duration.ofMinutes(30);

        /** Most loans of one member before it is rotated. 0 means no limit. */
        private int maxUses = 100;

        /** A member idle for longer than this is pinged (agent round trip) before it is lent. */
        private Duration validationInterval = Duration.ofMillis(500);

        /** How long the ping before a loan may take; a member that does not answer is discarded. */
        private Duration validationTimeout = Duration.ofSeconds(5);

        /** How often the housekeeper looks for expired, crashed or missing members. */
        private Duration housekeepingPeriod = Duration.ofSeconds(5);

        /** First delay after a failed boot; doubled on each further failure up to boot-backoff-max. */
        private Duration bootBackoff = Duration.ofSeconds(1);

        /** Longest delay between boot attempts after repeated failures. */
        private Duration bootBackoffMax = Duration.ofSeconds(60);

        /** What a returned sandbox goes through: none, or clean (replaced by a fresh one). */
        private Reset reset = Reset.NONE;

        /** What happens to the members when the application context closes: drain or keep. */
        private OnShutdown onShutdown = OnShutdown.DRAIN;

        /** Longest wait for the members to drain on shutdown before they are killed. */
        private Duration shutdownTimeout = Duration.ofSeconds(30);

        /**
         * How members start: boot (each boots cold) or checkpoint (restored from a memory
         * checkpoint of the first, warmed member; it shares that member's pre-checkpoint
         * process state, see the README).
         */
        private WarmStart warmStart = WarmStart.BOOT;

        /**
         * Shell command run once in every cold-booted member before it is lent (and before the
         * checkpoint when warm-start=checkpoint, so restored members start warmed), for
         * example importing Python modules. A non-zero exit fails that member's boot.
         */
        private String warmUpCommand;

        /** Longest run of the warm-up command. */
        private Duration warmUpTimeout = Duration.ofSeconds(60);

        public boolean isEnabled() {
            return enabled;
        }

        public void setEnabled(boolean enabled) {
            this.enabled = enabled;
        }

        public String getName() {
            return name;
        }

        public void setName(String name) {
            this.name = name;
        }

        public boolean isSandboxMetrics() {
            return sandboxMetrics;
        }

        public void setSandboxMetrics(boolean sandboxMetrics) {
            this.sandboxMetrics = sandboxMetrics;
        }

        public String getInstanceId() {
            return instanceId;
        }

        public void setInstanceId(String instanceId) {
            this.instanceId = instanceId;
        }

        public int getMinIdle() {
            return minIdle;
        }

        public void setMinIdle(int minIdle) {
            this.minIdle = minIdle;
        }

        public int getMaxSize() {
            return maxSize;
        }

        public void setMaxSize(int maxSize) {
            this.maxSize = maxSize;
        }

        public Duration getAcquireTimeout() {
            return acquireTimeout;
        }

        public void setAcquireTimeout(Duration acquireTimeout) {
            this.acquireTimeout = acquireTimeout;
        }

        public Duration getMaxLifetime() {
            return maxLifetime;
        }

        public void setMaxLifetime(Duration maxLifetime) {
            this.maxLifetime = maxLifetime;
        }

        public int getMaxUses() {
            return maxUses;
        }

        public void setMaxUses(int maxUses) {
            this.maxUses = maxUses;
        }

        public Duration getValidationInterval() {
            return validationInterval;
        }

        public void setValidationInterval(Duration validationInterval) {
            this.validationInterval = validationInterval;
        }

        public Duration getValidationTimeout() {
            return validationTimeout;
        }

        public void setValidationTimeout(Duration validationTimeout) {
            this.validationTimeout = validationTimeout;
        }

        public Duration getHousekeepingPeriod() {
            return housekeepingPeriod;
        }

        public void setHousekeepingPeriod(Duration housekeepingPeriod) {
            this.housekeepingPeriod = housekeepingPeriod;
        }

        public Duration getBootBackoff() {
            return bootBackoff;
        }

        public void setBootBackoff(Duration bootBackoff) {
            this.bootBackoff = bootBackoff;
        }

        public Duration getBootBackoffMax() {
            return bootBackoffMax;
        }

        public void setBootBackoffMax(Duration bootBackoffMax) {
            this.bootBackoffMax = bootBackoffMax;
        }

        public Reset getReset() {
            return reset;
        }

        public void setReset(Reset reset) {
            this.reset = reset;
        }

        public OnShutdown getOnShutdown() {
            return onShutdown;
        }

        public void setOnShutdown(OnShutdown onShutdown) {
            this.onShutdown = onShutdown;
        }

        public Duration getShutdownTimeout() {
            return shutdownTimeout;
        }

        public void setShutdownTimeout(Duration shutdownTimeout) {
            this.shutdownTimeout = shutdownTimeout;
        }

        public WarmStart getWarmStart() {
            return warmStart;
        }

        public void setWarmStart(WarmStart warmStart) {
            this.warmStart = warmStart;
        }

        public String getWarmUpCommand() {
            return warmUpCommand;
        }

        public void setWarmUpCommand(String warmUpCommand) {
            this.warmUpCommand = warmUpCommand;
        }

        public Duration getWarmUpTimeout() {
            return warmUpTimeout;
        }

        public void setWarmUpTimeout(Duration warmUpTimeout) {
            this.warmUpTimeout = warmUpTimeout;
        }
    }
}

package io.microsandbox.spring.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.Microsandbox;
import io.microsandbox.Sandbox;
import io.microsandbox.runtime.SandboxPreparer;
import io.microsandbox.spring.SandboxTemplate;
import io.microsandbox.spring.actuate.MicrosandboxEndpoint;
import io.microsandbox.spring.actuate.SandboxPoolHealthIndicator;
import io.microsandbox.spring.pool.Lease;
import io.microsandbox.spring.pool.MemberOrigin;
import io.microsandbox.spring.pool.PoolMemberView;
import io.microsandbox.spring.pool.SandboxPool;
import io.microsandbox.spring.pool.WarmStartStats;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * warm-start=checkpoint: the first member boots and runs the warm-up command, is checkpointed,
 * and the others are restored from it, each with its own identity, entropy and disk. A
 * checkpoint that becomes unusable is replaced by a cold boot, never a failing pool, and the
 * checkpoint goes with the pool.
 */
class PoolCheckpointIT {

    static final Path HOME = VmTestSupport.home("ckpt");

    /** Imports modules (the point of a warm-up) and leaves a file that restored members must have. */
    static final String WARM_UP = "python3 -c 'import json, decimal, email.parser' && echo warmed > /root/warm-state && sync";

    @AfterAll
    static void nothingLeft() throws InterruptedException {
        VmTestSupport.assertNothingLeft(HOME);
    }

    @Test
    void membersAreRestoredFromACheckpointOfTheWarmedFirstMember() {
        AtomicReference<Path> checkpointDir = new AtomicReference<>();
        VmTestSupport.runner(HOME)
                .withBean(MeterRegistry.class, SimpleMeterRegistry::new)
                .withPropertyValues("microsandbox.pool.warm-start=checkpoint", "microsandbox.pool.warm-up-command=" + WARM_UP,
                        "microsandbox.pool.min-idle=3", "microsandbox.pool.max-size=3", "microsandbox.pool.name=warm")
                .run(context -> {
                    assertThat(context).hasNotFailed();
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    MeterRegistry meters = context.getBean(MeterRegistry.class);
                    VmTestSupport.await("three members", Duration.ofMinutes(4), () -> pool.stats().idle() == 3);

                    // one cold boot (the template), one checkpoint, two restores
                    WarmStartStats w = pool.warmStartStats();
                    assertThat(w.booted()).isEqualTo(1);
                    assertThat(w.restored()).isEqualTo(2);
                    assertThat(w.checkpointsTaken()).isEqualTo(1);
                    Path dir = Path.of(w.checkpoint());
                    checkpointDir.set(dir);
                    assertThat(dir).isEqualTo(HOME.resolve("checkpoints").resolve(pool.checkpointName()));
                    assertThat(dir.resolve("memory.bin")).isRegularFile();
                    assertThat(pool.members()).extracting(PoolMemberView::origin)
                            .containsExactlyInAnyOrder(MemberOrigin.BOOT, MemberOrigin.RESTORE, MemberOrigin.RESTORE);
                    assertThat(meters.get("microsandbox.pool.created").tag("source", "boot").counter().count()).isEqualTo(1.0);
                    assertThat(meters.get("microsandbox.pool.created").tag("source", "restore").counter().count()).isEqualTo(2.0);
                    assertThat(meters.get("microsandbox.pool.boot").tag("source", "restore").timer().count()).isEqualTo(2);
                    assertThat(context.getBean(SandboxPoolHealthIndicator.class).health().getDetails())
                            .containsEntry("warmStart", "checkpoint").containsEntry("restored", 2L).containsEntry("booted", 1L);
                    @SuppressWarnings("unchecked")
                    Map<String, Object> endpointPool = (Map<String, Object>) context.getBean(MicrosandboxEndpoint.class).sandboxes().get("pool");
                    assertThat(endpointPool.get("warmStart")).asString().contains("restored=2");

                    // the template serves commands from whichever member it gets
                    assertThat(context.getBean(SandboxTemplate.class).exec("cat", "/root/warm-state").stdout()).isEqualTo("warmed\n");

                    // all three at once: each has the warm-up's file, its own hostname and randomness, and only its own writes
                    List<Lease> leases = new ArrayList<>();
                    try {
                        for (int i = 0; i < 3; i++) {
                            leases.add(pool.borrow());
                        }
                        Set<String> hostnames = new HashSet<>();
                        Set<String> randomness = new HashSet<>();
                        for (Lease lease : leases) {
                            Sandbox sb = lease.sandbox();
                            assertThat(sb.exec("cat", List.of("/root/warm-state")).stdout()).as(sb.name()).isEqualTo("warmed\n");
                            String hostname = sb.exec("hostname", List.of()).stdout().strip();
                            assertThat(hostname).isEqualTo(SandboxPreparer.hostnameFor(sb.name()));
                            hostnames.add(hostname);
                            randomness.add(sb.shell("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'").stdout());
                            sb.shell("echo mine > /root/own-" + sb.name() + " && sync");
                        }
                        assertThat(hostnames).hasSize(3);
                        assertThat(randomness).hasSize(3);
                        for (Lease lease : leases) {
                            Sandbox sb = lease.sandbox();
                            assertThat(sb.exec("ls", List.of("/root")).stdout().lines())
                                    .containsExactlyInAnyOrder("warm-state", "own-" + sb.name());
                        }
                    } finally {
                        leases.forEach(pool::giveBack);
                    }

                    // the checkpoint becomes unusable (its memory file gone): the refill boots cold and checkpoints again
                    Files.delete(dir.resolve("memory.bin"));
                    String restoredMember = pool.members().stream().filter(m -> m.origin() == MemberOrigin.RESTORE)
                            .findFirst().orElseThrow().name();
                    pool.kill(restoredMember);
                    VmTestSupport.await("a cold refill and a new checkpoint", Duration.ofMinutes(3),
                            () -> pool.warmStartStats().checkpointsTaken() == 2 && pool.stats().idle() == 3);
                    w = pool.warmStartStats();
                    assertThat(w.checkpointRefreshes()).isEqualTo(1);
                    assertThat(w.booted()).isEqualTo(2);
                    assertThat(w.restored()).isEqualTo(2);
                    assertThat(w.lastCheckpointError()).contains("memory file");
                    assertThat(pool.stats().totalBootFailures()).as("no failed boot: the pool fell back").isZero();
                    assertThat(dir.resolve("memory.bin")).isRegularFile();

                    // and the next refill restores from the new checkpoint
                    String bootMember = pool.members().stream().filter(m -> m.origin() == MemberOrigin.BOOT)
                            .findFirst().orElseThrow().name();
                    pool.kill(bootMember);
                    VmTestSupport.await("a refill from the new checkpoint", Duration.ofMinutes(2),
                            () -> pool.warmStartStats().restored() == 3 && pool.stats().idle() == 3);
                    assertThat(context.getBean(SandboxTemplate.class).shell("cat /root/warm-state").stdout()).isEqualTo("warmed\n");
                });
        // the checkpoint goes with the pool; the members were drained
        assertThat(checkpointDir.get()).doesNotExist();
        Microsandbox runtime = Microsandbox.builder().home(HOME).build();
        assertThat(runtime.checkpoints().list()).isEmpty();
        assertThat(runtime.list()).isEmpty();
    }

    @Test
    void aKernelChangeReplacesTheCheckpointByAColdBoot() throws Exception {
        // a kernel directory of the test's own, so that the test can change the kernel under the running pool
        Path kernel = HOME.resolve("kernel-under-test");
        Files.createDirectories(kernel);
        Path bundled = io.microsandbox.runtime.vmm.KernelBundle.locate(HOME, null).dir();
        try (var files = Files.list(bundled)) {
            for (Path f : files.toList()) {
                Files.copy(f, kernel.resolve(f.getFileName()));
            }
        }
        VmTestSupport.runner(HOME)
                .withPropertyValues("microsandbox.pool.warm-start=checkpoint", "microsandbox.pool.name=upgrade",
                        "microsandbox.kernel-dir=" + kernel, "microsandbox.pool.min-idle=2", "microsandbox.pool.max-size=2")
                .run(context -> {
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    VmTestSupport.await("two members", Duration.ofMinutes(3), () -> pool.stats().idle() == 2);
                    assertThat(pool.warmStartStats().restored()).isEqualTo(1);

                    // "upgraded": another kernel file (the same kernel with a byte appended, which still boots)
                    Path vmlinux = kernel.resolve("vmlinux");
                    Path upgraded = kernel.resolve("vmlinux.new");
                    Files.copy(vmlinux, upgraded);
                    Files.write(upgraded, new byte[1], java.nio.file.StandardOpenOption.APPEND);
                    Files.move(upgraded, vmlinux, java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                            java.nio.file.StandardCopyOption.ATOMIC_MOVE);

                    String restoredMember = pool.members().stream().filter(m -> m.origin() == MemberOrigin.RESTORE)
                            .findFirst().orElseThrow().name();
                    pool.kill(restoredMember);
                    VmTestSupport.await("a cold refill under the new kernel and a new checkpoint", Duration.ofMinutes(3),
                            () -> pool.warmStartStats().checkpointsTaken() == 2 && pool.stats().idle() == 2);
                    WarmStartStats w = pool.warmStartStats();
                    assertThat(w.lastCheckpointError()).contains("cannot be restored by this runtime").contains("kernel was");
                    assertThat(w.checkpointRefreshes()).isEqualTo(1);
                    assertThat(w.booted()).isEqualTo(2);
                    assertThat(pool.stats().totalBootFailures()).isZero();

                    // restores from the new checkpoint run under the new kernel
                    // the oldest member is the first template, booted under the old kernel
                    String oldMember = pool.members().stream().min(java.util.Comparator.comparing(PoolMemberView::createdAt))
                            .orElseThrow().name();
                    pool.kill(oldMember);
                    VmTestSupport.await("a refill from the new checkpoint", Duration.ofMinutes(2),
                            () -> pool.warmStartStats().restored() == 2 && pool.stats().idle() == 2);
                    assertThat(context.getBean(SandboxTemplate.class).exec("true").exitCode()).isZero();
                });
    }

    @Test
    void aFailingWarmUpFailsTheBootAndLeavesNoSandbox() {
        VmTestSupport.runner(HOME)
                .withPropertyValues("microsandbox.pool.warm-start=checkpoint", "microsandbox.pool.name=cold",
                        "microsandbox.pool.warm-up-command=echo no module named foo >&2; exit 3",
                        "microsandbox.pool.max-size=1", "microsandbox.pool.boot-backoff=10m", "microsandbox.pool.boot-backoff-max=10m")
                .run(context -> {
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    VmTestSupport.await("a failed boot", Duration.ofMinutes(2), () -> pool.stats().totalBootFailures() == 1);
                    assertThat(pool.stats().lastBootError()).contains("warm-up command exited with 3").contains("no module named foo");
                    assertThat(pool.warmStartStats().checkpoint()).isNull();
                    assertThat(pool.warmStartStats().checkpointsTaken()).isZero();
                    Microsandbox runtime = Microsandbox.builder().home(HOME).build();
                    VmTestSupport.await("the member removed", Duration.ofSeconds(30), () -> runtime.list().isEmpty());
                });
    }
}

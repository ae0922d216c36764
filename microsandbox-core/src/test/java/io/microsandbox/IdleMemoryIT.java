package io.microsandbox;

import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import java.nio.file.Files;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * A guest keeps the page cache of what it once read for as long as nothing presses on its
 * memory; an idle sandbox has it drop that cache, which then goes back to the host.
 */
class IdleMemoryIT {
    /** Written, synced and read back by the guest: 200 MB of page cache. */
    private static final String CACHE_AND_HOLD = "head -c 200000000 /dev/zero > /root/cached && sync && cat /root/cached > /dev/null "
            + "&& awk '/^Cached:/ {print $2}' /proc/meminfo && { read line; true; }";

    @Test
    @Timeout(300)
    void anIdleGuestDropsItsPageCacheAndTheHostGetsTheMemoryBack() throws Exception {
        String name = TestSandboxes.uniqueName("reclaim");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().memoryMib(512).cacheReclaimAfter(Duration.ofSeconds(2)).ephemeral(true).build())) {
            long peak = cacheWhileRunning(sb);
            long after = peak;
            // two seconds idle, the next second's sample, the agent's drop and compaction, then
            // free page reporting about two seconds later (longer on a loaded host)
            for (int i = 0; i < 180 && after > peak - (120L << 20); i++) {
                Thread.sleep(500);
                after = sb.metrics().memoryHostResidentBytes();
            }
            System.out.printf("QEMU RSS with 200 MB of guest page cache %d MiB, after the idle reclaim %d MiB%n", peak >> 20, after >> 20);
            assertThat(after).as("QEMU's RSS once the idle guest dropped its page cache").isLessThan(peak - (120L << 20));
            String log = Files.readString(SandboxLayout.of(RuntimeFiles.defaultHome(), name).supervisorLog());
            assertThat(log).containsPattern("idle for \\d+ s with \\d+ MiB of page cache: asked the guest to drop it");
            assertThat(cachedKib(sb)).as("the guest's page cache, KiB").isLessThan(64 << 10);
            // once per idle spell: the command just run starts the next one
            Thread.sleep(4000);
            assertThat(Files.readString(SandboxLayout.of(RuntimeFiles.defaultHome(), name).supervisorLog()).split("asked the guest to drop it", -1))
                    .as("reclaims asked for").hasSize(2);
        }
    }

    @Test
    @Timeout(300)
    void withoutReclaimTheIdleGuestKeepsItsPageCache() throws Exception {
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("noreclaim"), TestSandboxes.config().memoryMib(512).cacheReclaimAfter(Duration.ZERO).ephemeral(true).build())) {
            long peak = cacheWhileRunning(sb);
            Thread.sleep(6000);
            assertThat(sb.metrics().memoryHostResidentBytes()).isGreaterThan(peak - (50L << 20));
            assertThat(cachedKib(sb)).as("the guest's page cache, KiB").isGreaterThan(150 << 10);
        }
    }

    /**
     * Fills the guest's page cache within one command that stays running (a running command
     * keeps the sandbox from being idle) and returns QEMU's RSS read while it runs.
     */
    private static long cacheWhileRunning(Sandbox sb) throws Exception {
        try (ExecHandle holder = sb.execStream("sh", List.of("-c", CACHE_AND_HOLD), ExecOptions.builder().stdinPipe().build())) {
            String printed = TestSandboxes.firstLine(holder, "the command filling the page cache");
            assertThat(Long.parseLong(printed.strip())).as("the guest's page cache, KiB").isGreaterThan(190_000);
            Thread.sleep(1500); // a metrics sample taken after the cache was filled
            long peak = sb.metrics().memoryHostResidentBytes();
            holder.stdin().close();
            assertThat(holder.collect().exitCode()).isZero();
            return peak;
        }
    }

    private static long cachedKib(Sandbox sb) {
        return Long.parseLong(sb.shell("awk '/^Cached:/ {print $2}' /proc/meminfo").stdout().strip());
    }
}

package io.microsandbox;

import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.vmm.KernelBundle;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Properties;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Which guest kernel boots: microsandbox's own (the microsandbox-kernel jar) by default,
 * Debian's generic one when the configuration selects it; and what ours brings: no modules,
 * a boot timeline in the supervisor log, a balloon that gives freed memory back.
 */
class KernelSelectionIT {

    @Test
    @Timeout(180)
    void bootsTheBundledKernelByDefaultWithNoModulesAndLogsTheTimeline() throws Exception {
        String release = bundledProperties().getProperty("release");
        String name = TestSandboxes.uniqueName("ourkernel");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().ephemeral(true).build())) {
            assertThat(sb.exec("uname", List.of("-r")).stdout().strip()).isEqualTo(release).doesNotEndWith("-amd64");
            // no loadable modules at all; the balloon driver is bound to microvm's balloon device
            ExecOutput out = sb.shell("test -e /proc/modules && echo modules; ls /sys/bus/virtio/drivers/virtio_balloon");
            assertThat(out.stdout()).doesNotContain("modules").contains("virtio");
            String log = Files.readString(SandboxLayout.of(RuntimeFiles.defaultHome(), name).supervisorLog());
            assertThat(log).containsPattern("boot timeline: kernel start to agent start \\d+ ms, agent start to hello \\d+ ms \\(0 modules");
        }
    }

    @Test
    @Timeout(180)
    void ourKernelKeepsItsVirtqueuesSmallSoTheConsoleDriverPostsFewBuffers() throws Exception {
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("queues"), TestSandboxes.config().ephemeral(true).build())) {
            assertThat(sb.exec("cat", List.of("/proc/cmdline")).stdout().strip().split(" ")).contains("virtio_mmio.max_queue_size=256");
            assertThat(sb.exec("cat", List.of("/sys/module/virtio_mmio/parameters/max_queue_size")).stdout().strip()).isEqualTo("256");
            // virtio-mmio offers 1024 entries a queue, and the console driver posts a 4 KiB
            // buffer for each entry of two queues: 8 MiB of kernel memory (14 MiB in all)
            long slabKib = Long.parseLong(sb.shell("awk '/^Slab:/ {print $2}' /proc/meminfo").stdout().strip());
            assertThat(slabKib).as("the guest kernel's slab, KiB").isLessThan(8 * 1024);
        }
    }

    @Test
    @Timeout(180)
    void underTcgOurKernelIsToldTheApicTimerRateAndKeepsTime() throws Exception {
        String name = TestSandboxes.uniqueName("timer");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().ephemeral(true).build())) {
            org.junit.jupiter.api.Assumptions.assumeTrue(Microsandbox.defaultRuntime().resolvedAccelerator() == Accelerator.TCG,
                    "the parameters are for TCG only");
            String hz = bundledProperties().getProperty("hz");
            assertThat(sb.exec("cat", List.of("/proc/cmdline")).stdout().strip().split(" "))
                    .contains("lapic_timer_period=" + 1_000_000_000L / Long.parseLong(hz), "noinitpoison", "noreplace-smp");
            // Guest timers fire on the local APIC timer: a period too long would make a 2 s
            // sleep take several times that on the host's clock. (One too short only wakes
            // the guest early, and the kernel sleeps again against its clock source.)
            long start = System.nanoTime();
            ExecOutput out = sb.exec("sleep", List.of("2"));
            double seconds = (System.nanoTime() - start) / 1e9;
            assertThat(out.exitCode()).isZero();
            assertThat(seconds).isBetween(1.95, 3.5);
        }
    }

    @Test
    @Timeout(240)
    void underTcgGuestProcessesMapTheirCodeWhereTheLastOneDidUnlessRestrictedOrAsked() throws Exception {
        org.junit.jupiter.api.Assumptions.assumeTrue(Microsandbox.defaultRuntime().resolvedAccelerator() == Accelerator.TCG,
                "KVM guests keep their address randomisation");
        // TCG finds translated code by its virtual address: a process whose libc is where the
        // last one's was reuses its translation
        String libcStart = "grep -m1 'libc\\.so' /proc/self/maps | cut -d- -f1";
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("norandmaps"), TestSandboxes.config().ephemeral(true).build())) {
            assertThat(sb.exec("cat", List.of("/proc/sys/kernel/randomize_va_space")).stdout().strip()).isEqualTo("0");
            assertThat(sb.shell(libcStart).stdout()).isNotBlank().isEqualTo(sb.shell(libcStart).stdout());
        }
        // a sandbox hardened inside keeps it
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("restricted"),
                TestSandboxes.config().securityProfile(SecurityProfile.RESTRICTED).ephemeral(true).build())) {
            assertThat(sb.exec("cat", List.of("/proc/sys/kernel/randomize_va_space")).stdout().strip()).isEqualTo("2");
        }
        System.setProperty(io.microsandbox.runtime.vmm.QemuCommand.TCG_GUEST_ASLR_PROPERTY, "true");
        try (Sandbox sb = Sandbox.create(TestSandboxes.uniqueName("randmaps"), TestSandboxes.config().ephemeral(true).build())) {
            assertThat(sb.exec("cat", List.of("/proc/sys/kernel/randomize_va_space")).stdout().strip()).isEqualTo("2");
            assertThat(sb.shell(libcStart).stdout()).isNotBlank().isNotEqualTo(sb.shell(libcStart).stdout());
        } finally {
            System.clearProperty(io.microsandbox.runtime.vmm.QemuCommand.TCG_GUEST_ASLR_PROPERTY);
        }
    }

    @Test
    @Timeout(180)
    void anIdleGuestStopsItsTimerTickAndWritesNothing() throws Exception {
        String name = TestSandboxes.uniqueName("tickless");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().ephemeral(true).build())) {
            long hz = Long.parseLong(bundledProperties().getProperty("hz"));
            // The kernel stops the tick of an idle CPU only once it runs on a clock source
            // good for high resolution (the TSC, after its refined calibration about a second
            // into the boot); then a sleeping guest takes only the interrupts its timers need.
            // A periodic tick (a local APIC timer that may stop in deep idle, with no
            // broadcast device to stand in: TCG's qemu64 without ARAT) takes HZ a second.
            ExecOutput out = sb.shell("for i in $(seq 50); do grep -qx tsc /sys/devices/system/clocksource/clocksource0/current_clocksource && break; sleep 0.1; done; "
                    + "sleep 0.5; a=$(awk '/LOC:/{print $2}' /proc/interrupts); sleep 2; b=$(awk '/LOC:/{print $2}' /proc/interrupts); "
                    + "echo $((b - a)); grep -m1 nohz_mode /proc/timer_list");
            String[] lines = out.stdout().strip().split("\n");
            assertThat(Long.parseLong(lines[0])).as("local timer interrupts in 2 s of idle (HZ=%d)", hz).isLessThan(hz);
            assertThat(lines[1]).as("the tick is in one-shot mode").doesNotContain(": 0");
            // a fresh upper disk's inode tables are marked zeroed, so the kernel does not zero
            // them after mounting (64 MiB of writes in a 4 GiB upper's first seconds)
            Thread.sleep(1200);
            assertThat(sb.metrics().diskWriteBytes()).as("bytes written to the disks by an idle guest").isLessThan(8L << 20);
        }
    }

    @Test
    @Timeout(180)
    void bootsDebiansKernelWhenSelected() throws Exception {
        String debian = System.getProperty("msb.test.debianKernel");
        assertThat(debian).as("msb.test.debianKernel (Debian's kernel from scripts/setup.sh)").isNotBlank();
        String name = TestSandboxes.uniqueName("debkernel");
        String old = System.getProperty(KernelBundle.KERNEL_PROPERTY);
        System.setProperty(KernelBundle.KERNEL_PROPERTY, debian);
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().ephemeral(true).build())) {
            assertThat(sb.exec("uname", List.of("-r")).stdout().strip()).endsWith("-amd64");
            // the parameters of microsandbox's kernel patches are never given to another kernel
            assertThat(sb.exec("cat", List.of("/proc/cmdline")).stdout()).doesNotContain("lapic_timer_period").doesNotContain("noinitpoison")
                    .doesNotContain("virtio_mmio.max_queue_size");
            assertThat(sb.exec("python3", List.of("-c", "print(6*7)")).stdout()).isEqualTo("42\n");
            String log = Files.readString(SandboxLayout.of(RuntimeFiles.defaultHome(), name).supervisorLog());
            assertThat(log).containsPattern("boot timeline: .*\\([1-9]\\d* modules");
        } finally {
            if (old == null) {
                System.clearProperty(KernelBundle.KERNEL_PROPERTY);
            } else {
                System.setProperty(KernelBundle.KERNEL_PROPERTY, old);
            }
        }
    }

    @Test
    @Timeout(240)
    void memoryTheGuestFreesGoesBackToTheHost() throws Exception {
        String name = TestSandboxes.uniqueName("balloon");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().memoryMib(512).ephemeral(true).build())) {
            long before = sb.metrics().memoryHostResidentBytes();
            // 300 MiB written (every page touched) and held until the process's stdin closes: the
            // peak is read while the guest still uses them. Read after the exit instead, a slow
            // round trip could come after the guest reported them free (two seconds after the free)
            String hold = "import sys\nb = b'x' * (300 << 20)\nprint(len(b) >> 20, flush=True)\nsys.stdin.read()";
            long peak;
            try (ExecHandle holder = sb.execStream("python3", List.of("-c", hold), ExecOptions.builder().stdinPipe().build())) {
                assertThat(TestSandboxes.firstLine(holder, "the process holding 300 MiB")).isEqualTo("300\n");
                peak = sb.metrics().memoryHostResidentBytes();
                holder.stdin().close();
                assertThat(holder.collect().exitCode()).isZero();
            }
            long after = peak;
            // free page reporting runs about two seconds after pages are freed; on a loaded
            // host the guest's reporting worker can lag far behind that
            for (int i = 0; i < 180 && after > before + (100L << 20); i++) {
                Thread.sleep(500);
                after = sb.metrics().memoryHostResidentBytes();
            }
            System.out.printf("QEMU RSS: before %d MiB, after the 300 MiB process %d MiB, settled %d MiB%n",
                    before >> 20, peak >> 20, after >> 20);
            assertThat(peak).as("the guest's 300 MiB reached the host").isGreaterThan(before + (200L << 20));
            assertThat(after).as("QEMU's RSS once the guest freed them").isLessThan(before + (100L << 20));
        }
    }

    private static Properties bundledProperties() throws IOException {
        Properties props = new Properties();
        try (InputStream in = KernelBundle.class.getResourceAsStream(KernelBundle.RESOURCE_DIR + "kernel.properties")) {
            assertThat(in).as("the microsandbox-kernel jar on the test class path").isNotNull();
            props.load(in);
        }
        return props;
    }
}

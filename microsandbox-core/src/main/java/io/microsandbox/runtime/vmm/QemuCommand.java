package io.microsandbox.runtime.vmm;

import io.microsandbox.Accelerator;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The QEMU {@code microvm} command line of one sandbox, device by device: a serial console
 * to the supervisor (or a file), the read-only lower disk, the writable upper disk, the agent's virtio-serial
 * port, a virtio balloon that returns freed guest memory to the host, and a QMP socket. Nothing else: no firmware, no PCI, no default devices.
 */
public final class QemuCommand {
    /** Marker the agent prints on the console when booted with {@link #PROBE_PARAM}. */
    public static final String PROBE_MARKER = "MSB_PROBE_OK";
    /** Kernel parameter that makes the agent power off right away (probe and bare-boot bench). */
    public static final String PROBE_PARAM = "msb.probe=1";

    private static final long DEFAULT_TSC_KHZ = 2_000_000;
    private static final long HOST_TSC_KHZ = hostTscKhz();
    /**
     * TCG's translation buffer in MiB (QEMU's tb-size, default 1 GiB in QEMU 7.2): QEMU fills
     * it with translated guest code, flushing only when it is full, and what it touched stays
     * resident, so a sandbox's RSS grows with every new program it runs. Measured here: after
     * 120 runs of {@code true} QEMU held 309 MiB with the default, 176 MiB with 64; Python
     * start-up ran as fast with 64 as with the default, 2.7x slower with 32 (the buffer
     * thrashes). {@code -Dmicrosandbox.tcg.tbSizeMib=0} leaves QEMU's default. KVM has no such buffer.
     */
    static final int TCG_TB_SIZE_MIB = Integer.getInteger("microsandbox.tcg.tbSizeMib", 64);
    /**
     * {@code true} keeps the guest's address space layout randomisation under TCG (read when
     * the command line is built). TCG finds translated code by its virtual address, so with
     * randomisation every new process maps libc and its program at new addresses and has them
     * translated again: measured here, {@code true} took 25 ms a run against 10 ms without, and
     * 120 runs grew QEMU by 30 MiB (its translation buffer full) against 5. Without it
     * ({@code norandmaps}, the default under TCG) the guest's processes lose a defence against
     * their own bugs, and an unprivileged command one against the guest's root processes (the
     * agent among them), not the host against the guest; a restricted sandbox keeps it
     * ({@link #guestAslr}), and a guest's root can turn it back on with
     * {@code sysctl kernel.randomize_va_space=2}. Under KVM the guest keeps it.
     */
    public static final String TCG_GUEST_ASLR_PROPERTY = "microsandbox.tcg.guestAslr";

    private String qemuBinary = "qemu-system-x86_64";
    private Accelerator accelerator = Accelerator.TCG;
    private int memoryMib = 512;
    private int cpus = 1;
    private boolean guestMemoryPassed;
    private boolean guestAslr;
    private KernelBundle kernel;
    private Path initrd;
    /**
     * Kernel parameters of every boot. Beyond the console and "reboot on panic, and have QEMU
     * exit" (-no-reboot), they skip work a microVM does not need and that is slow when
     * emulated: the crypto self-tests (about 0.3 s under TCG), probing for UARTs and PCI that
     * microvm does not have, and the legacy timer check.
     */
    private final List<String> kernelParams = new ArrayList<>(List.of(
            "console=ttyS0", "quiet", "panic=-1", "reboot=t",
            "cryptomgr.notests", "8250.nr_uarts=1", "pci=off", "no_timer_check"));
    private Path consoleLog;
    private Path consoleSocket;
    private Path lowerDisk;
    private String lowerFormat = "raw";
    private boolean lowerReadOnly = true;
    private Path upperDisk;
    private Path agentSocket;
    private Path qmpSocket;
    private Path statsMonitorSocket;
    private boolean balloon = true;
    private List<String> extraArgs = List.of();

    public QemuCommand qemuBinary(String qemuBinary) {
        this.qemuBinary = qemuBinary;
        return this;
    }

    /** {@link Accelerator#KVM} or {@link Accelerator#TCG}; AUTO must be resolved first. */
    public QemuCommand accelerator(Accelerator accelerator) {
        if (accelerator == Accelerator.AUTO) {
            throw new IllegalArgumentException("resolve the accelerator before building the command line");
        }
        this.accelerator = accelerator;
        return this;
    }

    public QemuCommand memoryMib(int memoryMib) {
        this.memoryMib = memoryMib;
        return this;
    }

    public QemuCommand cpus(int cpus) {
        this.cpus = cpus;
        return this;
    }

    /**
     * Keep the guest's address randomisation under TCG too (for a sandbox that asked for
     * hardening inside the guest); see {@link #TCG_GUEST_ASLR_PROPERTY}.
     */
    public QemuCommand guestAslr(boolean guestAslr) {
        this.guestAslr = guestAslr;
        return this;
    }

    /** The guest kernel and its initramfs; under TCG the kernel's {@link KernelBundle#emulationParams()} are added. */
    public QemuCommand kernel(KernelBundle kernel, Path initrd) {
        this.kernel = kernel;
        this.initrd = initrd;
        return this;
    }

    public QemuCommand kernelParam(String param) {
        kernelParams.add(param);
        return this;
    }

    /** The serial console goes to this file (for short runs such as the accelerator probe). */
    public QemuCommand consoleLog(Path consoleLog) {
        this.consoleLog = consoleLog;
        this.consoleSocket = null;
        return this;
    }

    /**
     * The serial console goes to this Unix socket (the supervisor listens on it and keeps a
     * bounded log): a guest writing to its console without end cannot fill the host's disk.
     */
    public QemuCommand consoleSocket(Path consoleSocket) {
        this.consoleSocket = consoleSocket;
        this.consoleLog = null;
        return this;
    }

    /**
     * The lower disk's format and whether QEMU opens it read-only (default raw, read-only); a
     * disk-image root is a qcow2 overlay QEMU may write (ext4 replays its journal on mount).
     */
    public QemuCommand lowerFormat(String format, boolean readOnly) {
        this.lowerFormat = format;
        this.lowerReadOnly = readOnly;
        return this;
    }

    public QemuCommand disks(Path lowerDisk, Path upperDisk) {
        this.lowerDisk = lowerDisk;
        this.upperDisk = upperDisk;
        return this;
    }

    /** Unix socket the agent port's chardev connects to (the supervisor listens on it). */
    public QemuCommand agentSocket(Path agentSocket) {
        this.agentSocket = agentSocket;
        return this;
    }

    /** A virtio balloon with free page reporting (on by default; off for probe boots). */
    public QemuCommand balloon(boolean balloon) {
        this.balloon = balloon;
        return this;
    }

    /** Further devices, e.g. the shares and disks of a sandbox's mounts (runtime.GuestSetup). */
    public QemuCommand extraArgs(List<String> extraArgs) {
        this.extraArgs = List.copyOf(extraArgs);
        return this;
    }

    /**
     * Guest RAM in the memfd QEMU's parent passes it as fd {@link io.microsandbox.runtime.Posix#PASSED_FD}
     * (a supervisor's, which can then fill it from a checkpoint while QEMU starts, and copy it
     * into one), instead of a memfd QEMU creates itself.
     */
    public QemuCommand guestMemoryPassed() {
        this.guestMemoryPassed = true;
        return this;
    }

    public QemuCommand qmpSocket(Path qmpSocket) {
        this.qmpSocket = qmpSocket;
        return this;
    }

    /**
     * A second monitor, for the once-a-second statistics ({@link BlockStats}), whose client
     * stays connected: QEMU serves one client per monitor socket at a time.
     */
    public QemuCommand statsMonitorSocket(Path statsMonitorSocket) {
        this.statsMonitorSocket = statsMonitorSocket;
        return this;
    }

    public List<String> argv() {
        if (kernel == null || initrd == null || (consoleLog == null && consoleSocket == null)) {
            throw new IllegalStateException("kernel, initrd and a console (log file or socket) are required");
        }
        List<String> argv = new ArrayList<>();
        argv.add(qemuBinary);
        // Guest RAM in a memfd rather than anonymous memory: QEMU asks for transparent huge
        // pages on anonymous RAM, so every 4 KiB page the guest touches keeps 2 MiB resident on
        // the host; shared memory stays in 4 KiB pages (huge pages for shmem are off by default),
        // and the balloon's free page reporting punches holes in it all the same. An idle
        // sandbox holds about 11 MiB less this way.
        add(argv, "-object", guestMemoryPassed
                ? "memory-backend-file,id=ram,size=" + memoryMib + "M,mem-path=/dev/fd/" + io.microsandbox.runtime.Posix.PASSED_FD + ",share=on"
                : "memory-backend-memfd,id=ram,size=" + memoryMib + "M");
        // No PIT: the guest's clock events come from the local APIC timer; an i8254 left as
        // the kernel's boot found it kept a QEMU timer firing about 37 times a second in
        // every idle sandbox (its interrupt masked in the guest), and is one device less.
        add(argv, "-M", "microvm,x-option-roms=off,rtc=on,pit=off,memory-backend=ram");
        if (accelerator == Accelerator.KVM) {
            add(argv, "-accel", "kvm", "-cpu", "host");
        } else {
            // 'max' hangs with several vCPUs under TCG here; qemu64 boots with any count.
            // ARAT (the local APIC timer keeps running in deep idle): without it the guest
            // kernel finds no timer to stand in for that one and keeps a periodic tick, HZ
            // interrupts a second in an idle guest, each emulated (2.3% of a host core per
            // idle sandbox against 0.8% with it). -cpu host under KVM passes the host's.
            add(argv, "-accel", TCG_TB_SIZE_MIB > 0 ? "tcg,tb-size=" + TCG_TB_SIZE_MIB : "tcg", "-cpu", "qemu64,+arat");
        }
        add(argv, "-m", Integer.toString(memoryMib), "-smp", Integer.toString(cpus));
        add(argv, "-nodefaults", "-no-user-config", "-nographic", "-no-reboot");
        add(argv, "-kernel", kernel.vmlinux().toString(), "-initrd", initrd.toString());
        List<String> params = new ArrayList<>(kernelParams);
        params.addAll(kernel.bootParams());
        if (accelerator == Accelerator.TCG) {
            // Under TCG the guest TSC ticks at the host's rate, and the kernel's early TSC
            // calibration against the emulated timer sometimes spins forever (about one boot
            // in five here): telling it the rate skips the calibration.
            params.add("tsc_early_khz=" + HOST_TSC_KHZ);
            params.addAll(kernel.emulationParams());
            if (!guestAslr && !Boolean.getBoolean(TCG_GUEST_ASLR_PROPERTY)) {
                params.add("norandmaps");
            }
        }
        add(argv, "-append", String.join(" ", params));
        add(argv, "-chardev", consoleSocket != null ? "socket,id=console,path=" + escape(consoleSocket)
                : "file,id=console,path=" + escape(consoleLog));
        add(argv, "-serial", "chardev:console");
        if (lowerDisk != null) {
            add(argv, "-drive", "id=lower,file=" + escape(lowerDisk) + ",format=" + lowerFormat + ",if=none" + (lowerReadOnly ? ",readonly=on" : ""));
            add(argv, "-device", "virtio-blk-device,drive=lower,serial=msb-lower");
        }
        if (upperDisk != null) {
            add(argv, "-drive", "id=upper,file=" + escape(upperDisk) + ",format=raw,if=none,discard=unmap");
            add(argv, "-device", "virtio-blk-device,drive=upper,serial=msb-upper");
        }
        if (agentSocket != null) {
            // Port 0 (reserved for a console) and the agent's: the default of 31 ports had the
            // guest set up 64 virtqueues, 3.6 MiB of an idle guest's memory.
            add(argv, "-device", "virtio-serial-device,max_ports=2");
            add(argv, "-chardev", "socket,id=agent,path=" + escape(agentSocket));
            add(argv, "-device", "virtserialport,chardev=agent,name=agent");
        }
        if (balloon) {
            // Free page reporting: pages the guest frees are handed back to the host (QEMU
            // discards them), so an idle sandbox does not keep what it once used. The guest
            // needs VIRTIO_BALLOON and PAGE_REPORTING (built into microsandbox's kernel).
            add(argv, "-device", "virtio-balloon-device,free-page-reporting=on");
        }
        argv.addAll(extraArgs);
        if (qmpSocket != null) {
            add(argv, "-qmp", "unix:" + escape(qmpSocket) + ",server=on,wait=off");
        }
        if (statsMonitorSocket != null) {
            add(argv, "-qmp", "unix:" + escape(statsMonitorSocket) + ",server=on,wait=off");
        }
        return argv;
    }

    /** The host CPU clock from /proc/cpuinfo ("cpu MHz"), which TCG passes through as the guest TSC rate. */
    static long hostTscKhz() {
        try (var lines = java.nio.file.Files.lines(Path.of("/proc/cpuinfo"))) {
            return lines.filter(l -> l.startsWith("cpu MHz"))
                    .map(l -> Math.round(Double.parseDouble(l.substring(l.indexOf(':') + 1).trim()) * 1000))
                    .findFirst().orElse(DEFAULT_TSC_KHZ);
        } catch (java.io.IOException | RuntimeException e) {
            return DEFAULT_TSC_KHZ;
        }
    }

    /** QEMU option values double a comma to keep it literal. */
    private static String escape(Path path) {
        return optionValue(path.toString());
    }

    /** {@code value} as it stands in a QEMU option's {@code key=value} list: its commas doubled. */
    public static String optionValue(String value) {
        return value.replace(",", ",,");
    }

    private static void add(List<String> argv, String... items) {
        argv.addAll(List.of(items));
    }
}

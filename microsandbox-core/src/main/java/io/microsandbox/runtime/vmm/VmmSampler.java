package io.microsandbox.runtime.vmm;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Samples the VMM process once a second from /proc: its CPU time (which, with one QEMU
 * process per sandbox, is the sandbox's CPU time), the CPU share over the last second, and
 * its resident memory.
 */
public final class VmmSampler {
    /** USER_HZ, the unit of /proc/<pid>/stat times; 100 on every Linux architecture we run on. */
    private static final long TICKS_PER_SECOND = 100;

    private volatile int pid;
    private volatile long startedNanos;
    private volatile long cpuNanos;
    private volatile long cpuMilliPercent;
    private long lastCpuNanos;
    private long lastSampleNanos;

    public void start(int vmmPid) {
        pid = vmmPid;
        startedNanos = System.nanoTime();
        lastSampleNanos = startedNanos;
        lastCpuNanos = readCpuNanos();
        cpuNanos = lastCpuNanos;
    }

    public synchronized void sample() {
        long now = System.nanoTime();
        long cpu = readCpuNanos();
        if (cpu < 0) {
            return;
        }
        long wall = now - lastSampleNanos;
        if (wall > 0) {
            cpuMilliPercent = (cpu - lastCpuNanos) * 100_000 / wall;
        }
        cpuNanos = cpu;
        lastCpuNanos = cpu;
        lastSampleNanos = now;
    }

    public long cpuTimeNanos() {
        return cpuNanos;
    }

    /** CPU share over the last sample, in thousandths of a percent (100% = one core). */
    public long cpuMilliPercent() {
        return cpuMilliPercent;
    }

    public long uptimeMillis() {
        return (System.nanoTime() - startedNanos) / 1_000_000;
    }

    /** VmRSS of the VMM in bytes, or -1 when it cannot be read. */
    public long residentBytes() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc", Integer.toString(pid), "status"))) {
                if (line.startsWith("VmRSS:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
                }
            }
        } catch (IOException | NumberFormatException e) {
            // the VMM is gone
        }
        return -1;
    }

    /**
     * The fields of {@code /proc/<pid>/stat} after the command name, from the state on
     * ({@code [0]} is the state, {@code [11]} utime, {@code [12]} stime).
     */
    public static String[] statFields(int pid) throws IOException {
        String stat = Files.readString(Path.of("/proc", Integer.toString(pid), "stat"));
        // the command name (field 2) may hold spaces: count fields after its closing parenthesis
        return stat.substring(stat.lastIndexOf(')') + 2).split(" ");
    }

    /** utime + stime of the VMM in nanoseconds, or -1 when it cannot be read. */
    private long readCpuNanos() {
        try {
            String[] fields = statFields(pid);
            long ticks = Long.parseLong(fields[11]) + Long.parseLong(fields[12]);
            return ticks * (1_000_000_000L / TICKS_PER_SECOND);
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }
}

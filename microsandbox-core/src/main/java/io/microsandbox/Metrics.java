package io.microsandbox;

import java.time.Duration;

/**
 * A point-in-time resource snapshot of a running sandbox, from {@link Sandbox#metrics()}.
 * Host-side figures come from the supervisor (sampled every second), guest-side ones from the
 * agent; a figure that could not be read is null.
 *
 * @param cpuPercent              CPU use of the VM over the last second (100 = one host core)
 * @param vcpuTimeNs              cumulative CPU time of the VM process
 * @param memoryBytes             memory in use inside the guest (total minus available)
 * @param memoryAvailableBytes    memory the guest reports as available
 * @param memoryHostResidentBytes host RSS of the VM process
 * @param memoryLimitBytes        the configured guest memory
 * @param diskReadBytes           bytes read from the VM's disks since boot
 * @param diskWriteBytes          bytes written to the VM's disks since boot
 * @param netRxBytes              bytes the guest received over the network (connections and name lookups the host carried)
 * @param netTxBytes              bytes the guest sent over the network
 * @param upperUsedBytes          used bytes of the writable upper filesystem, as the guest sees it
 * @param upperFreeBytes          free bytes of the writable upper filesystem
 * @param uptime                  time since this run of the sandbox became ready (its create,
 *                                start or restore; the boot itself is not counted)
 * @param upperAllocatedBytes     bytes the sparse upper disk file really occupies on the host
 *                                (its allocated blocks), null when it cannot be read
 */
public record Metrics(double cpuPercent, long vcpuTimeNs, long memoryBytes, Long memoryAvailableBytes,
                      Long memoryHostResidentBytes, long memoryLimitBytes, long diskReadBytes, long diskWriteBytes,
                      long netRxBytes, long netTxBytes, Long upperUsedBytes, Long upperFreeBytes, Duration uptime,
                      Long upperAllocatedBytes) {
}

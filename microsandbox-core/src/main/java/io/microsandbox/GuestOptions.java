package io.microsandbox;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

/**
 * Checks of the mounts and scripts of a {@link SandboxConfig} against what the guest agent
 * accepts (agent/guestcfg.c), so a bad value fails at once and by name instead of at boot.
 */
final class GuestOptions {
    /** The agent's MAX_MOUNTS; QEMU's microvm also has a limited number of virtio-mmio slots. */
    static final int MAX_MOUNTS = 16;
    static final int MAX_SCRIPTS = 64;
    static final int MAX_SCRIPT_NAME = 64;
    static final int MAX_SCRIPTS_BYTES = 1024 * 1024;
    /** The agent creates mount points in a 512-byte buffer (agent.h's MOUNT_PATH_MAX). */
    static final int MAX_MOUNT_PATH_BYTES = 511;
    /** Guest paths a mount must not cover: the agent's own and the kernel's. */
    private static final List<String> RESERVED = List.of("/proc", "/sys", "/dev", "/.msb", "/run/msb");

    private GuestOptions() {
    }

    static String mountsProblem(Map<String, Mount> mounts) {
        if (mounts.size() > MAX_MOUNTS) {
            return "at most " + MAX_MOUNTS + " mounts, got " + mounts.size();
        }
        for (Map.Entry<String, Mount> e : mounts.entrySet()) {
            String problem = guestPathProblem(e.getKey());
            if (problem == null) {
                problem = e.getValue().problem(e.getKey());
            }
            if (problem != null) {
                return problem;
            }
        }
        return null;
    }

    /** An absolute path, not "/", without empty, "." or ".." components, outside the reserved trees. */
    static String guestPathProblem(String path) {
        if (path == null || !path.startsWith("/") || path.equals("/") || path.indexOf('\0') >= 0
                || path.getBytes(StandardCharsets.UTF_8).length > MAX_MOUNT_PATH_BYTES) {
            return "mount path '" + path + "' must be an absolute guest path other than / (at most "
                    + MAX_MOUNT_PATH_BYTES + " bytes)";
        }
        for (String part : path.substring(1).split("/", -1)) {
            if (part.isEmpty() || part.equals(".") || part.equals("..")) {
                return "mount path '" + path + "' must not hold empty, '.' or '..' components";
            }
        }
        for (String reserved : RESERVED) {
            if (path.equals(reserved) || path.startsWith(reserved + "/")) {
                return "mount path '" + path + "' is reserved (" + reserved + ")";
            }
        }
        return null;
    }

    static String scriptsProblem(Map<String, String> scripts) {
        if (scripts.size() > MAX_SCRIPTS) {
            return "at most " + MAX_SCRIPTS + " scripts, got " + scripts.size();
        }
        long total = 0;
        for (Map.Entry<String, String> e : scripts.entrySet()) {
            String name = e.getKey();
            if (name == null || name.isEmpty() || name.length() > MAX_SCRIPT_NAME || name.equals(".") || name.equals("..")
                    || !name.matches("[A-Za-z0-9._-]+")) {
                return "script name '" + name + "' must be 1 to " + MAX_SCRIPT_NAME + " letters, digits, '.', '_' or '-' (not . or ..)";
            }
            total += e.getValue().getBytes(StandardCharsets.UTF_8).length;
        }
        if (total > MAX_SCRIPTS_BYTES) {
            return "scripts hold " + total + " bytes, the limit is " + MAX_SCRIPTS_BYTES;
        }
        return null;
    }
}

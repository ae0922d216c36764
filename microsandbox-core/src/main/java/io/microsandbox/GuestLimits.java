package io.microsandbox;

import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * What the guest agent accepts, checked on the host before a boot or an exec, so that a bad
 * value fails at once and by name instead of after a full boot ({@code core.configure}, see
 * {@code native/agent/boot.c} {@code apply_config}) or silently in the guest (the agent drops
 * environment variables it cannot pass, ignores a user or directory that is not plain text,
 * and cuts long ones to its buffers). Each check returns null when the value is fine, else a
 * message naming it; {@link SandboxConfig} and {@link ExecOptions} turn it into their error.
 */
final class GuestLimits {
    /** {@code sethostname(2)} refuses more ({@code HOST_NAME_MAX}). */
    static final int HOSTNAME_MAX_BYTES = 64;
    /** The agent copies a user spec into a 256-byte buffer ({@code user.c}). */
    static final int USER_MAX_BYTES = 255;
    /** The agent copies a working directory into a {@code PATH_MAX} buffer ({@code exec.c}). */
    static final int PATH_MAX_BYTES = 4095;
    /** One {@code NAME=value} string: {@code execve} refuses longer ones ({@code MAX_ARG_STRLEN}, 128 KiB with the NUL). */
    static final int ENV_ENTRY_MAX_BYTES = 128 * 1024 - 1;
    /**
     * All {@code NAME=value} strings of one environment: half of what {@code execve} takes
     * for arguments and environment together (a quarter of the guest's 8 MiB stack), and a
     * quarter of the 4 MiB frame that carries them.
     */
    static final int ENV_TOTAL_MAX_BYTES = 1024 * 1024;

    private GuestLimits() {
    }

    /** Names must be non-empty without '=' or NUL, values non-null without NUL, within the sizes above. */
    static String envProblem(Map<String, String> env) {
        long total = 0;
        for (Map.Entry<String, String> e : env.entrySet()) {
            String name = e.getKey();
            String value = e.getValue();
            if (name == null || name.isEmpty() || name.indexOf('=') >= 0 || name.indexOf('\0') >= 0) {
                return "environment variable name '" + shown(name) + "' is empty or contains '=' or NUL";
            }
            if (value == null) {
                return "environment variable '" + shown(name) + "' has a null value";
            }
            if (value.indexOf('\0') >= 0) {
                return "environment variable '" + shown(name) + "' contains a NUL character in its value";
            }
            long bytes = utf8Length(name) + 1 + utf8Length(value);
            if (bytes > ENV_ENTRY_MAX_BYTES) {
                return "environment variable '" + shown(name) + "' is " + bytes + " bytes as NAME=value, over the guest's "
                        + ENV_ENTRY_MAX_BYTES;
            }
            total += bytes + 1;
        }
        if (total > ENV_TOTAL_MAX_BYTES) {
            return "the environment is " + total + " bytes, over the limit of " + ENV_TOTAL_MAX_BYTES;
        }
        return null;
    }

    /** At most 64 bytes of UTF-8, no NUL; null (the default) is fine. */
    static String hostnameProblem(String hostname) {
        if (hostname == null) {
            return null;
        }
        if (hostname.indexOf('\0') >= 0) {
            return "hostname '" + shown(hostname) + "' contains a NUL character";
        }
        int bytes = utf8Length(hostname);
        if (bytes > HOSTNAME_MAX_BYTES) {
            return "hostname '" + hostname + "' is " + bytes + " bytes, over the guest's " + HOSTNAME_MAX_BYTES;
        }
        return null;
    }

    /** A name, uid or uid:gid of at most 255 bytes, no NUL; null (the default) is fine. */
    static String userProblem(String user) {
        if (user == null) {
            return null;
        }
        if (user.indexOf('\0') >= 0) {
            return "user '" + shown(user) + "' contains a NUL character";
        }
        int bytes = utf8Length(user);
        if (bytes > USER_MAX_BYTES) {
            return "user is " + bytes + " bytes, over the guest's " + USER_MAX_BYTES;
        }
        return null;
    }

    /** An absolute guest path of at most 4095 bytes, no NUL; null (the default) is fine. */
    static String directoryProblem(String what, String path) {
        if (path == null) {
            return null;
        }
        if (!path.startsWith("/")) {
            return what + " must be an absolute guest path, got '" + shown(path) + "'";
        }
        if (path.indexOf('\0') >= 0) {
            return what + " '" + shown(path) + "' contains a NUL character";
        }
        int bytes = utf8Length(path);
        if (bytes > PATH_MAX_BYTES) {
            return what + " is " + bytes + " bytes, over the guest's " + PATH_MAX_BYTES;
        }
        return null;
    }

    /** A program path or name without NUL. */
    static String programProblem(String what, String program) {
        if (program == null || program.isBlank()) {
            return what + " must not be empty";
        }
        if (program.indexOf('\0') >= 0) {
            return what + " '" + shown(program) + "' contains a NUL character";
        }
        return null;
    }

    private static int utf8Length(String s) {
        return s.getBytes(StandardCharsets.UTF_8).length;
    }

    /** A value fit for a message: NUL shown as \0, cut at 80 characters. */
    private static String shown(String s) {
        if (s == null) {
            return "null";
        }
        String visible = s.replace("\0", "\\0");
        return visible.length() > 80 ? visible.substring(0, 80) + "..." : visible;
    }
}

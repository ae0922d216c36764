package io.microsandbox;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import static org.assertj.core.api.Assertions.assertThat;

/** Named scripts on the PATH, and the restricted security profile against the default one (issue 13). */
class ScriptsAndSecurityIT {
    private static final ExecOptions AS_ROOT = ExecOptions.builder().user("root").build();
    private static final ExecOptions AS_USER = ExecOptions.builder().user("sandbox").build();
    /** As root: a copy of id that is set-user-id root, for the non-root user to run. */
    private static final String MAKE_SUID_ID = "cp /usr/bin/id /tmp/suid-id && chmod 4755 /tmp/suid-id";

    @Test
    @Timeout(300)
    void scriptsAreOnThePathAndTheRestrictedProfileDropsPrivileges() {
        String name = TestSandboxes.uniqueName("restricted");
        SandboxConfig config = TestSandboxes.config()
                .scripts(Map.of("hello", "#!/bin/sh\necho hello-$1\n"))
                .script("where.sh", "#!/bin/sh\necho \"$0\"\n")
                .securityProfile(SecurityProfile.RESTRICTED)
                .mount("/t", Mount.tmpfs(4, MountOptions.defaults()))
                .build();
        try (Sandbox sb = Sandbox.create(name, config)) {
            assertThat(sb.exec("hello", List.of("world")).stdout()).isEqualTo("hello-world\n");
            assertThat(sb.shell("hello shell; where.sh").stdout()).isEqualTo("hello-shell\n/.msb/scripts/where.sh\n");
            assertThat(sb.exec("hello", List.of("user"), AS_USER).stdout()).isEqualTo("hello-user\n");
            ExecOutput files = sb.shell("stat -c '%a %U' /.msb/scripts/hello; echo x > /.msb/scripts/hello; cat /.msb/scripts/hello");
            assertThat(files.stdout()).isEqualTo("755 root\n#!/bin/sh\necho hello-$1\n");
            assertThat(files.stderr()).contains("Read-only file system");

            assertThat(sb.exec("sh", List.of("-c", MAKE_SUID_ID), AS_ROOT).success()).isTrue();
            assertThat(sb.exec("/tmp/suid-id", List.of("-u"), AS_USER).stdout()).isEqualTo("1000\n");
            ExecOutput mount = sb.exec("sh", List.of("-c", "mkdir -p /mnt/m && mount -t tmpfs none /mnt/m && echo mounted"), AS_ROOT);
            assertThat(mount.stdout()).doesNotContain("mounted");
            assertThat(mount.stderr()).containsIgnoringCase("permission denied");
            // CAP_SYS_ADMIN is bit 21: gone from the bounding and effective sets of root's commands
            String status = sb.exec("cat", List.of("/proc/self/status"), AS_ROOT).stdout();
            assertThat(field(status, "NoNewPrivs")).isEqualTo("1");
            assertThat(Long.parseUnsignedLong(field(status, "CapBnd"), 16) & (1L << 21)).isZero();
            assertThat(Long.parseUnsignedLong(field(status, "CapEff"), 16) & (1L << 21)).isZero();
            assertThat(Long.parseUnsignedLong(field(status, "CapEff"), 16)).as("other root capabilities stay").isNotZero();
            // CAP_SYS_PTRACE (bit 19) would let root ptrace the agent, which keeps CAP_SYS_ADMIN
            assertThat(Long.parseUnsignedLong(field(status, "CapBnd"), 16) & (1L << 19)).isZero();
            assertThat(Long.parseUnsignedLong(field(status, "CapEff"), 16) & (1L << 19)).isZero();
            // the agent is PID 1: its memory and environment are out of reach (ptrace access checks)
            ExecOutput agent = sb.exec("sh", List.of("-c", "cat /proc/1/environ > /dev/null && echo readable"), AS_ROOT);
            assertThat(agent.stdout()).doesNotContain("readable");
            assertThat(agent.stderr()).contains("Permission denied");
            String mounts = sb.shell("grep ' /t ' /proc/mounts").stdout();
            assertThat(mounts).contains("nosuid").contains("nodev");
            sb.stop();
        } finally {
            Microsandbox.defaultRuntime().find(name).ifPresent(h -> Sandbox.remove(name));
        }
    }

    @Test
    @Timeout(300)
    void theDefaultProfileKeepsGuestRoot() {
        String name = TestSandboxes.uniqueName("default-profile");
        try (Sandbox sb = Sandbox.create(name, TestSandboxes.config().mount("/t", Mount.tmpfs(4, MountOptions.defaults())).build())) {
            assertThat(sb.exec("sh", List.of("-c", MAKE_SUID_ID), AS_ROOT).success()).isTrue();
            assertThat(sb.exec("/tmp/suid-id", List.of("-u"), AS_USER).stdout()).isEqualTo("0\n");
            assertThat(sb.exec("sh", List.of("-c", "mkdir -p /mnt/m && mount -t tmpfs none /mnt/m && echo mounted && umount /mnt/m"), AS_ROOT)
                    .stdout()).isEqualTo("mounted\n");
            assertThat(field(sb.exec("cat", List.of("/proc/self/status"), AS_ROOT).stdout(), "NoNewPrivs")).isEqualTo("0");
            assertThat(sb.shell("grep ' /t ' /proc/mounts").stdout()).doesNotContain("nosuid");
            assertThat(sb.exec("sh", List.of("-c", "cat /proc/1/environ > /dev/null && echo readable"), AS_ROOT).stdout()).isEqualTo("readable\n");
            sb.stop();
        } finally {
            Microsandbox.defaultRuntime().find(name).ifPresent(h -> Sandbox.remove(name));
        }
    }

    private static String field(String status, String key) {
        return status.lines().filter(l -> l.startsWith(key + ":")).map(l -> l.substring(key.length() + 1).trim())
                .findFirst().orElseThrow(() -> new AssertionError("no " + key + " in " + status));
    }
}

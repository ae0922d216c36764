package io.microsandbox;

import java.util.Map;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Mounts, scripts and the security profile in a SandboxConfig: persisted form and validation. */
class GuestOptionsTest {
    private static SandboxConfig.Builder base() {
        return SandboxConfig.builder().image("/img");
    }

    @Test
    void survivesTheJsonRoundTrip() {
        SandboxConfig config = base()
                .mount("/src", Mount.bind("/home/me/src", MountOptions.builder().readonly().nodev().build()))
                .mount("/data", Mount.named("cache", MountOptions.defaults()))
                .mount("/scratch", Mount.tmpfs(64, MountOptions.builder().noexec().build()))
                .mount("/db", Mount.disk("pgdata", null, MountOptions.builder().nosuid().build()))
                .scripts(Map.of("a.sh", "echo a"))
                .securityProfile(SecurityProfile.RESTRICTED)
                .build();
        SandboxConfig back = SandboxConfig.fromJson(config.toJson());
        assertThat(back).isEqualTo(config);
        assertThat(back.mounts().get("/db").fstype()).isEqualTo("ext4");
        assertThat(back.mounts().get("/scratch").options().sizeMib()).isEqualTo(64);
        assertThat(back.mounts().keySet()).containsExactly("/data", "/db", "/scratch", "/src");
        assertThat(back.securityProfile()).isEqualTo(SecurityProfile.RESTRICTED);
        assertThat(back.toBuilder().build()).isEqualTo(config);
        assertThat(SandboxConfig.fromJson(base().build().toJson()).securityProfile()).isEqualTo(SecurityProfile.DEFAULT);
    }

    @Test
    void refusesWhatTheGuestCannotMount() {
        Mount tmp = Mount.tmpfs(8, MountOptions.defaults());
        for (String path : new String[] {"relative", "/", "/a/../b", "/a//b", "/a/./b", "/proc", "/dev/x", "/.msb/scripts", "/run/msb/upper",
                "/" + "x".repeat(GuestOptions.MAX_MOUNT_PATH_BYTES)}) {
            assertThatThrownBy(() -> base().mount(path, tmp).build()).as(path)
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
        }
        assertInvalid(base().mount("/x", Mount.bind("relative/dir", MountOptions.defaults())), "must be absolute");
        assertInvalid(base().mount("/x", Mount.named("../up", MountOptions.defaults())), "volume name");
        assertInvalid(base().mount("/x", Mount.tmpfs(0, MountOptions.defaults())), "at least 1 MiB");
        assertInvalid(base().mount("/x", Mount.bind("/h", MountOptions.builder().sizeMib(5).build())), "tmpfs only");
        assertInvalid(base().mount("/x", Mount.disk("/h/d.img", "xfs", MountOptions.defaults())), "ext4 only");
        assertInvalid(base().script("../evil", "x"), "script name");
        assertInvalid(base().script("big", "x".repeat(1024 * 1024 + 1)), "limit");
        SandboxConfig.Builder many = base();
        for (int i = 0; i <= GuestOptions.MAX_MOUNTS; i++) {
            many.mount("/m" + i, tmp);
        }
        assertInvalid(many, "at most 16 mounts");
    }

    private static void assertInvalid(SandboxConfig.Builder builder, String message) {
        assertThatThrownBy(builder::build).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
            assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
            assertThat(e.getMessage()).contains(message);
        });
    }
}

package io.microsandbox.runtime;

import io.microsandbox.ErrorKind;
import io.microsandbox.Init;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Mount;
import io.microsandbox.MountOptions;
import io.microsandbox.SandboxConfig;
import io.microsandbox.SecurityProfile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The QEMU devices and the agent's configure entries of a sandbox's mounts, scripts and init. */
class GuestSetupTest {
    @TempDir
    Path tmp;

    @Test
    void sharesDisksAndTmpfsBecomeDevicesAndAgentEntries() throws Exception {
        Path share = Files.createDirectories(tmp.resolve("with,comma"));
        Path disk = Files.write(tmp.resolve("d.img"), new byte[0]);
        SandboxConfig config = SandboxConfig.builder().image("/img")
                .mount("/a", Mount.bind(share, MountOptions.builder().readonly().build()))
                .mount("/b", Mount.disk(disk.toString(), "ext4", MountOptions.defaults()))
                .mount("/c", Mount.tmpfs(16, MountOptions.builder().noexec().build()))
                .securityProfile(SecurityProfile.RESTRICTED)
                .build();
        GuestSetup.Plan plan = GuestSetup.plan(tmp.resolve("home"), config, null);
        String escaped = share.toRealPath().toString().replace(",", ",,");
        assertThat(plan.qemuArgs()).containsExactly(
                "-fsdev", "local,id=vol0,path=" + escaped + ",security_model=mapped-xattr,multidevs=remap,readonly=on",
                "-device", "virtio-9p-device,fsdev=vol0,mount_tag=msbvol0",
                "-drive", "id=vol1,file=" + disk + ",format=raw,if=none",
                "-device", "virtio-blk-device,drive=vol1,serial=msb-vol1");
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> mounts = (List<Map<String, Object>>) plan.agentConfig().get("mounts");
        assertThat(mounts).extracting(m -> m.get("path"), m -> m.get("type"), m -> m.get("source"))
                .containsExactly(org.assertj.core.groups.Tuple.tuple("/a", "9p", "msbvol0"),
                        org.assertj.core.groups.Tuple.tuple("/b", "ext4", "msb-vol1"),
                        org.assertj.core.groups.Tuple.tuple("/c", "tmpfs", null));
        assertThat(mounts.get(0)).containsEntry("readonly", true);
        assertThat(mounts.get(2)).containsEntry("size_mib", 16).containsEntry("noexec", true);
        assertThat(plan.agentConfig()).containsEntry("security", "restricted").doesNotContainKeys("scripts", "init");
    }

    @Test
    void missingSourcesFailByName() {
        SandboxConfig noDir = SandboxConfig.builder().image("/img").mount("/a", Mount.bind(tmp.resolve("absent"), MountOptions.defaults())).build();
        assertThatThrownBy(() -> GuestSetup.plan(tmp, noDir, null)).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
            assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
            assertThat(e.getMessage()).contains("/a").contains("absent");
        });
        SandboxConfig noVolume = SandboxConfig.builder().image("/img").mount("/a", Mount.named("nope", MountOptions.defaults())).build();
        assertThatThrownBy(() -> GuestSetup.plan(tmp, noVolume, null)).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.VOLUME_NOT_FOUND));
        // a volume whose creation was cut short has its row but no data: not mounted as if empty
        io.microsandbox.Volume cut = io.microsandbox.Volumes.at(tmp).create("cut");
        io.microsandbox.runtime.SandboxPreparer.deleteTree(cut.path());
        SandboxConfig noData = SandboxConfig.builder().image("/img").mount("/a", Mount.named("cut", MountOptions.defaults())).build();
        assertThatThrownBy(() -> GuestSetup.plan(tmp, noData, null)).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
            assertThat(e.kind()).isEqualTo(ErrorKind.VOLUME_NOT_FOUND);
            assertThat(e.getMessage()).contains("'cut' has no data").contains("create it again");
        });
    }

    @Test
    void scriptsGoOnThePathAndAutoInitTakesAKnownEntrypoint() {
        SandboxConfig config = SandboxConfig.builder().image("/img").script("s", "echo").init(Init.auto()).build();
        assertThat(GuestSetup.withScriptsOnPath(Map.of("PATH", "/bin"), config)).containsEntry("PATH", "/bin:/.msb/scripts");
        assertThat(GuestSetup.withScriptsOnPath(Map.of(), config).get("PATH")).endsWith("/bin:/.msb/scripts");
        assertThat(GuestSetup.plan(tmp, config, List.of("/usr/bin/tini", "--", "app")).agentConfig().get("init"))
                .isEqualTo(Map.of("cmd", "/usr/bin/tini", "args", List.of("--", "app"), "env", Map.of()));
        assertThat(GuestSetup.plan(tmp, config, List.of("/usr/bin/python3", "app.py")).agentConfig().get("init"))
                .isEqualTo(Map.of("cmd", "auto", "args", List.of(), "env", Map.of()));
    }

    @Test
    void aShareOfTheRootOrOfWhatHoldsOrLiesInTheHomeIsRefused() throws Exception {
        Path home = Files.createDirectories(tmp.resolve("user/.microsandbox"));
        Path sandboxDir = Files.createDirectories(home.resolve("sandboxes/other"));
        Path link = Files.createSymbolicLink(tmp.resolve("innocent"), tmp.resolve("user"));
        for (Path source : List.of(Path.of("/"), tmp.resolve("user"), link, home, sandboxDir)) {
            SandboxConfig config = SandboxConfig.builder().image("/img").mount("/h", Mount.bind(source, MountOptions.defaults())).build();
            assertThatThrownBy(() -> GuestSetup.plan(home, config, null)).as(source.toString())
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                        assertThat(e.getMessage()).contains("/h").contains("microsandbox home");
                    });
        }
        Path otherDisk = Files.write(sandboxDir.resolve("upper.ext4"), new byte[4096]);
        SandboxConfig disk = SandboxConfig.builder().image("/img").mount("/d", Mount.disk(otherDisk.toString(), "ext4", MountOptions.defaults())).build();
        assertThatThrownBy(() -> GuestSetup.plan(home, disk, null)).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.getMessage()).contains("inside the microsandbox home"));
        // a sibling of the home is still fine
        Path sibling = Files.createDirectories(tmp.resolve("user/src"));
        SandboxConfig ok = SandboxConfig.builder().image("/img").mount("/h", Mount.bind(sibling, MountOptions.defaults())).build();
        assertThat(GuestSetup.plan(home, ok, null).qemuArgs()).hasSize(4);
    }

    @Test
    void aQcow2ImageNamingAHostFileIsRefused() throws Exception {
        Path backed = Files.write(tmp.resolve("backed.qcow2"), qcow2Header(3, 104, 0));
        Path external = Files.write(tmp.resolve("external.qcow2"), qcow2Header(3, 0, 1L << 2));
        Path plain = Files.write(tmp.resolve("plain.qcow2"), qcow2Header(3, 0, 0));
        Path fake = Files.write(tmp.resolve("fake.qcow2"), new byte[200]);
        for (Path bad : List.of(backed, external, fake)) {
            SandboxConfig config = SandboxConfig.builder().image("/img").mount("/d", Mount.disk(bad.toString(), "ext4", MountOptions.defaults())).build();
            assertThatThrownBy(() -> GuestSetup.plan(tmp.resolve("home"), config, null)).as(bad.toString())
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                        assertThat(e.getMessage()).contains("/d").contains(bad.getFileName().toString());
                    });
        }
        SandboxConfig config = SandboxConfig.builder().image("/img").mount("/d", Mount.disk(plain.toString(), "ext4", MountOptions.defaults())).build();
        assertThat(GuestSetup.plan(tmp.resolve("home"), config, null).qemuArgs())
                .contains("id=vol0,file=" + plain.toRealPath() + ",format=qcow2,if=none");
    }

    /** A qcow2 v3 header (big-endian) with the given backing file offset and incompatible features. */
    private static byte[] qcow2Header(int version, long backingOffset, long incompatible) {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(512);
        b.putInt(0, 0x514649fb).putInt(4, version).putLong(8, backingOffset).putInt(16, backingOffset == 0 ? 0 : 8)
                .putInt(20, 16).putLong(24, 1L << 20).putLong(72, incompatible).putInt(100, 104);
        return b.array();
    }
}

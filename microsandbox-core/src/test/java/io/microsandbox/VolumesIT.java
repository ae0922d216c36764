package io.microsandbox;

import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Bind mounts, named volumes, tmpfs and disks seen from a real guest (issue 13). */
class VolumesIT {
    private static final ExecOptions AS_ROOT = ExecOptions.builder().user("root").build();

    @TempDir
    Path tmp;

    /**
     * A host directory shared over 9p: both sides see each other's writes while the sandbox
     * runs, concurrently too; a non-root guest user owns what it creates; read-only means
     * read-only; no symlink or '..' from either side reaches a host file outside the share;
     * the mounts come back after a restart.
     */
    @Test
    @Timeout(400)
    void bindMountsShareLiveBothWaysWithoutEscapes() throws Exception {
        Path share = Files.createDirectories(tmp.resolve("share"));
        Path outside = Files.createDirectories(tmp.resolve("outside"));
        Files.writeString(outside.resolve("secret.txt"), "host-secret\n");
        Files.writeString(share.resolve("from-host.txt"), "hello from host\n");
        Files.createSymbolicLink(share.resolve("abs-link"), outside);
        Files.createSymbolicLink(share.resolve("up-link"), Path.of("../outside"));
        Files.createSymbolicLink(share.resolve("etc-link"), Path.of("/etc"));
        Path ro = Files.createDirectories(tmp.resolve("ro"));
        Files.writeString(ro.resolve("ro.txt"), "read only\n");
        String name = TestSandboxes.uniqueName("bind");
        SandboxConfig config = TestSandboxes.config().user("sandbox")
                .mount("/mnt/share", Mount.bind(share, MountOptions.defaults()))
                .mount("/mnt/ro", Mount.bind(ro.toString(), MountOptions.builder().readonly().build()))
                .build();
        try {
            try (Sandbox sb = Sandbox.create(name, config)) {
                // host -> guest, and guest -> host as the non-root default user
                ExecOutput out = sb.shell("cat /mnt/share/from-host.txt && echo guest > /mnt/share/from-guest.txt"
                        + " && mkdir /mnt/share/gdir && echo nested > /mnt/share/gdir/f && stat -c '%U %a' /mnt/share/from-guest.txt /mnt/share");
                assertThat(out.stderr()).isEmpty();
                assertThat(out.stdout()).isEqualTo("hello from host\nsandbox 644\nsandbox 755\n");
                assertThat(Files.readString(share.resolve("from-guest.txt"))).isEqualTo("guest\n");
                assertThat(Files.readString(share.resolve("gdir/f"))).isEqualTo("nested\n");
                // live: a host write after boot, and a host append to a guest file
                Files.writeString(share.resolve("later.txt"), "written later\n");
                Files.writeString(share.resolve("from-guest.txt"), "host append\n", java.nio.file.StandardOpenOption.APPEND);
                assertThat(sb.shell("cat /mnt/share/later.txt /mnt/share/from-guest.txt").stdout())
                        .isEqualTo("written later\nguest\nhost append\n");
                Files.delete(share.resolve("later.txt"));
                assertThat(sb.shell("test -e /mnt/share/later.txt || echo gone").stdout()).isEqualTo("gone\n");

                // concurrent writers, one file each, while both sides run
                CompletableFuture<ExecOutput> guest = CompletableFuture.supplyAsync(() -> sb.shell(
                        "i=0; while [ $i -lt 300 ]; do echo guest-$i >> /mnt/share/guest.log; i=$((i+1)); done; echo done"));
                try (var w = Files.newBufferedWriter(share.resolve("host.log"))) {
                    for (int i = 0; i < 300; i++) {
                        w.write("host-" + i + "\n");
                        w.flush();
                        Thread.sleep(2);
                    }
                }
                assertThat(guest.get().stdout()).isEqualTo("done\n");
                assertThat(Files.readAllLines(share.resolve("guest.log"))).hasSize(300).startsWith("guest-0").endsWith("guest-299");
                assertThat(sb.shell("wc -l < /mnt/share/host.log; tail -1 /mnt/share/host.log").stdout()).isEqualTo("300\nhost-299\n");

                // a new file only, on 9p too (which renames without RENAME_NOREPLACE)
                sb.fs().create("/mnt/share/created.txt", "created\n".getBytes(java.nio.charset.StandardCharsets.UTF_8), null);
                assertThat(Files.readString(share.resolve("created.txt"))).isEqualTo("created\n");
                for (String taken : List.of("/mnt/share/created.txt", "/mnt/share/from-host.txt")) {
                    assertThatThrownBy(() -> sb.fs().create(taken, new byte[] {'x'}, null)).as(taken)
                            .isInstanceOfSatisfying(FilesystemException.class, e -> assertThat(e.reason()).isEqualTo("exists"));
                }
                assertThat(Files.readString(share.resolve("from-host.txt"))).isEqualTo("hello from host\n");
                try (var left = Files.list(share)) {
                    assertThat(left.map(p -> p.getFileName().toString())).noneMatch(n -> n.contains("msb-write"));
                }

                // read-only
                ExecOutput denied = sb.exec("sh", List.of("-c", "cat /mnt/ro/ro.txt; echo x > /mnt/ro/new"), AS_ROOT);
                assertThat(denied.stdout()).isEqualTo("read only\n");
                assertThat(denied.stderr()).contains("Read-only file system");
                assertThat(ro.resolve("new")).doesNotExist();

                // host symlinks inside the share never lead out of it
                ExecOutput escape = sb.exec("sh", List.of("-c", "cat /mnt/share/abs-link/secret.txt; cat /mnt/share/up-link/secret.txt;"
                        + " ls /mnt/share/etc-link/ | head -3; cd /mnt/share && cat ../../../../" + outside + "/secret.txt"
                        + " ../outside/secret.txt ../../outside/secret.txt; echo end"), AS_ROOT);
                assertThat(escape.stdout()).doesNotContain("host-secret").endsWith("end\n");
                // guest symlinks arrive as plain files (mapped-xattr), and guest set-user-id bits stay in the guest
                ExecOutput planted = sb.exec("sh", List.of("-c", "ln -s / /mnt/share/g-root && ln -s ../outside /mnt/share/g-up"
                        + " && ln -s " + outside + " /mnt/share/g-abs && cp /usr/bin/id /mnt/share/suid-id && chmod 4755 /mnt/share/suid-id"
                        + " && readlink /mnt/share/g-root /mnt/share/g-up && stat -c '%a %U' /mnt/share/suid-id"
                        + " && cat /mnt/share/g-abs/secret.txt /mnt/share/g-up/secret.txt; echo end"), AS_ROOT);
                assertThat(planted.stdout()).startsWith("/\n../outside\n4755 root\n").doesNotContain("host-secret").endsWith("end\n");
                for (String link : List.of("g-root", "g-up", "g-abs")) {
                    assertThat(Files.isSymbolicLink(share.resolve(link))).as(link).isFalse();
                    assertThat(Files.isRegularFile(share.resolve(link), LinkOption.NOFOLLOW_LINKS)).as(link).isTrue();
                }
                assertThat(Files.readString(share.resolve("g-abs"))).isEqualTo(outside.toString());
                int hostMode = (Integer) Files.getAttribute(share.resolve("suid-id"), "unix:mode");
                assertThat(hostMode & 07000).as("set-id bits on the host").isZero();
                assertThat(Files.readString(outside.resolve("secret.txt"))).isEqualTo("host-secret\n");
                // a checkpoint cannot capture a host share: refused up front, naming the mount
                assertThatThrownBy(() -> sb.checkpoint(name + "-cp")).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.UNSUPPORTED_OPERATION);
                    assertThat(e.getMessage()).contains("/mnt/share");
                });
                sb.stop();
            }
            try (Sandbox again = Sandbox.start(name)) {
                assertThat(again.shell("cat /mnt/share/from-host.txt /mnt/ro/ro.txt; stat -c '%U' /mnt/share/gdir/f").stdout())
                        .isEqualTo("hello from host\nread only\nsandbox\n");
                again.stop();
            }
            Sandbox.remove(name);
            assertThat(Files.readString(share.resolve("gdir/f"))).isEqualTo("nested\n");
        } finally {
            Microsandbox.defaultRuntime().find(name).ifPresent(h -> Sandbox.remove(name));
        }
    }

    /**
     * tmpfs and disk volumes fill up with ENOSPC inside and lose nothing written before; a
     * named volume outlives the sandbox that wrote it, cannot be removed while mounted, and
     * options reach the guest's mount table.
     */
    @Test
    @Timeout(400)
    void quotasNamedVolumesAndOptions() throws Exception {
        Volumes volumes = Microsandbox.defaultRuntime().volumes();
        String dirVolume = TestSandboxes.uniqueName("vdir");
        String diskVolume = TestSandboxes.uniqueName("vdisk");
        String first = TestSandboxes.uniqueName("vol1");
        String second = TestSandboxes.uniqueName("vol2");
        volumes.create(dirVolume);
        Volume disk = volumes.createDisk(diskVolume, 16);
        try {
            assertThat(volumes.list()).extracting(Volume::name).contains(dirVolume, diskVolume);
            assertThat(disk.kind()).isEqualTo(Volume.Kind.DISK);
            assertThat(disk.sizeMib()).isEqualTo(16);
            assertThatThrownBy(() -> volumes.create(dirVolume))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.VOLUME_ALREADY_EXISTS));
            assertThatThrownBy(() -> Sandbox.create(TestSandboxes.uniqueName("novol"),
                    TestSandboxes.config().mount("/x", Mount.named("no-such-volume", MountOptions.defaults())).build()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.VOLUME_NOT_FOUND));

            SandboxConfig config = TestSandboxes.config()
                    .mount("/scratch", Mount.tmpfs(8, MountOptions.builder().noexec().nodev().build()))
                    .mount("/data", Mount.named(dirVolume, MountOptions.defaults()))
                    .mount("/disk", Mount.disk(diskVolume, "ext4", MountOptions.builder().nosuid().build()))
                    .build();
            try (Sandbox sb = Sandbox.create(first, config)) {
                ExecOutput full = sb.shell("echo keep > /scratch/keep; echo keep > /disk/keep; echo kept > /data/kept;"
                        + " dd if=/dev/zero of=/scratch/fill bs=1M count=20 2>&1 | grep -o 'No space left on device';"
                        + " dd if=/dev/zero of=/disk/fill bs=1M count=40 2>&1 | grep -o 'No space left on device'; sync;"
                        + " cat /scratch/keep /disk/keep; df -m /scratch | tail -1 | awk '{print $2}';"
                        + " cp /bin/true /scratch/t; /scratch/t || echo noexec-refused");
                assertThat(full.stdout()).isEqualTo("No space left on device\nNo space left on device\nkeep\nkeep\n8\nnoexec-refused\n");
                String mountsTable = sb.shell("cat /proc/mounts").stdout();
                assertThat(line(mountsTable, " /scratch ")).contains("tmpfs").contains("nodev").contains("noexec");
                assertThat(line(mountsTable, " /disk ")).contains("ext4").contains("nosuid");
                assertThat(line(mountsTable, " /data ")).contains("9p");
                // the disk file keeps its size on the host: the guest filled the disk, not the host
                assertThat(Files.size(disk.path())).isEqualTo(16L << 20);
                assertThat(Files.readString(volumes.get(dirVolume).path().resolve("kept"))).isEqualTo("kept\n");
                // one writer per disk: QEMU's image lock refuses a second sandbox while this one runs
                String rival = TestSandboxes.uniqueName("vol-rival");
                assertThatThrownBy(() -> Sandbox.create(rival, TestSandboxes.config()
                        .mount("/disk", Mount.named(diskVolume, MountOptions.defaults())).build()))
                        .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                            assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
                            assertThat(e.getMessage()).contains("lock");
                        });
                assertThat(Microsandbox.defaultRuntime().find(rival)).isEmpty();
                sb.stop();
            }
            assertThatThrownBy(() -> volumes.remove(dirVolume))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.VOLUME_IN_USE);
                        assertThat(e.getMessage()).contains(first);
                    });
            try (Sandbox again = Sandbox.start(first)) {
                assertThat(again.shell("ls /scratch | wc -l; cat /disk/keep /data/kept").stdout()).isEqualTo("0\nkeep\nkept\n");
                // killed, not stopped: the disk is left mounted, so its journal wants recovery
                again.kill();
            }
            Sandbox.remove(first);

            // the volumes outlive the sandbox; the disk volume through Mount.named, read-only (which
            // cannot replay the journal the kill left: the agent mounts it as of its last checkpoint)
            // and a disk image file of the host's, by path
            Path image = tmp.resolve("image.ext4");
            io.microsandbox.image.RootDisks.createDataDisk(image, 16, "test");
            SandboxConfig reader = TestSandboxes.config()
                    .mount("/data", Mount.named(dirVolume, MountOptions.defaults()))
                    .mount("/disk", Mount.named(diskVolume, MountOptions.builder().readonly().build()))
                    .mount("/img", Mount.disk(image.toString(), "ext4", MountOptions.defaults()))
                    .build();
            try (Sandbox sb = Sandbox.create(second, reader)) {
                ExecOutput out = sb.shell("cat /data/kept /disk/keep; echo x > /disk/new;"
                        + " dmesg | grep -q 'try mounting with noload' && echo journal-not-replayed;"
                        + " echo from-guest > /img/hello && df -m /img | tail -1 | awk '{print $2 <= 16}'");
                assertThat(out.stdout()).isEqualTo("kept\nkeep\njournal-not-replayed\n1\n");
                assertThat(out.stderr()).contains("Read-only file system");
                sb.stop();
            } finally {
                Microsandbox.defaultRuntime().find(second).ifPresent(h -> Sandbox.remove(second));
            }
            Process cat = new ProcessBuilder("/usr/sbin/debugfs", "-R", "cat /hello", image.toString()).redirectErrorStream(false).start();
            assertThat(new String(cat.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8)).isEqualTo("from-guest\n");
            assertThat(cat.waitFor()).isZero();
        } finally {
            for (String sandbox : List.of(first, second)) {
                Microsandbox.defaultRuntime().find(sandbox).ifPresent(h -> Sandbox.remove(sandbox));
            }
            for (String v : List.of(dirVolume, diskVolume)) {
                if (volumes.find(v).isPresent()) {
                    volumes.remove(v);
                }
            }
        }
        assertThatThrownBy(() -> volumes.get(dirVolume))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.VOLUME_NOT_FOUND));
        assertThat(Microsandbox.defaultRuntime().home().resolve("volumes").resolve(dirVolume)).doesNotExist();
    }

    private static String line(String table, String needle) {
        return table.lines().filter(l -> l.contains(needle)).findFirst().orElse("(no line with" + needle + ")");
    }
}

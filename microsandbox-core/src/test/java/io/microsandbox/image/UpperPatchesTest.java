package io.microsandbox.image;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Patch;
import io.microsandbox.PatchOptions;
import io.microsandbox.runtime.HostCommand;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Patches are staged on the host: a symbolic link an earlier patch staged is a link in the
 * guest, never a way for a later patch to write to the host.
 */
class UpperPatchesTest {
    @TempDir
    Path dir;
    private Path lowerDisk;
    private Path upperDisk;
    private Path host;

    @BeforeEach
    void image() throws Exception {
        Path root = Files.createDirectories(dir.resolve("image/app"));
        lowerDisk = dir.resolve("lower.ext4");
        HostCommand.run(List.of("/usr/sbin/mke2fs", "-q", "-F", "-t", "ext4", "-d", root.getParent().toString(), lowerDisk.toString(), "8M"),
                Duration.ofSeconds(60), 1 << 20);
        upperDisk = dir.resolve("sandbox/upper.ext4");
        Files.createDirectories(upperDisk.getParent());
        host = Files.createDirectories(dir.resolve("host"));
        Files.writeString(host.resolve("passwd"), "root:x:0:0\n");
    }

    @Test
    void anAppendToALinkAnEarlierPatchMadeIsRefusedAndTheHostFileIsUntouched() {
        List<Patch> patches = List.of(Patch.symlink(host.resolve("passwd").toString(), "/app/x"), Patch.append("/app/x", "evil::0:0\n"));
        assertThatThrownBy(() -> UpperPatches.createUpperDisk(upperDisk, 16, lowerDisk, patches))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.PATCH_FAILED);
                    assertThat(e.getMessage()).contains("/app/x").contains("symbolic link");
                });
        assertThat(host.resolve("passwd")).hasContent("root:x:0:0\n");
    }

    /** Every kind of patch: nothing is removed, written or made through a staged link on its way. */
    @Test
    void noPatchReachesTheHostThroughADirectoryAnEarlierPatchMadeALink() throws Exception {
        Path data = Files.createDirectories(host.resolve("data/cache"));
        Files.writeString(data.resolve("keep"), "host data");
        Path src = Files.createDirectories(dir.resolve("src"));
        Files.writeString(src.resolve("file"), "data");
        PatchOptions replace = PatchOptions.DEFAULT.withReplace(true);
        for (Patch later : List.of(Patch.remove("/data/cache"), Patch.text("/data/cache/keep", "x", replace), Patch.append("/data/cache/keep", "x"),
                Patch.mkdir("/data/new", PatchOptions.DEFAULT), Patch.symlink("/x", "/data/cache/keep", replace),
                Patch.copyFile(src.resolve("file").toString(), "/data/cache/keep", replace), Patch.copyDir(src.toString(), "/data/cache", replace))) {
            List<Patch> patches = List.of(Patch.symlink(host.resolve("data").toString(), "/data"), later);
            assertThatThrownBy(() -> UpperPatches.createUpperDisk(upperDisk, 16, lowerDisk, patches)).as(later.kind().toString())
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.PATCH_FAILED);
                        assertThat(e.getMessage()).contains("an earlier patch made /data a symbolic link");
                    });
            assertThat(data.resolve("keep")).as(later.kind().toString()).hasContent("host data");
            try (var left = Files.list(data)) {
                assertThat(left).as(later.kind().toString()).containsExactly(data.resolve("keep"));
            }
            assertThat(host.resolve("data/new")).doesNotExist();
        }
    }

    @Test
    void aDirectoryCopiedOverALinkAnEarlierPatchMadeReplacesTheLink() throws Exception {
        Path src = Files.createDirectories(dir.resolve("src"));
        Files.writeString(src.resolve("file"), "data");
        List<Patch> patches = List.of(Patch.symlink(host.toString(), "/app/d"),
                Patch.copyDir(src.toString(), "/app/d", PatchOptions.DEFAULT.withReplace(true)));
        UpperPatches.createUpperDisk(upperDisk, 16, lowerDisk, patches);
        assertThat(host.resolve("file")).doesNotExist();
        try (var listing = Files.list(host)) {
            assertThat(listing).containsExactly(host.resolve("passwd"));
        }
        assertThat(upperDisk).isNotEmptyFile();
    }

    @Test
    void aDirectoryMergedIntoOneHoldingALinkAnEarlierPatchMadeIsRefused() throws Exception {
        Path first = Files.createDirectories(dir.resolve("first"));
        Path second = Files.createDirectories(dir.resolve("second/sub"));
        Files.writeString(second.resolve("file"), "data");
        List<Patch> patches = List.of(Patch.copyDir(first.toString(), "/app/d"), Patch.symlink(host.toString(), "/app/d/sub"),
                Patch.copyDir(second.getParent().toString(), "/app/d", PatchOptions.DEFAULT.withReplace(true)));
        assertThatThrownBy(() -> UpperPatches.createUpperDisk(upperDisk, 16, lowerDisk, patches))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.PATCH_FAILED);
                    assertThat(e.getMessage()).contains("/app/d/sub");
                });
        assertThat(host.resolve("file")).doesNotExist();
    }

    /** Only a whole upper disk is put under its name, which a later start would boot. */
    @Test
    void anUpperDiskThatCannotBeMadeLeavesNothingUnderItsName() throws Exception {
        Path big = dir.resolve("big");
        byte[] megabyte = new byte[1 << 20];
        java.util.Arrays.fill(megabyte, (byte) 'x'); // not zeros, which mke2fs would leave as holes
        try (var out = Files.newOutputStream(big)) {
            for (int i = 0; i < 24; i++) {
                out.write(megabyte); // more than the 16 MiB disk holds
            }
        }
        assertThatThrownBy(() -> UpperPatches.createUpperDisk(upperDisk, 16, lowerDisk, List.of(Patch.copyFile(big.toString(), "/app/big", PatchOptions.DEFAULT))))
                .isInstanceOf(MicrosandboxException.class);
        try (var left = Files.list(upperDisk.getParent())) {
            assertThat(left).isEmpty();
        }
    }
}

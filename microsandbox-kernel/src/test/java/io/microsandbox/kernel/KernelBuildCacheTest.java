package io.microsandbox.kernel;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * build-kernel.sh's cache, run against a tiny fake kernel source (a Makefile that counts its
 * vmlinux builds): nothing changed means no rebuild; a changed fragment, patch or source
 * version rebuilds; an option the merge drops or a patch that does not apply fails the build.
 */
class KernelBuildCacheTest {
    @TempDir
    Path tmp;
    Path source;
    Path fragment;
    Path counter;
    Path patches;

    @BeforeEach
    void fakeSource() throws Exception {
        Path tree = Files.createDirectories(tmp.resolve("src/linux-fake/scripts/kconfig"));
        Files.writeString(tree.getParent().getParent().resolve("Makefile"), String.join("\n",
                "tinyconfig:",
                "\techo CONFIG_TINY=y > .config",
                "olddefconfig:",
                "\t@true",
                "vmlinux:",
                "\tprintf '\\177ELF fake kernel' > vmlinux",
                "\techo built >> $(FAKE_KERNEL_COUNTER)",
                ""));
        // the fake merge keeps every line but those naming DROPPED, as Kconfig drops an
        // option whose dependencies are missing
        Path merge = tree.resolve("merge_config.sh");
        Files.writeString(merge, "#!/bin/sh\ngrep -v DROPPED \"$3\" >> \"$2\"\n");
        merge.toFile().setExecutable(true);
        source = tmp.resolve("linux-fake.tar");
        run(List.of("tar", "-cf", source.toString(), "-C", tmp.resolve("src").toString(), "linux-fake"), Map.of());
        fragment = tmp.resolve("fragment.config");
        Files.writeString(fragment, "# why\nCONFIG_VIRTIO_MMIO=y\n# CONFIG_MODULES is not set\n");
        counter = tmp.resolve("builds");
        patches = Files.createDirectories(tmp.resolve("patches"));
    }

    @Test
    void nothingChangedMeansNoRebuild() throws Exception {
        Result first = build("6.1.1-1");
        assertThat(first.code).isZero();
        assertThat(builds()).isEqualTo(1);
        assertThat(Files.readString(tmp.resolve("out/config"))).contains("CONFIG_VIRTIO_MMIO=y");
        assertThat(Files.readString(tmp.resolve("out/kernel.properties"))).contains("source.version=6.1.1-1");
        assertThat(tmp.resolve("out/vmlinux.gz")).isNotEmptyFile();

        Result second = build("6.1.1-1");
        assertThat(second.code).isZero();
        assertThat(second.output).contains("cached");
        assertThat(builds()).isEqualTo(1);
        assertThat(cacheEntries()).hasSize(1);
    }

    @Test
    void aChangedFragmentOrSourceVersionRebuilds() throws Exception {
        assertThat(build("6.1.1-1").code).isZero();
        Files.writeString(fragment, "CONFIG_TUN=y\n", java.nio.file.StandardOpenOption.APPEND);
        Result changed = build("6.1.1-1");
        assertThat(changed.code).isZero();
        assertThat(changed.output).contains("building kernel");
        assertThat(builds()).isEqualTo(2);
        assertThat(Files.readString(tmp.resolve("out/config"))).contains("CONFIG_TUN=y");

        assertThat(build("6.1.2-1").code).isZero();
        assertThat(builds()).isEqualTo(3);
        assertThat(build("6.1.2-1").code).isZero();
        assertThat(builds()).isEqualTo(3);
        assertThat(cacheEntries()).hasSize(3);
    }

    @Test
    void patchesAreAppliedAndAChangedPatchRebuilds() throws Exception {
        assertThat(build("6.1.1-1").code).isZero();
        Path patch = patches.resolve("0001-fake.patch");
        Files.writeString(patch, fakePatch("first"));
        Result patched = build("6.1.1-1");
        assertThat(patched.code).isZero();
        assertThat(patched.output).contains("building kernel");
        assertThat(builds()).isEqualTo(2);
        assertThat(Files.readString(tmp.resolve("out/kernel.properties"))).contains("boot.params=fake_param\n");

        assertThat(build("6.1.1-1").output).contains("cached");
        Files.writeString(patch, fakePatch("second"));
        assertThat(build("6.1.1-1").code).isZero();
        assertThat(builds()).isEqualTo(3);
    }

    @Test
    void aPatchThatDoesNotApplyFailsTheBuild() throws Exception {
        Files.writeString(patches.resolve("0001-stale.patch"), String.join("\n",
                "--- a/Makefile", "+++ b/Makefile", "@@ -1,2 +1,2 @@", "-no-such-line:", "+other:", " \techo", ""));
        Result result = build("6.1.1-1");
        assertThat(result.code).isNotZero();
        assertThat(result.output).contains("patch 0001-stale.patch does not apply");
        assertThat(builds()).isZero();
        assertThat(cacheEntries()).isEmpty();
    }

    /** A patch in the shipped patches' format: a header naming the boot parameter it adds, then a new file. */
    private static String fakePatch(String content) {
        return String.join("\n", "fake: a parameter", "Boot-Parameter: fake_param", "", "Why it is needed.", "",
                "--- /dev/null", "+++ b/PATCHED", "@@ -0,0 +1 @@", "+" + content, "");
    }

    @Test
    void anOptionTheMergeDroppedFailsTheBuild() throws Exception {
        Files.writeString(fragment, "CONFIG_DROPPED=y\n", java.nio.file.StandardOpenOption.APPEND);
        Result result = build("6.1.1-1");
        assertThat(result.code).isNotZero();
        assertThat(result.output).contains("CONFIG_DROPPED=y was asked for");
        assertThat(builds()).isZero();
        assertThat(cacheEntries()).isEmpty();
    }

    @Test
    void theShippedFragmentAsksForWhatTheRuntimeNeeds() throws IOException {
        String config = Files.readString(Path.of(System.getProperty("msb.kernel.script")).resolveSibling("config/microsandbox.config"));
        for (String option : List.of("CONFIG_64BIT=y", "CONFIG_PVH=y", "CONFIG_ACPI=y", "CONFIG_PCI=y", "CONFIG_SERIAL_8250_PNP=y",
                "CONFIG_PNPACPI=y", "CONFIG_VIRTIO_MMIO=y", "CONFIG_VIRTIO_BLK=y", "CONFIG_VIRTIO_CONSOLE=y", "CONFIG_EXT4_FS=y",
                "CONFIG_OVERLAY_FS=y", "CONFIG_VIRTIO_BALLOON=y", "CONFIG_PAGE_REPORTING=y", "# CONFIG_MODULES is not set")) {
            assertThat(config).contains(option + "\n");
        }
    }

    @Test
    void theBuiltKernelHasEveryOptionOfTheFragment() throws IOException {
        // the module's build ran build-kernel.sh before the tests: its config is on the class path
        try (var in = getClass().getResourceAsStream("/io/microsandbox/kernel/linux-x86_64/config")) {
            assertThat(in).isNotNull();
            String built = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            String wanted = Files.readString(Path.of(System.getProperty("msb.kernel.script")).resolveSibling("config/microsandbox.config"));
            for (String line : wanted.split("\n")) {
                if (line.startsWith("CONFIG_")) {
                    assertThat(built).contains("\n" + line + "\n");
                }
            }
        }
    }

    private record Result(int code, String output) {
    }

    private Result build(String version) throws Exception {
        return run(List.of("bash", System.getProperty("msb.kernel.script"), tmp.resolve("out").toString()), Map.of(
                "MSB_KERNEL_SOURCE", source.toString(),
                "MSB_KERNEL_SOURCE_VERSION", version,
                "MSB_KERNEL_FRAGMENT", fragment.toString(),
                "MSB_KERNEL_CACHE", tmp.resolve("cache").toString(),
                "MSB_KERNEL_PATCHES", patches.toString(),
                "FAKE_KERNEL_COUNTER", counter.toString()));
    }

    private int builds() throws IOException {
        return Files.exists(counter) ? Files.readAllLines(counter).size() : 0;
    }

    private List<Path> cacheEntries() throws IOException {
        if (!Files.isDirectory(tmp.resolve("cache"))) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(tmp.resolve("cache"))) {
            return s.toList();
        }
    }

    private static Result run(List<String> command, Map<String, String> env) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true);
        pb.environment().putAll(env);
        Process p = pb.start();
        String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        return new Result(p.waitFor(), output);
    }
}

package io.microsandbox;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Each patch kind, with and without replace, seen from the guest at first boot and after a restart. */
class PatchIT {
    @TempDir
    Path tmp;

    @Test
    @Timeout(300)
    void everyPatchKindReachesTheGuestAndSurvivesARestart() throws Exception {
        Path tool = Files.writeString(tmp.resolve("tool.sh"), "#!/bin/sh\necho tool-ran\n");
        Files.setPosixFilePermissions(tool, PosixFilePermissions.fromString("rwxr-x---"));
        Path app = Files.createDirectories(tmp.resolve("app"));
        Files.writeString(app.resolve("main.py"), "print('app')\n");
        Files.createDirectories(app.resolve("lib"));
        Files.writeString(app.resolve("lib/util.py"), "X = 1\n");
        Path docs = Files.createDirectories(tmp.resolve("docs"));
        Files.writeString(docs.resolve("only.txt"), "only\n");
        String name = TestSandboxes.uniqueName("patch");
        SandboxConfig config = TestSandboxes.config().patch(
                Patch.mkdir("/app"),
                Patch.text("/app/config.txt", "ready\n", PatchOptions.mode(0600)),
                Patch.text("/etc/issue.net", "patched-issue-net\n", PatchOptions.replacing()),
                Patch.append("/etc/issue", "appended line\n"),
                Patch.append("/etc/os-release", "MSB_PATCHED=1\n"),        // a symlink in the image: its target is copied up
                Patch.mkdir("/etc"),                                        // idempotent on an image directory
                Patch.mkdir("/opt/deep/dir", PatchOptions.mode(0700)),
                Patch.remove("/etc/motd"),
                Patch.remove("/no/such/path"),                              // idempotent
                Patch.symlink("/app/config.txt", "/etc/msb-link"),
                Patch.copyFile(tool.toString(), "/usr/local/bin/tool"),
                Patch.copyFile(tool.toString(), "/bin/tool-via-usrmerge", PatchOptions.mode(0755)),
                Patch.copyDir(app.toString(), "/srv/app"),
                Patch.copyDir(docs.toString(), "/usr/share/base-files", PatchOptions.replacing()))
                .build();
        try (Sandbox sb = Sandbox.create(name, config)) {
            String script = String.join("; ",
                    "cat /app/config.txt", "stat -c '%a %u' /app/config.txt",
                    "cat /etc/issue.net",
                    "tail -1 /etc/issue", "head -1 /etc/issue | grep -q Debian && echo issue-kept",
                    "tail -1 /usr/lib/os-release", "test -L /etc/os-release && echo os-release-still-link",
                    "stat -c '%a' /opt/deep/dir", "stat -c '%a %u' /etc",
                    "test -e /etc/motd || echo motd-gone",
                    "readlink /etc/msb-link", "cat /etc/msb-link",
                    "/usr/local/bin/tool", "stat -c '%a' /usr/local/bin/tool",
                    "test -L /bin && echo bin-still-link", "/usr/bin/tool-via-usrmerge",
                    "cat /srv/app/main.py /srv/app/lib/util.py",
                    "ls /usr/share/base-files");
            ExecOutput out = sb.exec("sh", List.of("-c", script));
            assertThat(out.stdout()).isEqualTo(String.join("\n",
                    "ready", "600 0",
                    "patched-issue-net",
                    "appended line", "issue-kept",
                    "MSB_PATCHED=1", "os-release-still-link",
                    "700", "755 0",
                    "motd-gone",
                    "/app/config.txt", "ready",
                    "tool-ran", "750",
                    "bin-still-link", "tool-ran",
                    "print('app')", "X = 1",
                    "only.txt") + "\n");
            sb.stop();
        }
        try (Sandbox again = Sandbox.start(name)) {
            assertThat(again.exec("sh", List.of("-c", "cat /app/config.txt; test -e /etc/motd || echo motd-gone")).stdout())
                    .isEqualTo("ready\nmotd-gone\n");
            again.stop();
        } finally {
            Sandbox.remove(name);
        }
    }

    @Test
    @Timeout(120)
    void aPatchOntoAnExistingPathWithoutReplaceFailsNamingThePath() throws Exception {
        Path f = Files.writeString(tmp.resolve("f"), "x");
        Path d = Files.createDirectories(tmp.resolve("d"));
        for (Patch p : List.of(
                Patch.text("/etc/issue", "x\n"),
                Patch.symlink("/x", "/etc/passwd"),
                Patch.copyFile(f.toString(), "/etc/group"),
                Patch.copyDir(d.toString(), "/usr/share"),
                Patch.mkdir("/etc/passwd"))) {
            String name = TestSandboxes.uniqueName("patchfail");
            assertThatThrownBy(() -> Sandbox.create(name, TestSandboxes.config().patch(p).ephemeral(true).build()).close())
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.PATCH_FAILED);
                        assertThat(e.getMessage()).contains(p.path());
                    });
            assertThat(Sandbox.list().stream().map(SandboxHandle::name)).doesNotContain(name);
        }
        assertThatThrownBy(() -> TestSandboxes.config().patch(Patch.text("relative/path", "x")).build())
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
        assertThatThrownBy(() -> TestSandboxes.config().patch(Patch.text("/a/../etc/passwd", "x")).build())
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
    }
}

package io.microsandbox;

import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.SandboxLayout;
import io.microsandbox.runtime.SandboxPreparer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * The home and everything in it is its owner's only, whatever the umask: a child JVM under
 * {@code umask 002} creates a sandbox in a fresh home and runs a command, and every file,
 * directory and socket under that home is checked while the sandbox runs and after it stopped.
 */
class HomePermissionsIT {

    @Test
    @Timeout(300)
    void nothingUnderTheHomeIsOpenToGroupOrOthersUnderUmask002() throws Exception {
        Path home = Path.of("target", "msb-home-umask-" + ProcessHandle.current().pid()).toAbsolutePath();
        SandboxPreparer.deleteTree(home);
        String name = TestSandboxes.uniqueName("umask");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process child = new ProcessBuilder("sh", "-c", "umask 002 && exec \"$0\" \"$@\"", java,
                "-cp", System.getProperty("java.class.path"),
                "-Dmicrosandbox.home=" + home,
                "-Dmicrosandbox.kernel.dir=" + System.getProperty("microsandbox.kernel.dir", ""),
                // a spare supervisor would outlive the child by a moment and could write into the home after it is removed
                "-Dmicrosandbox.supervisor.spare=false",
                Child.class.getName(), name, TestSandboxes.rootfs())
                .redirectError(ProcessBuilder.Redirect.INHERIT)
                .start();
        try {
            BufferedReader fromChild = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8));
            String ready = fromChild.readLine();
            assertThat(ready).as("the child's report").isEqualTo("READY umask=2 exit=0");

            SandboxLayout layout = SandboxLayout.of(home, name);
            List<Path> running = walk(home);
            assertThat(running).as("a running sandbox's files").contains(
                    layout.agentSocket(), layout.vmSocket(), layout.qmpSocket(), layout.pidFile(),
                    layout.specFile(), layout.upperDisk(), layout.consoleLog(), layout.vmmLog(), layout.execLog(),
                    layout.supervisorLog(), home.resolve("db/msb.db"));
            assertThat(running).anyMatch(p -> p.startsWith(home.resolve("cache/rootfs")) && p.toString().endsWith(".ext4"));
            assertThat(running).anyMatch(p -> p.startsWith(home.resolve("runtime")) && p.endsWith("libmsbjni.so"));
            assertThat(wideOnes(running)).as("entries open to group or others while the sandbox runs").isEmpty();

            OutputStream toChild = child.getOutputStream();
            toChild.write("stop\n".getBytes(StandardCharsets.UTF_8));
            toChild.flush();
            assertThat(fromChild.readLine()).isEqualTo("STOPPED");
            assertThat(child.waitFor(60, TimeUnit.SECONDS)).isTrue();

            List<Path> stopped = walk(home);
            assertThat(stopped).contains(layout.specFile(), layout.upperDisk(), layout.execLog(), home.resolve("db/msb.db"));
            assertThat(wideOnes(stopped)).as("entries open to group or others after the sandbox stopped").isEmpty();
        } finally {
            child.destroyForcibly();
            child.waitFor(60, TimeUnit.SECONDS);
            SandboxPreparer.deleteTree(home);
        }
    }

    private static List<Path> walk(Path home) throws IOException {
        try (Stream<Path> all = Files.walk(home)) {
            return all.toList();
        }
    }

    /** "mode type path" of every entry with a group or other permission bit. */
    private static List<String> wideOnes(List<Path> paths) throws IOException {
        List<String> wide = new ArrayList<>();
        for (Path p : paths) {
            PosixFileAttributes a;
            try {
                a = Files.readAttributes(p, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
            } catch (java.nio.file.NoSuchFileException e) {
                continue; // removed meanwhile (a temp file)
            }
            if (a.isSymbolicLink()) {
                continue; // a link's own mode means nothing
            }
            for (PosixFilePermission perm : a.permissions()) {
                if (!perm.name().startsWith("OWNER_")) {
                    String type = a.isDirectory() ? "dir" : a.isRegularFile() ? "file" : "other (socket)";
                    wide.add(PosixFilePermissions.toString(a.permissions()) + " " + type + " " + p);
                    break;
                }
            }
        }
        return wide;
    }

    /**
     * Runs under the umask it was started with: creates sandbox {@code args[0]} from image
     * {@code args[1]} with an environment value, runs a command, prints {@code READY}, and stops
     * it on a {@code stop} line from stdin.
     */
    public static final class Child {
        private Child() {
        }

        public static void main(String[] args) throws Exception {
            int umask = Posix.umask(0);
            Posix.umask(umask);
            SandboxConfig config = SandboxConfig.builder().image(args[1]).memoryMib(256)
                    .env("SECRET", "s3cret").build();
            try (Sandbox sb = Sandbox.create(args[0], config)) {
                ExecOutput out = sb.shell("echo \"$SECRET\"; echo err >&2");
                System.out.println("READY umask=" + Integer.toOctalString(umask) + " exit=" + out.exitCode());
                System.out.flush();
                BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
                String line;
                while ((line = in.readLine()) != null && !line.equals("stop")) {
                    // wait
                }
                sb.stop();
            }
            System.out.println("STOPPED");
            System.out.flush();
            System.exit(0);
        }
    }
}

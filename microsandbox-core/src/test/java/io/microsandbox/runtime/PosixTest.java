package io.microsandbox.runtime;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

@Timeout(20)
class PosixTest {

    private static final String[] ENV = {"PATH=/usr/local/bin:/usr/bin:/bin"};

    @TempDir
    Path tmp;

    /** children not yet reaped; killed and reaped after each test */
    private final List<Integer> children = new ArrayList<>();

    @AfterEach
    void reapChildren() throws IOException {
        for (int pid : children) {
            Posix.kill(pid, Posix.SIGKILL);
            Posix.waitPid(pid);
        }
        children.clear();
    }

    private int spawn(String... argv) throws IOException {
        return spawnWith(argv, ENV, null, null, 0, false);
    }

    private int spawnWith(String[] argv, String[] env, String dir, String out, int pdeathsig, boolean session)
            throws IOException {
        int pid = Posix.spawn(argv, env, dir, out, pdeathsig, session);
        assertThat(pid).isPositive();
        children.add(pid);
        return pid;
    }

    private int reap(int pid) throws IOException {
        int status = Posix.waitPid(pid);
        children.remove(Integer.valueOf(pid));
        return status;
    }

    /** runs sh -c script with its output captured, returns the output; asserts exit 0 */
    private String shell(String script, boolean newSession) throws IOException {
        Path out = tmp.resolve("sh-" + System.nanoTime() + ".out");
        int pid = spawnWith(new String[] {"sh", "-c", script}, ENV, null, out.toString(), 0, newSession);
        int status = reap(pid);
        String text = Files.readString(out);
        assertThat(Posix.exitCode(status)).as("exit code of %s, output %s", script, text).isZero();
        return text;
    }

    /**
     * An entry the walk cannot read fails the walk, naming it, instead of being recorded with
     * whatever the stack held (a fingerprint of a local image would change from boot to boot).
     * Root reads everything: only a run as another user can show it.
     */
    @Test
    void aTreeWithAnEntryThatCannotBeReadFailsNamingIt() throws IOException {
        org.junit.jupiter.api.Assumptions.assumeFalse((Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid") == 0,
                "root reads a directory whatever its mode");
        Path root = Files.createDirectories(tmp.resolve("tree/locked"));
        Files.writeString(root.resolve("f"), "x");
        Files.setPosixFilePermissions(root, PosixFilePermissions.fromString("rw-------"));
        try {
            assertThatThrownBy(() -> Posix.statTree(tmp.resolve("tree"))).isInstanceOf(IOException.class)
                    .hasMessageContaining("locked");
        } finally {
            Files.setPosixFilePermissions(root, PosixFilePermissions.fromString("rwx------"));
        }
    }

    @Test
    void spawnPassesEnvironmentWorkDirAndCapturesOutput() throws IOException {
        Path out = tmp.resolve("out.log");
        Files.createDirectory(tmp.resolve("work"));
        int pid = spawnWith(new String[] {"sh", "-c", "echo $X; pwd; echo oops >&2; exit 7"},
                new String[] {"X=hello wörld", "PATH=/usr/bin:/bin"}, tmp.resolve("work").toString(),
                out.toString(), 0, false);

        int status = reap(pid);

        assertThat(Posix.exited(status)).isTrue();
        assertThat(Posix.exitCode(status)).isEqualTo(7);
        assertThat(Posix.termSignal(status)).isZero();
        assertThat(Files.readString(out, StandardCharsets.UTF_8))
                .isEqualTo("hello wörld\n" + tmp.resolve("work").toRealPath() + "\noops\n");
        assertThat(Files.getPosixFilePermissions(out)) // 0644 less the umask
                .contains(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE)
                .doesNotContain(PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.GROUP_WRITE,
                        PosixFilePermission.OTHERS_WRITE);
    }

    @Test
    void outputIsAppended() throws IOException {
        Path out = tmp.resolve("append.log");
        Files.writeString(out, "before\n");
        reap(spawnWith(new String[] {"echo", "after"}, ENV, null, out.toString(), 0, false));
        assertThat(Files.readString(out)).isEqualTo("before\nafter\n");
    }

    @Test
    void nullEnvInheritsAndNullOutputDiscards() throws IOException {
        int pid = spawnWith(new String[] {"sh", "-c", "test -n \"$PATH\" && echo discarded"}, null, null, null, 0, false);
        assertThat(Posix.exitCode(reap(pid))).isZero();
    }

    @Test
    void childHasOnlyStdioWithStdinFromDevNull() throws IOException {
        String fds = shell("cd /proc/self/fd && exec ls -1", false);
        // ls itself opens the directory it lists: 0, 1, 2 and that one
        assertThat(fds.lines().filter(fd -> Integer.parseInt(fd) > 2)).hasSizeLessThanOrEqualTo(1);
        assertThat(shell("readlink /proc/self/fd/0", false)).isEqualTo("/dev/null\n");
    }

    @Test
    void childHasEmptySignalMaskAndNoIgnoredSignals() throws IOException {
        String status = shell("exec grep -E '^Sig(Blk|Ign):' /proc/self/status", false);
        assertThat(status).isEqualTo("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    }

    @Test
    void newSessionMakesTheChildASessionLeader() throws IOException {
        assertThat(sessionFields(true)).satisfies(f -> assertThat(f[1]).isEqualTo(f[0]));
        assertThat(sessionFields(false)).satisfies(f -> assertThat(f[1]).isNotEqualTo(f[0]));
    }

    /** {pid, session} of a child as /proc/self/stat reports it */
    private String[] sessionFields(boolean newSession) throws IOException {
        String stat = shell("exec cat /proc/self/stat", newSession).trim();
        String[] after = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        return new String[] {stat.substring(0, stat.indexOf(' ')), after[3]};
    }

    @Test
    void missingProgramThrowsAndLeavesNoChild() {
        assertThatThrownBy(() -> Posix.spawn(new String[] {"msb-no-such-program", "x"}, ENV, null, null, 0, false))
                .isInstanceOf(IOException.class)
                .hasMessage("cannot run msb-no-such-program: No such file or directory");
        assertThatThrownBy(() -> Posix.spawn(new String[] {"/nonexistent/msb-prog"}, null, null, null, 0, false))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("/nonexistent/msb-prog");
        assertThatThrownBy(() -> Posix.spawn(new String[] {"/dev/null"}, null, null, null, 0, false))
                .isInstanceOf(IOException.class)
                .hasMessage("cannot run /dev/null: Permission denied");
    }

    @Test
    void badWorkDirAndOutputFileThrow() {
        assertThatThrownBy(() -> Posix.spawn(new String[] {"true"}, ENV, tmp.resolve("nope").toString(), null, 0, false))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("cannot run true: cannot change directory to " + tmp.resolve("nope"))
                .hasMessageEndingWith("No such file or directory");
        assertThatThrownBy(() -> Posix.spawn(new String[] {"true"}, ENV, null, tmp.resolve("a/b").toString(), 0, false))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("cannot open output file " + tmp.resolve("a/b"));
        assertThatThrownBy(() -> Posix.spawn(new String[] {"true", "a\0b"}, ENV, null, null, 0, false))
                .isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> Posix.spawn(new String[0], ENV, null, null, 0, false))
                .isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void killWithSigtermReportsTheSignal() throws IOException {
        int pid = spawn("sleep", "100");
        assertThat(Posix.kill(pid, Posix.SIGTERM)).isTrue();
        int status = reap(pid);
        assertThat(Posix.exited(status)).isFalse();
        assertThat(Posix.exitCode(status)).isEqualTo(-1);
        assertThat(Posix.termSignal(status)).isEqualTo(Posix.SIGTERM);
    }

    @Test
    void killOfAReapedProcessReturnsFalse() throws IOException {
        int pid = spawn("true");
        reap(pid);
        assertThat(Posix.kill(pid, 0)).isFalse();
        assertThat(Posix.pidfdOpen(pid)).isEqualTo(-1);
        assertThatThrownBy(() -> Posix.waitPid(pid)).isInstanceOf(IOException.class)
                .hasMessageContaining("waitpid(" + pid + ")").hasMessageContaining("No child processes");
    }

    @Test
    void pidfdSignalsExitWithoutReaping() throws IOException {
        int pid = spawn("sleep", "100");
        int fd = Posix.pidfdOpen(pid);
        assertThat(fd).isGreaterThan(2);
        try {
            assertThat(Posix.pidfdAwait(fd, 0)).isFalse();
            assertThat(Posix.pidfdAwait(fd, 100)).isFalse();
            Posix.kill(pid, Posix.SIGKILL);
            assertThat(Posix.pidfdAwait(fd, 5000)).isTrue();
            assertThat(Posix.kill(pid, 0)).as("zombie until reaped").isTrue();
            assertThat(Posix.termSignal(reap(pid))).isEqualTo(Posix.SIGKILL);
        } finally {
            Posix.close(fd);
        }
        assertThatThrownBy(() -> Posix.pidfdAwait(fd, 0)).isInstanceOf(IOException.class);
    }

    @Test
    void aPassedMemfdIsTheChildsFd3AndNothingElseLeaks() throws IOException {
        int memory = Posix.memfdCreate("test-memory", 1 << 20);
        try {
            assertThat(Files.size(Path.of("/proc/self/fd/" + memory))).isEqualTo(1 << 20);
            assertThat(Posix.allocatedBytes(Path.of("/proc/self/fd/" + memory))).as("a hole until written").isZero();
            Files.writeString(Path.of("/proc/self/fd/" + memory), "written by the parent");
            Path out = tmp.resolve("fds.out");
            // dash runs this without opening files of its own; $$ is the shell, not ls
            int pid = Posix.spawn(new String[] {"sh", "-c", "readlink /proc/$$/fd/3; head -c 21 /proc/$$/fd/3; echo; ls /proc/$$/fd"},
                    ENV, null, out.toString(), 0, false, memory);
            children.add(pid);
            assertThat(Posix.exitCode(reap(pid))).isZero();
            assertThat(Files.readAllLines(out)).containsExactly("/memfd:test-memory (deleted)", "written by the parent", "0", "1", "2", "3");
        } finally {
            Posix.close(memory);
        }
        // without one, fd 3 is closed like every other
        assertThat(shell("ls /proc/$$/fd", false).lines().toList()).containsExactly("0", "1", "2");
    }

    @Test
    void parentDeathSignalFiresWhenTheSpawningThreadExits() throws Exception {
        AtomicInteger pid = new AtomicInteger();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread spawner = new Thread(() -> {
            try {
                pid.set(Posix.spawn(new String[] {"sleep", "30"}, ENV, null, null, Posix.SIGKILL, true));
            } catch (Throwable t) {
                failure.set(t);
            }
        }, "short-lived-spawner");
        spawner.start();
        spawner.join();
        assertThat(failure.get()).isNull();
        children.add(pid.get());

        int fd = Posix.pidfdOpen(pid.get());
        try {
            // the thread is gone, so the kernel has sent (or is about to send) SIGKILL
            assertThat(fd == -1 || Posix.pidfdAwait(fd, 5000)).isTrue();
        } finally {
            Posix.close(fd);
        }
        assertThat(Posix.termSignal(reap(pid.get()))).isEqualTo(Posix.SIGKILL);
    }

    @Test
    void parentDeathSignalDoesNotFireWhileTheSpawningThreadLives() throws IOException {
        int pid = spawnWith(new String[] {"sleep", "30"}, ENV, null, null, Posix.SIGKILL, true);
        int fd = Posix.pidfdOpen(pid);
        try {
            assertThat(Posix.pidfdAwait(fd, 300)).isFalse();
        } finally {
            Posix.close(fd);
        }
    }

    @Test
    void setParentDeathSignalOnTheJvmIsAccepted() throws IOException {
        Posix.setParentDeathSignal(0); // clearing it is side-effect free for the test JVM
        assertThatThrownBy(() -> Posix.setParentDeathSignal(12345)).isInstanceOf(IOException.class)
                .hasMessageContaining("PR_SET_PDEATHSIG");
    }

    @Test
    void waitStatusDecoding() {
        assertThat(Posix.exited(0x0700)).isTrue();
        assertThat(Posix.exitCode(0x0700)).isEqualTo(7);
        assertThat(Posix.termSignal(0x0700)).isZero();
        assertThat(Posix.exited(0x8f)).isFalse(); // SIGTERM with core flag
        assertThat(Posix.termSignal(0x8f)).isEqualTo(15);
        assertThat(Posix.exited(0x137f)).isFalse(); // stopped by SIGSTOP
        assertThat(Posix.termSignal(0x137f)).isZero();
    }

    @Test
    void terminalCallsOnNonTerminalsFail() {
        assertThat(Posix.isatty(-1)).isFalse();
        assertThatThrownBy(() -> Posix.enterRawMode(-1)).isInstanceOf(IOException.class)
                .hasMessageContaining("Bad file descriptor");
        assertThatThrownBy(() -> Posix.windowSize(-1)).isInstanceOf(IOException.class)
                .hasMessageContaining("TIOCGWINSZ");
        assertThatThrownBy(() -> Posix.restoreMode(0, new byte[3])).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void runtimeFilesExtractsOnceAndExecutable() throws IOException {
        Path lib = RuntimeFiles.extract(Posix.LIBRARY);
        assertThat(lib).isAbsolute().isRegularFile().isExecutable();
        assertThat(lib.getParent().getParent()).isEqualTo(RuntimeFiles.defaultHome().resolve("runtime"));
        assertThat(lib.getParent().getFileName().toString()).matches("[A-Za-z0-9._+-]+-[0-9a-f]{12}");
        assertThat(RuntimeFiles.extract(Posix.LIBRARY)).isSameAs(lib);
        assertThatThrownBy(() -> RuntimeFiles.extract("msb-no-such-file"))
                .isInstanceOf(IllegalStateException.class)
                .hasMessageContaining("/io/microsandbox/native/linux-x86_64/msb-no-such-file")
                .hasMessageContaining("native build did not run");
        assertThatThrownBy(() -> RuntimeFiles.extract("../x")).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void umaskSetsAndReturnsThePreviousMask() {
        int original = Posix.umask(0077);
        try {
            assertThat(Posix.umask(0027)).isEqualTo(0077);
            assertThat(Posix.umask(0077)).isEqualTo(0027);
        } finally {
            Posix.umask(original);
        }
        assertThatThrownBy(() -> Posix.umask(01000)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void spawnCreatesTheOutputFileOwnerOnly() throws IOException {
        Path out = tmp.resolve("owner-only.out");
        reap(spawnWith(new String[] {"true"}, ENV, null, out.toString(), 0, false));
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(out))).isEqualTo("rw-------");
    }

    @Test
    void runtimeFilesAreTheOwnersOnly() throws IOException {
        String old = System.getProperty(RuntimeFiles.HOME_PROPERTY);
        try {
            Path home = tmp.resolve("home");
            System.setProperty(RuntimeFiles.HOME_PROPERTY, home.toString());
            // a file no other unit test extracts: extraction is cached per JVM
            Path agent = RuntimeFiles.extract("fetch-kernel.sh");
            assertThat(agent).startsWith(home);
            assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(agent))).isEqualTo("rwx------");
            for (Path dir = agent.getParent(); dir.startsWith(home); dir = dir.getParent()) {
                assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(dir))).as(dir.toString()).isEqualTo("rwx------");
            }
        } finally {
            if (old == null) {
                System.clearProperty(RuntimeFiles.HOME_PROPERTY);
            } else {
                System.setProperty(RuntimeFiles.HOME_PROPERTY, old);
            }
        }
    }

    @Test
    void defaultHomeFollowsTheSystemProperty() {
        String old = System.getProperty(RuntimeFiles.HOME_PROPERTY);
        try {
            System.setProperty(RuntimeFiles.HOME_PROPERTY, tmp.toString());
            assertThat(RuntimeFiles.defaultHome()).isEqualTo(tmp.toAbsolutePath());
        } finally {
            if (old == null) {
                System.clearProperty(RuntimeFiles.HOME_PROPERTY);
            } else {
                System.setProperty(RuntimeFiles.HOME_PROPERTY, old);
            }
        }
    }
}

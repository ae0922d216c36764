package io.microsandbox;

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * attachShell through a real pseudo-terminal: a JVM running {@link AttachChildJvm} in a tmux
 * pane (a tmux server of its own), driven with send-keys, read with capture-pane, resized
 * with resize-window.
 */
class SandboxAttachIT {
    private static Sandbox sandbox;
    private final String socket = "msb-attach-" + ProcessHandle.current().pid();

    @BeforeAll
    static void boot() {
        sandbox = Sandbox.create(TestSandboxes.uniqueName("attach"), TestSandboxes.config().build());
    }

    @AfterAll
    static void shutdown() {
        if (sandbox != null) {
            sandbox.close();
            Sandbox.remove(sandbox.name());
        }
    }

    @AfterEach
    void killTmux() throws Exception {
        tmux("kill-server");
        java.nio.file.Files.deleteIfExists(Path.of("/tmp/tmux-" + uid(), socket));
    }

    private static String uid() throws Exception {
        Process p = new ProcessBuilder("id", "-u").start();
        try (var r = p.inputReader()) {
            return r.readLine().trim();
        }
    }

    @Test
    void typesIntoAShellResizesAndReturnsTheExitCode() throws Exception {
        startPane();
        awaitScreen(SandboxAttachIT::prompt, "the shell prompt");
        keys("stty size", "Enter");
        awaitScreen(s -> s.contains("24 80"), "24 80 from stty size");
        tmux("resize-window", "-t", "t", "-x", "100", "-y", "30");
        Thread.sleep(500);
        keys("clear; stty size", "Enter");
        awaitScreen(s -> s.contains("30 100"), "30 100 after the resize");
        keys("echo typed-$((6*7))", "Enter");
        awaitScreen(s -> s.contains("typed-42"), "the typed command's output");
        keys("exit 7", "Enter");
        String screen = awaitScreen(s -> s.contains("CHILD-DONE"), "the child's report");
        assertThat(screen).contains("ATTACH-RESULT 7").contains("RESTORED true");
    }

    @Test
    void ctrlBracketTwiceDetachesAndLeavesTheShellRunning() throws Exception {
        startPane();
        awaitScreen(SandboxAttachIT::prompt, "the shell prompt");
        keys("echo $$ > /tmp/attached.pid; echo pid-written", "Enter");
        awaitScreen(s -> s.contains("pid-written"), "the pid file");
        tmux("send-keys", "-t", "t", "-H", "1d", "1d");
        String screen = awaitScreen(s -> s.contains("CHILD-DONE"), "the child's report");
        assertThat(screen).contains("ATTACH-RESULT -1").contains("RESTORED true").contains("SHELL alive");
    }

    /**
     * A process that reads no input (the terminal raw, so the guest's buffers fill instead of
     * dropping keys) and a paste beyond the stdin window and the guest's terminal buffers (but
     * within the attach's queue): the attach still reads its terminal, so the detach keys that
     * follow the paste work.
     */
    @Test
    void detachWorksWhileTheGuestTakesNoInput() throws Exception {
        startPane();
        awaitScreen(SandboxAttachIT::prompt, "the shell prompt");
        keys("echo $$ > /tmp/attached.pid; stty raw -echo; echo not-reading; sleep 1000", "Enter");
        awaitScreen(s -> s.contains("not-reading"), "the shell that stopped reading");
        Path paste = Files.createTempFile("msb-paste", ".txt");
        try {
            Files.write(paste, "a".repeat(1900 << 10).getBytes(StandardCharsets.US_ASCII));
            tmux("load-buffer", "-b", "paste", paste.toString());
            tmux("paste-buffer", "-b", "paste", "-t", "t");
            tmux("send-keys", "-t", "t", "-H", "1d", "1d");
            String screen = awaitScreen(s -> s.contains("CHILD-DONE"), "the child's report");
            assertThat(screen).contains("ATTACH-RESULT -1").contains("RESTORED true").contains("SHELL alive");
        } finally {
            Files.deleteIfExists(paste);
        }
    }

    /** A paste beyond the stdin window and the attach's queue reaches a process that reads it, whole. */
    @Test
    void aLargePasteReachesAReadingProcessWhole() throws Exception {
        int size = 3 << 20;
        startPane();
        awaitScreen(SandboxAttachIT::prompt, "the shell prompt");
        keys("stty raw -echo; echo reading; head -c " + size + " > /tmp/pasted; stty sane; echo pasted-$(wc -c < /tmp/pasted)", "Enter");
        awaitScreen(s -> s.contains("reading"), "the reading process");
        Path paste = Files.createTempFile("msb-paste", ".txt");
        try {
            Files.write(paste, "b".repeat(size).getBytes(StandardCharsets.US_ASCII));
            tmux("load-buffer", "-b", "paste", paste.toString());
            tmux("paste-buffer", "-b", "paste", "-t", "t");
            // the guest's terminal takes some 70 KB/s under TCG here
            awaitScreen(s -> s.contains("pasted-" + size), "the whole paste in the guest", Duration.ofSeconds(180));
            keys("exit 0", "Enter");
            awaitScreen(s -> s.contains("CHILD-DONE"), "the child's report");
        } finally {
            Files.deleteIfExists(paste);
        }
    }

    /** A terminal that takes no output ends the attach with an I/O error, and the command with it. */
    @Test
    void anOutputThatFailsEndsTheAttachAndItsCommand() throws Exception {
        startPane("closed-stdout");
        String screen = awaitScreen(s -> s.contains("CHILD-DONE"), "the child's report");
        assertThat(screen).contains("ATTACH-ERROR IO").contains("SLEEPING 0");
    }

    @Test
    void anInterruptEndsTheAttachAndItsCommand() throws Exception {
        startPane("interrupt");
        String screen = awaitScreen(s -> s.contains("CHILD-DONE"), "the child's report");
        assertThat(screen).contains("ATTACH-ERROR CANCELLED").contains("SLEEPING 0");
    }

    /** capture-pane drops trailing blanks: a prompt is a line ending in # or $. */
    private static boolean prompt(String screen) {
        return screen.lines().map(String::strip).anyMatch(l -> l.endsWith("#") || l.endsWith("$"));
    }

    private void startPane(String... childArgs) throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String cmd = String.join(" ", java, "-XX:-UsePerfData", "-cp", System.getProperty("java.class.path"),
                "-Dmicrosandbox.home=" + io.microsandbox.runtime.RuntimeFiles.defaultHome(),
                AttachChildJvm.class.getName(), sandbox.name(), String.join(" ", childArgs));
        tmux("new-session", "-d", "-s", "t", "-x", "80", "-y", "24", cmd);
    }

    private void keys(String... keys) throws Exception {
        List<String> args = new ArrayList<>(List.of("send-keys", "-t", "t"));
        args.addAll(List.of(keys));
        tmux(args.toArray(String[]::new));
    }

    private String awaitScreen(java.util.function.Predicate<String> want, String what) throws Exception {
        return awaitScreen(want, what, Duration.ofSeconds(60));
    }

    private String awaitScreen(java.util.function.Predicate<String> want, String what, Duration wait) throws Exception {
        long deadline = System.nanoTime() + wait.toNanos();
        String screen = "";
        while (System.nanoTime() < deadline) {
            screen = tmux("capture-pane", "-p", "-t", "t");
            if (want.test(screen)) {
                return screen;
            }
            Thread.sleep(200);
        }
        throw new AssertionError("no " + what + " on the screen:\n" + screen);
    }

    private String tmux(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("tmux", "-L", socket, "-f", "/dev/null"));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (InputStream in = p.getInputStream()) {
            in.transferTo(out);
        }
        p.waitFor();
        return out.toString(StandardCharsets.UTF_8);
    }
}

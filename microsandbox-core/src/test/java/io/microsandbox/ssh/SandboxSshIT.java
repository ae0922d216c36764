package io.microsandbox.ssh;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.Sandbox;
import io.microsandbox.TestSandboxes;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import org.apache.sshd.client.channel.ChannelShell;
import org.apache.sshd.client.channel.ClientChannelEvent;
import org.apache.sshd.sftp.client.SftpClient;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * SSH into a real VM with the real OpenSSH client (ssh, scp, sftp from Debian's
 * openssh-client), an interactive pty session driven through tmux, and the in-process
 * client; only 127.0.0.1.
 */
class SandboxSshIT {
    private static Sandbox sandbox;
    private static SshServerEndpoint endpoint;
    private static Path key;

    @TempDir
    Path tmp;

    @BeforeAll
    static void boot() {
        sandbox = Sandbox.create(TestSandboxes.uniqueName("ssh"), TestSandboxes.config().ephemeral(true).build());
        endpoint = sandbox.ssh().server();
        key = endpoint.clientKeyFile().orElseThrow();
    }

    @AfterAll
    static void shutdown() {
        if (sandbox != null) {
            sandbox.close();
        }
    }

    @Test
    void sshRunsACommandInTheGuestWithItsOutputAndExitStatus() throws Exception {
        assertThat(endpoint.host()).isEqualTo("127.0.0.1");
        assertThat(Files.getPosixFilePermissions(key)).containsExactlyInAnyOrder(
                java.nio.file.attribute.PosixFilePermission.OWNER_READ, java.nio.file.attribute.PosixFilePermission.OWNER_WRITE);
        Result r = run(ssh(key, "uname -a"));
        assertThat(r.exit).as(r.toString()).isZero();
        String guestKernel = sandbox.exec("uname", List.of("-a")).stdout();
        assertThat(r.out).isEqualTo(guestKernel).contains(sandbox.exec("uname", List.of("-r")).stdout().strip());
        // not the host's kernel: the guest runs microsandbox's own
        assertThat(r.out).isNotEqualTo(run(List.of("uname", "-a")).out);

        Result status = run(ssh(key, "echo to-out; echo to-err >&2; exit 7"));
        assertThat(status.exit).isEqualTo(7);
        assertThat(status.out).isEqualTo("to-out\n");
        assertThat(status.err).contains("to-err");

        Result stdin = run(ssh(key, "tr a-z A-Z"), "piped through\n".getBytes(StandardCharsets.UTF_8));
        assertThat(stdin.out).isEqualTo("PIPED THROUGH\n");

        // a command with a forced pty runs on a guest tty (output comes back with CR LF)
        List<String> withPty = sshOptions("ssh", "-p");
        withPty.addAll(List.of("-tt", "root@127.0.0.1", "tty"));
        Result tty = run(withPty);
        assertThat(tty.exit).isZero();
        assertThat(tty.out).matches("/dev/pts/\\d+\r\n");

        // a shell without a pty reads its commands from stdin
        List<String> noPty = sshOptions("ssh", "-p");
        noPty.addAll(List.of("-T", "root@127.0.0.1"));
        Result shell = run(noPty, "echo from-a-script; exit 3\n".getBytes(StandardCharsets.UTF_8));
        assertThat(shell.exit).isEqualTo(3);
        assertThat(shell.out).isEqualTo("from-a-script\n");
    }

    @Test
    void aWrongKeyAndPasswordsAreRefused() throws Exception {
        Path wrong = tmp.resolve("wrong");
        assertThat(run(List.of("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", wrong.toString())).exit).isZero();
        Result r = run(ssh(wrong, "echo should-not-run"));
        assertThat(r.exit).isEqualTo(255);
        assertThat(r.out).doesNotContain("should-not-run");
        assertThat(r.err).contains("Permission denied (publickey)");

        // no password or keyboard-interactive login is offered at all
        List<String> password = new ArrayList<>(sshOptions("ssh", "-p"));
        password.addAll(List.of("-o", "PreferredAuthentications=password,keyboard-interactive", "root@127.0.0.1", "true"));
        Result p = run(password);
        assertThat(p.exit).isEqualTo(255);
        assertThat(p.err).contains("Permission denied (publickey)");

        // the server runs on the host: remote forwarding (the host's ports) and other subsystems are refused
        List<String> forward = new ArrayList<>(sshOptions("ssh", "-p"));
        forward.addAll(List.of("-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9", "root@127.0.0.1", "echo forwarded"));
        Result f = run(forward);
        assertThat(f.exit).as(f.toString()).isNotZero();
        assertThat(f.out).doesNotContain("forwarded");
        assertThat(f.err).containsIgnoringCase("forwarding failed");
        List<String> subsystem = new ArrayList<>(sshOptions("ssh", "-p"));
        subsystem.addAll(List.of("-s", "root@127.0.0.1", "netconf"));
        Result sub = run(subsystem);
        assertThat(sub.exit).as(sub.toString()).isNotZero();

        // an endpoint with the caller's own key takes that key, and only that one
        Path mine = tmp.resolve("mine");
        assertThat(run(List.of("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", mine.toString())).exit).isZero();
        try (SshServerEndpoint own = sandbox.ssh().server(SshServerOptions.builder().authorizedKeys(Path.of(mine + ".pub")).build())) {
            assertThat(own.clientKeyFile()).isEmpty();
            assertThat(run(ssh(mine, own.port(), "echo mine")).out).isEqualTo("mine\n");
            assertThat(run(ssh(key, own.port(), "echo generated")).exit).isEqualTo(255);
        }
    }

    @Test
    void theLoginNameIsTheGuestUserAndTheGuestEnforcesItsPermissions() throws Exception {
        List<String> whoami = sshOptions("ssh", "-p");
        whoami.addAll(List.of("sandbox@127.0.0.1", "id -un; echo $HOME"));
        Result r = run(whoami);
        assertThat(r.exit).as(r.toString()).isZero();
        assertThat(r.out).isEqualTo("sandbox\n/home/sandbox\n");

        // a login name the guest does not know: the session says so and fails like a shell would
        List<String> nobody = sshOptions("ssh", "-p");
        nobody.addAll(List.of("no-such-user@127.0.0.1", "true"));
        Result n = run(nobody);
        assertThat(n.exit).isEqualTo(126);
        assertThat(n.err).contains("msb: cannot run 'true'").contains("user_setup_failed");

        Path local = Files.writeString(tmp.resolve("mine.txt"), "owned by sandbox\n");
        Path batch = Files.writeString(tmp.resolve("batch"), "pwd\nput " + local + " mine.txt\n-put " + local + " /root/denied.txt\n");
        List<String> sftp = sshOptions("sftp", "-P");
        sftp.addAll(List.of("-b", batch.toString(), "sandbox@127.0.0.1"));
        Result s = run(sftp);
        assertThat(s.exit).as(s.toString()).isZero();
        assertThat(s.out).contains("Remote working directory: /home/sandbox");
        assertThat(s.err).contains("Permission denied");
        assertThat(sandbox.fs().stat("/home/sandbox/mine.txt").uid()).isEqualTo(1000);
        assertThat(sandbox.fs().exists("/root/denied.txt")).isFalse();
    }

    @Test
    void forwardingIsRefused() throws Exception {
        // the server runs on the host: a forward would open connections from the host
        List<String> stdio = sshOptions("ssh", "-p");
        stdio.addAll(List.of("-W", "127.0.0.1:" + endpoint.port(), "root@127.0.0.1"));
        Result w = run(stdio);
        assertThat(w.exit).isEqualTo(255);
        assertThat(w.err).contains("stdio forwarding failed");

        List<String> remote = sshOptions("ssh", "-p");
        remote.addAll(List.of("-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:" + endpoint.port(), "root@127.0.0.1", "echo forwarded"));
        Result r = run(remote);
        assertThat(r.exit).isEqualTo(255);
        assertThat(r.out).doesNotContain("forwarded");
        assertThat(r.err).contains("forwarding failed");
    }

    @Test
    void scpCopiesBothWays() throws Exception {
        byte[] data = new byte[3 * 1024 * 1024 + 17];
        new Random(7).nextBytes(data);
        Path up = Files.write(tmp.resolve("up.bin"), data);
        List<String> put = new ArrayList<>(sshOptions("scp", "-P"));
        put.addAll(List.of(up.toString(), "root@127.0.0.1:/tmp/scp-up.bin"));
        Result r = run(put);
        assertThat(r.exit).as(r.toString()).isZero();
        assertThat(sandbox.exec("sha256sum", List.of("/tmp/scp-up.bin")).stdout()).startsWith(sha256(data));
        // again over the file now there: it is replaced
        Result again = run(put);
        assertThat(again.exit).as(again.toString()).isZero();
        assertThat(sandbox.exec("sha256sum", List.of("/tmp/scp-up.bin")).stdout()).startsWith(sha256(data));
        // and a shorter file over it leaves nothing of the longer one behind
        Path small = Files.writeString(tmp.resolve("small.txt"), "short\n");
        List<String> putSmall = new ArrayList<>(sshOptions("scp", "-P"));
        putSmall.addAll(List.of(small.toString(), "root@127.0.0.1:/tmp/scp-up.bin"));
        Result shorter = run(putSmall);
        assertThat(shorter.exit).as(shorter.toString()).isZero();
        assertThat(sandbox.fs().readString("/tmp/scp-up.bin")).isEqualTo("short\n");
        Result again2 = run(put);
        assertThat(again2.exit).as(again2.toString()).isZero();

        Path down = tmp.resolve("down.bin");
        List<String> get = new ArrayList<>(sshOptions("scp", "-P"));
        get.addAll(List.of("root@127.0.0.1:/tmp/scp-up.bin", down.toString()));
        Result g = run(get);
        assertThat(g.exit).as(g.toString()).isZero();
        byte[] got = Files.readAllBytes(down);
        int firstDiff = java.util.Arrays.mismatch(got, data);
        assertThat(firstDiff).as("first differing byte of %d (%d downloaded)", data.length, got.length).isEqualTo(-1);

        List<String> missing = new ArrayList<>(sshOptions("scp", "-P"));
        missing.addAll(List.of("root@127.0.0.1:/no/such/file", tmp.resolve("none").toString()));
        Result m = run(missing);
        assertThat(m.exit).isNotZero();
        assertThat(m.err).contains("No such file");
    }

    @Test
    void sftpListsMakesDirectoriesAndPutsFiles() throws Exception {
        Path local = Files.writeString(tmp.resolve("note.txt"), "via sftp\n");
        Path batch = Files.writeString(tmp.resolve("batch"), String.join("\n",
                "ls -l /etc",
                "mkdir /tmp/sftp-dir",
                "put " + local + " /tmp/sftp-dir/note.txt",
                "chmod 600 /tmp/sftp-dir/note.txt",
                "ls -l /tmp/sftp-dir",
                "rename /tmp/sftp-dir/note.txt /tmp/sftp-dir/renamed.txt",
                "pwd",
                "") );
        List<String> cmd = new ArrayList<>(sshOptions("sftp", "-P"));
        cmd.addAll(List.of("-b", batch.toString(), "root@127.0.0.1"));
        Result r = run(cmd);
        assertThat(r.exit).as(r.toString()).isZero();
        assertThat(r.out).contains("passwd").contains("os-release").contains("note.txt")
                .containsPattern("-rw------- .* 9 .*note.txt")
                .contains("Remote working directory: /root");
        assertThat(sandbox.fs().readString("/tmp/sftp-dir/renamed.txt")).isEqualTo("via sftp\n");
        assertThat(sandbox.fs().stat("/tmp/sftp-dir/renamed.txt").mode()).isEqualTo(0600);
    }

    @Test
    void sftpCreatesWithTheClientsModeLessGroupAndWorldWriteAndKeepsAnExistingFilesMode() throws Exception {
        Path open = Files.writeString(tmp.resolve("open.txt"), "everyone may write\n");
        Files.setPosixFilePermissions(open, java.nio.file.attribute.PosixFilePermissions.fromString("rw-rw-rw-"));
        sandbox.fs().write("/tmp/private.txt", "secret\n".getBytes(StandardCharsets.UTF_8), 0600);
        Path batch = Files.writeString(tmp.resolve("batch"), String.join("\n",
                "put " + open + " /tmp/open.txt",
                "put " + open + " /tmp/private.txt",
                ""));
        List<String> cmd = new ArrayList<>(sshOptions("sftp", "-P"));
        cmd.addAll(List.of("-b", batch.toString(), "root@127.0.0.1"));
        Result r = run(cmd);
        assertThat(r.exit).as(r.toString()).isZero();
        assertThat(sandbox.fs().stat("/tmp/open.txt").mode()).isEqualTo(0644);
        assertThat(sandbox.fs().readString("/tmp/private.txt")).isEqualTo("everyone may write\n");
        assertThat(sandbox.fs().stat("/tmp/private.txt").mode()).isEqualTo(0600);
    }

    @Test
    @Timeout(180)
    void sftpStoresAFileWholeOrLeavesItAsItWas() throws Exception {
        byte[] original = new byte[1 << 20];
        new Random(7).nextBytes(original);
        String path = "/tmp/whole-or-nothing.bin";
        sandbox.fs().write(path, original);
        try (SandboxSshClient client = sandbox.ssh().openClient()) {
            try (SftpClient sftp = client.sftp()) {
                // an append is refused, not turned into a replacement by the appended bytes
                assertThatThrownBy(() -> {
                    try (SftpClient.CloseableHandle h = sftp.open(path, SftpClient.OpenMode.Write, SftpClient.OpenMode.Append)) {
                        sftp.write(h, 0, new byte[] {1, 2, 3});
                    }
                }).isInstanceOfSatisfying(org.apache.sshd.sftp.common.SftpException.class,
                        e -> assertThat(e.getStatus()).isEqualTo(org.apache.sshd.sftp.common.SftpConstants.SSH_FX_OP_UNSUPPORTED));
                assertThat(sandbox.fs().read(path)).isEqualTo(original);

                // a write out of order after one in order gives the file up: its close fails, the file is as it was
                SftpClient.CloseableHandle h = sftp.open(path, SftpClient.OpenMode.Write);
                sftp.write(h, 0, new byte[4096]);
                assertThatThrownBy(() -> sftp.write(h, 512 * 1024, new byte[10])).isInstanceOf(IOException.class);
                assertThatThrownBy(h::close).isInstanceOf(IOException.class);
                assertThat(sandbox.fs().read(path)).isEqualTo(original);
            }
            // an upload whose SFTP session ends before the client closed the file leaves it as it was
            SftpClient sftp = client.sftp();
            SftpClient.CloseableHandle h = sftp.open(path, SftpClient.OpenMode.Write);
            sftp.write(h, 0, new byte[8192]);
            awaitTemporaries(n -> n > 0);
            sftp.close(); // the session, not the handle
            awaitTemporaries(n -> n == 0);
            assertThat(sandbox.fs().read(path)).isEqualTo(original);
        }
    }

    /**
     * An exclusive open (CREATE_NEW) never replaces a file: one there refuses the open, and one
     * the guest makes while the upload runs fails its close and stays as the guest wrote it.
     */
    @Test
    @Timeout(180)
    void sftpExclusiveCreateNeverReplacesAFileMadeMeanwhile() throws Exception {
        String path = "/tmp/exclusive.txt";
        sandbox.shell("rm -f " + path);
        try (SandboxSshClient client = sandbox.ssh().openClient(); SftpClient sftp = client.sftp()) {
            SftpClient.CloseableHandle h = sftp.open(path, SftpClient.OpenMode.Write, SftpClient.OpenMode.Create, SftpClient.OpenMode.Exclusive);
            sftp.write(h, 0, new byte[8192]);
            awaitTemporaries(n -> n > 0);
            assertThat(sandbox.shell("echo guest > " + path).exitCode()).isZero();
            assertThatThrownBy(h::close).isInstanceOfSatisfying(org.apache.sshd.sftp.common.SftpException.class,
                    e -> assertThat(e.getStatus()).isEqualTo(org.apache.sshd.sftp.common.SftpConstants.SSH_FX_FILE_ALREADY_EXISTS));
            assertThat(sandbox.fs().readString(path)).isEqualTo("guest\n");
            awaitTemporaries(n -> n == 0);

            assertThatThrownBy(() -> sftp.open(path, SftpClient.OpenMode.Write, SftpClient.OpenMode.Create, SftpClient.OpenMode.Exclusive))
                    .isInstanceOfSatisfying(org.apache.sshd.sftp.common.SftpException.class,
                            e -> assertThat(e.getStatus()).isEqualTo(org.apache.sshd.sftp.common.SftpConstants.SSH_FX_FILE_ALREADY_EXISTS));
            sandbox.shell("rm -f " + path);
            try (OutputStream out = sftp.write(path, SftpClient.OpenMode.Write, SftpClient.OpenMode.Create, SftpClient.OpenMode.Exclusive)) {
                out.write("mine\n".getBytes(StandardCharsets.UTF_8));
            }
            assertThat(sandbox.fs().readString(path)).isEqualTo("mine\n");
        } finally {
            sandbox.shell("rm -f " + path);
        }
    }

    /** A guest refusal found only at the first write reaches the SFTP client as what it is, not as a bare failure. */
    @Test
    void aWriteTheGuestRefusesIsPermissionDenied() throws Exception {
        try (SandboxSshClient client = sandbox.ssh().openClient("sandbox"); SftpClient sftp = client.sftp()) {
            assertThatThrownBy(() -> {
                try (OutputStream out = sftp.write("/etc/denied.txt")) {
                    out.write(new byte[100]);
                }
            }).isInstanceOfSatisfying(org.apache.sshd.sftp.common.SftpException.class,
                    e -> assertThat(e.getStatus()).isEqualTo(org.apache.sshd.sftp.common.SftpConstants.SSH_FX_PERMISSION_DENIED));
        }
        assertThat(sandbox.fs().exists("/etc/denied.txt")).isFalse();
    }

    /** Waits (20 s at most) until the number of write temporaries in the guest's /tmp satisfies {@code wanted}. */
    private static void awaitTemporaries(java.util.function.IntPredicate wanted) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        int count;
        do {
            count = (int) sandbox.fs().list("/tmp").stream().filter(e -> e.name().startsWith(".msb-write-")).count();
            if (wanted.test(count)) {
                return;
            }
            Thread.sleep(50);
        } while (System.nanoTime() < deadline);
        throw new AssertionError(count + " write temporaries in /tmp after 20 s");
    }

    /** A client opened and closed per request must not leave its endpoint on a long-lived handle (read by reflection: nothing else shows it). */
    @Test
    void closedEndpointsAreNotKeptByTheirHandle() throws Exception {
        java.lang.reflect.Field companions = Sandbox.class.getDeclaredField("companions");
        companions.setAccessible(true);
        int before = ((List<?>) companions.get(sandbox)).size();
        for (int i = 0; i < 3; i++) {
            try (SandboxSshClient client = sandbox.ssh().openClient()) {
                assertThat(client.exec("true").exitStatus()).isZero();
            }
        }
        assertThat(((List<?>) companions.get(sandbox)).size()).isEqualTo(before);
    }

    @Test
    void theInProcessClientsExecHasNoInputAndEndsACommandPastTheOutputLimit() {
        try (SandboxSshClient client = sandbox.ssh().openClient()) {
            // stdin is at its end, as with ssh host 'cat' </dev/null
            assertThat(client.exec("cat; echo read-all", Duration.ofSeconds(60)).stdoutText()).isEqualTo("read-all\n");
            long started = System.nanoTime();
            assertThatThrownBy(() -> client.exec("yes", Duration.ofMinutes(3)))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.EXEC_FAILED))
                    .hasMessageContaining("wrote more than");
            assertThat(Duration.ofNanos(System.nanoTime() - started)).isLessThan(Duration.ofMinutes(2));
        }
    }

    @Test
    @Timeout(180)
    void anInteractiveSessionGetsAPtyThatFollowsTheWindow() throws Exception {
        String socket = "msb-ssh-" + ProcessHandle.current().pid();
        List<String> ssh = new ArrayList<>(sshOptions("ssh", "-p"));
        ssh.addAll(List.of("-tt", "root@127.0.0.1"));
        String cmd = String.join(" ", ssh) + "; echo SSH-EXIT $?; sleep 600";
        try {
            tmux(socket, "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", cmd);
            awaitScreen(socket, s -> s.lines().map(String::strip).anyMatch(l -> l.endsWith("#")), "the guest shell's prompt");
            String hostname = sandbox.exec("hostname", List.of()).stdout().strip();
            tmux(socket, "send-keys", "-t", "t", "stty size; tty; hostname", "Enter");
            // the hostname comes last: once it is there, so is the rest
            String screen = awaitScreen(socket, s -> s.lines().anyMatch(l -> l.strip().equals(hostname)), "the guest's hostname");
            assertThat(screen).contains("30 100").contains("/dev/pts/");
            tmux(socket, "resize-window", "-t", "t", "-x", "90", "-y", "20");
            Thread.sleep(500);
            tmux(socket, "send-keys", "-t", "t", "clear; stty size", "Enter");
            awaitScreen(socket, s -> s.contains("20 90"), "20 90 after the resize");
            tmux(socket, "send-keys", "-t", "t", "exit 5", "Enter");
            awaitScreen(socket, s -> s.contains("SSH-EXIT 5"), "ssh's exit status 5");
        } finally {
            tmux(socket, "kill-server");
            // tmux leaves its socket file behind
            String uid = run(List.of("id", "-u")).out.strip();
            Files.deleteIfExists(Path.of(System.getenv().getOrDefault("TMUX_TMPDIR", "/tmp"), "tmux-" + uid, socket));
        }
    }

    @Test
    void theInProcessClientExecsOpensAPtyShellAndTransfersFiles() throws Exception {
        try (SandboxSshClient client = sandbox.ssh().openClient()) {
            SshExecResult r = client.exec("uname -r; echo oops >&2; exit 3");
            assertThat(r.exitStatus()).isEqualTo(3);
            assertThat(r.stdoutText()).isEqualTo(sandbox.exec("uname", List.of("-r")).stdout());
            assertThat(r.stderrText()).isEqualTo("oops\n");

            ChannelShell shell = client.shell(24, 80);
            try {
                OutputStream keys = shell.getInvertedIn();
                keys.write("stty size; tty; exit 4\n".getBytes(StandardCharsets.UTF_8));
                keys.flush();
                ByteArrayOutputStream screen = new ByteArrayOutputStream();
                Thread reader = new Thread(() -> {
                    try (InputStream in = shell.getInvertedOut()) {
                        in.transferTo(screen);
                    } catch (IOException e) {
                        // the channel closed
                    }
                });
                reader.start();
                shell.waitFor(java.util.EnumSet.of(ClientChannelEvent.CLOSED), TimeUnit.SECONDS.toMillis(60));
                reader.join(10_000);
                assertThat(screen.toString(StandardCharsets.UTF_8)).contains("24 80").contains("/dev/pts/");
                assertThat(shell.getExitStatus()).isEqualTo(4);
            } finally {
                shell.close();
            }

            try (SftpClient sftp = client.sftp()) {
                try (OutputStream out = sftp.write("/tmp/from-sftp-client.txt")) {
                    out.write("in-process\n".getBytes(StandardCharsets.UTF_8));
                }
                assertThat(sandbox.fs().readString("/tmp/from-sftp-client.txt")).isEqualTo("in-process\n");
                sandbox.fs().writeString("/tmp/to-sftp-client.txt", "from the guest\n");
                try (InputStream in = sftp.read("/tmp/to-sftp-client.txt")) {
                    assertThat(new String(in.readAllBytes(), StandardCharsets.UTF_8)).isEqualTo("from the guest\n");
                }
                // SFTP reads by offset: a read in the middle and one going back both get the right bytes
                byte[] big = new byte[600_000];
                new Random(3).nextBytes(big);
                sandbox.fs().write("/tmp/offsets.bin", big);
                try (SftpClient.CloseableHandle h = sftp.open("/tmp/offsets.bin", SftpClient.OpenMode.Read)) {
                    byte[] middle = new byte[1000];
                    assertThat(sftp.read(h, 400_000, middle, 0, middle.length)).isEqualTo(middle.length);
                    assertThat(middle).isEqualTo(java.util.Arrays.copyOfRange(big, 400_000, 401_000));
                    byte[] start = new byte[1000];
                    assertThat(sftp.read(h, 10, start, 0, start.length)).isEqualTo(start.length);
                    assertThat(start).isEqualTo(java.util.Arrays.copyOfRange(big, 10, 1010));
                    // a read far past the end is the end at once, not a skip through the file towards it
                    assertThat(sftp.read(h, 1L << 40, start, 0, start.length)).isEqualTo(-1);
                }
                try (SftpClient.CloseableHandle h = sftp.open("/dev/zero", SftpClient.OpenMode.Read)) {
                    long started = System.nanoTime();
                    assertThat(sftp.read(h, 1L << 62, new byte[10], 0, 10)).isEqualTo(-1);
                    assertThat(java.time.Duration.ofNanos(System.nanoTime() - started)).isLessThan(java.time.Duration.ofSeconds(10));
                }
                // a /proc file reports size 0 and is read whole all the same
                try (InputStream in = sftp.read("/proc/cpuinfo")) {
                    assertThat(new String(in.readAllBytes(), StandardCharsets.UTF_8)).contains("processor");
                }
                // rewriting part of an existing file is refused rather than done wrong
                assertThatThrownBy(() -> {
                    try (SftpClient.CloseableHandle h = sftp.open("/tmp/offsets.bin", SftpClient.OpenMode.Write)) {
                        sftp.write(h, 100, new byte[] {1, 2, 3});
                    }
                }).isInstanceOf(IOException.class);
                assertThat(sandbox.fs().read("/tmp/offsets.bin")).isEqualTo(big);

                List<String> names = new ArrayList<>();
                sftp.readDir("/etc").forEach(e -> names.add(e.getFilename()));
                assertThat(names).contains("passwd", "os-release");
                assertThatThrownBy(() -> sftp.stat("/no/such/path")).hasMessageContaining("No such file");
            }
        }
    }

    @Test
    @Timeout(240)
    void theEndpointClosesWithTheSandbox() throws Exception {
        Sandbox other = Sandbox.create(TestSandboxes.uniqueName("ssh-close"), TestSandboxes.config().ephemeral(true).build());
        SshServerEndpoint ep;
        SshServerEndpoint second;
        try {
            ep = other.ssh().server();
            assertThat(run(ssh(ep.clientKeyFile().orElseThrow(), ep.port(), "echo up")).out).isEqualTo("up\n");
            // a second handle's endpoint closes when the sandbox ends, whoever stops it
            Sandbox connected = Sandbox.connect(other.name());
            second = connected.ssh().server();
            Sandbox.get(other.name()).stop();
            long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
            while (second.isOpen() && System.nanoTime() < deadline) {
                Thread.sleep(100);
            }
            assertThat(second.isOpen()).as("the endpoint of a handle whose sandbox stopped").isFalse();
            connected.close();
        } finally {
            other.close();
        }
        assertThat(ep.isOpen()).isFalse();
        assertThatThrownBy(() -> {
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", ep.port()), 2000);
            }
        }).isInstanceOf(ConnectException.class);
        assertThatThrownBy(other::ssh).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_HANDLE));
    }

    // ---- helpers ----

    private static List<String> sshOptions(String tool, String portFlag) {
        return sshOptions(tool, portFlag, key, endpoint.port());
    }

    private static List<String> sshOptions(String tool, String portFlag, Path identity, int port) {
        return new ArrayList<>(List.of(tool, portFlag, Integer.toString(port), "-i", identity.toString(),
                "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30"));
    }

    private static List<String> ssh(Path identity, String command) {
        return ssh(identity, endpoint.port(), command);
    }

    private static List<String> ssh(Path identity, int port, String command) {
        List<String> cmd = sshOptions("ssh", "-p", identity, port);
        cmd.add("root@127.0.0.1");
        cmd.add(command);
        return cmd;
    }

    private record Result(int exit, String out, String err) {
    }

    private static Result run(List<String> cmd) throws Exception {
        return run(cmd, new byte[0]);
    }

    /** Runs a host command to its end (at most 2 minutes), stdin from {@code input}. */
    private static Result run(List<String> cmd, byte[] input) throws Exception {
        Process p = new ProcessBuilder(cmd).start();
        try (OutputStream in = p.getOutputStream()) {
            in.write(input);
        }
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        Thread errReader = new Thread(() -> {
            try (InputStream e = p.getErrorStream()) {
                e.transferTo(err);
            } catch (IOException ignored) {
                // the process ended
            }
        });
        errReader.start();
        byte[] out;
        try (InputStream o = p.getInputStream()) {
            out = o.readAllBytes();
        }
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError(cmd + " did not finish in 2 minutes");
        }
        errReader.join(5000);
        return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    private static String tmux(String socket, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("tmux", "-L", socket, "-f", "/dev/null"));
        cmd.addAll(List.of(args));
        return run(cmd).out;
    }

    private static String awaitScreen(String socket, Predicate<String> want, String what) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        String screen = "";
        while (System.nanoTime() < deadline) {
            screen = tmux(socket, "capture-pane", "-p", "-t", "t");
            if (want.test(screen)) {
                return screen;
            }
            Thread.sleep(200);
        }
        throw new AssertionError("no " + what + " on the screen:\n" + screen);
    }

    private static String sha256(byte[] data) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
    }
}

package io.microsandbox;

import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** sandbox.fs() against one real VM (its upper disk sized for the 1 GiB stream). */
class SandboxFsIT {
    private static Sandbox sandbox;

    @BeforeAll
    static void boot() {
        sandbox = Sandbox.create(TestSandboxes.uniqueName("fs"), TestSandboxes.config().upperSizeMib(2048).build());
    }

    @AfterAll
    static void shutdown() {
        if (sandbox != null) {
            sandbox.close();
            Sandbox.remove(sandbox.name());
        }
    }

    @Test
    void roundTripOf64MiBThroughTheStreams() throws Exception {
        SandboxFs fs = sandbox.fs();
        MessageDigest sent = MessageDigest.getInstance("SHA-256");
        Random random = new Random(42);
        byte[] buf = new byte[1 << 20];
        long t0 = System.nanoTime();
        try (OutputStream out = fs.writeStream("/tmp/big.bin")) {
            for (int i = 0; i < 64; i++) {
                random.nextBytes(buf);
                sent.update(buf);
                out.write(buf);
            }
        }
        long t1 = System.nanoTime();
        String expected = HexFormat.of().formatHex(sent.digest());
        assertThat(fs.stat("/tmp/big.bin").size()).isEqualTo(64L << 20);
        assertThat(sandbox.exec("sha256sum", List.of("/tmp/big.bin")).stdout()).startsWith(expected);

        MessageDigest received = MessageDigest.getInstance("SHA-256");
        long total = 0;
        long t2 = System.nanoTime();
        try (InputStream in = fs.readStream("/tmp/big.bin")) {
            int n;
            while ((n = in.read(buf)) > 0) {
                received.update(buf, 0, n);
                total += n;
            }
        }
        long t3 = System.nanoTime();
        assertThat(total).isEqualTo(64L << 20);
        assertThat(HexFormat.of().formatHex(received.digest())).isEqualTo(expected);
        System.out.printf("fs 64 MiB: write %.1f MB/s, read %.1f MB/s%n",
                64 * 1.048576 / ((t1 - t0) / 1e9), 64 * 1.048576 / ((t3 - t2) / 1e9));
        fs.remove("/tmp/big.bin");
    }

    @Test
    void aGigabyteStreamPassesAClientWithA256MiBHeap() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process child = new ProcessBuilder(java, "-Xmx256m", "-XX:-UsePerfData", "-cp", System.getProperty("java.class.path"),
                "-Dmicrosandbox.home=" + io.microsandbox.runtime.RuntimeFiles.defaultHome(),
                FsChildJvm.class.getName(), sandbox.name(), "/tmp/gig.bin", "1024")
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        List<String> lines;
        try (BufferedReader r = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
            lines = r.lines().collect(Collectors.toList());
        }
        assertThat(child.waitFor(20, TimeUnit.MINUTES)).isTrue();
        lines.forEach(l -> System.out.println("fs 1 GiB child: " + l));
        assertThat(child.exitValue()).as("child output %s", lines).isZero();
        String written = lines.stream().filter(l -> l.startsWith("WROTE ")).findFirst().orElseThrow().split(" ")[1];
        String read = lines.stream().filter(l -> l.startsWith("READ ")).findFirst().orElseThrow().split(" ")[1];
        assertThat(read).isEqualTo(written);
        assertThat(sandbox.fs().stat("/tmp/gig.bin").size()).isEqualTo(1L << 30);
        assertThat(sandbox.exec("sha256sum", List.of("/tmp/gig.bin")).stdout()).startsWith(written);
        sandbox.fs().remove("/tmp/gig.bin");
    }

    @Test
    void listStatMkdirRenameCopyRemove() {
        SandboxFs fs = sandbox.fs();
        fs.mkdir("/tmp/ops/a/b");
        fs.mkdir("/tmp/ops/a/b"); // an existing directory is fine
        fs.writeString("/tmp/ops/a/b/hello.txt", "hello\n");
        fs.write("/tmp/ops/a/run.sh", "#!/bin/sh\necho run\n".getBytes(StandardCharsets.UTF_8), 0755);
        fs.symlink("/tmp/ops/a/link", "b/hello.txt");

        List<FsEntry> entries = fs.list("/tmp/ops/a");
        assertThat(entries).extracting(FsEntry::name).containsExactlyInAnyOrder("b", "run.sh", "link");
        FsEntry run = entries.stream().filter(e -> e.name().equals("run.sh")).findFirst().orElseThrow();
        assertThat(run.kind()).isEqualTo(FsEntryKind.FILE);
        assertThat(run.mode()).isEqualTo(0755);
        assertThat(run.size()).isEqualTo(19);
        assertThat(run.path()).isEqualTo("/tmp/ops/a/run.sh");
        FsEntry link = entries.stream().filter(e -> e.name().equals("link")).findFirst().orElseThrow();
        assertThat(link.kind()).isEqualTo(FsEntryKind.SYMLINK);
        assertThat(link.target()).isEqualTo("b/hello.txt");
        assertThat(entries.stream().filter(e -> e.name().equals("b")).findFirst().orElseThrow().isDir()).isTrue();

        FsStat st = fs.stat("/tmp/ops/a/link");
        assertThat(st.isFile()).isTrue();
        assertThat(st.size()).isEqualTo(6);
        assertThat(fs.lstat("/tmp/ops/a/link").isSymlink()).isTrue();
        assertThat(fs.stat("/tmp/ops/a").isDir()).isTrue();
        assertThat(st.modified()).isAfter(java.time.Instant.now().minusSeconds(3600));
        assertThat(sandbox.exec("/tmp/ops/a/run.sh", List.of()).stdout()).isEqualTo("run\n");

        fs.rename("/tmp/ops/a/b/hello.txt", "/tmp/ops/a/b/moved.txt");
        assertThat(fs.exists("/tmp/ops/a/b/hello.txt")).isFalse();
        assertThat(fs.readString("/tmp/ops/a/b/moved.txt")).isEqualTo("hello\n");

        fs.copy("/tmp/ops/a", "/tmp/ops/copy");
        assertThat(fs.readString("/tmp/ops/copy/b/moved.txt")).isEqualTo("hello\n");
        assertThat(fs.stat("/tmp/ops/copy/run.sh").mode()).isEqualTo(0755);
        assertThat(fs.lstat("/tmp/ops/copy/link").target()).isEqualTo("b/hello.txt");
        fs.copy("/tmp/ops/copy/run.sh", "/tmp/ops/run2.sh");
        assertThat(fs.read("/tmp/ops/run2.sh")).isEqualTo(fs.read("/tmp/ops/a/run.sh"));
        // a file copied onto itself, by another spelling or a link, is refused, not emptied
        fs.symlink("/tmp/ops/run2-link", "/tmp/ops/run2.sh");
        for (String self : List.of("/tmp/ops/./run2.sh", "/tmp/ops/run2-link")) {
            assertThatThrownBy(() -> fs.copy("/tmp/ops/run2.sh", self)).as(self)
                    .isInstanceOfSatisfying(FilesystemException.class, e -> assertThat(e.getMessage()).contains("copy onto its own source"));
        }
        assertThat(fs.read("/tmp/ops/run2.sh")).isEqualTo(fs.read("/tmp/ops/a/run.sh"));
        fs.remove("/tmp/ops/run2-link");

        fs.remove("/tmp/ops/run2.sh");
        assertThat(fs.exists("/tmp/ops/run2.sh")).isFalse();
        assertThatThrownBy(() -> fs.removeDir("/tmp/ops/copy"))
                .isInstanceOfSatisfying(FilesystemException.class, e -> assertThat(e.reason()).isEqualTo("not_empty"));
        fs.removeDir("/tmp/ops/copy", true);
        fs.removeDir("/tmp/ops", true);
        assertThat(fs.exists("/tmp/ops")).isFalse();
        // the guest agrees
        assertThat(sandbox.shell("test -e /tmp/ops; echo $?").stdout()).isEqualTo("1\n");
    }

    @Test
    void writesAsAUserAreOwnedByThatUser() {
        SandboxFs fs = sandbox.fs().user("sandbox");
        fs.writeString("/tmp/owned.txt", "mine");
        FsStat st = sandbox.fs().stat("/tmp/owned.txt");
        assertThat(st.uid()).isEqualTo(1000);
        assertThat(st.gid()).isEqualTo(1000);
        assertThatThrownBy(() -> fs.writeString("/root/nope.txt", "x"))
                .isInstanceOfSatisfying(FilesystemException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.FILESYSTEM);
                    assertThat(e.isPermissionDenied()).isTrue();
                    assertThat(e.errno()).isEqualTo(FilesystemException.EACCES);
                    assertThat(e.getMessage()).contains("/root/nope.txt");
                });
        sandbox.fs().remove("/tmp/owned.txt");
        // a read-only directory is copied whole by a user who is not root, its mode last
        fs.mkdir("/tmp/ro-src/inner");
        fs.writeString("/tmp/ro-src/inner/file.txt", "kept");
        sandbox.shell("chmod 555 /tmp/ro-src /tmp/ro-src/inner");
        fs.copy("/tmp/ro-src", "/tmp/ro-copy");
        assertThat(fs.readString("/tmp/ro-copy/inner/file.txt")).isEqualTo("kept");
        assertThat(fs.stat("/tmp/ro-copy").mode()).isEqualTo(0555);
        assertThat(fs.stat("/tmp/ro-copy/inner").mode()).isEqualTo(0555);
        sandbox.shell("rm -rf /tmp/ro-src /tmp/ro-copy");
    }

    @Test
    void copiesATreeFromAndToTheHostKeepingModesAndLinks(@TempDir Path tmp) throws Exception {
        Path src = tmp.resolve("src");
        Files.createDirectories(src.resolve("sub/deeper"));
        Files.writeString(src.resolve("plain.txt"), "plain");
        Files.writeString(src.resolve("sub/secret.txt"), "secret");
        Files.setPosixFilePermissions(src.resolve("sub/secret.txt"), PosixFilePermissions.fromString("rw-------"));
        Files.write(src.resolve("sub/deeper/blob.bin"), new byte[300_000]);
        Files.createSymbolicLink(src.resolve("sub/link"), Path.of("../plain.txt"));

        SandboxFs fs = sandbox.fs();
        assertThatThrownBy(() -> fs.copyFromHost(tmp.resolve("missing"), "/tmp/missing"))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.PATH_NOT_FOUND));
        fs.copyFromHost(src, "/tmp/tree");
        assertThat(fs.stat("/tmp/tree/sub/secret.txt").mode()).isEqualTo(0600);
        assertThat(fs.lstat("/tmp/tree/sub/link").target()).isEqualTo("../plain.txt");
        assertThat(fs.readString("/tmp/tree/sub/link")).isEqualTo("plain");
        assertThat(fs.stat("/tmp/tree/sub/deeper/blob.bin").size()).isEqualTo(300_000);

        Path back = tmp.resolve("back");
        fs.copyToHost("/tmp/tree", back);
        assertThat(Files.readString(back.resolve("plain.txt"))).isEqualTo("plain");
        assertThat(Files.readString(back.resolve("sub/secret.txt"))).isEqualTo("secret");
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(back.resolve("sub/secret.txt")))).isEqualTo("rw-------");
        assertThat(Files.isSymbolicLink(back.resolve("sub/link"))).isTrue();
        assertThat(Files.readSymbolicLink(back.resolve("sub/link"))).isEqualTo(Path.of("../plain.txt"));
        assertThat(Files.size(back.resolve("sub/deeper/blob.bin"))).isEqualTo(300_000);
        assertThat(Files.isDirectory(back.resolve("sub/deeper"), LinkOption.NOFOLLOW_LINKS)).isTrue();
        fs.removeDir("/tmp/tree", true);
    }

    /**
     * What a guest can make the host write is bounded (a sparse 64 MiB file against a 1 MiB
     * limit), a failed copy leaves no file cut short and an existing one as it was, and group
     * and others get no write permission on the host.
     */
    @Test
    void copyToHostIsBoundedWholeOrNothingAndUmasked(@TempDir Path tmp) throws Exception {
        SandboxFs fs = sandbox.fs();
        assertThat(sandbox.shell("truncate -s 64M /tmp/sparse && mkdir -p /tmp/open && echo x > /tmp/open/f"
                + " && chmod 777 /tmp/open && chmod 666 /tmp/open/f").exitCode()).isZero();
        Path dest = tmp.resolve("sparse");
        Files.writeString(dest, "kept");
        assertThatThrownBy(() -> fs.copyToHost("/tmp/sparse", dest, 1 << 20))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.FILESYSTEM))
                .hasMessageContaining("more than 1048576 bytes");
        assertThat(Files.readString(dest)).isEqualTo("kept");
        try (var left = Files.list(tmp)) {
            assertThat(left.map(p -> p.getFileName().toString())).containsExactly("sparse");
        }
        fs.copyToHost("/tmp/sparse", dest);
        assertThat(Files.size(dest)).isEqualTo(64L << 20);

        fs.copyToHost("/tmp/open", tmp.resolve("open"));
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(tmp.resolve("open")))).isEqualTo("rwxr-xr-x");
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(tmp.resolve("open/f")))).isEqualTo("rw-r--r--");
        // a fifo (or a device) on the host is not replaced by a file
        Path fifo = tmp.resolve("fifo");
        assertThat(new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor()).isZero();
        assertThatThrownBy(() -> fs.copyToHost("/tmp/open/f", fifo))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.IO))
                .hasMessageContaining("cannot copy /tmp/open/f").hasMessageContaining("is not a regular file");
        assertThat(Files.isRegularFile(fifo, LinkOption.NOFOLLOW_LINKS)).isFalse();
        assertThatThrownBy(() -> fs.copyToHost("/dev/null", tmp.resolve("null")))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.FILESYSTEM))
                .hasMessageContaining("neither a file, a directory nor a symbolic link");
        sandbox.shell("rm -rf /tmp/sparse /tmp/open");
    }

    /**
     * A guest name that is not UTF-8 names nothing once decoded: a copy of its directory says so
     * before copying any of it, rather than failing on it part-way with a path that does not exist.
     */
    @Test
    void aCopyOfADirectoryHoldingANameThatIsNotUtf8SaysSoBeforeCopying(@TempDir Path tmp) {
        assertThat(sandbox.shell("mkdir -p /tmp/names && echo a > /tmp/names/a && echo b > \"/tmp/names/b$(printf '\\377')\"").exitCode()).isZero();
        assertThat(sandbox.fs().list("/tmp/names")).extracting(FsEntry::name).contains("a", "b\ufffd");
        assertThatThrownBy(() -> sandbox.fs().copyToHost("/tmp/names", tmp.resolve("names")))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.FILESYSTEM))
                .hasMessageContaining("/tmp/names/b").hasMessageContaining("is not UTF-8; rename it in the guest");
        assertThat(tmp.resolve("names/a")).as("nothing of the directory copied").doesNotExist();
        sandbox.shell("rm -rf /tmp/names");
    }

    /**
     * A replacing write is whole or nothing: a client killed half-way through a write (the
     * supervisor cancels its sessions) leaves the file as it was and no temporary.
     */
    @Test
    void aWriteWhoseClientDiesLeavesTheFileAsItWas() throws Exception {
        SandboxFs fs = sandbox.fs();
        fs.mkdir("/srv/abandon");
        fs.writeString("/srv/abandon/kept.txt", "the old content");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process writer = new ProcessBuilder(java, "-Xmx64m", "-XX:-UsePerfData", "-cp", System.getProperty("java.class.path"),
                "-Dmicrosandbox.home=" + io.microsandbox.runtime.RuntimeFiles.defaultHome(),
                FsChildJvm.class.getName(), sandbox.name(), "/srv/abandon/kept.txt", "forever")
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        try {
            // under way: the guest holds part of the data in the temporary
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (!sandbox.shell("test -s /srv/abandon/.msb-write-*").success() && System.nanoTime() < deadline) {
                Thread.sleep(50);
            }
            assertThat(writer.isAlive()).as("the writer never ends by itself").isTrue();
        } finally {
            writer.destroyForcibly().waitFor();
        }
        // the worker put things back before it ended
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!sandbox.shell("ls -A /srv/abandon").stdout().equals("kept.txt\n") && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertThat(sandbox.shell("ls -A /srv/abandon").stdout()).isEqualTo("kept.txt\n");
        assertThat(fs.readString("/srv/abandon/kept.txt")).isEqualTo("the old content");
        sandbox.shell("rm -rf /srv/abandon");
    }

    /**
     * A tree's copy and recursive removal stay on its own filesystem (a volume mounted below keeps
     * its files), a source named with a trailing slash copies as without, and a copy into the
     * tree itself is refused however it is spelt.
     */
    @Test
    void treesStayOnTheirOwnFilesystemAndTrailingSlashesAreIgnored() {
        SandboxFs fs = sandbox.fs();
        assertThat(sandbox.shell("mkdir -p /srv/tree/a /srv/tree/mnt && echo x > /srv/tree/a/f"
                + " && mount -t tmpfs tmpfs /srv/tree/mnt && echo inside > /srv/tree/mnt/kept").exitCode()).isZero();
        try {
            fs.copy("/srv/tree/", "/srv/copy/");
            assertThat(fs.readString("/srv/copy/a/f")).isEqualTo("x\n");
            assertThat(fs.exists("/srv/copy/mnt/kept")).as("what is mounted below is not copied").isFalse();
            // "link/" is the directory the link leads to
            fs.symlink("/srv/treelink", "/srv/tree");
            fs.copy("/srv/treelink/", "/srv/copy2");
            assertThat(fs.readString("/srv/copy2/a/f")).isEqualTo("x\n");
            assertThatThrownBy(() -> fs.copy("/srv/tree", "/srv/../srv/tree/a/sub"))
                    .isInstanceOfSatisfying(FilesystemException.class, e -> assertThat(e.errno()).isEqualTo(22));
            assertThatThrownBy(() -> fs.removeDir("/srv/tree", true))
                    .isInstanceOfSatisfying(FilesystemException.class, e -> assertThat(e.errno()).isEqualTo(39)); // ENOTEMPTY
            assertThat(fs.readString("/srv/tree/mnt/kept")).as("the mounted filesystem keeps its files").isEqualTo("inside\n");
            assertThat(fs.exists("/srv/tree/a")).isFalse();
        } finally {
            sandbox.shell("umount /srv/tree/mnt; rm -rf /srv/tree /srv/copy /srv/copy2 /srv/treelink");
        }
    }

    /** A replacement keeps what the file was: its owner, group and mode, the link leading to it, its second name. */
    @Test
    void aReplacedFileKeepsItsOwnerModeLinkAndSecondName() {
        SandboxFs fs = sandbox.fs();
        assertThat(sandbox.shell("mkdir -p /srv/w && cd /srv/w && echo old > owned && chown 1000:1000 owned && chmod 640 owned"
                + " && echo old > target && ln -s target link && echo old > one && ln one two").exitCode()).isZero();
        fs.writeString("/srv/w/owned", "new");
        FsStat owned = fs.stat("/srv/w/owned");
        assertThat(List.of(owned.uid(), owned.gid(), owned.mode())).containsExactly(1000, 1000, 0640);
        fs.writeString("/srv/w/link", "through the link");
        assertThat(sandbox.shell("test -L /srv/w/link").success()).as("still a link").isTrue();
        assertThat(fs.readString("/srv/w/target")).isEqualTo("through the link");
        fs.writeString("/srv/w/one", "both names");
        assertThat(fs.readString("/srv/w/two")).isEqualTo("both names");
        // the owner's own write (through a temporary in its directory), and the mode a caller gives
        sandbox.shell("chown 1000:1000 /srv/w");
        sandbox.fs().user("sandbox").write("/srv/w/owned", "by its owner".getBytes(java.nio.charset.StandardCharsets.UTF_8), 0600);
        owned = fs.stat("/srv/w/owned");
        assertThat(List.of(owned.uid(), owned.gid(), owned.mode())).containsExactly(1000, 1000, 0600);
        assertThat(sandbox.shell("ls -A /srv/w | sort | tr '\\n' ' '").stdout()).isEqualTo("link one owned target two ");
        sandbox.shell("rm -rf /srv/w");
    }

    /**
     * {@code create} never replaces: a file, a link (dangling too) or a directory at the path
     * refuses it at once; a file the guest makes while the stream is open fails its close and
     * stays as the guest wrote it, with no temporary left.
     */
    @Test
    void createNeverReplacesAFile() throws Exception {
        SandboxFs fs = sandbox.fs();
        assertThat(sandbox.shell("mkdir -p /srv/c && echo theirs > /srv/c/there && ln -s nowhere /srv/c/dangling && mkdir /srv/c/dir")
                .exitCode()).isZero();
        assertThat(fs.canCreateExclusively()).isTrue();
        fs.create("/srv/c/new", "mine".getBytes(StandardCharsets.UTF_8), 0600);
        assertThat(fs.readString("/srv/c/new")).isEqualTo("mine");
        assertThat(fs.stat("/srv/c/new").mode()).isEqualTo(0600);
        for (String taken : List.of("/srv/c/there", "/srv/c/dangling", "/srv/c/dir", "/srv/c/new")) {
            assertThatThrownBy(() -> fs.create(taken, "again".getBytes(StandardCharsets.UTF_8), null)).as(taken)
                    .isInstanceOfSatisfying(FilesystemException.class, e -> assertThat(e.reason()).isEqualTo("exists"));
        }
        assertThat(fs.readString("/srv/c/there")).isEqualTo("theirs\n");
        assertThat(sandbox.shell("test -L /srv/c/dangling && test ! -e /srv/c/nowhere").success()).isTrue();

        // past the host's 4 MiB window, so the guest's worker has begun: the file is made after its first look
        byte[] chunk = new byte[1 << 20];
        OutputStream out = fs.createStream("/srv/c/raced", null);
        for (int i = 0; i < 6; i++) {
            out.write(chunk);
        }
        assertThat(sandbox.shell("echo guest > /srv/c/raced").exitCode()).isZero();
        assertThatThrownBy(out::close).satisfies(e -> assertThat(filesystemReason(e)).isEqualTo("exists"));
        assertThat(fs.readString("/srv/c/raced")).isEqualTo("guest\n");

        assertThat(sandbox.shell("ls -A /srv/c | grep -c msb-write").stdout().strip()).as("temporaries left").isEqualTo("0");
        sandbox.shell("rm -rf /srv/c");
    }

    /** The reason of the {@link FilesystemException} in {@code e}'s causes, or null. */
    private static String filesystemReason(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof FilesystemException f) {
                return f.reason();
            }
        }
        return null;
    }

    /**
     * Closing a write stream from another thread while a write waits for the guest's credit (a
     * fifo nobody reads takes nothing) gives the file up and ends that write at once, not after
     * the stall timeout.
     */
    @Test
    void closingAWriteStreamWakesAWriterWaitingForTheGuest() throws Exception {
        assertThat(sandbox.shell("rm -f /tmp/unread && mkfifo /tmp/unread").exitCode()).isZero();
        java.io.OutputStream out = sandbox.fs().writeStream("/tmp/unread");
        java.util.concurrent.CompletableFuture<Throwable> writer = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            try {
                out.write(new byte[8 << 20]);
                return null;
            } catch (java.io.IOException e) {
                return e;
            }
        });
        Thread.sleep(1000);
        assertThat(writer).as("the write waits for credit").isNotDone();
        long start = System.nanoTime();
        out.close();
        assertThat(writer.get(30, java.util.concurrent.TimeUnit.SECONDS)).isInstanceOf(java.io.IOException.class)
                .hasMessageContaining("was closed while it was written");
        assertThat(java.time.Duration.ofNanos(System.nanoTime() - start)).isLessThan(java.time.Duration.ofSeconds(30));
        sandbox.shell("rm -f /tmp/unread");
    }

    /** Closing a read stream from another thread ends a read waiting there for the guest at once, not after the stall timeout. */
    @Test
    void closingAReadStreamWakesAReaderWaitingForTheGuest() throws Exception {
        // the writer's open of the fifo waits for the reader: it must not hold this command's output meanwhile
        sandbox.shell("rm -f /tmp/slow && mkfifo /tmp/slow && ( (printf x; sleep 60) > /tmp/slow ) > /dev/null 2>&1 < /dev/null &");
        InputStream in = sandbox.fs().readStream("/tmp/slow");
        assertThat(in.read()).isEqualTo('x');
        java.util.concurrent.CompletableFuture<Throwable> reader = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            try {
                in.read();
                return null;
            } catch (Throwable t) {
                return t;
            }
        });
        Thread.sleep(500);
        long start = System.nanoTime();
        in.close();
        assertThat(reader.get(10, TimeUnit.SECONDS)).isInstanceOf(java.io.IOException.class);
        assertThat(java.time.Duration.ofNanos(System.nanoTime() - start)).isLessThan(java.time.Duration.ofSeconds(10));
        sandbox.shell("pkill -f 'sleep 60'; rm -f /tmp/slow");
    }

    @Test
    void errorsNameThePathAndTheKind() {
        SandboxFs fs = sandbox.fs();
        assertThatThrownBy(() -> fs.read("/nonexistent/file"))
                .isInstanceOfSatisfying(FilesystemException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.PATH_NOT_FOUND);
                    assertThat(e.errno()).isEqualTo(FilesystemException.ENOENT);
                    assertThat(e.getMessage()).contains("/nonexistent/file");
                });
        assertThatThrownBy(() -> fs.readStream("/etc"))
                .isInstanceOfSatisfying(FilesystemException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.FILESYSTEM);
                    assertThat(e.reason()).isEqualTo("is_directory");
                    assertThat(e.errno()).isEqualTo(FilesystemException.EISDIR);
                    assertThat(e.getMessage()).contains("/etc");
                });
        // the read-only lower disk of the overlay
        assertThatThrownBy(() -> fs.writeString("/run/msb/lower/etc/new.txt", "x"))
                .isInstanceOfSatisfying(FilesystemException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.FILESYSTEM);
                    assertThat(e.isPermissionDenied()).isTrue();
                    assertThat(e.errno()).isEqualTo(FilesystemException.EROFS);
                    assertThat(e.getMessage()).contains("/run/msb/lower/etc/new.txt");
                });
        // a big write to a read-only place fails too, not only a small one
        assertThatThrownBy(() -> fs.write("/run/msb/lower/big.bin", new byte[5 << 20]))
                .isInstanceOfSatisfying(FilesystemException.class, e -> assertThat(e.errno()).isEqualTo(FilesystemException.EROFS));
        assertThatThrownBy(() -> fs.list("/etc/passwd"))
                .isInstanceOfSatisfying(FilesystemException.class, e -> assertThat(e.reason()).isEqualTo("not_directory"));
        assertThatThrownBy(() -> fs.stat("/missing")).isInstanceOf(FilesystemException.class)
                .extracting(e -> ((MicrosandboxException) e).kind()).isEqualTo(ErrorKind.PATH_NOT_FOUND);
        // the sandbox still works after all of that
        assertThat(fs.readString("/etc/passwd")).isNotEmpty();
    }

    @Test
    void aReaderThatStopsHoldsTheGuestBack() throws Exception {
        SandboxFs fs = sandbox.fs();
        sandbox.shell("head -c 67108864 /dev/zero > /tmp/slow.bin");
        try (InputStream in = fs.readStream("/tmp/slow.bin")) {
            assertThat(in.read()).isZero();
            Thread.sleep(2000);
            // the guest's worker has the file open on fd 3: its offset is what it has read
            String pos = sandbox.shell("for p in /proc/[0-9]*; do [ \"$(readlink $p/fd/3 2>/dev/null)\" = /tmp/slow.bin ]"
                    + " && grep '^pos' $p/fdinfo/3; done").stdout();
            long position = Long.parseLong(pos.replaceAll("[^0-9]", ""));
            // the read window (4 MiB), the pipe (1 MiB) and one chunk at most: not the 64 MiB file
            assertThat(position).isLessThan(6L << 20);
        }
        fs.remove("/tmp/slow.bin");
    }

    /** A guest file that never ends (a device, a file that keeps growing) fills no host heap: read stops at its limit. */
    @Test
    void aWholeFileReadStopsAtItsLimit() {
        SandboxFs fs = sandbox.fs();
        assertThatThrownBy(() -> fs.read("/dev/zero", 1 << 20))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.FILESYSTEM);
                    assertThat(e.getMessage()).contains("/dev/zero", "gives more than 1048576 bytes", "readStream");
                });
        byte[] exact = new byte[1 << 20];
        new Random(5).nextBytes(exact);
        fs.write("/tmp/exact.bin", exact);
        assertThat(fs.read("/tmp/exact.bin", 1 << 20)).isEqualTo(exact);
        fs.remove("/tmp/exact.bin");
        // the connection serves on
        assertThat(fs.readString("/etc/passwd")).contains("root:");
    }

    @Test
    void metricsShowTheUpperDiskAllocationAndTheMemoryLimit() {
        Metrics before = sandbox.metrics();
        assertThat(before.upperAllocatedBytes()).isNotNull().isPositive();
        assertThat(before.memoryLimitBytes()).isEqualTo(256L << 20);
        byte[] data = new byte[32 << 20];
        new Random(3).nextBytes(data);
        sandbox.fs().write("/tmp/alloc.bin", data);
        Metrics after = sandbox.metrics();
        // the file's 32 MiB are on the host's disk now (blocks freed by earlier tests may be
        // reused, so the growth itself is not a measure), and the sparse 2 GiB file is far from full
        assertThat(after.upperAllocatedBytes()).isGreaterThanOrEqualTo(32L << 20).isLessThan(2048L << 20);
        sandbox.fs().remove("/tmp/alloc.bin");
    }

    @Test
    void transfersRunBesideCommands() throws Exception {
        SandboxFs fs = sandbox.fs();
        byte[] data = new byte[8 << 20];
        new Random(7).nextBytes(data);
        Thread writer = new Thread(() -> fs.write("/tmp/side.bin", data));
        writer.start();
        // a command answers while the transfer runs
        assertThat(sandbox.exec("echo", List.of("alive")).stdout()).isEqualTo("alive\n");
        writer.join(120_000);
        assertThat(fs.read("/tmp/side.bin")).isEqualTo(data);
        // four transfers at once, each intact, beside a command
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(4);
        try {
            List<java.util.concurrent.Future<byte[]>> reads = new java.util.ArrayList<>();
            for (int i = 0; i < 4; i++) {
                String path = "/tmp/par-" + i + ".bin";
                reads.add(pool.submit(() -> {
                    fs.write(path, data);
                    return fs.read(path);
                }));
            }
            assertThat(sandbox.exec("echo", List.of("still-alive")).stdout()).isEqualTo("still-alive\n");
            for (var f : reads) {
                assertThat(f.get(5, TimeUnit.MINUTES)).isEqualTo(data);
            }
        } finally {
            pool.shutdownNow();
        }
        for (int i = 0; i < 4; i++) {
            fs.remove("/tmp/par-" + i + ".bin");
        }
        // an abandoned read leaves nothing behind
        try (InputStream in = fs.readStream("/tmp/side.bin")) {
            assertThat(in.read()).isEqualTo(data[0] & 0xff);
        }
        assertThat(fs.stat("/tmp/side.bin").size()).isEqualTo(data.length);
        fs.remove("/tmp/side.bin");
    }
}

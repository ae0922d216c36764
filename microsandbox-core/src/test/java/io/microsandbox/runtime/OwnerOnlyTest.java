package io.microsandbox.runtime;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Runs under the build's umask (typically 022): whatever it is, the modes come out owner-only. */
class OwnerOnlyTest {
    @TempDir
    Path tmp;

    private static String mode(Path p) throws IOException {
        return PosixFilePermissions.toString(Files.getPosixFilePermissions(p));
    }

    private static void widen(Path p) throws IOException {
        Files.setPosixFilePermissions(p, PosixFilePermissions.fromString(Files.isDirectory(p) ? "rwxrwxrwx" : "rw-rw-rw-"));
    }

    /** A home another user created first (say under /tmp) is refused, not adopted. */
    @Test
    void aDirectoryOfAnotherUserIsRefused() throws IOException {
        org.junit.jupiter.api.Assumptions.assumeTrue((Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid") == 0,
                "handing a directory to another user takes root");
        Path foreign = Files.createDirectory(tmp.resolve("foreign"));
        int nobody = 65534;
        Files.setAttribute(foreign, "unix:uid", nobody);
        assertThatThrownBy(() -> OwnerOnly.directory(foreign))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("belongs to uid " + nobody);
    }

    /** A link another user owns is theirs to point elsewhere later: refused even while it points to a directory of ours. */
    @Test
    void aLinkOfAnotherUserIsRefusedWhereverItPoints() throws IOException {
        org.junit.jupiter.api.Assumptions.assumeTrue((Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid") == 0,
                "handing a link to another user takes root");
        Path ours = Files.createDirectory(tmp.resolve("ours"));
        Path link = Files.createSymbolicLink(tmp.resolve("home-link"), ours);
        assertThat(OwnerOnly.directory(link)).isEqualTo(link);
        Files.setAttribute(link, "unix:uid", 65534, java.nio.file.LinkOption.NOFOLLOW_LINKS);
        assertThatThrownBy(() -> OwnerOnly.directory(link)).isInstanceOf(IOException.class)
                .hasMessageContaining("is a symbolic link of uid 65534");
    }

    /**
     * A write replaces the file whole: a descriptor opened on the older file (perhaps by another
     * user while it was wider) never reads the new bytes, and no temporary is left.
     */
    @Test
    void aWriteReplacesTheFileWhole() throws IOException {
        Path file = tmp.resolve("settings.json");
        Files.writeString(file, "old");
        Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-r--r--"));
        try (java.io.InputStream earlier = Files.newInputStream(file)) {
            OwnerOnly.write(file, "secret".getBytes(java.nio.charset.StandardCharsets.UTF_8));
            assertThat(new String(earlier.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8)).isEqualTo("old");
        }
        assertThat(Files.readString(file)).isEqualTo("secret");
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(file))).isEqualTo("rw-------");
        try (var entries = Files.list(tmp)) {
            assertThat(entries).containsExactly(file);
        }
    }

    @Test
    void directoriesCreatesMissingOnesAndNarrowsThoseUpToTheTop() throws IOException {
        Path home = Files.createDirectory(tmp.resolve("home"));
        Path existing = Files.createDirectory(home.resolve("sandboxes"));
        widen(tmp);
        widen(home);
        widen(existing);

        Path logs = OwnerOnly.directories(home, existing.resolve("a/logs"));

        assertThat(logs).isDirectory();
        for (Path p : List.of(home, existing, existing.resolve("a"), logs)) {
            assertThat(mode(p)).as(p.toString()).isEqualTo("rwx------");
        }
        assertThat(mode(tmp)).as("above the top: left alone").isEqualTo("rwxrwxrwx");
        assertThatThrownBy(() -> OwnerOnly.directories(logs, home)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void filesAreCreatedAndNarrowedToTheOwner() throws IOException {
        Path fresh = OwnerOnly.createFile(tmp.resolve("fresh"));
        assertThat(mode(fresh)).isEqualTo("rw-------");
        assertThat(mode(OwnerOnly.createTempFile(tmp, "t-", ".tmp"))).isEqualTo("rw-------");

        Path old = Files.writeString(tmp.resolve("old"), "x");
        widen(old);
        try (OutputStream out = OwnerOnly.newOutputStream(old, StandardOpenOption.CREATE, StandardOpenOption.APPEND)) {
            out.write('y');
        }
        assertThat(mode(old)).isEqualTo("rw-------");
        assertThat(Files.readString(old)).isEqualTo("xy");

        Path written = tmp.resolve("written");
        OwnerOnly.write(written, new byte[] {1, 2});
        assertThat(mode(written)).isEqualTo("rw-------");
        try (FileChannel ch = OwnerOnly.open(tmp.resolve("lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            assertThat(mode(tmp.resolve("lock"))).isEqualTo("rw-------");
        }
        OwnerOnly.restrictFileIfExists(tmp.resolve("absent")); // no error
        assertThat(OwnerOnly.isOwnerOnly(PosixFilePermissions.fromString("rwx------"))).isTrue();
        assertThat(OwnerOnly.isOwnerOnly(PosixFilePermissions.fromString("rw----r--"))).isFalse();
    }
}

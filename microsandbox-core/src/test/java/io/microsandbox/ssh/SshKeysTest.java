package io.microsandbox.ssh;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Key files: written owner-only, and read back only while they still are. */
class SshKeysTest {
    @TempDir
    Path tmp;

    @Test
    void aKeyIsWrittenOwnerOnlyAndReadBackTheSame() throws Exception {
        Path key = tmp.resolve("ssh/host_key");
        var pair = SshKeys.loadOrCreate(key, "test");
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(key))).isEqualTo("rw-------");
        assertThat(SshKeys.loadOrCreate(key, "test").getPublic()).isEqualTo(pair.getPublic());
    }

    @Test
    void aKeyOthersCanReadOrALinkIsRefused() throws Exception {
        Path key = tmp.resolve("ssh/host_key");
        SshKeys.loadOrCreate(key, "test");
        Files.setPosixFilePermissions(key, PosixFilePermissions.fromString("rw-r--r--"));
        assertThatThrownBy(() -> SshKeys.loadOrCreate(key, "test")).isInstanceOf(IOException.class)
                .hasMessageContaining(key.toString()).hasMessageContaining("owner-only");
        Files.setPosixFilePermissions(key, PosixFilePermissions.fromString("rw-------"));
        Path link = Files.createSymbolicLink(tmp.resolve("ssh/linked_key"), key);
        assertThatThrownBy(() -> SshKeys.loadOrCreate(link, "test")).isInstanceOf(IOException.class)
                .hasMessageContaining("not a regular file");
    }
}

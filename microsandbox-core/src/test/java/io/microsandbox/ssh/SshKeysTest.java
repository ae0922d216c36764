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

    /** Options such as a forced command would not be enforced: such a key is refused, not given a shell. */
    @Test
    void anAuthorizedKeyWithOptionsIsRefused() throws Exception {
        Path key = tmp.resolve("ssh/client_key");
        SshKeys.loadOrCreate(key, "client");
        String pub = Files.readString(SshKeys.publicKeyFile(key)).strip();
        Path plain = Files.writeString(tmp.resolve("plain_keys"), pub + "\n");
        assertThat(SshKeys.readAuthorized(plain)).hasSize(1);
        Path restricted = Files.writeString(tmp.resolve("authorized_keys"), "restrict,command=\"/bin/true\" " + pub + "\n");
        assertThatThrownBy(() -> SshKeys.readAuthorized(restricted)).isInstanceOf(IOException.class)
                .hasMessageContaining("has options").hasMessageContaining("command");
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

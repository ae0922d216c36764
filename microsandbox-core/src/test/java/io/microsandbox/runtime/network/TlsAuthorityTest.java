package io.microsandbox.runtime.network;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TlsAuthorityTest {
    @TempDir
    Path home;

    /** A guest naming ever new hosts (random subdomains under a wildcard) does not grow the kept leaves without end. */
    @Test
    void theLeavesKeptAreBounded() {
        TlsAuthority ca = TlsAuthority.open(home);
        assertThat(ca.serverContext("a.test")).isSameAs(ca.serverContext("a.test"));
        for (int i = 0; i < TlsAuthority.MAX_LEAVES + 44; i++) {
            ca.serverContext("h" + i + ".example.test");
        }
        assertThat(ca.keptLeaves()).isEqualTo(TlsAuthority.MAX_LEAVES);
    }
}

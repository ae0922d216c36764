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
    /**
     * Processes sharing a home make the CA once: one that finds another creating it waits, then
     * takes the pair that one made (two at once left one's key beside the other's certificate).
     */
    @Test
    void aCaBeingCreatedElsewhereIsWaitedForAndTaken(@TempDir Path elsewhere) throws Exception {
        TlsAuthority other = TlsAuthority.open(elsewhere);
        Path tls = java.nio.file.Files.createDirectories(home.resolve("tls"));
        java.util.concurrent.CompletableFuture<TlsAuthority> opening;
        // the lock another process holds while it creates (an open file description of its own, as a process's would be)
        try (io.microsandbox.runtime.SandboxLock creating = io.microsandbox.runtime.SandboxLock.tryAcquire(tls.resolve(".create.lock"))) {
            opening = java.util.concurrent.CompletableFuture.supplyAsync(() -> TlsAuthority.open(home));
            Thread.sleep(300);
            assertThat(opening).as("waits for the creator").isNotDone();
            for (String f : new String[] {"ca.key", "ca.pem"}) {
                java.nio.file.Files.copy(elsewhere.resolve("tls").resolve(f), tls.resolve(f));
            }
        }
        assertThat(opening.get(30, java.util.concurrent.TimeUnit.SECONDS).caPem()).isEqualTo(other.caPem());
    }
}

package io.microsandbox.image.oci;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

class OciStoreTest {
    @TempDir
    Path home;

    /** A pull waiting for the lock another pull holds (a slow registry) can be cancelled. */
    @Test
    @Timeout(30)
    void aThreadWaitingForACacheLockCanBeInterrupted() throws Exception {
        OciStore store = new OciStore(home);
        CountDownLatch holding = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        Thread holder = new Thread(() -> {
            try {
                store.withLock("ref-x", () -> {
                    holding.countDown();
                    try {
                        release.await();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                    return null;
                });
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        holder.start();
        assertThat(holding.await(10, TimeUnit.SECONDS)).isTrue();
        CompletableFuture<Throwable> waiterFailure = new CompletableFuture<>();
        Thread waiter = new Thread(() -> {
            try {
                store.withLock("ref-x", () -> null);
                waiterFailure.complete(null);
            } catch (Throwable t) {
                waiterFailure.complete(t);
            }
        });
        waiter.start();
        Thread.sleep(200);
        waiter.interrupt();
        Throwable failure = waiterFailure.get(5, TimeUnit.SECONDS);
        assertThat(failure).isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.CANCELLED));
        release.countDown();
        holder.join();
        assertThat(store.withLock("ref-x", () -> "free")).isEqualTo("free");
    }
}

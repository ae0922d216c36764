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

    /**
     * A sandbox's pin is written only while no collection runs: one under way would have read
     * the pins before it and deleted the image under the new sandbox.
     */
    @Test
    @Timeout(30)
    void aPinWaitsForACollectionUnderWay() throws Exception {
        OciImages images = new OciImages(home);
        OciImages.Image img = new OciImages.Image("example.test/app:1", "sha256:" + "a".repeat(64), null, "sha256:" + "b".repeat(64),
                java.util.List.of(), new OciImages.Defaults(java.util.List.of(), java.util.List.of(), java.util.List.of(), null, null));
        Path pin = java.nio.file.Files.createDirectories(home.resolve("sandboxes/s")).resolve("image.digest");
        CountDownLatch collecting = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        CompletableFuture<Long> collection = CompletableFuture.supplyAsync(() -> {
            try {
                return images.collect(() -> {
                    collecting.countDown();
                    try {
                        release.await(); // a collection that has read the pins and is deleting
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                    return java.util.Set.of();
                }, java.time.Duration.ZERO);
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        assertThat(collecting.await(10, TimeUnit.SECONDS)).isTrue();
        CompletableFuture<Void> pinning = CompletableFuture.runAsync(() -> {
            try {
                images.pinned(pin, img);
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
        Thread.sleep(300);
        assertThat(pinning).isNotDone();
        assertThat(pin).doesNotExist();
        release.countDown();
        collection.get(10, TimeUnit.SECONDS);
        pinning.get(10, TimeUnit.SECONDS);
        assertThat(pin).hasContent(img.manifestDigest() + "\n");
    }
}

package io.microsandbox.runtime;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Directories owned by a lock inside them, made and deleted so that nobody sees them in between. */
class ClaimedDirectoryTest {
    @TempDir
    Path dir;

    @Test
    void aClaimedDirectoryAppearsWithItsLockHeldAndOnlyOnce() throws Exception {
        Path claimed = dir.resolve("box");
        try (SandboxLock lock = ClaimedDirectory.claim(claimed, "owner.lock")) {
            assertThat(lock.isOn(claimed.resolve("owner.lock"))).isTrue();
            assertThat(SandboxLock.isHeld(claimed.resolve("owner.lock"))).isTrue();
            assertThatThrownBy(() -> ClaimedDirectory.claim(claimed, "owner.lock")).isInstanceOf(FileAlreadyExistsException.class);
        }
        try (var entries = Files.list(dir)) {
            assertThat(entries).as("no staging directory left").containsExactly(claimed);
        }
        assertThat(ClaimedDirectory.delete(claimed)).isTrue();
        assertThat(ClaimedDirectory.delete(claimed)).as("gone already").isFalse();
        try (var entries = Files.list(dir)) {
            assertThat(entries).isEmpty();
        }
    }

    /** Names with glob characters claim like any other, and a sweep takes only its own name's leftovers. */
    @Test
    void aSweepTakesOnlyItsOwnNamesLeftovers() throws Exception {
        for (String name : List.of("web[", "a{b", "x*", "q?")) {
            try (SandboxLock lock = ClaimedDirectory.claim(dir.resolve(name), "owner.lock")) {
                assertThat(lock.isOn(dir.resolve(name).resolve("owner.lock"))).isTrue();
            }
        }
        String uuid = java.util.UUID.randomUUID().toString();
        Path ofA = Files.createDirectory(dir.resolve(".removing-a-" + uuid));
        Path ofAb = Files.createDirectory(dir.resolve(".removing-a-b-" + uuid));
        Path ofStar = Files.createDirectory(dir.resolve(".claiming-x*-" + uuid));
        Thread.sleep(20); // inode change times cannot be set back: the sweep below takes any age
        ClaimedDirectory.sweepLeftovers(dir.resolve("a"), "owner.lock", java.time.Duration.ZERO);
        ClaimedDirectory.sweepLeftovers(dir.resolve("x"), "owner.lock", java.time.Duration.ZERO);
        assertThat(ofA).doesNotExist();
        assertThat(ofAb).as("a-b's").exists();
        assertThat(ofStar).as("x*'s").exists();
    }

    /** A closed lock is on nothing, even when the same descriptor number now holds the same file's new lock. */
    @Test
    void aClosedLockIsOnNothing() throws Exception {
        Path file = dir.resolve("owner.lock");
        SandboxLock first = SandboxLock.tryAcquire(file);
        first.close();
        try (SandboxLock second = SandboxLock.tryAcquire(file)) {
            assertThat(second.isOn(file)).isTrue();
            assertThat(first.isOn(file)).isFalse();
        }
    }

    /** Deleters of one tree at once (a remove and a listing purging the same sandbox) do not trip over each other's deletions. */
    @Test
    void treesDeletedByTwoAtOnceAreDeletedWithoutErrors() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            for (int round = 0; round < 5; round++) {
                Path tree = dir.resolve("tree-" + round);
                for (int d = 0; d < 50; d++) {
                    Path sub = Files.createDirectories(tree.resolve("d" + d));
                    for (int f = 0; f < 40; f++) {
                        Files.createFile(sub.resolve("f" + f));
                    }
                }
                CyclicBarrier start = new CyclicBarrier(2);
                List<Future<?>> deleters = new ArrayList<>();
                for (int i = 0; i < 2; i++) {
                    deleters.add(pool.submit(() -> {
                        start.await();
                        SandboxPreparer.deleteTree(tree);
                        return null;
                    }));
                }
                for (Future<?> f : deleters) {
                    f.get(60, TimeUnit.SECONDS);
                }
                assertThat(tree).doesNotExist();
            }
        } finally {
            pool.shutdownNow();
        }
    }
}

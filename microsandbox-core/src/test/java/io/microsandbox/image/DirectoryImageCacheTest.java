package io.microsandbox.image;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.time.Instant;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Builds small disks with mke2fs (e2fsprogs, installed by scripts/setup.sh). */
class DirectoryImageCacheTest {
    @TempDir
    Path tmp;

    private Path home() {
        return tmp.resolve("home");
    }

    private Path sandbox(String name) throws IOException {
        return Files.createDirectories(home().resolve("sandboxes").resolve(name));
    }

    private Path image(String hostname) throws IOException {
        Path dir = tmp.resolve("image");
        Files.createDirectories(dir.resolve("etc"));
        Files.writeString(dir.resolve("etc/hostname"), hostname + "\n");
        return dir;
    }

    /** An edited tree gets a disk of its own; the old one goes once no sandbox names it any more. */
    @Test
    void aDiskNoSandboxNamesIsCollectedAndAPinnedOneIsKept() throws IOException {
        Path first = sandbox("first");
        Path tree = image("before");
        Path before = DirectoryImageCache.lowerDisk(home(), tree, first);
        assertThat(Files.readString(first.resolve(DirectoryImageCache.PIN)).strip()).isEqualTo(before.getFileName().toString());
        Path second = sandbox("second");
        Path after = DirectoryImageCache.lowerDisk(home(), image("after-an-edit"), second);
        assertThat(DirectoryImageCache.lowerDisk(home(), tree, second)).as("the same tree, the same disk").isEqualTo(after);
        assertThat(after).isNotEqualTo(before);

        assertThat(DirectoryImageCache.collect(home(), Set::of, Duration.ZERO)).as("both disks are pinned").isZero();
        long size = Files.size(before);
        Files.delete(first.resolve(DirectoryImageCache.PIN)); // the first sandbox removed
        assertThat(DirectoryImageCache.collect(home(), Set::of, Duration.ofMinutes(10))).as("built within the grace period").isZero();
        assertThat(DirectoryImageCache.collect(home(), Set::of, Duration.ZERO)).isEqualTo(size);
        assertThat(before).doesNotExist();
        assertThat(after).exists();

        // the second sandbox restarted over the same tree: the same disk, still pinned
        assertThat(DirectoryImageCache.lowerDisk(home(), tree, second)).isEqualTo(after);
        assertThat(DirectoryImageCache.collect(home(), Set::of, Duration.ZERO)).isZero();
        assertThat(after).exists();
    }

    /**
     * A sandbox made before there were pins names its disk only on QEMU's command line in its
     * spec: a running one still reads it, a stopped one would boot it again.
     */
    @Test
    void aDiskASandboxOfAnEarlierVersionBootedOnIsKept() throws IOException {
        Path sandbox = sandbox("older");
        Path disk = DirectoryImageCache.lowerDisk(home(), image("older"), sandbox);
        Files.delete(sandbox.resolve(DirectoryImageCache.PIN));
        Files.writeString(sandbox.resolve("supervisor.json"), "{\"vmmArgv\": [\"qemu-system-x86_64\", \"-drive\", \"id=lower,file="
                + disk.toString().replace(",", ",,") + ",format=raw,if=none,readonly=on\"]}");
        assertThat(DirectoryImageCache.collect(home(), Set::of, Duration.ZERO)).isZero();
        assertThat(disk).exists();

        long size = Files.size(disk);
        Files.delete(sandbox.resolve("supervisor.json"));
        // a spec that cannot be read may be a running sandbox's: it could be on any disk
        Path unreadable = sandbox("broken");
        Files.writeString(unreadable.resolve("supervisor.json"), "{\"vmmArgv\": ");
        assertThat(DirectoryImageCache.collect(home(), Set::of, Duration.ZERO)).isZero();
        assertThat(disk).exists();
        Files.delete(unreadable.resolve("supervisor.json"));
        assertThat(DirectoryImageCache.collect(home(), Set::of, Duration.ZERO)).as("no longer named").isEqualTo(size);
        assertThat(disk).doesNotExist();
    }

    /** A checkpoint's saved guest reads the very disk it was taken over: a rebuilt one may lay the tree out otherwise. */
    @Test
    void aDiskACheckpointWasTakenOverIsKept() throws IOException {
        Path sandbox = sandbox("gone");
        Path disk = DirectoryImageCache.lowerDisk(home(), image("checkpointed"), sandbox);
        Files.delete(sandbox.resolve(DirectoryImageCache.PIN));
        assertThat(DirectoryImageCache.collect(home(), () -> Set.of(disk), Duration.ZERO)).isZero();
        assertThat(disk).exists();
    }

    /** A disk deleted from the cache is built again for the next sandbox, and never pinned (QEMU would find it missing). */
    @Test
    void aDeletedDiskIsBuiltAgainAndNeverPinned() throws IOException {
        Path sandbox = sandbox("racing");
        Path tree = image("raced");
        Path disk = DirectoryImageCache.lowerDisk(home(), tree, sandbox);
        Files.delete(disk);
        assertThat(DirectoryImageCache.lowerDisk(home(), tree, sandbox)).isEqualTo(disk).isRegularFile();
        assertThatThrownBy(() -> {
            Files.delete(disk);
            DirectoryImageCache.pin(home(), sandbox, disk);
        }).isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_NOT_FOUND));
    }

    /** What a build killed half-way left aside goes once no build can still be writing it; anything else in the cache stays. */
    @Test
    void onlyDisksAndDeadBuildsAreCollected() throws IOException {
        Path cache = Files.createDirectories(DirectoryImageCache.cacheDir(home()));
        Path deadBuild = Files.writeString(cache.resolve(".0123456789abcdef01234567.ext4.part"), "half a disk");
        Path liveBuild = Files.writeString(cache.resolve(".89abcdef0123456701234567.ext4.part"), "a disk being made");
        Path lock = Files.writeString(cache.resolve(".0123456789abcdef01234567.lock"), "");
        Path other = Files.writeString(cache.resolve("notes.txt"), "not ours to delete");
        Instant longAgo = Instant.now().minus(DirectoryImageCache.DEAD_BUILD_AGE).minusSeconds(60);
        for (Path p : new Path[] {deadBuild, lock, other}) {
            Files.setLastModifiedTime(p, FileTime.from(longAgo));
        }
        assertThat(DirectoryImageCache.collect(home(), Set::of, Duration.ZERO)).isEqualTo("half a disk".length());
        assertThat(deadBuild).doesNotExist();
        assertThat(liveBuild).exists();
        assertThat(lock).exists();
        assertThat(other).exists();
    }
}

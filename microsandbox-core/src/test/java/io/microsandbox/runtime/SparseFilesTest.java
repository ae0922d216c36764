package io.microsandbox.runtime;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

class SparseFilesTest {
    private static final long SIZE = 256L << 20;

    @Test
    void copiesOnlyDataAndKeepsTheContentDigest(@TempDir Path dir) throws Exception {
        Path source = sparseSource(dir);
        Path copy = dir.resolve("copy");
        String digest = SparseFiles.copy(source, copy);
        assertThat(Files.size(copy)).isEqualTo(SIZE);
        assertThat(Posix.allocatedBytes(copy)).isLessThan(64 * 1024);
        assertThat(SparseFiles.digest(copy)).isEqualTo(digest).isEqualTo(SparseFiles.digest(source)).startsWith("sha256:");
        assertThat(Files.mismatch(source, copy)).isEqualTo(-1);
        assertThat(Files.getPosixFilePermissions(copy)).isEqualTo(OwnerOnly.FILE);

        Path unhashed = dir.resolve("unhashed");
        SparseFiles.copyUnhashed(source, unhashed);
        assertThat(Files.mismatch(source, unhashed)).isEqualTo(-1);
        assertThat(Posix.allocatedBytes(unhashed)).isLessThan(64 * 1024);
    }

    /** SIZE bytes with a few bytes of data near each end and an allocated MiB of zeros. */
    private static Path sparseSource(Path dir) throws java.io.IOException {
        Path source = dir.resolve("source");
        try (RandomAccessFile f = new RandomAccessFile(source.toFile(), "rw")) {
            f.setLength(SIZE);
            f.seek(4096);
            f.write("hello".getBytes());
            f.seek(SIZE - 10);
            f.write("tail".getBytes());
            // written zeros: allocated, but the same content as a hole
            f.seek(64L << 20);
            f.write(new byte[1 << 20]);
        }
        return source;
    }

    @Test
    void copyIntoWritesTheDataExtentsIntoAnExistingFileAndLeavesItsHolesAlone(@TempDir Path dir) throws Exception {
        Path source = sparseSource(dir);
        // as a restored guest's empty memory: a file of the size, all hole
        Path target = dir.resolve("target");
        try (RandomAccessFile f = new RandomAccessFile(target.toFile(), "rw")) {
            f.setLength(SIZE);
        }
        SparseFiles.copyInto(source, target);
        assertThat(Files.mismatch(source, target)).isEqualTo(-1);
        // the source's extents, copied as they are (a checkpoint's memory file has no zero blocks left); its holes stay holes
        assertThat(Posix.allocatedBytes(target)).isLessThanOrEqualTo(Posix.allocatedBytes(source)).isLessThan(SIZE / 64);

        Path small = dir.resolve("small");
        try (RandomAccessFile f = new RandomAccessFile(small.toFile(), "rw")) {
            f.setLength(SIZE / 2);
        }
        assertThat(org.assertj.core.api.Assertions.catchThrowable(() -> SparseFiles.copyInto(source, small)))
                .isInstanceOf(java.io.IOException.class).hasMessageContaining("too few");
    }

    @Test
    void anyChangedByteChangesTheDigest(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("file");
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(SIZE);
            f.seek(8192);
            f.write(42);
        }
        String before = SparseFiles.digest(file);
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(8192);
            f.write(43);
        }
        String flipped = SparseFiles.digest(file);
        assertThat(flipped).isNotEqualTo(before);
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(8192);
            f.write(42);
            f.seek(100L << 20);
            f.write(1);
        }
        assertThat(SparseFiles.digest(file)).isNotEqualTo(before).isNotEqualTo(flipped);
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(100L << 20);
            f.write(0);
            f.setLength(SIZE + 4096);
        }
        // the same bytes but a longer file
        assertThat(SparseFiles.digest(file)).isNotEqualTo(before);
    }

    @Test
    void aFifoOrADeviceIsRefusedInsteadOfBlockingTheCopy(@TempDir Path dir) throws Exception {
        Path fifo = dir.resolve("upper.ext4");
        assertThat(new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor()).isZero();
        org.junit.jupiter.api.Assertions.assertTimeoutPreemptively(java.time.Duration.ofSeconds(10), () -> {
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> SparseFiles.digest(fifo))
                    .isInstanceOf(java.io.IOException.class).hasMessageContaining("not a regular file");
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> SparseFiles.copy(fifo, dir.resolve("copy")))
                    .isInstanceOf(java.io.IOException.class).hasMessageContaining("not a regular file");
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> SparseFiles.digest(Path.of("/dev/zero")))
                    .isInstanceOf(java.io.IOException.class).hasMessageContaining("not a regular file");
        });
        assertThat(dir.resolve("copy")).doesNotExist();
    }
}

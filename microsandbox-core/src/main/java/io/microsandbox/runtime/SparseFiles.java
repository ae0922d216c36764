package io.microsandbox.runtime;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HexFormat;

/**
 * Copies and hashes sparse disk files (a sandbox's upper disk is a 4 GiB file with a few
 * MiB written) in time proportional to their data: only the extents {@code SEEK_DATA} reports
 * are read, and blocks of zeros inside them are skipped too, so a copy is as sparse as it can be.
 *
 * <p>The content digest is {@code sha256:} over every 4 KiB block that is not all zeros, each
 * preceded by its offset (8 bytes, big-endian), then the file's size: it depends on the
 * logical content only, not on how the filesystem allocated it, so a copy has the digest of its
 * source, and any changed byte, in data or in a hole, changes it.
 */
public final class SparseFiles {
    static final int BLOCK = 4096;
    private static final int CHUNK = 1 << 20;
    private static final byte[] ZEROS = new byte[BLOCK];

    private SparseFiles() {
    }

    /**
     * Copies {@code source} to the new file {@code target} (created {@code 0600}, sparse, and
     * synced to disk: snapshots and checkpoints are kept), and returns the source's content digest.
     */
    public static String copy(Path source, Path target) throws IOException {
        return copy(source, target, true);
    }

    /**
     * Like {@link #copy(Path, Path)}; without {@code durable} the copy is left to the page cache,
     * for a sandbox's own upper disk, which a host crash loses with the sandbox anyway.
     */
    public static String copy(Path source, Path target, boolean durable) throws IOException {
        return copy(source, target, durable, sha256());
    }

    /**
     * Like {@link #copy(Path, Path)}, without the digest: for a guest's memory, saved with a
     * checkpoint, where hashing tens of MiB would lengthen the guest's pause and nothing checks it.
     */
    public static void copyUnhashed(Path source, Path target) throws IOException {
        copy(source, target, true, null);
    }

    private static String copy(Path source, Path target, boolean durable, MessageDigest sha) throws IOException {
        requireRegularFile(source);
        OwnerOnly.createFile(target);
        try (FileChannel in = FileChannel.open(source, StandardOpenOption.READ);
             RandomAccessFile out = new RandomAccessFile(target.toFile(), "rw")) {
            long size = in.size();
            String digest = walk(source, in, size, out.getChannel(), sha);
            out.setLength(size);
            if (durable) {
                out.getFD().sync();
            }
            return digest;
        }
    }

    /**
     * Writes the data extents of {@code source} into the existing file {@code target} at the
     * same offsets, leaving its holes alone and without hashing: what a restore does to fill a
     * guest's empty memory from a checkpoint ({@link #copyUnhashed} left no zero blocks in it),
     * allocating only the pages that hold data.
     *
     * @throws IOException also when {@code target} is not a regular file or is smaller than {@code source}
     */
    public static void copyInto(Path source, Path target) throws IOException {
        requireRegularFile(target);
        try (FileChannel out = FileChannel.open(target, StandardOpenOption.WRITE)) {
            copyInto(source, out, target.toString());
        }
    }

    /**
     * {@link #copyInto(Path, Path)} into an open channel ({@code name} for messages), which
     * stays open: whoever closes it meanwhile ends the copy with an exception.
     */
    public static void copyInto(Path source, FileChannel out, String name) throws IOException {
        requireRegularFile(source);
        try (FileChannel in = FileChannel.open(source, StandardOpenOption.READ)) {
            long size = in.size();
            if (out.size() < size) {
                throw new IOException(name + " has " + out.size() + " bytes, too few for the " + size + " of " + source);
            }
            // the kernel copies each data extent (sendfile): no pass through the Java heap
            long[] extents = Posix.dataExtents(source);
            for (int e = 0; e < extents.length; e += 2) {
                long pos = extents[e];
                long end = Math.min(extents[e + 1], size);
                while (pos < end) {
                    long n = in.transferTo(pos, end - pos, out.position(pos));
                    if (n <= 0) {
                        throw new IOException(source + " shrank while it was read");
                    }
                    pos += n;
                }
            }
        }
    }

    /** The content digest of {@code file} (see the class comment). */
    public static String digest(Path file) throws IOException {
        requireRegularFile(file);
        try (FileChannel in = FileChannel.open(file, StandardOpenOption.READ)) {
            return walk(file, in, in.size(), null, sha256());
        }
    }

    /** Opening a FIFO would block until someone writes to it, and a device has no extents to walk. */
    private static void requireRegularFile(Path file) throws IOException {
        if (Files.exists(file) && !Files.isRegularFile(file)) {
            throw new IOException(file + " is not a regular file");
        }
    }

    /** Copies (when {@code out} is given) and hashes (when {@code sha} is) the non-zero blocks; the digest or null. */
    private static String walk(Path path, FileChannel in, long size, FileChannel out, MessageDigest sha) throws IOException {
        long[] extents = Posix.dataExtents(path);
        byte[] chunk = new byte[CHUNK];
        ByteBuffer buffer = ByteBuffer.wrap(chunk);
        ByteBuffer offset = ByteBuffer.allocate(Long.BYTES);
        for (int e = 0; e < extents.length; e += 2) {
            // extents are block-aligned on every Linux filesystem; rounding down keeps the block grid
            long pos = extents[e] / BLOCK * BLOCK;
            long end = Math.min(extents[e + 1], size);
            while (pos < end) {
                int want = (int) Math.min(CHUNK, end - pos);
                buffer.clear().limit(want);
                int got = 0;
                while (got < want) {
                    int n = in.read(buffer, pos + got);
                    if (n < 0) {
                        throw new IOException(path + " shrank while it was read");
                    }
                    got += n;
                }
                // runs of non-zero blocks are written with one call each: a guest's memory is
                // thousands of scattered pages, and a write per page was most of a restore's copy
                int run = -1;
                for (int b = 0; b < got; b += BLOCK) {
                    int len = Math.min(BLOCK, got - b);
                    if (Arrays.mismatch(chunk, b, b + len, ZEROS, 0, len) < 0) {
                        write(out, chunk, run, b, pos);
                        run = -1;
                        continue;
                    }
                    if (run < 0) {
                        run = b;
                    }
                    if (sha != null) {
                        sha.update(offset.clear().putLong(pos + b).array());
                        sha.update(chunk, b, len);
                    }
                }
                write(out, chunk, run, got, pos);
                pos += got;
            }
        }
        if (sha == null) {
            return null;
        }
        sha.update(offset.clear().putLong(size).array());
        return "sha256:" + HexFormat.of().formatHex(sha.digest());
    }

    /** Writes {@code chunk[from, to)} at {@code chunkPos + from}; nothing when there is no run ({@code from < 0}) or no output. */
    private static void write(FileChannel out, byte[] chunk, int from, int to, long chunkPos) throws IOException {
        if (out == null || from < 0) {
            return;
        }
        ByteBuffer run = ByteBuffer.wrap(chunk, from, to - from);
        long at = chunkPos + from;
        while (run.hasRemaining()) {
            at += out.write(run, at);
        }
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}

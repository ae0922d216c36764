package io.microsandbox.ssh;

import io.microsandbox.MicrosandboxException;
import io.microsandbox.SandboxFs;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.NonWritableChannelException;
import java.nio.channels.SeekableByteChannel;

/**
 * Channels over {@link SandboxFs}'s streams. SFTP addresses every read and write by offset;
 * clients read and write front to back, which maps onto one stream. A read further on skips
 * ahead on the stream, one further back reopens it; a write elsewhere is refused and gives the
 * file up (the guest file is written as one stream, whole or not at all).
 */
final class GuestChannels {
    private GuestChannels() {
    }

    /**
     * A failure of {@code path}'s stream as sshd should report it: a guest error (thrown, or the
     * cause of a stream's {@link IOException}) as the NIO exception of its kind, which sshd turns
     * into the matching SFTP status (permission denied, no such file) instead of a bare failure.
     */
    static IOException failure(String path, Exception e) {
        MicrosandboxException guest = e instanceof MicrosandboxException m ? m
                : e.getCause() instanceof MicrosandboxException cause ? cause : null;
        if (guest != null) {
            return GuestFileSystemProvider.io(guest, path);
        }
        return e instanceof IOException io ? io : new IOException(path + ": " + e.getMessage(), e);
    }

    /** Reads a guest file; seeking ahead skips on the open stream, seeking back reopens it. */
    static final class Reader implements SeekableByteChannel {
        private final SandboxFs fs;
        private final String path;
        private final long size;
        /** Volatile: {@link #close()} closes it from another thread to end a read waiting for the guest. */
        private volatile InputStream stream;
        /** Where the open stream is. */
        private long streamAt;
        private long position;
        private volatile boolean open = true;

        Reader(SandboxFs fs, String path, long size) {
            this.fs = fs;
            this.path = path;
            this.size = size;
        }

        /**
         * Fills {@code dst} up to the end of the file: a short read would tell an SFTP client
         * that the file ends there (OpenSSH's scp then stops), so chunks are joined.
         */
        @Override
        public synchronized int read(ByteBuffer dst) throws IOException {
            ensureOpen();
            if (position > size && (stream == null || streamAt != position)) {
                // a seek past the end the file had when opened: nothing to skip towards (a client asking at
                // 2^62 of /dev/zero); reading on from where the stream is (a /proc file of size 0) goes on
                return -1;
            }
            try {
                if (stream != null && streamAt < position) {
                    skipTo(position); // ahead: cheaper on the open stream than from the start
                } else if (stream == null || streamAt != position) {
                    reopen();
                }
                byte[] buf = new byte[Math.min(dst.remaining(), 256 * 1024)];
                int total = 0;
                while (total < buf.length) {
                    int n = stream.read(buf, total, buf.length - total);
                    if (n < 0) {
                        break;
                    }
                    total += n;
                }
                if (total == 0 && buf.length > 0) {
                    return -1;
                }
                dst.put(buf, 0, total);
                position += total;
                streamAt = position;
                return total;
            } catch (IOException | RuntimeException e) {
                dropStream();
                throw failure(path, e);
            }
        }

        /** Closes the open stream, if any; after a failure, a retry reopens at the position (bytes taken before it were not delivered). */
        private void dropStream() throws IOException {
            if (stream != null) {
                InputStream failed = stream;
                stream = null;
                failed.close();
            }
        }

        private void reopen() throws IOException {
            dropStream();
            stream = fs.readStream(path);
            if (!open) {
                // closed while it opened: close() may have missed it
                dropStream();
                throw new ClosedChannelException();
            }
            streamAt = 0;
            skipTo(position);
        }

        /** Moves the open stream on to {@code target}; past the end, the next read simply finds EOF. */
        private void skipTo(long target) throws IOException {
            long left = target - streamAt;
            while (left > 0) {
                long skipped = stream.skip(left);
                if (skipped <= 0) {
                    if (stream.read() < 0) {
                        break;
                    }
                    skipped = 1;
                }
                left -= skipped;
            }
            streamAt = target;
        }

        @Override
        public long position() {
            return position;
        }

        @Override
        public synchronized SeekableByteChannel position(long newPosition) {
            if (newPosition < 0) {
                throw new IllegalArgumentException("negative position " + newPosition);
            }
            position = newPosition;
            return this;
        }

        @Override
        public long size() {
            return size;
        }

        @Override
        public int write(ByteBuffer src) {
            throw new NonWritableChannelException();
        }

        @Override
        public SeekableByteChannel truncate(long size) {
            throw new NonWritableChannelException();
        }

        @Override
        public boolean isOpen() {
            return open;
        }

        /** Not synchronized: it must end a read that waits for the guest, which holds the channel's lock. */
        @Override
        public void close() throws IOException {
            open = false;
            InputStream s = stream;
            if (s != null) {
                s.close();
            }
        }

        private void ensureOpen() throws ClosedChannelException {
            if (!open) {
                throw new ClosedChannelException();
            }
        }
    }

    /** Sets a guest file's size (sshd sets SFTP's size attribute through a channel's truncate). */
    interface Truncator {
        void truncate(long size) throws IOException;
    }

    /**
     * Writes a guest file front to back as one stream, opened at the first write: from there
     * the file is replaced by what is written (OpenSSH's uploads open an existing file without
     * truncating it, write it whole from offset 0, then set its size). A write anywhere else
     * than where the data ends is refused, and gives the file up: a partial rewrite fails
     * instead of going wrong, and the file stays as it was. A truncate before any write resizes
     * the file in the guest. Close makes the data durable and reports failures; a handle the
     * SFTP session left open when it ended is given up ({@link #giveUp(String)}), never stored cut short.
     */
    static final class Writer implements SeekableByteChannel {
        private final SandboxFs fs;
        private final String path;
        private final Integer mode;
        /** Whether closing without a write still leaves an empty file (new or truncated at open). */
        private final boolean replace;
        private final Truncator truncator;
        /**
         * Whether the stream must create the file (an open with {@code CREATE_NEW}): a file made
         * at its path meanwhile, by the guest or another client, is then never replaced. Off once
         * a truncate made the file itself.
         */
        private boolean createNew; // guarded by this
        private SandboxFs.WriteStream stream; // guarded by this
        /** Why the file is given up (a refused write, the session gone); null while it is not. */
        private volatile String givenUp;
        /** One write at a time; the monitor is never held while a write waits for the guest. */
        private final java.util.concurrent.locks.ReentrantLock writing = new java.util.concurrent.locks.ReentrantLock();
        private volatile long position;
        private volatile boolean open = true;

        Writer(SandboxFs fs, String path, Integer mode, boolean replace, boolean createNew, Truncator truncator) {
            this.fs = fs;
            this.createNew = createNew;
            this.path = path;
            this.mode = mode;
            this.replace = replace;
            this.truncator = truncator;
        }

        @Override
        public int write(ByteBuffer src) throws IOException {
            writing.lock();
            try {
                if (!open) {
                    throw new ClosedChannelException();
                }
                refuseIfGivenUp();
                int n = src.remaining();
                byte[] buf = new byte[n];
                src.get(buf);
                try {
                    // waits for the guest's credit without the monitor: a close from another thread is not held up
                    stream().write(buf);
                } catch (IOException | MicrosandboxException e) {
                    throw failure(path, e);
                }
                position += n;
                return n;
            } finally {
                writing.unlock();
            }
        }

        private synchronized SandboxFs.WriteStream stream() throws IOException {
            if (stream == null) {
                try {
                    stream = createNew ? fs.createStream(path, mode) : fs.writeStream(path, mode);
                } catch (MicrosandboxException e) {
                    throw failure(path, e);
                }
            }
            return stream;
        }

        @Override
        public long position() {
            return position;
        }

        /**
         * Only where the data ends so far: the guest file is written as one stream. Elsewhere
         * the file is given up, since the stream could only store it without the part asked for.
         */
        @Override
        public SeekableByteChannel position(long newPosition) throws IOException {
            if (newPosition != position) {
                String why = "writes must go front to back (at " + position + ", asked for " + newPosition + ")";
                giveUp(why);
                throw new IOException(path + ": " + why + "; the file is left as it was");
            }
            return this;
        }

        /** Marks the file given up: later writes are refused and close leaves the file as it was. */
        void giveUp(String why) {
            if (givenUp == null) {
                givenUp = why;
            }
        }

        private void refuseIfGivenUp() throws IOException {
            String why = givenUp;
            if (why != null) {
                throw new IOException(path + ": given up (" + why + "); the file is left as it was");
            }
        }

        @Override
        public long size() {
            return position;
        }

        @Override
        public int read(ByteBuffer dst) {
            throw new java.nio.channels.NonReadableChannelException();
        }

        /**
         * Before the first write: the guest file is resized. After it: a size at or past what
         * was written is what the stream makes anyway; a smaller one is refused.
         */
        @Override
        public SeekableByteChannel truncate(long size) throws IOException {
            writing.lock();
            try {
                synchronized (this) {
                    if (stream == null) {
                        if (createNew) {
                            // made here, exclusively, before anything resizes it: one made meanwhile is not touched
                            try {
                                fs.create(path, new byte[0], mode);
                            } catch (MicrosandboxException e) {
                                throw failure(path, e);
                            }
                            createNew = false;
                        }
                        truncator.truncate(size);
                    } else if (size < position) {
                        giveUp("truncated below what was written");
                        throw new IOException(path + ": cannot truncate a file being written below what was written; the file is left as it was");
                    }
                }
                return this;
            } finally {
                writing.unlock();
            }
        }

        @Override
        public boolean isOpen() {
            return open;
        }

        /**
         * Ends the file; while a write waits for the guest on another thread, gives the file up
         * and wakes that write. A file given up is abandoned (and the close reports why).
         */
        @Override
        public void close() throws IOException {
            SandboxFs.WriteStream s;
            synchronized (this) {
                if (!open) {
                    return;
                }
                open = false;
                if (givenUp != null) {
                    s = stream;
                } else if (stream == null && !replace) {
                    return; // an existing file opened and left alone
                } else {
                    s = stream();
                }
            }
            try {
                if (givenUp == null) {
                    s.close();
                    return;
                }
                if (s != null) {
                    s.abandon();
                }
            } catch (IOException | MicrosandboxException e) {
                throw failure(path, e);
            }
            refuseIfGivenUp();
        }
    }
}

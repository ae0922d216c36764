package io.microsandbox.ssh;

import io.microsandbox.MicrosandboxException;
import io.microsandbox.SandboxFs;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.NonWritableChannelException;
import java.nio.channels.SeekableByteChannel;

/**
 * Channels over {@link SandboxFs}'s streams. SFTP addresses every read and write by offset;
 * clients read and write front to back, which maps onto one stream. A read elsewhere reopens
 * the stream there; a write elsewhere is refused (the guest file is written as one stream).
 */
final class GuestChannels {
    private GuestChannels() {
    }

    /** Reads a guest file; seeking backwards (or far ahead) reopens the stream. */
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
                if (stream == null || streamAt != position) {
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
            } catch (MicrosandboxException e) {
                dropStream();
                throw new IOException(path + ": " + e.getMessage(), e);
            } catch (IOException | RuntimeException e) {
                dropStream();
                throw e;
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
            // past the end, the next read simply finds EOF
            long left = position;
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
            streamAt = position;
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
     * than where the data ends is refused; so a partial rewrite fails instead of going wrong.
     * A truncate before any write resizes the file in the guest. Close makes the data durable
     * and reports failures.
     */
    static final class Writer implements SeekableByteChannel {
        private final SandboxFs fs;
        private final String path;
        private final Integer mode;
        /** Whether closing without a write still leaves an empty file (new or truncated at open). */
        private final boolean replace;
        private final Truncator truncator;
        private OutputStream stream; // guarded by this
        /** One write at a time; the monitor is never held while a write waits for the guest. */
        private final java.util.concurrent.locks.ReentrantLock writing = new java.util.concurrent.locks.ReentrantLock();
        private volatile long position;
        private volatile boolean open = true;

        Writer(SandboxFs fs, String path, Integer mode, boolean replace, Truncator truncator) {
            this.fs = fs;
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
                int n = src.remaining();
                byte[] buf = new byte[n];
                src.get(buf);
                try {
                    // waits for the guest's credit without the monitor: a close from another thread is not held up
                    stream().write(buf);
                } catch (MicrosandboxException e) {
                    throw new IOException(path + ": " + e.getMessage(), e);
                }
                position += n;
                return n;
            } finally {
                writing.unlock();
            }
        }

        private synchronized OutputStream stream() throws IOException {
            if (stream == null) {
                try {
                    stream = fs.writeStream(path, mode);
                } catch (MicrosandboxException e) {
                    throw new IOException(path + ": " + e.getMessage(), e);
                }
            }
            return stream;
        }

        @Override
        public long position() {
            return position;
        }

        /** Only where the data ends so far: the guest file is written as one stream. */
        @Override
        public SeekableByteChannel position(long newPosition) throws IOException {
            if (newPosition != position) {
                throw new IOException(path + ": writes must go front to back (at " + position + ", asked for " + newPosition + ")");
            }
            return this;
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
                        truncator.truncate(size);
                    } else if (size < position) {
                        throw new IOException(path + ": cannot truncate a file being written below what was written");
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

        /** Ends the file; while a write waits for the guest on another thread, gives the file up and wakes that write. */
        @Override
        public void close() throws IOException {
            OutputStream s;
            synchronized (this) {
                if (!open) {
                    return;
                }
                open = false;
                if (stream == null && !replace) {
                    return; // an existing file opened and left alone
                }
                s = stream();
            }
            try {
                s.close();
            } catch (MicrosandboxException e) {
                throw new IOException(path + ": " + e.getMessage(), e);
            }
        }
    }
}

package io.microsandbox.ssh;

import java.io.IOException;
import java.nio.channels.Channel;
import java.nio.channels.SeekableByteChannel;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.attribute.FileAttribute;
import java.util.Set;
import org.apache.sshd.server.session.ServerSession;
import org.apache.sshd.sftp.common.SftpConstants;
import org.apache.sshd.sftp.common.SftpException;
import org.apache.sshd.sftp.server.FileHandle;
import org.apache.sshd.sftp.server.Handle;
import org.apache.sshd.sftp.server.SftpEventListener;
import org.apache.sshd.sftp.server.SftpFileSystemAccessor;
import org.apache.sshd.sftp.server.SftpSubsystemProxy;

/**
 * sshd's SFTP file access, adjusted to guest files: they open as {@link GuestChannels} (the
 * default wants a {@link java.nio.channels.FileChannel}), and an fsync has nothing to do
 * because a guest file is on disk once its write stream is closed.
 */
final class GuestSftpAccessor implements SftpFileSystemAccessor {

    /**
     * Opens {@code file}; an open for appending is refused ({@code SSH_FX_OP_UNSUPPORTED}):
     * sshd hands it over as a plain write and appends at the channel's size, which a guest
     * file's write stream, replacing the file from its start, would turn into a replacement
     * by the appended bytes alone.
     */
    @Override
    public SeekableByteChannel openFile(SftpSubsystemProxy subsystem, FileHandle fileHandle, Path file, String handle,
                                        Set<? extends OpenOption> options, FileAttribute<?>... attrs) throws IOException {
        if (fileHandle != null && fileHandle.isOpenAppend()) {
            throw new SftpException(SftpConstants.SSH_FX_OP_UNSUPPORTED,
                    file + ": appending is not supported (guest files are written whole); write the whole file instead");
        }
        return file.getFileSystem().provider().newByteChannel(file, options, attrs);
    }

    @Override
    public void syncFileData(SftpSubsystemProxy subsystem, FileHandle fileHandle, Path file, String handle, Channel channel) {
        // durable on close (SandboxFs.writeStream)
    }

    /**
     * Gives up the files of write handles still open when their SFTP session ends (the client
     * went away or dropped the channel mid-upload): sshd closes them next, which would
     * otherwise store the part received as the whole file. Only a client's own close stores it.
     */
    static final class UnclosedWrites implements SftpEventListener {
        @Override
        public void exiting(ServerSession session, Handle handle) {
            if (handle instanceof FileHandle file && file.getFileChannel() instanceof GuestChannels.Writer writer) {
                writer.giveUp("the SFTP session ended with the file still open");
            }
        }
    }
}

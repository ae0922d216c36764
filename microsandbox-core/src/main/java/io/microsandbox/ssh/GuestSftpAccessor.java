package io.microsandbox.ssh;

import java.io.IOException;
import java.nio.channels.Channel;
import java.nio.channels.SeekableByteChannel;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.attribute.FileAttribute;
import java.util.Set;
import org.apache.sshd.sftp.server.FileHandle;
import org.apache.sshd.sftp.server.SftpFileSystemAccessor;
import org.apache.sshd.sftp.server.SftpSubsystemProxy;

/**
 * sshd's SFTP file access, adjusted to guest files: they open as {@link GuestChannels} (the
 * default wants a {@link java.nio.channels.FileChannel}), and an fsync has nothing to do
 * because a guest file is on disk once its write stream is closed.
 */
final class GuestSftpAccessor implements SftpFileSystemAccessor {

    @Override
    public SeekableByteChannel openFile(SftpSubsystemProxy subsystem, FileHandle fileHandle, Path file, String handle,
                                        Set<? extends OpenOption> options, FileAttribute<?>... attrs) throws IOException {
        return file.getFileSystem().provider().newByteChannel(file, options, attrs);
    }

    @Override
    public void syncFileData(SftpSubsystemProxy subsystem, FileHandle fileHandle, Path file, String handle, Channel channel) {
        // durable on close (SandboxFs.writeStream)
    }
}

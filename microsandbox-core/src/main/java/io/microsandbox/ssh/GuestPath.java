package io.microsandbox.ssh;

import java.io.IOException;
import java.nio.file.LinkOption;
import java.util.List;
import org.apache.sshd.common.file.util.BasePath;

/** A path in a sandbox's guest filesystem, as {@link GuestFileSystem} hands it to sshd's SFTP subsystem. */
final class GuestPath extends BasePath<GuestPath, GuestFileSystem> {

    GuestPath(GuestFileSystem fs, String root, List<String> names) {
        super(fs, root, names);
    }

    /** The absolute, normalized guest path that SandboxFs operates on. */
    String guest() {
        return toAbsolutePath().normalize().toString();
    }

    /**
     * The absolute, normalized path, which must exist ({@code ..} is resolved lexically; links
     * are not resolved: the guest resolves them on every operation).
     */
    @Override
    public GuestPath toRealPath(LinkOption... options) throws IOException {
        GuestPath real = toAbsolutePath().normalize();
        getFileSystem().provider().checkAccess(real);
        return real;
    }
}

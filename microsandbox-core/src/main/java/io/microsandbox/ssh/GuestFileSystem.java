package io.microsandbox.ssh;

import io.microsandbox.SandboxFs;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.UserPrincipal;
import java.nio.file.attribute.UserPrincipalLookupService;
import java.util.List;
import java.util.Set;
import org.apache.sshd.common.file.util.BaseFileSystem;

/**
 * A sandbox's guest filesystem as a {@link java.nio.file.FileSystem}, for sshd's SFTP
 * subsystem: every operation goes through {@link SandboxFs} as the session's user (and
 * attribute changes through guest commands), so the guest enforces its own permissions.
 */
final class GuestFileSystem extends BaseFileSystem<GuestPath> {
    private final SandboxFs fs;
    private final String user;
    private final String home;
    private volatile boolean open = true;

    GuestFileSystem(GuestFileSystemProvider provider, SandboxFs fs, String user, String home) {
        super(provider);
        this.fs = fs;
        this.user = user;
        this.home = home;
    }

    SandboxFs fs() {
        return fs;
    }

    String user() {
        return user;
    }

    @Override
    public GuestFileSystemProvider provider() {
        return (GuestFileSystemProvider) super.provider();
    }

    /** Relative paths are relative to the user's home, as in an SSH login. */
    @Override
    public GuestPath getDefaultDir() {
        return getPath(home);
    }

    @Override
    protected GuestPath create(String root, List<String> names) {
        return new GuestPath(this, root, names);
    }

    @Override
    public void close() {
        open = false;
    }

    @Override
    public boolean isOpen() {
        return open;
    }

    @Override
    public Set<String> supportedFileAttributeViews() {
        return Set.of("basic", "posix", "owner", "unix");
    }

    /** Owners and groups by name or number; the guest resolves them when they are set. */
    @Override
    public UserPrincipalLookupService getUserPrincipalLookupService() {
        return new UserPrincipalLookupService() {
            @Override
            public UserPrincipal lookupPrincipalByName(String name) {
                return new GuestPrincipal(name);
            }

            @Override
            public GroupPrincipal lookupPrincipalByGroupName(String group) {
                return new GuestPrincipal(group);
            }
        };
    }

    /** A guest user or group, by name or numeric id. */
    record GuestPrincipal(String getName) implements UserPrincipal, GroupPrincipal {
        @Override
        public String toString() {
            return getName;
        }
    }
}

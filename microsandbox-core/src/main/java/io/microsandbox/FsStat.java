package io.microsandbox;

import java.time.Instant;

/**
 * What {@link SandboxFs#stat(String)} tells about a guest path (symbolic links followed;
 * {@link SandboxFs#lstat(String)} does not follow them).
 *
 * @param path     the guest path asked for
 * @param kind     file, directory, symlink (lstat only) or other
 * @param size     size in bytes
 * @param mode     permission bits, {@code 07777} at most
 * @param modified last modification time
 * @param uid      owner
 * @param gid      group
 * @param target   a symlink's target (lstat of a link), else null
 */
public record FsStat(String path, FsEntryKind kind, long size, int mode, Instant modified, int uid, int gid, String target) {
    public boolean isDir() {
        return kind == FsEntryKind.DIRECTORY;
    }

    public boolean isFile() {
        return kind == FsEntryKind.FILE;
    }

    public boolean isSymlink() {
        return kind == FsEntryKind.SYMLINK;
    }
}

package io.microsandbox;

import java.time.Instant;

/**
 * One entry of a guest directory, from {@link SandboxFs#list(String)}. Symbolic links are
 * not followed: a link is a {@link FsEntryKind#SYMLINK} with its {@code target}.
 *
 * @param path     the entry's guest path (the listed directory joined with the name)
 * @param name     the file name (bytes that are not UTF-8 are replaced)
 * @param kind     file, directory, symlink or other
 * @param size     size in bytes (of the link itself for a symlink)
 * @param mode     permission bits, {@code 07777} at most
 * @param modified last modification time
 * @param target   the link's target, or null when not a symlink
 */
public record FsEntry(String path, String name, FsEntryKind kind, long size, int mode, Instant modified, String target) {
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

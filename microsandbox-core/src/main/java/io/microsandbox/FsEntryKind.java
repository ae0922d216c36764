package io.microsandbox;

/** What a path in the guest is, as {@link SandboxFs#list} and {@link SandboxFs#stat} report it. */
public enum FsEntryKind {
    FILE, DIRECTORY, SYMLINK, OTHER;

    static FsEntryKind fromWire(String kind) {
        if (kind == null) {
            return OTHER;
        }
        return switch (kind) {
            case "file" -> FILE;
            case "directory" -> DIRECTORY;
            case "symlink" -> SYMLINK;
            default -> OTHER;
        };
    }
}

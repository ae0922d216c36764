package io.microsandbox;

import java.nio.file.Path;
import java.time.Instant;

/**
 * A named volume of a home: storage that outlives the sandboxes mounting it
 * ({@link Mount#named(String, MountOptions)}). Managed by {@link Volumes}.
 *
 * @param name      the volume's name
 * @param kind      a shared directory or an ext4 disk
 * @param sizeMib   the disk's size in MiB; null for a directory
 * @param path      where it lives on the host: the directory, or the disk image file
 * @param createdAt when it was created
 */
public record Volume(String name, Kind kind, Integer sizeMib, Path path, Instant createdAt) {
    /** What backs a volume. */
    public enum Kind {
        /** A host directory shared live with every sandbox that mounts it. */
        DIRECTORY,
        /** An ext4 image file of a fixed size (its quota); one writer at a time. */
        DISK
    }
}

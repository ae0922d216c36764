package io.microsandbox;

import java.nio.file.Path;
import java.time.Instant;

/**
 * A named volume of a home: storage that outlives the sandboxes mounting it
 * ({@link Mount#named(String, MountOptions)}). Managed by {@link Volumes} ({@link Microsandbox#volumes()});
 * the static methods here act on the default runtime, like {@link Snapshot}'s.
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

    /** Creates an empty directory volume in the default runtime's home ({@link Volumes#create}). */
    public static Volume create(String name) {
        return Microsandbox.defaultRuntime().volumes().create(name);
    }

    /** Creates an ext4 disk volume of {@code sizeMib} in the default runtime's home ({@link Volumes#createDisk}). */
    public static Volume createDisk(String name, int sizeMib) {
        return Microsandbox.defaultRuntime().volumes().createDisk(name, sizeMib);
    }

    /** The volume of the default runtime with this name ({@code VOLUME_NOT_FOUND} if none). */
    public static Volume get(String name) {
        return Microsandbox.defaultRuntime().volumes().get(name);
    }

    /** Every volume of the default runtime. */
    public static java.util.List<Volume> list() {
        return Microsandbox.defaultRuntime().volumes().list();
    }

    /** Deletes a volume of the default runtime ({@code VOLUME_IN_USE} while a sandbox mounts it). */
    public static void remove(String name) {
        Microsandbox.defaultRuntime().volumes().remove(name);
    }
}

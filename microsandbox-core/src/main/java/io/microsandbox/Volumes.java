package io.microsandbox;

import io.microsandbox.image.RootDisks;
import io.microsandbox.runtime.ClaimedDirectory;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxPreparer;
import io.microsandbox.store.SandboxRecord;
import io.microsandbox.store.SandboxStore;
import io.microsandbox.store.VolumeStore;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Optional;

/**
 * The named volumes of a home, recorded in its database and stored under
 * {@code <home>/volumes/<name>/}: {@code data/} for a directory volume, {@code disk.ext4}
 * for a disk volume.
 * <pre>{@code
 * Volumes volumes = runtime.volumes();
 * volumes.create("cache");                 // a directory, shared live
 * volumes.createDisk("pgdata", 1024);      // a 1 GiB ext4 disk: ENOSPC inside when full
 * SandboxConfig.builder().mount("/data", Mount.named("cache", MountOptions.defaults()));
 * volumes.remove("cache");                 // VOLUME_IN_USE while a sandbox mounts it
 * }</pre>
 */
public final class Volumes {
    private static final int MAX_NAME_LENGTH = 64;
    /** Smallest disk volume: ext4 with its journal needs a few MiB. */
    public static final int MIN_DISK_MIB = 8;

    private final Path home;

    private Volumes(Path home) {
        this.home = home;
    }

    /** The volumes of the default home. */
    public static Volumes local() {
        return new Volumes(RuntimeFiles.defaultHome());
    }

    /** The volumes of another home. */
    public static Volumes at(Path home) {
        return new Volumes(home);
    }

    /**
     * Creates an empty directory volume.
     *
     * @throws MicrosandboxException VOLUME_ALREADY_EXISTS, INVALID_ARGUMENT for a bad name
     */
    public Volume create(String name) {
        return create(name, Volume.Kind.DIRECTORY, null);
    }

    /**
     * Creates an empty ext4 disk volume of {@code sizeMib} MiB (a sparse file).
     *
     * @throws MicrosandboxException VOLUME_ALREADY_EXISTS, INVALID_ARGUMENT for a bad name or size
     */
    public Volume createDisk(String name, int sizeMib) {
        if (sizeMib < MIN_DISK_MIB) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, "a disk volume needs at least " + MIN_DISK_MIB + " MiB, got " + sizeMib);
        }
        return create(name, Volume.Kind.DISK, sizeMib);
    }

    private Volume create(String name, Volume.Kind kind, Integer sizeMib) {
        validateName(name);
        VolumeStore store = volumeStore();
        // the row first: it is what makes the name taken, for every process on the home
        store.insert(name, kind.name().toLowerCase(Locale.ROOT), sizeMib);
        Path dir = dir(name);
        try {
            SandboxPreparer.deleteTree(dir); // what a crashed creation or removal left
            ClaimedDirectory.sweepLeftovers(dir, null, ClaimedDirectory.LEFTOVER_AGE);
            OwnerOnly.directories(home, dir);
            if (kind == Volume.Kind.DIRECTORY) {
                OwnerOnly.directory(dir.resolve("data"));
            } else {
                RootDisks.createDataDisk(dir.resolve("disk.ext4"), sizeMib, "msb-vol");
            }
        } catch (IOException | RuntimeException e) {
            store.delete(name);
            SandboxPreparer.deleteTree(dir);
            if (e instanceof MicrosandboxException m) {
                throw m;
            }
            throw new MicrosandboxException(ErrorKind.IO, "cannot create volume '" + name + "': " + e.getMessage(), e);
        }
        return get(name);
    }

    /**
     * The volume named {@code name}.
     *
     * @throws MicrosandboxException VOLUME_NOT_FOUND
     */
    public Volume get(String name) {
        return find(name).orElseThrow(() -> new MicrosandboxException(ErrorKind.VOLUME_NOT_FOUND, "no volume named '" + name + "'"));
    }

    /**
     * The volume named {@code name} with its data in place, as a mount needs it.
     *
     * @throws MicrosandboxException VOLUME_NOT_FOUND, also when its data is missing (a creation
     *         or removal cut short, or a creation still under way in another process)
     */
    public Volume withData(String name) {
        Volume v = get(name);
        boolean there = v.kind() == Volume.Kind.DISK ? Files.isRegularFile(v.path(), java.nio.file.LinkOption.NOFOLLOW_LINKS)
                : Files.isDirectory(v.path(), java.nio.file.LinkOption.NOFOLLOW_LINKS);
        if (!there) {
            throw new MicrosandboxException(ErrorKind.VOLUME_NOT_FOUND, "volume '" + name + "' has no data at " + v.path()
                    + " (its creation or removal was cut short, or its creation is still under way); remove it and create it again");
        }
        return v;
    }

    /** The volume named {@code name}, if there is one. */
    public Optional<Volume> find(String name) {
        validateName(name);
        return volumeStore().find(name).map(this::toVolume);
    }

    /** Every volume, by name. */
    public List<Volume> list() {
        return volumeStore().list().stream().map(this::toVolume).toList();
    }

    /**
     * Deletes a volume and its data.
     *
     * @throws MicrosandboxException VOLUME_NOT_FOUND; VOLUME_IN_USE while a sandbox (running
     *         or stopped) mounts it: remove those sandboxes first
     */
    public void remove(String name) {
        get(name);
        requireUnused(name, usedBy(name));
        // the data leaves its name while the row still holds the name (no creation of it can
        // begin), then the row goes in one transaction with the check: a sandbox recorded
        // meanwhile either mounts it (the data comes back) or finds it gone
        Path dir = dir(name);
        Path aside = ClaimedDirectory.moveAside(dir); // null: a creation or removal cut short, the row alone
        List<String> users = volumeStore().deleteUnlessMounted(name, configJson -> mounts(configJson, name));
        if (!users.isEmpty()) {
            if (aside != null) {
                try {
                    Files.move(aside, dir, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
                } catch (IOException e) {
                    throw new MicrosandboxException(ErrorKind.IO, "cannot put volume '" + name + "' back from " + aside + ": " + e.getMessage(), e);
                }
            }
            requireUnused(name, users);
        }
        if (aside != null) {
            SandboxPreparer.deleteTree(aside);
        }
    }

    private static void requireUnused(String name, List<String> users) {
        if (!users.isEmpty()) {
            throw new MicrosandboxException(ErrorKind.VOLUME_IN_USE,
                    "volume '" + name + "' is mounted by sandbox(es) " + String.join(", ", users) + "; remove them first");
        }
    }

    /** The sandboxes whose configuration mounts the volume, by name. */
    public List<String> usedBy(String name) {
        List<String> users = new ArrayList<>();
        for (SandboxRecord r : SandboxStore.open(home).list(java.util.Map.of())) {
            if (mounts(r.configJson(), name)) {
                users.add(r.name());
            }
        }
        return users;
    }

    /** The volumes a sandbox configuration mounts by name: named mounts, and disk mounts naming a disk volume (no path). */
    static List<String> mountedBy(SandboxConfig config) {
        return config.mounts().values().stream()
                .filter(m -> m.kind() == Mount.Kind.NAMED || m.kind() == Mount.Kind.DISK && !m.source().startsWith("/"))
                .map(Mount::source).distinct().toList();
    }

    private static boolean mounts(String configJson, String volume) {
        try {
            return mountedBy(SandboxConfig.fromJson(configJson)).contains(volume);
        } catch (MicrosandboxException e) {
            return false; // an unreadable config cannot boot, so it mounts nothing
        }
    }

    /** Why {@code name} is no valid volume name, or null: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'. */
    public static String nameProblem(String name) {
        if (name == null || name.isEmpty() || name.length() > MAX_NAME_LENGTH || name.startsWith(".")
                || !name.matches("[A-Za-z0-9._-]+")) {
            return "volume name '" + name + "' must be 1 to " + MAX_NAME_LENGTH
                    + " letters, digits, '.', '_' or '-', not starting with '.'";
        }
        return null;
    }

    private static void validateName(String name) {
        String problem = nameProblem(name);
        if (problem != null) {
            throw new MicrosandboxException(ErrorKind.INVALID_ARGUMENT, problem);
        }
    }

    private Path dir(String name) {
        return home.resolve("volumes").resolve(name);
    }

    private VolumeStore volumeStore() {
        return VolumeStore.open(home);
    }

    private Volume toVolume(VolumeStore.Row row) {
        Volume.Kind kind = Volume.Kind.valueOf(row.kind().toUpperCase(Locale.ROOT));
        Path path = kind == Volume.Kind.DIRECTORY ? dir(row.name()).resolve("data") : dir(row.name()).resolve("disk.ext4");
        return new Volume(row.name(), kind, row.sizeMib(), path, row.createdAt());
    }
}

package io.microsandbox.image;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.HostCommand;
import io.microsandbox.runtime.OwnerOnly;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Locale;

/**
 * Disk-image roots: the user's qcow2, raw or vmdk file is the backing file of a qcow2 overlay
 * in the sandbox's directory ({@code root-overlay.qcow2}, made with {@code qemu-img create -b}),
 * and that overlay is the guest's lower disk. QEMU opens the user's file read-only as a
 * backing file and writes only to the overlay (the ext4 inside may replay its journal); the
 * guest's own writes go to its upper disk as with any image. The file is never modified,
 * and must be self-contained ({@link HostDiskImages}): checked at every start, as it may change.
 */
final class DiskImageRoots {
    private DiskImageRoots() {
    }

    static ImageRoots.Root overlay(Path home, String disk, Path sandboxDir, boolean fresh) {
        Path file;
        try {
            file = Path.of(disk).toRealPath();
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.IMAGE_NOT_FOUND, "disk image " + disk + " does not exist");
        }
        if (!Files.isRegularFile(file)) {
            throw new MicrosandboxException(ErrorKind.IMAGE_NOT_FOUND, "disk image " + disk + " is not a regular file");
        }
        String name = file.getFileName().toString().toLowerCase(Locale.ROOT);
        String format = name.endsWith(".qcow2") ? "qcow2" : name.endsWith(".vmdk") ? "vmdk" : "raw";
        String what = "disk image " + disk;
        HostDiskImages.requireOutsideHome(file, home, what, "use a file of your own");
        HostDiskImages.requireSelfContained(file, format, what);
        Path overlay = sandboxDir.resolve("root-overlay.qcow2");
        // one made over another file (the name now leads elsewhere) would hand the guest that one, unchecked
        if (fresh || !Files.isRegularFile(overlay) || !file.toString().equals(backingFileOf(overlay))) {
            try {
                // made aside and renamed: a run cut short leaves no overlay a later start would take as whole
                OwnerOnly.replace(overlay, sandboxDir.resolve("root-overlay.qcow2.part"), making ->
                        run(List.of(qemuImg(), "create", "-q", "-f", "qcow2", "-F", format, "-b", file.toString(), making.toString())));
            } catch (IOException e) {
                throw new MicrosandboxException(ErrorKind.IMAGE_NOT_FOUND, "cannot use the disk image " + disk + " (" + format + "): " + e.getMessage(), e);
            }
        }
        return new ImageRoots.Root(overlay, null, null, "qcow2", false);
    }

    /** The backing file named in the header of the qcow2 {@code overlay}; null when it names none or cannot be read. */
    static String backingFileOf(Path overlay) {
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(overlay, java.nio.file.StandardOpenOption.READ)) {
            java.nio.ByteBuffer header = java.nio.ByteBuffer.allocate(20);
            while (header.hasRemaining() && ch.read(header, header.position()) > 0) {
                // the header's first 20 bytes: magic, version, backing file offset and size
            }
            long offset = header.getLong(8);
            int size = header.getInt(16);
            if (header.hasRemaining() || offset <= 0 || size <= 0 || size > 4096) {
                return null;
            }
            java.nio.ByteBuffer name = java.nio.ByteBuffer.allocate(size);
            while (name.hasRemaining() && ch.read(name, offset + name.position()) > 0) {
                // the name, as qemu-img create wrote it
            }
            return name.hasRemaining() ? null : new String(name.array(), java.nio.charset.StandardCharsets.UTF_8);
        } catch (IOException e) {
            return null;
        }
    }

    static String qemuImg() {
        for (String dir : List.of("/usr/bin", "/usr/local/bin", "/bin")) {
            Path p = Path.of(dir, "qemu-img");
            if (Files.isExecutable(p)) {
                return p.toString();
            }
        }
        throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "qemu-img not found (package qemu-utils); run scripts/setup.sh");
    }

    private static void run(List<String> cmd) throws IOException {
        HostCommand.Result r = HostCommand.run(cmd, Duration.ofSeconds(60), 1 << 20);
        if (!r.succeeded()) {
            throw new IOException(r.output().strip());
        }
    }
}

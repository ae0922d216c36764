package io.microsandbox.image;

import com.fasterxml.jackson.databind.JsonNode;
import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.HostCommand;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.RuntimeFiles;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.List;

/**
 * Disk image files a user names on the host (a root disk image, a mounted disk), which QEMU
 * opens as the user running it. Such a file can name further host files in its own metadata
 * (a qcow2 backing or data file, a vmdk's extents or parent), which QEMU would open too and
 * hand to the guest: an image from elsewhere could so give the guest any host file. Only
 * self-contained images are taken, and none from the microsandbox home (another sandbox's disk).
 */
public final class HostDiskImages {
    private static final int QCOW2_MAGIC = 0x514649fb;
    private static final int QCOW2_HEADER_V2 = 72;
    private static final int QCOW2_HEADER_V3 = 104;
    /** Incompatible feature bit 2 of a qcow2 v3 header. */
    private static final long QCOW2_EXTERNAL_DATA_FILE = 1L << 2;

    private HostDiskImages() {
    }

    /**
     * Refuses an image (already resolved with {@code toRealPath}) that names another host file.
     *
     * @param format qcow2, vmdk or raw (raw holds no metadata)
     * @param what   how the message names it, for example {@code mount /data: disk image /x.qcow2}
     * @throws MicrosandboxException INVALID_CONFIG saying what the image names and how to flatten it
     */
    public static void requireSelfContained(Path file, String format, String what) {
        switch (format) {
            case "qcow2" -> qcow2(file, what);
            case "vmdk" -> vmdk(file, what);
            default -> {
                // raw: the bytes are the disk
            }
        }
    }

    /** Refuses an image inside {@code home}, whose disks belong to its sandboxes and volumes. */
    public static void requireOutsideHome(Path file, Path home, String what, String instead) {
        if (file.startsWith(RuntimeFiles.realHome(home))) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, what + " lies inside the microsandbox home " + home
                    + " (another sandbox's disk?); " + instead);
        }
    }

    private static void qcow2(Path file, String what) {
        ByteBuffer header = ByteBuffer.allocate(QCOW2_HEADER_V3);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            while (header.hasRemaining() && ch.read(header) > 0) {
                // read the header, a short one is checked below
            }
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, what + ": cannot read it: " + e.getMessage(), e);
        }
        header.flip();
        if (header.remaining() < QCOW2_HEADER_V2 || header.getInt(0) != QCOW2_MAGIC) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, what + " is named .qcow2 but is no qcow2 image");
        }
        if (header.getLong(8) != 0) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, what
                    + " has a backing file, which would let the guest read a host file the image names; flatten it first (qemu-img convert)");
        }
        boolean externalData = header.getInt(4) >= 3 && header.remaining() >= QCOW2_HEADER_V3
                && (header.getLong(72) & QCOW2_EXTERNAL_DATA_FILE) != 0;
        if (externalData) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, what
                    + " keeps its data in an external file, which would let the guest reach a host file the image names; convert it first (qemu-img convert)");
        }
    }

    /**
     * A vmdk is a descriptor naming extent files (a flat one names another file) and possibly a
     * parent: only one whose single extent is the file itself, without a parent, is taken.
     * {@code qemu-img info} reads the descriptor; it opens no extent and nothing of the guest.
     */
    private static void vmdk(Path file, String what) {
        JsonNode info;
        try {
            HostCommand.Result r = HostCommand.run(List.of(DiskImageRoots.qemuImg(), "info", "--output=json", "-f", "vmdk", file.toString()),
                    Duration.ofSeconds(60), 1 << 20);
            if (!r.succeeded()) {
                throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, what + " is no vmdk image QEMU can read: " + r.output().strip());
            }
            info = Json.parse(r.output());
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, what + ": cannot read it: " + e.getMessage(), e);
        }
        if (info.hasNonNull("backing-filename")) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, what + " names a parent disk (" + info.path("backing-filename").asText()
                    + "), which would let the guest read a host file the image names; flatten it first (qemu-img convert)");
        }
        JsonNode extents = info.path("format-specific").path("data").path("extents");
        for (JsonNode extent : extents) {
            String name = extent.path("filename").asText();
            if (!file.equals(file.resolveSibling(name).normalize()) && !file.getFileName().toString().equals(name)) {
                throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, what + " keeps its data in another file (" + name
                        + "), which would let the guest reach a host file the image names; convert it first (qemu-img convert -O qcow2)");
            }
        }
        if (extents.size() != 1) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, what + " has " + extents.size()
                    + " extents; only a single-file vmdk is taken: convert it first (qemu-img convert -O qcow2)");
        }
    }
}

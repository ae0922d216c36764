package io.microsandbox.runtime.vmm;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The read-only lower disk a QEMU command line opens, as the file its path named when QEMU was started.
 * A cached disk deleted and built again at the same path (an image prune, then a creation) is
 * another file with the same content but not the same layout: a guest that has read the old
 * one must not be checkpointed as if it ran over the new one, nor a VM started ahead over the
 * old one be adopted by a sandbox that names the new one.
 *
 * @param path          the disk's path on the command line
 * @param fileKey       the file system's key of the file (device and inode)
 * @param modifiedNanos its last modification time
 */
public record LowerDiskFile(Path path, String fileKey, long modifiedNanos) {
    private static final String LOWER_DRIVE = "id=lower,file=";

    /** The path of the lower disk {@code argv} opens (read-only or not), or null when it opens none. */
    public static Path pathIn(List<String> argv) {
        String drive = lowerDrive(argv);
        return drive == null ? null : pathOf(drive);
    }

    /**
     * The lower disk {@code argv} opens, as the file at its path is now; null when it opens no
     * lower disk or a writable one (a disk image's overlay, the sandbox's own).
     */
    public static LowerDiskFile of(List<String> argv) throws IOException {
        String drive = lowerDrive(argv);
        if (drive == null || !drive.endsWith(",readonly=on")) {
            return null;
        }
        return at(pathOf(drive));
    }

    /** The disk's path in the lower drive's option list. */
    private static Path pathOf(String drive) {
        return Path.of(unescapedValue(drive, LOWER_DRIVE.length()));
    }

    private static LowerDiskFile at(Path path) throws IOException {
        BasicFileAttributes attributes;
        try {
            attributes = Files.readAttributes(path, BasicFileAttributes.class);
        } catch (java.nio.file.NoSuchFileException e) {
            throw new IOException("the root disk " + path + " is missing", e);
        }
        return new LowerDiskFile(path, String.valueOf(attributes.fileKey()), attributes.lastModifiedTime().to(TimeUnit.NANOSECONDS));
    }

    /** Whether the file at {@link #path} is still this one (false when none is there). */
    public boolean isStillAtItsPath() {
        try {
            return equals(at(path));
        } catch (IOException e) {
            return false;
        }
    }

    private static String lowerDrive(List<String> argv) {
        for (int i = 0; i + 1 < argv.size(); i++) {
            if (argv.get(i).equals("-drive") && argv.get(i + 1).startsWith(LOWER_DRIVE)) {
                return argv.get(i + 1);
            }
        }
        return null;
    }

    /** The value starting at {@code from} in a QEMU option list, up to its first single comma, with doubled commas undone. */
    static String unescapedValue(String options, int from) {
        StringBuilder value = new StringBuilder();
        for (int i = from; i < options.length(); i++) {
            char c = options.charAt(i);
            if (c == ',') {
                if (i + 1 < options.length() && options.charAt(i + 1) == ',') {
                    i++;
                } else {
                    break;
                }
            }
            value.append(c);
        }
        return value.toString();
    }
}

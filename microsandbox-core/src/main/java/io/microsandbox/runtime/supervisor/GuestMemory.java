package io.microsandbox.runtime.supervisor;

import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.SparseFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The guest's RAM: a memfd the supervisor creates and hands QEMU as its fd
 * {@link Posix#PASSED_FD} ({@code QemuCommand.guestMemoryPassed}), which QEMU maps shared.
 * Owning it, the supervisor fills it from a checkpoint while QEMU starts rather than after,
 * and copies it into a checkpoint without searching QEMU's descriptors for it. A sandbox's
 * stays open as long as the supervisor runs (closing it early would let its number name
 * another file while a checkpoint reads it); its pages are freed once QEMU and the supervisor
 * are gone. Only a discarded pre-booted VM's is closed before ({@link #close}), at once: nothing reads it.
 */
final class GuestMemory {
    /** What {@code /proc/<pid>/fd} of QEMU and of the supervisor show it as. */
    private static final String NAME = "guest-memory";

    private final int fd;

    private GuestMemory(int fd) {
        this.fd = fd;
    }

    /** Guest memory of {@code size} bytes, all holes; 0 leaves the size to QEMU, which sets it to the guest's. */
    static GuestMemory create(long size) throws IOException {
        return new GuestMemory(Posix.memfdCreate(NAME, size));
    }

    /** Guest memory the size of a checkpoint's guest memory file, to {@link #fill} from it. */
    static GuestMemory sizedFor(Path ramFile) throws IOException {
        return create(Files.size(ramFile));
    }

    /** The descriptor to pass to QEMU. */
    int fd() {
        return fd;
    }

    /** The memory as a file to read and write: this process's descriptor, opened again. */
    Path file() {
        return Path.of("/proc/self/fd/" + fd);
    }

    /**
     * Frees the memory once no VM uses it and nothing will read it (a pre-booted VM that was
     * discarded): the pages a guest touched stay allocated as long as the descriptor is open.
     */
    void close() {
        Posix.close(fd);
    }

    /** Copies the data extents of a checkpoint's guest memory file in; its holes stay holes here. */
    void fill(Path ramFile) throws IOException {
        SparseFiles.copyInto(ramFile, file());
    }
}

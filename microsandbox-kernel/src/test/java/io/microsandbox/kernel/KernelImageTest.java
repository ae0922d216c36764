package io.microsandbox.kernel;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * The built kernel's image as the VMM loads it: every byte of its loadable segments goes into
 * each guest's memory (and into QEMU's copy of the image), so none of them may be huge-page
 * padding (patches/0004). A fragment that turned on page table isolation or the SRSO
 * mitigation would bring the padding back, and fail this on purpose.
 */
class KernelImageTest {
    private static final int PT_LOAD = 1;
    private static final int PAGE = 4096;
    /**
     * Longest run of pages of one repeated byte allowed in a loaded segment: the padding was
     * runs of 1.7 to 2 MiB; zero-filled tables of the kernel's own (its early page tables,
     * 256 KiB) stay below.
     */
    private static final int MAX_UNIFORM_RUN = 512 * 1024;

    @Test
    void theLoadedSegmentsHoldNoLongRunsOfPadding() throws IOException {
        ByteBuffer elf = vmlinux();
        List<String> runs = new ArrayList<>();
        long loaded = 0;
        long phoff = elf.getLong(0x20);
        int phentsize = Short.toUnsignedInt(elf.getShort(0x36));
        int phnum = Short.toUnsignedInt(elf.getShort(0x38));
        for (int i = 0; i < phnum; i++) {
            int ph = (int) (phoff + (long) i * phentsize);
            if (elf.getInt(ph) != PT_LOAD) {
                continue;
            }
            int offset = (int) elf.getLong(ph + 0x08);
            long physical = elf.getLong(ph + 0x18);
            int fileSize = (int) elf.getLong(ph + 0x20);
            loaded += fileSize;
            int runStart = 0;
            int runValue = -1;
            int pages = fileSize / PAGE;
            for (int page = 0; page <= pages; page++) {
                int value = page < pages ? uniformValue(elf, offset + page * PAGE) : -1;
                if (value != runValue || value < 0) {
                    if (runValue >= 0 && (page - runStart) * PAGE > MAX_UNIFORM_RUN) {
                        runs.add(String.format("%d KiB of 0x%02x at %#x", (page - runStart) * PAGE / 1024, runValue,
                                physical + (long) runStart * PAGE));
                    }
                    runStart = page;
                    runValue = value;
                }
            }
        }
        assertThat(loaded).as("bytes the VMM loads").isPositive();
        assertThat(runs).as("runs of one byte value the VMM would load into every guest").isEmpty();
    }

    /** The byte a page holds throughout, or -1. */
    private static int uniformValue(ByteBuffer elf, int at) {
        byte first = elf.get(at);
        for (int i = 1; i < PAGE; i++) {
            if (elf.get(at + i) != first) {
                return -1;
            }
        }
        return Byte.toUnsignedInt(first);
    }

    private ByteBuffer vmlinux() throws IOException {
        // the module's build ran build-kernel.sh before the tests: its image is on the class path
        try (InputStream in = getClass().getResourceAsStream("/io/microsandbox/kernel/linux-x86_64/vmlinux.gz")) {
            assertThat(in).isNotNull();
            byte[] image = new GZIPInputStream(in).readAllBytes();
            assertThat(image).startsWith(0x7f, 'E', 'L', 'F', 2);
            return ByteBuffer.wrap(image).order(ByteOrder.LITTLE_ENDIAN);
        }
    }
}

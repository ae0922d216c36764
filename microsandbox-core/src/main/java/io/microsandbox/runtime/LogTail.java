package io.microsandbox.runtime;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/** The last lines of a log file, for error messages: what the guest wrote there, with its escape sequences made harmless. */
public final class LogTail {
    private static final int MAX_BYTES = 16 * 1024;

    private LogTail() {
    }

    /** Up to {@code lines} last lines of {@code file}; empty when it does not exist. */
    public static String of(Path file, int lines) {
        if (!Files.isRegularFile(file)) {
            return "";
        }
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r")) {
            long length = raf.length(); // once: the file may change meanwhile
            long start = Math.max(0, length - MAX_BYTES);
            byte[] buf = new byte[(int) (length - start)];
            raf.seek(start);
            int read = raf.read(buf);
            String text = new String(buf, 0, Math.max(0, read), StandardCharsets.UTF_8).replace("\r", "");
            List<String> all = Arrays.asList(text.split("\n"));
            return Printable.lines(String.join("\n", all.subList(Math.max(0, all.size() - lines), all.size())).strip());
        } catch (IOException e) {
            return "(cannot read " + file + ": " + e.getMessage() + ")";
        }
    }
}

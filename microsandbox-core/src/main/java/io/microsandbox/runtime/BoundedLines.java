package io.microsandbox.runtime;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;

/**
 * Lines read from another process (QEMU's monitor, a supervisor's report, the creator's pipe),
 * never longer than the reader allows: a peer that sends no line end cannot grow the heap.
 */
public final class BoundedLines {
    private BoundedLines() {
    }

    /**
     * Reads one line, without its end ({@code \n} or {@code \r\n}), byte by byte (so nothing after it is consumed: pass a
     * buffered stream where that does not matter). Null at the end of the stream.
     *
     * @throws IOException when the line is longer than {@code maxBytes}, naming {@code peer}
     */
    public static String read(InputStream in, int maxBytes, String peer) throws IOException {
        ByteArrayOutputStream line = new ByteArrayOutputStream(128);
        int b;
        while ((b = in.read()) >= 0 && b != '\n') {
            if (line.size() == maxBytes) {
                throw new IOException(peer + " sent a line longer than " + maxBytes + " bytes");
            }
            line.write(b);
        }
        if (b < 0 && line.size() == 0) {
            return null;
        }
        String text = line.toString(StandardCharsets.UTF_8);
        return text.endsWith("\r") ? text.substring(0, text.length() - 1) : text;
    }
}

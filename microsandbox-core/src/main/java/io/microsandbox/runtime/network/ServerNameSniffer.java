package io.microsandbox.runtime.network;

import java.nio.charset.StandardCharsets;
import java.util.Locale;
import java.util.Optional;

/**
 * The name a client names in its first bytes: the SNI of a TLS ClientHello, or the Host header
 * of an HTTP/1 request. Input is the guest's: every read is bounds-checked.
 */
public final class ServerNameSniffer {
    /** How much of a connection's start is examined at most. */
    public static final int MAX_BYTES = 16 * 1024;

    /**
     * What the bytes so far tell: more are needed, a name was found, they name none (a whole
     * ClientHello without SNI, an HTTP request without Host, another protocol), or they begin a
     * TLS handshake whose name cannot be read within {@link #MAX_BYTES} (malformed, or padded
     * past it): a client that hides its name from the policy.
     */
    public enum State { NEED_MORE, FOUND, NONE, HIDDEN }

    /** The verdict on a connection's first bytes; {@code name} is lower case, without port or trailing dot. */
    public record Result(State state, Optional<String> name) {
        static final Result NEED_MORE = new Result(State.NEED_MORE, Optional.empty());
        static final Result NONE = new Result(State.NONE, Optional.empty());
        static final Result HIDDEN = new Result(State.HIDDEN, Optional.empty());

        static Result found(String name) {
            String n = name.trim().toLowerCase(Locale.ROOT);
            if (n.endsWith(".")) {
                n = n.substring(0, n.length() - 1);
            }
            // an address in Host names no domain
            return n.isEmpty() || InetLiterals.parse(n) != null ? NONE : new Result(State.FOUND, Optional.of(n));
        }
    }

    private ServerNameSniffer() {
    }

    public static Result sniff(byte[] b, int len) {
        if (len == 0) {
            return Result.NEED_MORE;
        }
        if ((b[0] & 0xff) == 0x16) {
            return tls(b, len);
        }
        return http(b, len);
    }

    /**
     * The ClientHello's SNI. The handshake message may be split over several records (TLS
     * allows it, servers accept it): their fragments are joined first, so a name past the first
     * record is still found.
     */
    private static Result tls(byte[] b, int len) {
        byte[] message = new byte[len];
        int messageLen = 0;
        int p = 0;
        while (true) {
            if (p + 5 > len) {
                return moreOrHidden(len);
            }
            if ((b[p] & 0xff) != 0x16 || (b[p + 1] & 0xff) != 3) {
                return p == 0 ? Result.NONE : Result.HIDDEN; // not TLS; or another record before the hello ended
            }
            int recordLen = u16(b, p + 3);
            if (recordLen == 0) {
                return Result.HIDDEN; // an empty handshake record is not allowed
            }
            int start = p + 5;
            int taken = Math.min(recordLen, len - start);
            System.arraycopy(b, start, message, messageLen, taken);
            messageLen += taken;
            if (messageLen >= 4) {
                if ((message[0] & 0xff) != 1) {
                    return Result.HIDDEN;
                }
                int end = 4 + ((message[1] & 0xff) << 16 | u16(message, 2));
                if (messageLen >= end) {
                    return clientHello(message, end);
                }
            }
            if (taken < recordLen) {
                return moreOrHidden(len);
            }
            p = start + recordLen;
        }
    }

    private static Result moreOrHidden(int len) {
        return len >= MAX_BYTES ? Result.HIDDEN : Result.NEED_MORE;
    }

    /** The SNI of the whole ClientHello message {@code m} (its 4-byte header first), which ends at {@code end}. */
    private static Result clientHello(byte[] m, int end) {
        int p = 4 + 2 + 32; // handshake header, version, random
        if (p + 1 > end) {
            return Result.HIDDEN;
        }
        p += 1 + (m[p] & 0xff); // session id
        if (p + 2 > end) {
            return Result.HIDDEN;
        }
        p += 2 + u16(m, p); // cipher suites
        if (p + 1 > end) {
            return Result.HIDDEN;
        }
        p += 1 + (m[p] & 0xff); // compression methods
        if (p == end) {
            return Result.NONE; // no extensions at all
        }
        if (p + 2 > end) {
            return Result.HIDDEN;
        }
        int extEnd = p + 2 + u16(m, p);
        if (extEnd > end) {
            return Result.HIDDEN;
        }
        p += 2;
        while (p + 4 <= extEnd) {
            int type = u16(m, p);
            int extLen = u16(m, p + 2);
            p += 4;
            if (p + extLen > extEnd) {
                return Result.HIDDEN;
            }
            if (type == 0) {
                if (extLen < 5 || (m[p + 2] & 0xff) != 0 || p + 5 + u16(m, p + 3) > p + extLen) {
                    return Result.HIDDEN;
                }
                return Result.found(new String(m, p + 5, u16(m, p + 3), StandardCharsets.US_ASCII));
            }
            p += extLen;
        }
        return p == extEnd ? Result.NONE : Result.HIDDEN;
    }

    private static Result http(byte[] b, int len) {
        // a request line starts with an upper-case method and a space
        int i = 0;
        while (i < len && i < 16 && b[i] >= 'A' && b[i] <= 'Z') {
            i++;
        }
        if (i == len && i < 16) {
            return Result.NEED_MORE;
        }
        if (i == 0 || i >= 16 || b[i] != ' ') {
            return Result.NONE;
        }
        String head = new String(b, 0, len, StandardCharsets.ISO_8859_1);
        int headerEnd = head.indexOf("\r\n\r\n");
        // only whole lines: a header may still be arriving
        String complete = headerEnd >= 0 ? head.substring(0, headerEnd) : head.substring(0, Math.max(0, head.lastIndexOf("\r\n")));
        String[] lines = complete.split("\r\n");
        for (int n = 1; n < lines.length; n++) {
            String line = lines[n];
            int colon = line.indexOf(':');
            if (colon > 0 && line.substring(0, colon).trim().equalsIgnoreCase("host")) {
                String host = line.substring(colon + 1).trim();
                if (host.startsWith("[")) {
                    int close = host.indexOf(']');
                    return close > 0 ? Result.found(host.substring(1, close)) : Result.NONE;
                }
                int port = host.indexOf(':');
                return Result.found(port >= 0 ? host.substring(0, port) : host);
            }
        }
        if (headerEnd >= 0 || len >= MAX_BYTES) {
            return Result.NONE; // a request without Host (HTTP/1.0)
        }
        return Result.NEED_MORE;
    }

    private static int u16(byte[] b, int p) {
        return ((b[p] & 0xff) << 8) | (b[p + 1] & 0xff);
    }
}

package io.microsandbox.runtime.network;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The little of DNS (RFC 1035) the host needs: a query's question, the addresses in an
 * answer, and error replies. Input comes from the guest or an upstream server: every read is
 * bounds-checked and a malformed message is an {@link IllegalArgumentException}.
 */
public final class DnsMessage {
    public static final int NXDOMAIN = 3;
    public static final int REFUSED = 5;
    public static final int SERVFAIL = 2;
    static final int TYPE_A = 1;
    static final int TYPE_AAAA = 28;

    /** A query's single question; {@code end} is where the question section ends. */
    public record Question(String name, int type, int end) {
    }

    private DnsMessage() {
    }

    /**
     * Whether {@code msg} is a standard query (QR clear, opcode QUERY): a response, an UPDATE or a
     * NOTIFY is never forwarded to the host's resolver under the host's identity.
     */
    public static boolean standardQuery(byte[] msg) {
        return msg.length >= 12 && (msg[2] & 0x80) == 0 && (msg[2] >> 3 & 0x0f) == 0;
    }

    public static Question question(byte[] msg) {
        if (msg.length < 12 || u16(msg, 4) != 1) {
            throw new IllegalArgumentException("not a DNS query with one question");
        }
        StringBuilder name = new StringBuilder();
        int p = readName(msg, 12, name, 0);
        if (p + 4 > msg.length) {
            throw new IllegalArgumentException("truncated question");
        }
        return new Question(name.toString().toLowerCase(Locale.ROOT), u16(msg, p), p + 4);
    }

    /** The A and AAAA addresses in an answer's answer section. */
    public static List<InetAddress> addresses(byte[] msg) {
        if (msg.length < 12) {
            throw new IllegalArgumentException("truncated DNS reply");
        }
        int p = 12;
        for (int q = u16(msg, 4); q > 0; q--) {
            p = readName(msg, p, null, 0) + 4;
        }
        List<InetAddress> out = new ArrayList<>();
        for (int a = u16(msg, 6); a > 0; a--) {
            p = readName(msg, p, null, 0);
            if (p + 10 > msg.length) {
                throw new IllegalArgumentException("truncated record");
            }
            int type = u16(msg, p);
            int len = u16(msg, p + 8);
            p += 10;
            if (p + len > msg.length) {
                throw new IllegalArgumentException("truncated record data");
            }
            if ((type == TYPE_A && len == 4) || (type == TYPE_AAAA && len == 16)) {
                try {
                    out.add(InetAddress.getByAddress(java.util.Arrays.copyOfRange(msg, p, p + len)));
                } catch (UnknownHostException e) {
                    throw new IllegalArgumentException(e);
                }
            }
            p += len;
        }
        return out;
    }

    /** The response code of a reply. */
    public static int rcode(byte[] msg) {
        return msg.length < 4 ? -1 : msg[3] & 0x0f;
    }

    /** A reply to {@code query} carrying only its question and {@code rcode}. */
    public static byte[] error(byte[] query, Question q, int rcode) {
        byte[] out = java.util.Arrays.copyOf(query, q.end());
        out[2] = (byte) (0x80 | (query[2] & 0x79)); // QR, the opcode and RD of the query
        out[3] = (byte) (0x80 | rcode);              // RA
        out[6] = out[7] = out[8] = out[9] = out[10] = out[11] = 0;
        return out;
    }

    private static int u16(byte[] b, int p) {
        if (p + 2 > b.length) {
            throw new IllegalArgumentException("truncated DNS message");
        }
        return ((b[p] & 0xff) << 8) | (b[p + 1] & 0xff);
    }

    /**
     * A label as the master-file format writes it: a dot or backslash in it escaped, a byte
     * outside printable ASCII as {@code \DDD}. A label {@code "api.example.com"} is one name,
     * not three labels: unescaped it would read as the allowed name it is not.
     */
    private static void appendLabel(StringBuilder out, byte[] msg, int from, int len) {
        for (int i = from; i < from + len; i++) {
            int b = msg[i] & 0xff;
            if (b == '.' || b == '\\') {
                out.append('\\').append((char) b);
            } else if (b <= 0x20 || b >= 0x7f) {
                out.append('\\').append(String.format("%03d", b));
            } else {
                out.append((char) b);
            }
        }
    }

    /** Reads a (possibly compressed) name at p, appending it to out; returns where it ends at p. */
    private static int readName(byte[] msg, int p, StringBuilder out, int depth) {
        int length = 0;
        while (true) {
            if (p >= msg.length) {
                throw new IllegalArgumentException("truncated name");
            }
            int len = msg[p] & 0xff;
            if (len == 0) {
                return p + 1;
            }
            if ((len & 0xc0) == 0xc0) {
                if (depth > 16) {
                    throw new IllegalArgumentException("name compression loop");
                }
                int target = u16(msg, p) & 0x3fff;
                if (out != null) {
                    readName(msg, target, out, depth + 1);
                }
                return p + 2;
            }
            if ((len & 0xc0) != 0 || p + 1 + len > msg.length || (length += len + 1) > 255) {
                throw new IllegalArgumentException("bad label");
            }
            if (out != null) {
                if (out.length() > 0) {
                    out.append('.');
                }
                appendLabel(out, msg, p + 1, len);
            }
            p += 1 + len;
        }
    }
}

package io.microsandbox.image.oci;

import java.io.ByteArrayOutputStream;
import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Base64;

/**
 * Keeps extended attribute values byte for byte. A PAX record's value is raw bytes for
 * {@code SCHILY.xattr.*} (GNU tar writes {@code security.capability} as binary), but
 * commons-compress decodes every PAX value as UTF-8, losing what is not UTF-8. This stream
 * sits between the layer and the tar reader and rewrites each PAX extended header
 * ({@code x}, {@code g} and Solaris' {@code X}): {@code SCHILY.xattr.NAME=<bytes>} becomes
 * {@code MSB.xattr64.NAME=<base64>}, which {@link #KEY} marks; the header's size and checksum
 * are redone. Every other block passes through untouched.
 */
final class PaxXattrs extends FilterInputStream {
    static final String KEY = "MSB.xattr64.";
    /** Extended headers larger than this are refused (xattrs of a few values, long names: far smaller). */
    static final int MAX_PAX_HEADER = 16 << 20;
    /** GNU long names and link targets larger than this are refused (a path has at most 4096 bytes). */
    static final int MAX_LONG_NAME = 64 << 10;
    private static final int BLOCK = 512;
    private final InputStream in;
    private byte[] pending = new byte[0];
    private int pos;
    /** Bytes of entry data (rounded to blocks) to pass through before the next header. */
    private long passThrough;
    private boolean ended;

    /**
     * Whether an image's extended attribute name may be used: in a namespace the kernel knows,
     * at most 255 bytes (its limit), printable ASCII without a space, quote or backslash. A name
     * from an untrusted layer ends up as a word of a {@code debugfs} script when the build runs
     * without root, where a newline or a quote would start a command of the image's choosing.
     */
    static boolean validName(String name) {
        if (name.isEmpty() || name.length() > 255
                || !(name.startsWith("user.") || name.startsWith("trusted.") || name.startsWith("security.") || name.startsWith("system."))) {
            return false;
        }
        for (int i = 0; i < name.length(); i++) {
            char c = name.charAt(i);
            if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\') {
                return false;
            }
        }
        return true;
    }

    PaxXattrs(InputStream in) {
        super(in);
        this.in = in;
    }

    @Override
    public int read() throws IOException {
        byte[] one = new byte[1];
        int n = read(one, 0, 1);
        return n < 0 ? -1 : one[0] & 0xff;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
        if (len == 0) {
            return 0;
        }
        if (pos < pending.length) {
            int n = Math.min(len, pending.length - pos);
            System.arraycopy(pending, pos, b, off, n);
            pos += n;
            return n;
        }
        if (passThrough > 0 || ended) {
            int n = in.read(b, off, (int) Math.min(len, ended ? len : passThrough));
            if (n > 0 && !ended) {
                passThrough -= n;
            }
            return n;
        }
        byte[] header = in.readNBytes(BLOCK);
        if (header.length < BLOCK) {
            ended = true;
            pending = header;
            pos = 0;
            return header.length == 0 ? -1 : read(b, off, len);
        }
        if (allZero(header)) {
            // end of archive: the rest passes as it is
            ended = true;
            pending = header;
            pos = 0;
            return read(b, off, len);
        }
        long size = octal(header, 124, 12);
        long padded = (size + BLOCK - 1) / BLOCK * BLOCK;
        char type = (char) header[156];
        if (size < 0) {
            throw new IOException("invalid size in a tar header");
        }
        // 'X' is the old Solaris spelling of 'x', which the tar reader takes as one too
        boolean pax = type == 'x' || type == 'g' || type == 'X';
        if (pax && size >= MAX_PAX_HEADER || (type == 'L' || type == 'K') && size > MAX_LONG_NAME) {
            // the tar reader takes these into memory whole: a layer of a few compressed bytes could fill the heap
            throw new IOException("a tar header entry (type '" + type + "') of " + size + " bytes");
        }
        if (pax) {
            byte[] data = in.readNBytes((int) padded);
            if (data.length < padded) {
                throw new IOException("truncated PAX header");
            }
            byte[] records = rewrite(data, (int) size);
            long newPadded = (records.length + BLOCK - 1) / BLOCK * BLOCK;
            writeOctal(header, 124, 12, records.length);
            checksum(header);
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            out.write(header);
            out.write(records);
            out.write(new byte[(int) (newPadded - records.length)]);
            pending = out.toByteArray();
        } else {
            pending = header;
            passThrough = padded;
        }
        pos = 0;
        return read(b, off, len);
    }

    /** Rewrites the "len key=value\n" records, base64-encoding xattr values. */
    static byte[] rewrite(byte[] data, int size) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        int p = 0;
        while (p < size) {
            int sp = p;
            while (sp < size && data[sp] != ' ') {
                sp++;
            }
            if (sp >= size) {
                break;
            }
            int len;
            try {
                len = Integer.parseInt(new String(data, p, sp - p, StandardCharsets.US_ASCII));
            } catch (NumberFormatException e) {
                throw new IOException("bad PAX record length");
            }
            if (len <= 0 || p + len > size) {
                throw new IOException("bad PAX record length " + len);
            }
            int eq = sp + 1;
            while (eq < p + len && data[eq] != '=') {
                eq++;
            }
            String key = new String(data, sp + 1, eq - sp - 1, StandardCharsets.UTF_8);
            if (key.startsWith("SCHILY.xattr.") && eq < p + len - 1) {
                byte[] value = java.util.Arrays.copyOfRange(data, eq + 1, p + len - 1); // without the newline
                String rec = KEY + key.substring("SCHILY.xattr.".length()) + "=" + Base64.getEncoder().encodeToString(value) + "\n";
                out.write(record(rec));
            } else {
                out.write(data, p, len);
            }
            p += len;
        }
        return out.toByteArray();
    }

    /** "len key=value\n" where len counts itself. */
    private static byte[] record(String body) {
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        int len = b.length + 2;
        while (Integer.toString(len).length() + 1 + b.length != len) {
            len = Integer.toString(len).length() + 1 + b.length;
        }
        return (len + " " + body).getBytes(StandardCharsets.UTF_8);
    }

    private static boolean allZero(byte[] b) {
        for (byte x : b) {
            if (x != 0) {
                return false;
            }
        }
        return true;
    }

    private static long octal(byte[] b, int off, int len) {
        if ((b[off] & 0x80) != 0) {
            // base-256 (GNU, for sizes of 8 GiB and more): big-endian, the flag bit cleared
            long v = b[off] & 0x7f;
            for (int i = off + 1; i < off + len; i++) {
                v = (v << 8) | (b[i] & 0xff);
            }
            return v;
        }
        long v = 0;
        for (int i = off; i < off + len; i++) {
            if (b[i] == 0 || b[i] == ' ') {
                if (v != 0) {
                    break;
                }
                continue;
            }
            if (b[i] < '0' || b[i] > '7') {
                return -1;
            }
            v = v * 8 + (b[i] - '0');
        }
        return v;
    }

    static void writeOctal(byte[] b, int off, int len, long v) {
        String s = String.format("%0" + (len - 1) + "o", v);
        byte[] d = s.getBytes(StandardCharsets.US_ASCII);
        System.arraycopy(d, 0, b, off, len - 1);
        b[off + len - 1] = 0;
    }

    static void checksum(byte[] h) {
        for (int i = 148; i < 156; i++) {
            h[i] = ' ';
        }
        long sum = 0;
        for (byte x : h) {
            sum += x & 0xff;
        }
        String s = String.format("%06o", sum);
        System.arraycopy(s.getBytes(StandardCharsets.US_ASCII), 0, h, 148, 6);
        h[154] = 0;
        h[155] = ' ';
    }
}

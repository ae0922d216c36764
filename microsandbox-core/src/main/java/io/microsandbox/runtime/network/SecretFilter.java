package io.microsandbox.runtime.network;

import io.microsandbox.Secret;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The guest-to-server byte stream of one connection, with secrets' placeholders dealt with
 * (docs/network.md, "Secrets"): HTTP/1.x request lines and headers are collected whole (at most
 * {@link #MAX_HEAD} bytes) and an allowed secret's placeholder in them is replaced by its value;
 * bodies (by {@code Content-Length} or chunked) pass unchanged, since a different length would
 * break their framing. Any placeholder that may not go where this connection goes, anywhere in
 * the stream, split across chunks or not, is a {@link SecretViolation}.
 *
 * <p>A secret is allowed on a connection when {@code host} (the TLS server name the upstream
 * certificate was verified for, or for plaintext a name the relay resolved to the address)
 * matches it, the request's {@code Host} header (when there is one) matches it too, and the
 * connection is TLS if the secret requires that. Not thread-safe: one writer per connection.
 */
final class SecretFilter {
    /** The largest request head collected; a longer one is passed on unreplaced (and still checked). */
    static final int MAX_HEAD = 64 * 1024;

    /** A placeholder went where its secret may not; names the secret, never its value. */
    static final class SecretViolation extends Exception {
        private final transient Secret secret;

        SecretViolation(Secret secret, String message) {
            super(message, null, false, false);
            this.secret = secret;
        }

        Secret secret() {
            return secret;
        }
    }

    private enum State { HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, TRAILERS, RAW }

    private final List<Secret> secrets;
    private final List<byte[]> placeholders = new ArrayList<>();
    private final List<String> hosts;
    private final boolean tls;
    private final int longest;
    private byte[] carry = new byte[0]; // the stream's last bytes, for placeholders split across chunks
    private State state = State.HEAD;
    private final ByteArrayOutputStream pending = new ByteArrayOutputStream(); // a head or chunk-size line being collected
    private long remaining; // body or chunk bytes still to pass
    private int lastFour; // the last bytes of the head being collected, to see its blank line
    private String requestHost; // the Host of the request whose body is passing

    /**
     * @param hosts the names this connection verifiably goes to (empty when none)
     * @param tls whether the stream is the plaintext of an intercepted TLS connection
     */
    SecretFilter(List<Secret> secrets, List<String> hosts, boolean tls) {
        this.secrets = List.copyOf(secrets);
        this.hosts = List.copyOf(hosts);
        this.tls = tls;
        int max = 0;
        for (Secret s : secrets) {
            byte[] p = s.placeholder().getBytes(StandardCharsets.US_ASCII);
            placeholders.add(p);
            max = Math.max(max, p.length);
        }
        this.longest = max;
    }

    private boolean allowedHere(Secret s, String requestHost) {
        if (s.requireTls() && !tls) {
            return false;
        }
        if (requestHost != null && !s.allows(stripPort(requestHost))) {
            return false;
        }
        return hosts.stream().anyMatch(s::allows);
    }

    private static String stripPort(String host) {
        if (host.startsWith("[")) {
            int end = host.indexOf(']');
            return end > 0 ? host.substring(1, end) : host;
        }
        int colon = host.lastIndexOf(':');
        return colon > 0 && host.indexOf(':') == colon ? host.substring(0, colon) : host;
    }

    /** The bytes to send for {@code data} (perhaps fewer, while a head is being collected). */
    byte[] filter(byte[] data) throws SecretViolation {
        ByteArrayOutputStream out = new ByteArrayOutputStream(data.length + 64);
        int i = 0;
        while (i < data.length) {
            switch (state) {
                case HEAD -> {
                    int end = -1;
                    for (int j = i; j < data.length; j++) {
                        pending.write(data[j]);
                        lastFour = (lastFour << 8) | (data[j] & 0xff);
                        if ((lastFour & 0xffff) == 0x0a0a || lastFour == 0x0d0a0d0a) {
                            end = j + 1;
                            break;
                        }
                        if (pending.size() > MAX_HEAD) {
                            end = j + 1;
                            break;
                        }
                    }
                    if (end < 0) {
                        i = data.length; // wait for the rest of the head
                        continue;
                    }
                    i = end;
                    byte[] head = pending.toByteArray();
                    pending.reset();
                    if (head.length > MAX_HEAD) {
                        check(head);
                        out.writeBytes(head);
                        state = State.RAW;
                        continue;
                    }
                    out.writeBytes(replaceInHead(head));
                }
                case BODY -> {
                    i += passCounted(data, i, out);
                    if (remaining == 0) {
                        state = State.HEAD;
                    }
                }
                case CHUNK_SIZE, TRAILERS -> {
                    byte b = data[i++];
                    pending.write(b);
                    out.write(b);
                    if (b == '\n') {
                        String line = pending.toString(StandardCharsets.US_ASCII).trim();
                        pending.reset();
                        if (state == State.TRAILERS) {
                            if (line.isEmpty()) {
                                state = State.HEAD;
                            }
                        } else {
                            long size = chunkSize(line);
                            if (size < 0) {
                                state = State.RAW;
                            } else if (size == 0) {
                                state = State.TRAILERS;
                            } else {
                                remaining = size + 2; // the data and its CRLF
                                state = State.CHUNK_DATA;
                            }
                        }
                    } else if (pending.size() > 1024) {
                        state = State.RAW; // not chunked framing we understand: pass on, still checked
                    }
                    check(new byte[] {b});
                }
                case CHUNK_DATA -> {
                    i += passCounted(data, i, out);
                    if (remaining == 0) {
                        state = State.CHUNK_SIZE;
                    }
                }
                case RAW -> {
                    byte[] rest = java.util.Arrays.copyOfRange(data, i, data.length);
                    check(rest);
                    out.writeBytes(rest);
                    i = data.length;
                }
            }
        }
        return out.toByteArray();
    }

    /** What is still held when the guest ends its side: an unfinished head, passed on as it is (checked). */
    byte[] finish() throws SecretViolation {
        if (state != State.HEAD || pending.size() == 0) {
            return new byte[0];
        }
        byte[] head = pending.toByteArray();
        pending.reset();
        check(head);
        return head;
    }

    private static long chunkSize(String line) {
        int semi = line.indexOf(';');
        String hex = (semi >= 0 ? line.substring(0, semi) : line).trim();
        if (hex.isEmpty() || hex.length() > 15) {
            return -1;
        }
        try {
            return Long.parseLong(hex, 16);
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    /** Replaces allowed placeholders in one request head and sets the state for its body. */
    private byte[] replaceInHead(byte[] head) throws SecretViolation {
        lastFour = 0;
        String text = new String(head, StandardCharsets.ISO_8859_1);
        requestHost = null;
        long contentLength = 0;
        boolean chunked = false;
        for (String line : text.split("\r?\n")) {
            int colon = line.indexOf(':');
            if (colon <= 0) {
                continue;
            }
            String field = line.substring(0, colon).trim().toLowerCase(Locale.ROOT);
            String v = line.substring(colon + 1).trim();
            switch (field) {
                case "host" -> requestHost = v;
                case "content-length" -> {
                    try {
                        contentLength = Long.parseLong(v);
                    } catch (NumberFormatException e) {
                        contentLength = -1;
                    }
                }
                case "transfer-encoding" -> chunked = v.toLowerCase(Locale.ROOT).contains("chunked");
                default -> {
                    // other fields do not frame the body
                }
            }
        }
        // what crosses from the last chunk into this head is checked with it
        checkAcrossCarry(head);
        for (Secret s : secrets) {
            if (!text.contains(s.placeholder())) {
                continue;
            }
            if (!allowedHere(s, requestHost)) {
                throw violation(s, requestHost);
            }
            text = text.replace(s.placeholder(), s.value());
        }
        if (chunked) {
            state = State.CHUNK_SIZE;
        } else if (contentLength > 0) {
            remaining = contentLength;
            state = State.BODY;
        } else if (contentLength < 0) {
            state = State.RAW;
        } else {
            state = State.HEAD;
        }
        carry = tail(head);
        return text.getBytes(StandardCharsets.ISO_8859_1);
    }

    /** Fails when a placeholder of a secret not allowed on this connection is in {@code data} (or spans into it). */
    /** Passes up to {@link #remaining} bytes of a body or chunk from {@code i}, checked for placeholders; returns how many. */
    private int passCounted(byte[] data, int i, ByteArrayOutputStream out) throws SecretViolation {
        int n = (int) Math.min(remaining, data.length - i);
        check(java.util.Arrays.copyOfRange(data, i, i + n));
        out.write(data, i, n);
        remaining -= n;
        return n;
    }

    private void check(byte[] data) throws SecretViolation {
        byte[] joined = new byte[carry.length + data.length];
        System.arraycopy(carry, 0, joined, 0, carry.length);
        System.arraycopy(data, 0, joined, carry.length, data.length);
        for (int k = 0; k < secrets.size(); k++) {
            Secret s = secrets.get(k);
            if (indexOf(joined, placeholders.get(k)) >= 0 && !allowedHere(s, requestHost)) {
                throw violation(s, requestHost);
            }
        }
        carry = tail(joined);
    }

    /** Only the spans a head shares with what came before (the head itself is checked per secret). */
    private void checkAcrossCarry(byte[] head) throws SecretViolation {
        int n = Math.min(head.length, Math.max(0, longest - 1));
        byte[] joined = new byte[carry.length + n];
        System.arraycopy(carry, 0, joined, 0, carry.length);
        System.arraycopy(head, 0, joined, carry.length, n);
        for (int k = 0; k < secrets.size(); k++) {
            int at = indexOf(joined, placeholders.get(k));
            if (at >= 0 && at < carry.length && !allowedHere(secrets.get(k), requestHost)) {
                throw violation(secrets.get(k), requestHost);
            }
        }
    }

    private byte[] tail(byte[] b) {
        int keep = Math.min(b.length, Math.max(0, longest - 1));
        return java.util.Arrays.copyOfRange(b, b.length - keep, b.length);
    }

    private SecretViolation violation(Secret s, String requestHost) {
        String where = requestHost != null ? "Host " + requestHost : hosts.isEmpty() ? "an unnamed host" : String.join(", ", hosts);
        String why = s.requireTls() && !tls && (requestHost == null || s.allows(stripPort(requestHost))) && hosts.stream().anyMatch(s::allows)
                ? " in plaintext (the secret requires TLS)" : "";
        return new SecretViolation(s, "the placeholder of secret " + s.name() + " was sent to " + where + why);
    }

    private static int indexOf(byte[] hay, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= hay.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (hay[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return i;
        }
        return -1;
    }
}

package io.microsandbox.runtime.network;

import io.microsandbox.Secret;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;

/**
 * The guest-to-server byte stream of one connection, read as HTTP/1 requests where it is: each
 * request's host is checked against the network policy, and secrets' placeholders are dealt
 * with (docs/network.md, "Domain rules" and "Secrets").
 *
 * <p>The host every request names (its absolute-form target, its {@code Host} fields) is put to
 * the {@link HostPolicy}, when there is one: a keep-alive or pipelined connection, or the
 * plaintext of an intercepted one, cannot name a denied host after the first bytes that the
 * connection was judged by. Once the stream is HTTP, a request this class cannot follow to its
 * end (a head over {@link #MAX_HEAD}, a body of ambiguous length, chunked framing it cannot read)
 * is a {@link Violation} under a host policy, since the request after it could not be seen.
 *
 * <p>An allowed secret's placeholder is replaced by its value in:
 * <ul>
 * <li>HTTP/1.x request lines and headers, collected whole (at most {@link #MAX_HEAD} bytes);
 * <li>{@code Content-Length} bodies of at most {@link #MAX_BODY} bytes: the head is held until
 *     the body is complete, then both go out with {@code Content-Length} set to the new length;
 * <li>chunked bodies, as they stream: each chunk is re-framed with the size of its replaced
 *     data, and the end of the data that may begin a placeholder is held back until the next
 *     chunk shows whether it does, so a placeholder split across chunks is found too;
 * <li>trailers of chunked bodies.
 * </ul>
 * Any placeholder that may not go where this connection goes, anywhere in the stream, split
 * across writes or chunks or not, is a {@link Violation}; so is an allowed placeholder in
 * a {@code Content-Length} body too large to hold, which passes unreplaced up to that point.
 *
 * <p>A secret is allowed on a connection when {@code host} (the TLS server name the upstream
 * certificate was verified for, or for plaintext a name the relay resolved to the address)
 * matches it, the request's {@code Host} header (when there is one) matches it too, and the
 * connection is TLS if the secret requires that. Not thread-safe: one writer per connection,
 * which calls {@link #close()} when the connection ends.
 */
final class RequestFilter implements AutoCloseable {
    /** The largest request head collected; a longer one is passed on unreplaced (and still checked). */
    static final int MAX_HEAD = 64 * 1024;
    /** The largest {@code Content-Length} body held to replace placeholders in; a larger one streams unreplaced. */
    static final int MAX_BODY = 1 << 20;
    /** What held bodies of all connections of a sandbox may take together: four of the largest. */
    static final long BODY_BUDGET = 4L * MAX_BODY;
    /** Chunk-size and trailer lines longer than this are not chunked framing we follow (the rest passes, checked). */
    private static final int MAX_LINE = 1024;
    // UNIX_LINES: only \n ends a header line, as in the parsing below (ISO-8859-1 decoding makes 0x85 a line end otherwise)
    private static final Pattern CONTENT_LENGTH = Pattern.compile("(?imd)^(content-length[ \\t]*:[ \\t]*)[0-9]+");
    private static final Pattern EXPECT_CONTINUE = Pattern.compile("(?imd)^expect[ \\t]*:[ \\t]*100-continue[ \\t]*\\r?\\n");

    /**
     * A placeholder went where its secret may not (naming the secret, never its value), or a
     * request named a host the policy denies ({@link #secret()} null).
     */
    static final class Violation extends Exception {
        private final transient Secret secret;

        Violation(Secret secret, String message) {
            super(message, null, false, false);
            this.secret = secret;
        }

        /** The secret whose placeholder went astray; null for a request the policy refuses. */
        Secret secret() {
            return secret;
        }
    }

    /** The network policy's say on the hosts one request names. */
    @FunctionalInterface
    interface HostPolicy {
        /**
         * Why a request naming {@code hosts} (lower case, without port or trailing dot, never an
         * address) may not go on this connection, or null when it may.
         */
        String refusal(List<String> hosts);
    }

    private enum State { HEAD, BODY_HELD, BODY_STREAMED, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, RAW }

    private final List<Secret> secrets;
    private final List<byte[]> placeholders = new ArrayList<>();
    private final List<byte[]> values = new ArrayList<>();
    private final List<String> hosts;
    private final boolean tls;
    private final AtomicLong bodyBudget;
    private final HostPolicy hostPolicy;
    private final int longest;
    private byte[] carry = new byte[0]; // the stream's last bytes, for placeholders split across writes
    private State state = State.HEAD;
    private final ByteArrayOutputStream pending = new ByteArrayOutputStream(); // a head or chunked-framing line being collected
    private long remaining; // body or chunk data bytes still to come
    private int lastFour; // the last bytes of the head being collected, to see its blank line
    /** Whether the head being collected has shown a whole request line: it is HTTP. */
    private boolean requestLineSeen;
    /** Whether a request went by: the stream is HTTP, and a line after it that is not a request line is not another protocol. */
    private boolean requestSeen;
    /** Whether the last request asked to switch protocols: what follows it may be another protocol. */
    private boolean afterUpgrade;
    /** A request line longer than this is not one (servers refuse 8 KiB and more): the stream is not HTTP. */
    private static final int MAX_REQUEST_LINE = 16 * 1024;
    /** The scheme of an absolute-form request target: any, since servers route by its authority whatever it is. */
    private static final java.util.regex.Pattern TARGET_SCHEME = java.util.regex.Pattern.compile("^[A-Za-z][A-Za-z0-9+.-]*://");
    /** {@code method SP target SP HTTP/d.d}, as servers read it (repeated spaces or tabs allowed). */
    private static final java.util.regex.Pattern REQUEST_LINE =
            java.util.regex.Pattern.compile("[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \\t]+\\S+[ \\t]+HTTP/\\d\\.\\d[ \\t]*\r?");
    private String requestHost; // the Host of the request whose body is passing
    private byte[] heldHead; // the head of the request whose body is held
    private byte[] heldBody; // that body, filled up to heldLength
    private int heldLength;
    private long reserved; // what heldBody took from bodyBudget
    private byte[] chunkTail = new byte[0]; // the end of the chunk data so far that may begin a placeholder
    private String chunkExtension = ""; // the current chunk's extension, for the first chunk sent for it

    /**
     * @param hosts the names this connection verifiably goes to (empty when none)
     * @param tls whether the stream is the plaintext of an intercepted TLS connection
     * @param bodyBudget bytes that held bodies may still take, shared by all connections of a sandbox:
     *     a body that does not fit streams as one over {@link #MAX_BODY} does
     * @param hostPolicy what each request's hosts are checked against; null when names do not matter
     */
    RequestFilter(List<Secret> secrets, List<String> hosts, boolean tls, AtomicLong bodyBudget, HostPolicy hostPolicy) {
        this.secrets = List.copyOf(secrets);
        this.hosts = List.copyOf(hosts);
        this.tls = tls;
        this.bodyBudget = bodyBudget;
        this.hostPolicy = hostPolicy;
        int max = 0;
        for (Secret s : secrets) {
            byte[] p = s.placeholder().getBytes(StandardCharsets.US_ASCII);
            placeholders.add(p);
            values.add(s.value().getBytes(StandardCharsets.UTF_8));
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

    /** The domain names a request names (its target's, its Host fields'), as the policy matches them. */
    private static List<String> namedHosts(String targetHost, List<String> hostFields) {
        java.util.stream.Stream<String> given = targetHost == null ? hostFields.stream()
                : java.util.stream.Stream.concat(java.util.stream.Stream.of(targetHost), hostFields.stream());
        // as the first bytes' names are read: an address names no domain (the connection's was judged already)
        return given.map(h -> ServerNameSniffer.Result.found(stripPort(h)).name()).flatMap(java.util.Optional::stream).distinct().toList();
    }

    /** A request whose end cannot be found: what follows it cannot be checked against the policy. */
    private static Violation unfollowable(String what) {
        return new Violation(null, "denied " + what + ": the requests after it could not be checked against the network policy");
    }

    private static String stripPort(String host) {
        if (host.startsWith("[")) {
            int end = host.indexOf(']');
            return end > 0 ? host.substring(1, end) : host;
        }
        // at the first colon, as servers cut it: "evil.test:1:2" is evil.test
        int colon = host.indexOf(':');
        return colon >= 0 ? host.substring(0, colon) : host;
    }

    /** The bytes to send for {@code data} (perhaps fewer, while a head or body is being collected). */
    byte[] filter(byte[] data) throws Violation {
        ByteArrayOutputStream out = new ByteArrayOutputStream(data.length + 64);
        int i = 0;
        while (i < data.length) {
            switch (state) {
                case HEAD -> {
                    int end = -1;
                    boolean notHttp = false;
                    for (int j = i; j < data.length; j++) {
                        pending.write(data[j]);
                        lastFour = (lastFour << 8) | (data[j] & 0xff);
                        if (!requestLineSeen && !(pending.size() <= 2 && (data[j] == '\r' || data[j] == '\n'))
                                && !looksLikeRequestLineSoFar(data[j])) {
                            // TLS to a bypassed name, SSH, SMTP, a database protocol: not a request line, so
                            // nothing to wait for; held back, they would never reach the server
                            notHttp = true;
                            end = j + 1;
                            break;
                        }
                        // a blank line as any server reads one: LF LF, CRLF CRLF, or LF CRLF
                        if ((lastFour & 0xffff) == 0x0a0a || (lastFour & 0xffffff) == 0x0a0d0a) {
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
                    requestLineSeen = false;
                    if (head.length > MAX_HEAD && hostPolicy != null) {
                        throw unfollowable("a request head over " + MAX_HEAD + " bytes");
                    }
                    if (notHttp && hostPolicy != null) {
                        if (head.length > MAX_REQUEST_LINE && lastByteText(head)) {
                            throw unfollowable("a request line over " + MAX_REQUEST_LINE + " bytes");
                        }
                        // another protocol may follow a switch to it; otherwise a server reading HTTP takes
                        // lines this does not take for requests (and the request after them would pass unseen)
                        if (requestSeen && !afterUpgrade) {
                            throw unfollowable("a line that is not a request line after a request");
                        }
                    }
                    if (head.length > MAX_HEAD || notHttp) {
                        check(head);
                        out.writeBytes(head);
                        state = State.RAW;
                        continue;
                    }
                    startRequest(head, out);
                }
                case BODY_HELD -> {
                    int n = (int) Math.min(remaining, data.length - i);
                    System.arraycopy(data, i, heldBody, heldLength, n);
                    heldLength += n;
                    i += n;
                    remaining -= n;
                    if (remaining == 0) {
                        sendHeldRequest(out);
                        state = State.HEAD;
                    }
                }
                case BODY_STREAMED -> {
                    int n = (int) Math.min(remaining, data.length - i);
                    byte[] piece = Arrays.copyOfRange(data, i, i + n);
                    checkStreamedBody(piece);
                    out.writeBytes(piece);
                    i += n;
                    remaining -= n;
                    if (remaining == 0) {
                        state = State.HEAD;
                    }
                }
                case CHUNK_SIZE, CHUNK_END, TRAILERS -> framingByte(data[i++], out);
                case CHUNK_DATA -> {
                    int n = (int) Math.min(remaining, data.length - i);
                    byte[] joined = new byte[chunkTail.length + n];
                    System.arraycopy(chunkTail, 0, joined, 0, chunkTail.length);
                    System.arraycopy(data, i, joined, chunkTail.length, n);
                    ByteArrayOutputStream replaced = new ByteArrayOutputStream(joined.length + 64);
                    chunkTail = replace(joined, replaced, false);
                    writeChunk(replaced.toByteArray(), out);
                    i += n;
                    remaining -= n;
                    if (remaining == 0) {
                        state = State.CHUNK_END;
                    }
                }
                case RAW -> {
                    byte[] rest = Arrays.copyOfRange(data, i, data.length);
                    check(rest);
                    out.writeBytes(rest);
                    i = data.length;
                }
            }
        }
        return out.toByteArray();
    }

    /**
     * What is still held when the guest ends its side: an unfinished head or held body passed on
     * as it is, the held-back end of chunk data as a chunk of its own (all checked).
     */
    byte[] finish() throws Violation {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        if (state == State.BODY_HELD) {
            // the request can no longer be whole: what came of it goes as it came
            byte[] body = Arrays.copyOf(heldBody, heldLength);
            check(heldHead);
            check(body);
            out.writeBytes(heldHead);
            out.writeBytes(body);
            close();
        }
        flushChunkTail(out);
        if (pending.size() > 0) {
            byte[] rest = pending.toByteArray();
            pending.reset();
            check(rest);
            out.writeBytes(rest);
        }
        state = State.RAW;
        return out.toByteArray();
    }

    /** Gives back what a held body took from the shared budget; for when the connection ends. */
    @Override
    public void close() {
        if (reserved > 0) {
            bodyBudget.addAndGet(reserved);
            reserved = 0;
        }
        heldHead = null;
        heldBody = null;
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

    /** Replaces allowed placeholders in one request head, and sends it or holds it with its body. */
    private void startRequest(byte[] head, ByteArrayOutputStream out) throws Violation {
        lastFour = 0;
        String text = new String(head, StandardCharsets.ISO_8859_1);
        requestHost = null;
        long contentLength = 0;
        boolean lengthSeen = false;
        boolean chunked = false;
        boolean upgrade = text.regionMatches(true, 0, "CONNECT ", 0, 8);
        String[] lines = text.split("\r?\n");
        int requestLineAt = 0; // servers skip blank lines before it
        while (requestLineAt < lines.length && lines[requestLineAt].isEmpty()) {
            requestLineAt++;
        }
        String requestLine = requestLineAt < lines.length ? lines[requestLineAt] : "";
        List<String> hostFields = new ArrayList<>(1);
        String contentLengthText = "";
        int transferEncodings = 0;
        boolean folded = false;
        for (int n = requestLineAt + 1; n < lines.length; n++) {
            String line = lines[n];
            // obs-fold: a server may join it to the field above (RFC 9112 5.2), giving it another value
            folded |= !line.isEmpty() && (line.charAt(0) == ' ' || line.charAt(0) == '\t');
            int colon = line.indexOf(':');
            if (colon <= 0) {
                continue;
            }
            String field = line.substring(0, colon).trim().toLowerCase(Locale.ROOT);
            String v = line.substring(colon + 1).trim();
            switch (field) {
                case "host" -> hostFields.add(v);
                case "content-length" -> {
                    long length = v.matches("[0-9]{1,18}") ? Long.parseLong(v) : -1;
                    // two different lengths: servers disagree on the framing, so we do not pick one
                    contentLength = lengthSeen && contentLength != length ? -1 : length;
                    contentLengthText = v;
                    lengthSeen = true;
                }
                case "transfer-encoding" -> {
                    chunked = v.toLowerCase(Locale.ROOT).contains("chunked");
                    transferEncodings++;
                }
                case "upgrade" -> upgrade = true;
                default -> {
                    // other fields do not frame the body
                }
            }
        }
        // the server takes the host from an absolute-form target over the Host field (RFC 9112
        // 3.2.2); two Host fields that differ name no host a secret could be allowed for
        String targetHost = absoluteTargetHost(requestLine);
        boolean hostsDiffer = hostFields.stream().map(h -> h.toLowerCase(Locale.ROOT)).distinct().count() > 1;
        requestHost = targetHost != null ? targetHost : hostsDiffer ? "" : hostFields.isEmpty() ? null : hostFields.get(hostFields.size() - 1);
        if (hostPolicy != null) {
            if (folded) {
                throw unfollowable("a request with a folded header line");
            }
            if (transferEncodings > 1) {
                throw unfollowable("a request with " + transferEncodings + " Transfer-Encoding fields");
            }
            if (requestLine.startsWith("PRI ")) {
                throw unfollowable("HTTP/2 in cleartext, whose requests name their hosts where they cannot be read here,");
            }
            List<String> named = namedHosts(targetHost, hostFields);
            String refusal = named.isEmpty() ? null : hostPolicy.refusal(named);
            if (refusal != null) {
                throw new Violation(null, refusal);
            }
            if (contentLength < 0 && !chunked) {
                throw unfollowable("a request whose body length is ambiguous (Content-Length " + contentLengthText + ")");
            }
        }
        // what crosses from the last body into this head is checked with it
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
        carry = tail(head);
        requestSeen = true;
        // after its body: another protocol, which the next bytes show (passed on as they come,
        // checked), or a refused upgrade's next request (read as any other)
        afterUpgrade = upgrade;
        if (chunked) {
            out.writeBytes(text.getBytes(StandardCharsets.ISO_8859_1));
            chunkTail = new byte[0];
            state = State.CHUNK_SIZE;
        } else if (!secrets.isEmpty() && contentLength > 0 && contentLength <= MAX_BODY && reserve(contentLength)) {
            // the client's wait for "100 Continue" would be for a head we send only with its body
            heldHead = EXPECT_CONTINUE.matcher(text).replaceAll("").getBytes(StandardCharsets.ISO_8859_1);
            heldBody = new byte[(int) contentLength];
            heldLength = 0;
            remaining = contentLength;
            state = State.BODY_HELD;
        } else {
            out.writeBytes(text.getBytes(StandardCharsets.ISO_8859_1));
            remaining = contentLength;
            state = contentLength > 0 ? State.BODY_STREAMED : contentLength < 0 ? State.RAW : State.HEAD;
        }
    }

    private boolean reserve(long bytes) {
        long left = bodyBudget.get();
        while (left >= bytes) {
            if (bodyBudget.compareAndSet(left, left - bytes)) {
                reserved = bytes;
                return true;
            }
            left = bodyBudget.get();
        }
        return false;
    }

    /** The held head and its whole body, placeholders replaced, {@code Content-Length} the new length when it changed. */
    private void sendHeldRequest(ByteArrayOutputStream out) throws Violation {
        byte[] body = heldBody;
        ByteArrayOutputStream replaced = new ByteArrayOutputStream(body.length + 64);
        replace(body, replaced, true);
        byte[] head = heldHead;
        if (replaced.size() != body.length) {
            String text = new String(head, StandardCharsets.ISO_8859_1);
            head = CONTENT_LENGTH.matcher(text).replaceAll("$1" + replaced.size()).getBytes(StandardCharsets.ISO_8859_1);
        }
        out.writeBytes(head);
        out.writeBytes(replaced.toByteArray());
        carry = tail(body);
        close();
    }

    /**
     * One byte of a chunk-size line, the line ending a chunk's data, or a trailer line; a whole
     * line is dealt with when its LF comes.
     */
    private void framingByte(byte b, ByteArrayOutputStream out) throws Violation {
        pending.write(b);
        boolean broken = pending.size() > MAX_LINE || state == State.CHUNK_END && b != '\r' && b != '\n';
        if (broken) {
            if (hostPolicy != null) {
                throw unfollowable("chunked framing that cannot be read");
            }
            // not chunked framing we follow: what is held goes out, the rest passes as it comes (checked)
            flushChunkTail(out);
            byte[] rest = pending.toByteArray();
            pending.reset();
            check(rest);
            out.writeBytes(rest);
            state = State.RAW;
            return;
        }
        if (b != '\n') {
            return;
        }
        byte[] line = pending.toByteArray();
        pending.reset();
        switch (state) {
            case CHUNK_END -> state = State.CHUNK_SIZE; // our chunks carry their own CRLF
            case TRAILERS -> {
                replace(line, out, true);
                if (new String(line, StandardCharsets.ISO_8859_1).isBlank()) {
                    state = State.HEAD;
                }
            }
            default -> {
                String text = new String(line, StandardCharsets.ISO_8859_1).trim();
                long size = chunkSize(text);
                check(line);
                if (size < 0) {
                    if (hostPolicy != null) {
                        throw unfollowable("a chunk size that cannot be read");
                    }
                    flushChunkTail(out);
                    out.writeBytes(line);
                    state = State.RAW;
                } else if (size == 0) {
                    flushChunkTail(out);
                    out.writeBytes(line);
                    state = State.TRAILERS;
                } else {
                    int semi = text.indexOf(';');
                    chunkExtension = semi >= 0 ? text.substring(semi) : "";
                    remaining = size;
                    state = State.CHUNK_DATA;
                }
            }
        }
    }

    /** {@code data} as one chunk (nothing for none: an empty chunk would end the body). */
    private void writeChunk(byte[] data, ByteArrayOutputStream out) {
        if (data.length == 0) {
            return;
        }
        out.writeBytes((Integer.toHexString(data.length) + chunkExtension + "\r\n").getBytes(StandardCharsets.ISO_8859_1));
        chunkExtension = "";
        out.writeBytes(data);
        out.writeBytes(new byte[] {'\r', '\n'});
    }

    private void flushChunkTail(ByteArrayOutputStream out) {
        writeChunk(chunkTail, out);
        chunkTail = new byte[0];
    }

    /**
     * Writes {@code data} with each placeholder replaced by its value, a violation for one not
     * allowed here. Unless {@code whole}, the end of {@code data} that may begin a placeholder is
     * not written but returned, to go before the data that follows.
     */
    private byte[] replace(byte[] data, ByteArrayOutputStream out, boolean whole) throws Violation {
        int pos = 0;
        while (true) {
            int at = -1;
            int which = -1;
            for (int k = 0; k < secrets.size(); k++) {
                int j = indexOf(data, placeholders.get(k), pos);
                if (j >= 0 && (at < 0 || j < at)) {
                    at = j;
                    which = k;
                }
            }
            if (at < 0) {
                break;
            }
            Secret s = secrets.get(which);
            if (!allowedHere(s, requestHost)) {
                throw violation(s, requestHost);
            }
            out.write(data, pos, at - pos);
            out.writeBytes(values.get(which));
            pos = at + placeholders.get(which).length;
        }
        int keep = whole ? 0 : placeholderStartAtEnd(data, pos);
        out.write(data, pos, data.length - pos - keep);
        return Arrays.copyOfRange(data, data.length - keep, data.length);
    }

    /** The length of the longest end of {@code data} (from {@code from} on) that a placeholder begins with. */
    private int placeholderStartAtEnd(byte[] data, int from) {
        for (int keep = Math.min(longest - 1, data.length - from); keep > 0; keep--) {
            for (byte[] p : placeholders) {
                if (keep < p.length && Arrays.equals(data, data.length - keep, data.length, p, 0, keep)) {
                    return keep;
                }
            }
        }
        return 0;
    }

    /**
     * A body not held passes unreplaced, so any placeholder in it is a violation: one allowed
     * here too. Sending it on unreplaced would have the server see a wrong credential and the
     * guest a puzzling refusal; reset and named in the log, the cause is plain.
     */
    private void checkStreamedBody(byte[] data) throws Violation {
        if (secrets.isEmpty()) {
            return;
        }
        byte[] joined = join(carry, data);
        for (int k = 0; k < secrets.size(); k++) {
            Secret s = secrets.get(k);
            if (indexOf(joined, placeholders.get(k), 0) >= 0) {
                if (!allowedHere(s, requestHost)) {
                    throw violation(s, requestHost);
                }
                throw new Violation(s, violation(s, requestHost).getMessage() + " in a request body too large to replace"
                        + " it in (over " + MAX_BODY + " bytes, or the sandbox's held bodies at their " + BODY_BUDGET + ")");
            }
        }
        carry = tail(joined);
    }

    /**
     * The host a request line names in its target, or null for origin form ({@code /path}) and
     * {@code *}: an absolute form's authority (any scheme), or an authority form's ({@code CONNECT
     * host:port}); "" when the line cannot be read, which no secret is allowed for.
     */
    static String absoluteTargetHost(String requestLine) {
        String[] parts = requestLine.strip().split("[ \t]+");
        if (parts.length < 2) {
            return "";
        }
        String target = parts[1];
        if (target.startsWith("/") || target.equals("*")) {
            return null;
        }
        java.util.regex.Matcher scheme = TARGET_SCHEME.matcher(target);
        String rest = scheme.find() ? target.substring(scheme.end()) : target;
        int end = rest.length();
        for (char c : new char[] {'/', '?', '#'}) {
            int at = rest.indexOf(c);
            if (at >= 0) {
                end = Math.min(end, at);
            }
        }
        String authority = rest.substring(0, end);
        return authority.substring(authority.lastIndexOf('@') + 1);
    }

    /**
     * Whether the head collected so far, {@code b} its last byte, may still be a request line:
     * no control or binary byte before its end, and, once its line ends, the shape of one.
     */
    private boolean looksLikeRequestLineSoFar(byte b) {
        if (b == '\n') {
            String text = pending.toString(StandardCharsets.ISO_8859_1).replaceFirst("^[\r\n]+", "");
            requestLineSeen = REQUEST_LINE.matcher(text.substring(0, text.length() - 1)).matches();
            return requestLineSeen;
        }
        // bytes past ASCII too: servers take them in a target (a path in UTF-8, say)
        return lastByteText(new byte[] {b}) && pending.size() <= MAX_REQUEST_LINE;
    }

    /** Whether the last byte of {@code bytes} is one a request line may hold: printable, a tab, CR, or past ASCII. */
    private static boolean lastByteText(byte[] bytes) {
        int b = bytes[bytes.length - 1] & 0xff;
        return b >= 0x20 && b != 0x7f || b == '\t' || b == '\r';
    }

    /** Fails when a placeholder of a secret not allowed on this connection is in {@code data} (or spans into it). */
    private void check(byte[] data) throws Violation {
        if (secrets.isEmpty()) {
            return;
        }
        byte[] joined = join(carry, data);
        for (int k = 0; k < secrets.size(); k++) {
            Secret s = secrets.get(k);
            if (indexOf(joined, placeholders.get(k), 0) >= 0 && !allowedHere(s, requestHost)) {
                throw violation(s, requestHost);
            }
        }
        carry = tail(joined);
    }

    /** Only the spans a head shares with what came before (the head itself is checked per secret). */
    private void checkAcrossCarry(byte[] head) throws Violation {
        if (secrets.isEmpty()) {
            return;
        }
        int n = Math.min(head.length, Math.max(0, longest - 1));
        byte[] joined = join(carry, Arrays.copyOf(head, n));
        for (int k = 0; k < secrets.size(); k++) {
            int at = indexOf(joined, placeholders.get(k), 0);
            if (at >= 0 && at < carry.length && !allowedHere(secrets.get(k), requestHost)) {
                throw violation(secrets.get(k), requestHost);
            }
        }
    }

    private static byte[] join(byte[] a, byte[] b) {
        byte[] joined = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, joined, a.length, b.length);
        return joined;
    }

    private byte[] tail(byte[] b) {
        int keep = Math.min(b.length, Math.max(0, longest - 1));
        return Arrays.copyOfRange(b, b.length - keep, b.length);
    }

    private Violation violation(Secret s, String requestHost) {
        String where = requestHost != null ? "Host " + requestHost : hosts.isEmpty() ? "an unnamed host" : String.join(", ", hosts);
        String why = s.requireTls() && !tls && (requestHost == null || s.allows(stripPort(requestHost))) && hosts.stream().anyMatch(s::allows)
                ? " in plaintext (the secret requires TLS)" : "";
        return new Violation(s, "the placeholder of secret " + s.name() + " was sent to " + where + why);
    }

    private static int indexOf(byte[] hay, byte[] needle, int from) {
        outer:
        for (int i = from; i + needle.length <= hay.length; i++) {
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

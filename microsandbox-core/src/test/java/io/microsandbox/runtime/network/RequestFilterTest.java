package io.microsandbox.runtime.network;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.Secret;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class RequestFilterTest {
    private static final Secret KEY = Secret.env("API_KEY", "real-value-123").allowHosts("api.test")
            .placeholder("PLACEHOLDER-KEY").requireTls(false).build();
    private static final Secret TLS_ONLY = Secret.env("TLS_KEY", "tls-value").allowHostPatterns("*.api.test")
            .placeholder("PLACEHOLDER-TLS").build();

    private static RequestFilter filter(List<Secret> secrets, String host, boolean tls) {
        return new RequestFilter(secrets, host == null ? List.of() : List.of(host), tls, new AtomicLong(RequestFilter.BODY_BUDGET), null);
    }

    /** What the filter sends for {@code stream} written {@code chunk} bytes at a time, then ended. */
    private static String run(RequestFilter f, String stream, int chunk) throws RequestFilter.Violation {
        byte[] in = stream.getBytes(StandardCharsets.ISO_8859_1);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (int i = 0; i < in.length; i += chunk) {
            out.writeBytes(f.filter(Arrays.copyOfRange(in, i, Math.min(in.length, i + chunk))));
        }
        out.writeBytes(f.finish());
        return out.toString(StandardCharsets.ISO_8859_1);
    }

    private static String run(String stream, int chunk) throws RequestFilter.Violation {
        return run(filter(List.of(KEY), "api.test", false), stream, chunk);
    }

    /**
     * The host a server takes is the one checked: an absolute-form target over the Host field,
     * a head ended by LF CRLF (nginx and Go end it there), and two Host fields that differ.
     */
    @Test
    void theHostCheckedIsTheHostTheServerTakes() throws Exception {
        assertThatThrownBy(() -> run("GET http://evil.test/ HTTP/1.1\r\nHost: api.test\r\nX-Key: PLACEHOLDER-KEY\r\n\r\n", 7))
                .isInstanceOf(RequestFilter.Violation.class);
        assertThat(run("GET http://api.test:8080/x HTTP/1.1\r\nHost: api.test\r\nX-Key: PLACEHOLDER-KEY\r\n\r\n", 7))
                .contains("X-Key: real-value-123");
        for (String evil : List.of("\r\nGET http://evil.test/ HTTP/1.1", "GET  http://evil.test/ HTTP/1.1", "GET ws://evil.test/ HTTP/1.1")) {
            assertThatThrownBy(() -> run(evil + "\r\nHost: api.test\r\nX-Key: PLACEHOLDER-KEY\r\n\r\n", 4))
                    .as(evil).isInstanceOf(RequestFilter.Violation.class);
        }
        // LF CRLF ends a head: the body after it is a body, sent whole, not a head held for ever
        assertThat(run("POST / HTTP/1.1\nHost: api.test\nContent-Length: 5\n\r\nhello", 2))
                .isEqualTo("POST / HTTP/1.1\nHost: api.test\nContent-Length: 5\n\r\nhello");
        assertThatThrownBy(() -> run("GET / HTTP/1.1\r\nHost: api.test\r\nHost: evil.test\r\nX-Key: PLACEHOLDER-KEY\r\n\r\n", 3))
                .isInstanceOf(RequestFilter.Violation.class);
        assertThat(RequestFilter.absoluteTargetHost("GET https://user@api.test:443/a?b HTTP/1.1")).isEqualTo("api.test:443");
        assertThat(RequestFilter.absoluteTargetHost("GET /a HTTP/1.1")).isNull();
        assertThat(RequestFilter.absoluteTargetHost("CONNECT api.test:443 HTTP/1.1")).isEqualTo("api.test:443");
    }

    /**
     * A stream that does not start with a request line (a TLS ClientHello to a bypassed name, an
     * SSH banner, a database's binary start) goes on at once: held back waiting for a blank line,
     * it never reached the server. A placeholder in it toward a host it is not for is still refused.
     */
    @Test
    void aStreamThatIsNotHttpPassesAtOnce() throws Exception {
        for (String line : List.of("SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", "EHLO client.test\r\n",
                "get some-key\r\n")) {
            RequestFilter plain = filter(List.of(KEY), "api.test", false);
            byte[] bytes = line.getBytes(StandardCharsets.US_ASCII);
            assertThat(plain.filter(bytes)).as(line).isEqualTo(bytes);
            byte[] more = {0, 0, 1, 0x14, 0x0a, 0x14};
            assertThat(plain.filter(more)).as(line).isEqualTo(more);
        }

        RequestFilter tls = filter(List.of(KEY), "api.test", false);
        byte[] hello = {0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x03};
        assertThat(tls.filter(hello)).isEqualTo(hello);

        RequestFilter redis = filter(List.of(KEY), "elsewhere.test", false);
        assertThatThrownBy(() -> redis.filter("*2\r\n$4\r\nAUTH\r\n$15\r\nPLACEHOLDER-KEY\r\n".getBytes(StandardCharsets.US_ASCII)))
                .isInstanceOf(RequestFilter.Violation.class);

        // a request line is still a request: its head is collected and replaced
        assertThat(run("\r\nGET / HTTP/1.1\r\nHost: api.test\r\nX-Key: PLACEHOLDER-KEY\r\n\r\n", 1)).contains("X-Key: real-value-123");
    }

    /**
     * {@code s} with each chunked body (from {@code start}) decoded into {@code <data|trailers>}:
     * fails on framing that is not valid, so re-framed chunks are checked as a server reads them.
     */
    private static String dechunk(String s) {
        StringBuilder out = new StringBuilder();
        int at = 0;
        while (true) {
            int te = s.indexOf("Transfer-Encoding: chunked\r\n", at);
            if (te < 0) {
                return out.append(s, at, s.length()).toString();
            }
            int body = s.indexOf("\r\n\r\n", te) + 4;
            out.append(s, at, body).append('<');
            int p = body;
            while (true) {
                int eol = s.indexOf("\r\n", p);
                String line = s.substring(p, eol);
                int size = Integer.parseInt(line.split(";")[0], 16);
                p = eol + 2;
                if (size == 0) {
                    int end = s.indexOf("\r\n\r\n", p - 2) + 4;
                    out.append('|').append(s, p, end - 2).append('>');
                    at = end;
                    break;
                }
                assertThat(size).as("a chunk is never empty before the last").isPositive();
                out.append(s, p, p + size);
                assertThat(s.substring(p + size, p + size + 2)).as("chunk data ends in CRLF").isEqualTo("\r\n");
                p += size + 2;
            }
        }
    }

    @Test
    void replacesInHeadsAndBodiesOfEveryRequestAtAnySplit() throws Exception {
        String two = "GET /a HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer PLACEHOLDER-KEY\r\n\r\n"
                + "POST /b HTTP/1.1\r\nHost: api.test:8080\r\nContent-Length: 20\r\nX-Key: PLACEHOLDER-KEY\r\n\r\n"
                + "body PLACEHOLDER-KEY"
                + "GET /c?k=PLACEHOLDER-KEY HTTP/1.1\r\nHost: api.test\r\n\r\n";
        String want = two.replace("PLACEHOLDER-KEY", "real-value-123").replace("Content-Length: 20", "Content-Length: 19");
        for (int chunk = 1; chunk <= two.length(); chunk++) {
            assertThat(run(two, chunk)).as("chunk size " + chunk).isEqualTo(want);
        }
    }

    @Test
    void aContentLengthBodyIsHeldReplacedAndItsLengthRewritten() throws Exception {
        String body = "{\"key\":\"PLACEHOLDER-KEY\",\"again\":\"PLACEHOLDER-KEY\",\"n\":1}";
        String s = "POST /v1 HTTP/1.1\r\nHost: api.test\r\ncontent-length:" + body.length()
                + "\r\nExpect: 100-continue\r\nContent-Type: application/json\r\n\r\n" + body;
        String newBody = body.replace("PLACEHOLDER-KEY", "real-value-123");
        String want = "POST /v1 HTTP/1.1\r\nHost: api.test\r\ncontent-length:" + newBody.length()
                + "\r\nContent-Type: application/json\r\n\r\n" + newBody;
        for (int chunk = 1; chunk <= s.length(); chunk++) {
            assertThat(run(s, chunk)).as("chunk size " + chunk).isEqualTo(want);
        }
        // nothing goes out before the body is whole: the head waits for the length it must carry
        RequestFilter f = filter(List.of(KEY), "api.test", false);
        assertThat(f.filter(s.substring(0, s.length() - 1).getBytes(StandardCharsets.ISO_8859_1))).isEmpty();
        assertThat(new String(f.filter(new byte[] {'}'}), StandardCharsets.ISO_8859_1)).isEqualTo(want);
        // a body without placeholders keeps its length
        String plain = "POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\r\nhello";
        assertThat(run(plain, 3)).isEqualTo(plain);
    }

    @Test
    void aChunkedBodyIsReplacedPerChunkEvenWithAPlaceholderSplitAcrossChunks() throws Exception {
        String s = "POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "9;ext=1\r\n{\"k\":\"PLA\r\n" + "e\r\nCEHOLDER-KEY\"}\r\n" + "3\r\nPLA\r\n" + "0\r\nX-Sig: PLACEHOLDER-KEY\r\n\r\n";
        // written at once: each chunk re-framed with its replaced size; "PLA" waits for what follows
        assertThat(run(s, s.length())).isEqualTo("POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "6;ext=1\r\n{\"k\":\"\r\n" + "10\r\nreal-value-123\"}\r\n" + "3\r\nPLA\r\n" + "0\r\nX-Sig: real-value-123\r\n\r\n");
        String decoded = "POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "<{\"k\":\"real-value-123\"}PLA|X-Sig: real-value-123\r\n>";
        for (int chunk = 1; chunk <= s.length(); chunk++) {
            assertThat(dechunk(run(s, chunk))).as("chunk size " + chunk).isEqualTo(decoded);
        }
    }

    @Test
    void aBodyOverTheCapStreamsUnreplacedAndAnAllowedPlaceholderInItIsAViolation() throws Exception {
        int size = RequestFilter.MAX_BODY + 1;
        String head = "POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Length: " + size + "\r\n\r\n";
        String filler = "x".repeat(size - 20);
        RequestFilter f = filter(List.of(KEY), "api.test", false);
        // passes as it comes, unheld
        assertThat(new String(f.filter((head + filler).getBytes(StandardCharsets.ISO_8859_1)), StandardCharsets.ISO_8859_1))
                .isEqualTo(head + filler);
        assertThat(f.filter("PLACEHOLDE".getBytes(StandardCharsets.US_ASCII))).as("half a placeholder passes")
                .isEqualTo("PLACEHOLDE".getBytes(StandardCharsets.US_ASCII));
        assertThatThrownBy(() -> f.filter("R-KEY12345".getBytes(StandardCharsets.US_ASCII)))
                .isInstanceOf(RequestFilter.Violation.class).hasMessageContaining("secret API_KEY")
                .hasMessageContaining("too large").hasMessageNotContaining("real-value");
        // without a placeholder it passes whole
        String plain = head + "y".repeat(size);
        assertThat(run(plain, 64 * 1024)).isEqualTo(plain);
        // the sandbox's budget for held bodies spent: a small body streams as a large one does
        RequestFilter starved = new RequestFilter(List.of(KEY), List.of("api.test"), false, new AtomicLong(10), null);
        String small = "POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 20\r\n\r\nbody PLACEHOLDER-KEY";
        assertThatThrownBy(() -> run(starved, small, 7)).isInstanceOf(RequestFilter.Violation.class)
                .hasMessageContaining("too large");
    }

    @Test
    void heldBodiesTakeFromTheSharedBudgetAndGiveItBack() throws Exception {
        AtomicLong budget = new AtomicLong(100);
        String s = "POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 60\r\n\r\n" + "z".repeat(59);
        RequestFilter a = new RequestFilter(List.of(KEY), List.of("api.test"), false, budget, null);
        a.filter(s.getBytes(StandardCharsets.ISO_8859_1));
        assertThat(budget.get()).isEqualTo(40);
        a.filter(new byte[] {'z'});
        assertThat(budget.get()).as("given back once sent").isEqualTo(100);
        RequestFilter b = new RequestFilter(List.of(KEY), List.of("api.test"), false, budget, null);
        b.filter(s.getBytes(StandardCharsets.ISO_8859_1));
        assertThat(budget.get()).isEqualTo(40);
        b.close();
        assertThat(budget.get()).as("given back when the connection ends mid-body").isEqualTo(100);
    }

    @Test
    void pipelinedRequestsWithBodiesOfBothKindsAreEachReplaced() throws Exception {
        String s = "POST /1 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 17\r\n\r\n[PLACEHOLDER-KEY]"
                + "POST /2 HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[PLAC\r\nb\r\nEHOLDER-KEY\r\n1\r\n]\r\n0\r\n\r\n"
                + "POST /3 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 15\r\n\r\nPLACEHOLDER-KEY"
                + "GET /4 HTTP/1.1\r\nHost: api.test\r\nA: PLACEHOLDER-KEY\r\n\r\n";
        String want = "POST /1 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 16\r\n\r\n[real-value-123]"
                + "POST /2 HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n<[real-value-123]|>"
                + "POST /3 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 14\r\n\r\nreal-value-123"
                + "GET /4 HTTP/1.1\r\nHost: api.test\r\nA: real-value-123\r\n\r\n";
        for (int chunk = 1; chunk <= s.length(); chunk++) {
            assertThat(dechunk(run(s, chunk))).as("chunk size " + chunk).isEqualTo(want);
        }
    }

    @Test
    void bodiesWhoseFramingIsInDoubtAreNotRewritten() throws Exception {
        // two different lengths: which one the server takes is its business, so no length is rewritten
        String two = "POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 15\r\nContent-Length: 20\r\n\r\nPLACEHOLDER-KEY";
        assertThat(run(two, 4)).isEqualTo(two);
        // the guest ends its side mid-body: the partial request goes as it came
        String cut = "POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 30\r\n\r\nPLACEHOLDER-KEY";
        AtomicLong budget = new AtomicLong(RequestFilter.BODY_BUDGET);
        assertThat(run(new RequestFilter(List.of(KEY), List.of("api.test"), false, budget, null), cut, 5)).isEqualTo(cut);
        assertThat(budget.get()).isEqualTo(RequestFilter.BODY_BUDGET);
    }

    @Test
    void passesTrafficWithoutPlaceholdersUnchanged() throws Exception {
        String s = "GET / HTTP/1.1\r\nHost: other.test\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                + "GET /x HTTP/1.0\n\n";
        assertThat(run(filter(List.of(KEY, TLS_ONLY), "other.test", false), s, s.length())).isEqualTo(s);
        for (int chunk : new int[] {1, 3, 7}) {
            // chunk data that arrives in pieces goes on in pieces: the same body, framed as it came
            assertThat(dechunk(run(filter(List.of(KEY, TLS_ONLY), "other.test", false), s, chunk))).isEqualTo(dechunk(s));
        }
    }

    /** A filter without secrets whose policy refuses evil.test, recording the hosts each request named. */
    private static RequestFilter policed(List<List<String>> asked) {
        return new RequestFilter(List.of(), List.of("good.test"), false, new AtomicLong(RequestFilter.BODY_BUDGET), hosts -> {
            asked.add(hosts);
            return hosts.contains("evil.test") ? "denied a request for " + String.join(", ", hosts) : null;
        });
    }

    /**
     * Every request of a connection is put to the policy, not only the first bytes the connection
     * was judged by: a keep-alive connection to an address an allowed and a denied site share
     * cannot switch to the denied one; hosts are named as the policy matches them.
     */
    @Test
    void eachRequestsHostsArePutToThePolicy() throws Exception {
        List<List<String>> asked = new java.util.ArrayList<>();
        String good = "GET / HTTP/1.1\r\nHost: good.test\r\n\r\nPOST / HTTP/1.1\r\nHost: good.test:8080\r\nContent-Length: 3\r\n\r\nabc"
                + "GET /x HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n";
        assertThat(run(policed(asked), good, 5)).isEqualTo(good);
        assertThat(asked).containsExactly(List.of("good.test"), List.of("good.test"));
        for (String evil : List.of("GET / HTTP/1.1\r\nHost: Evil.Test.:80\r\n\r\n", "GET http://evil.test/ HTTP/1.1\r\nHost: good.test\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: good.test\r\nHost: evil.test\r\n\r\n",
                // a refused upgrade's next request is a request like any other
                "GET / HTTP/1.1\r\nHost: good.test\r\nUpgrade: x\r\n\r\nGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")) {
            RequestFilter f = policed(asked);
            assertThat(f.filter(good.getBytes(StandardCharsets.ISO_8859_1))).hasSize(good.length());
            assertThatThrownBy(() -> run(f, evil, 3)).as(evil).isInstanceOf(RequestFilter.Violation.class)
                    .hasMessageContaining("evil.test").satisfies(v -> assertThat(((RequestFilter.Violation) v).secret()).isNull());
            assertThat(asked.get(asked.size() - 1)).as(evil).contains("evil.test");
        }
        assertThat(asked).contains(List.of("good.test", "evil.test"));
        // the body of a request is not held when there is no secret to replace in it
        RequestFilter f = policed(new java.util.ArrayList<>());
        String head = "POST / HTTP/1.1\r\nHost: good.test\r\nContent-Length: 10\r\n\r\n";
        assertThat(new String(f.filter((head + "hel").getBytes(StandardCharsets.ISO_8859_1)), StandardCharsets.ISO_8859_1)).isEqualTo(head + "hel");
    }

    /**
     * What servers take as requests is read as requests (a target past ASCII, a blank after the
     * version), and what they read otherwise than this filter would is refused: a line that is
     * not a request line after a request, an upgrade's body read as a head, a Host cut at its
     * first colon, folded header lines, HTTP/2 in cleartext. Each would let the next request
     * (for evil.test) pass unchecked; another protocol after a switch still passes.
     */
    @Test
    void aPolicedStreamCannotBeMadeToLoseTrackOfItsRequests() throws Exception {
        String good = "GET / HTTP/1.1\r\nHost: good.test\r\n\r\n";
        String evil = "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n";
        for (String odd : List.of("GET /\u00e9t\u00e9 HTTP/1.1\r\nHost: good.test\r\n\r\n", "GET / HTTP/1.1 \r\nHost: good.test\r\n\r\n",
                "x\u0000y\r\n", "POST / HTTP/1.1\r\nHost: good.test\r\nUpgrade: x\r\nContent-Length: 1\r\n\r\n\u0000",
                "POST / HTTP/1.1\r\nHost: good.test\r\nUpgrade: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n\u0000\r\n0\r\n\r\n")) {
            assertThatThrownBy(() -> run(policed(new java.util.ArrayList<>()), good + odd + evil, 7)).as(odd)
                    .isInstanceOf(RequestFilter.Violation.class);
        }
        for (String refused : List.of("GET / HTTP/1.1\r\nHost: evil.test:1:2\r\n\r\n", "GET / HTTP/1.1\r\nX: a\r\n Host: evil.test\r\nHost: good.test\r\n\r\n",
                "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")) {
            assertThatThrownBy(() -> run(policed(new java.util.ArrayList<>()), refused, 4096)).as(refused)
                    .isInstanceOf(RequestFilter.Violation.class);
        }
        // a request line over the limit is not another protocol either
        assertThatThrownBy(() -> run(policed(new java.util.ArrayList<>()), "GET /" + "a".repeat(20_000) + " HTTP/1.1\r\n\r\n", 4096))
                .isInstanceOf(RequestFilter.Violation.class);
        // a switch to another protocol: its bytes pass; an upgrade's body is not held for a line end
        RequestFilter ws = policed(new java.util.ArrayList<>());
        String upgrade = "GET /ws HTTP/1.1\r\nHost: good.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assertThat(ws.filter(upgrade.getBytes(StandardCharsets.ISO_8859_1))).hasSize(upgrade.length());
        byte[] frame = {(byte) 0x81, 0x02, 'h', 'i'};
        assertThat(ws.filter(frame)).isEqualTo(frame);
        String h2c = "POST / HTTP/1.1\r\nHost: good.test\r\nUpgrade: h2c\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        assertThat(new String(filter(List.of(KEY), "good.test", false).filter(h2c.getBytes(StandardCharsets.ISO_8859_1)),
                StandardCharsets.ISO_8859_1)).isEqualTo(h2c);
    }

    /**
     * Under a policy, a request the filter cannot follow to its end is refused: the request after
     * it would pass unseen. A stream that never was HTTP still passes (its first bytes were judged).
     */
    @Test
    void aRequestThatCannotBeFollowedIsRefusedUnderAPolicy() throws Exception {
        String huge = "GET / HTTP/1.1\r\nHost: good.test\r\nX: " + "a".repeat(RequestFilter.MAX_HEAD) + "\r\n\r\n";
        String twoLengths = "POST / HTTP/1.1\r\nHost: good.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
        String badChunk = "POST / HTTP/1.1\r\nHost: good.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        for (String s : List.of(huge, twoLengths, badChunk)) {
            assertThatThrownBy(() -> run(policed(new java.util.ArrayList<>()), s, 4096)).isInstanceOf(RequestFilter.Violation.class)
                    .hasMessageContaining("could not be checked against the network policy");
            assertThat(run(filter(List.of(KEY), "api.test", false), s, 4096)).as("without a policy").isEqualTo(s);
        }
        String ssh = "SSH-2.0-OpenSSH_9.2\r\nGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n";
        assertThat(run(policed(new java.util.ArrayList<>()), ssh, 4096)).isEqualTo(ssh);
    }

    @Test
    void whatFollowsAnUpgradeIsNotHeldAsAHead() throws Exception {
        String s = "GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX: PLACEHOLDER-KEY\r\n\r\n";
        RequestFilter f = filter(List.of(KEY), "api.test", false);
        assertThat(new String(f.filter(s.getBytes(StandardCharsets.ISO_8859_1)), StandardCharsets.ISO_8859_1))
                .isEqualTo(s.replace("PLACEHOLDER-KEY", "real-value-123"));
        byte[] frame = {(byte) 0x81, 0x02, 'h', 'i'};
        assertThat(f.filter(frame)).isEqualTo(frame);
    }

    @Test
    void aPlaceholderTowardAnotherHostIsAViolationEvenSplitAcrossChunks() {
        String s = "GET / HTTP/1.1\r\nHost: evil.test\r\nAuthorization: PLACEHOLDER-KEY\r\n\r\n";
        for (int chunk : new int[] {1, 4, 100}) {
            assertThatThrownBy(() -> run(filter(List.of(KEY), "evil.test", false), s, chunk))
                    .isInstanceOf(RequestFilter.Violation.class).hasMessageContaining("secret API_KEY")
                    .hasMessageNotContaining("real-value");
        }
        // the connection goes to an allowed name, but the request names another
        assertThatThrownBy(() -> run(filter(List.of(KEY), "api.test", false), s, 9))
                .isInstanceOf(RequestFilter.Violation.class).hasMessageContaining("Host evil.test");
        assertThatThrownBy(() -> run(filter(List.of(KEY), null, false), "garbage PLACEHOLDER-KEY", 2))
                .isInstanceOf(RequestFilter.Violation.class);
    }

    @Test
    void aPlaceholderInABodyTowardAnotherHostIsAViolationAndNothingOfTheRequestGoesOut() throws Exception {
        String body = "POST / HTTP/1.1\r\nHost: evil.test\r\nContent-Length: 20\r\n\r\nxxxxxPLACEHOLDER-KEY";
        for (int chunk : new int[] {1, 3, body.length()}) {
            RequestFilter f = filter(List.of(KEY), "evil.test", false);
            ByteArrayOutputStream sent = new ByteArrayOutputStream();
            byte[] in = body.getBytes(StandardCharsets.ISO_8859_1);
            assertThatThrownBy(() -> {
                for (int i = 0; i < in.length; i += chunk) {
                    sent.writeBytes(f.filter(Arrays.copyOfRange(in, i, Math.min(in.length, i + chunk))));
                }
            }).isInstanceOf(RequestFilter.Violation.class).hasMessageContaining("Host evil.test");
            assertThat(sent.size()).as("the held head never went out").isZero();
        }
        String chunked = "POST / HTTP/1.1\r\nHost: evil.test\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nPLAC\r\nb\r\nEHOLDER-KEY\r\n0\r\n\r\n";
        for (int chunk : new int[] {1, 5, chunked.length()}) {
            assertThatThrownBy(() -> run(filter(List.of(KEY), "evil.test", false), chunked, chunk))
                    .isInstanceOf(RequestFilter.Violation.class).hasMessageContaining("secret API_KEY");
        }
        // requireTls holds for bodies as for heads
        String tlsBody = "POST / HTTP/1.1\r\nHost: x.api.test\r\nContent-Length: 15\r\n\r\nPLACEHOLDER-TLS";
        assertThatThrownBy(() -> run(filter(List.of(TLS_ONLY), "x.api.test", false), tlsBody, 4))
                .isInstanceOf(RequestFilter.Violation.class).hasMessageContaining("plaintext");
        assertThat(run(filter(List.of(TLS_ONLY), "x.api.test", true), tlsBody, 4)).endsWith("Content-Length: 9\r\n\r\ntls-value");
    }

    @Test
    void requireTlsRefusesPlaintextAndAllowsIntercepted() throws Exception {
        String s = "GET / HTTP/1.1\r\nHost: x.api.test\r\nAuthorization: PLACEHOLDER-TLS\r\n\r\n";
        assertThatThrownBy(() -> run(filter(List.of(TLS_ONLY), "x.api.test", false), s, 6))
                .isInstanceOf(RequestFilter.Violation.class).hasMessageContaining("plaintext");
        assertThat(run(filter(List.of(TLS_ONLY), "x.api.test", true), s, 6)).contains("Authorization: tls-value");
        // the pattern is for subdomains only
        assertThatThrownBy(() -> run(filter(List.of(TLS_ONLY), "api.test", true),
                s.replace("x.api.test", "api.test"), 6)).isInstanceOf(RequestFilter.Violation.class);
    }
}

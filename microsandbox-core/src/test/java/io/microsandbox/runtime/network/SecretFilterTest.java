package io.microsandbox.runtime.network;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.Secret;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

class SecretFilterTest {
    private static final Secret KEY = Secret.env("API_KEY", "real-value-123").allowHosts("api.test")
            .placeholder("PLACEHOLDER-KEY").requireTls(false).build();
    private static final Secret TLS_ONLY = Secret.env("TLS_KEY", "tls-value").allowHostPatterns("*.api.test")
            .placeholder("PLACEHOLDER-TLS").build();

    private static String run(SecretFilter f, String stream, int chunk) throws SecretFilter.SecretViolation {
        byte[] in = stream.getBytes(StandardCharsets.ISO_8859_1);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (int i = 0; i < in.length; i += chunk) {
            out.writeBytes(f.filter(java.util.Arrays.copyOfRange(in, i, Math.min(in.length, i + chunk))));
        }
        out.writeBytes(f.finish());
        return out.toString(StandardCharsets.ISO_8859_1);
    }

    @Test
    void replacesInHeadersOfEveryRequestAtAnySplit() throws Exception {
        String two = "GET /a HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer PLACEHOLDER-KEY\r\n\r\n"
                + "POST /b HTTP/1.1\r\nHost: api.test:8080\r\nContent-Length: 20\r\nX-Key: PLACEHOLDER-KEY\r\n\r\n"
                + "body PLACEHOLDER-KEY"
                + "GET /c?k=PLACEHOLDER-KEY HTTP/1.1\r\nHost: api.test\r\n\r\n";
        String want = two.replace("Bearer PLACEHOLDER-KEY", "Bearer real-value-123").replace("X-Key: PLACEHOLDER-KEY", "X-Key: real-value-123")
                .replace("k=PLACEHOLDER-KEY", "k=real-value-123");
        for (int chunk = 1; chunk <= two.length(); chunk++) {
            assertThat(run(new SecretFilter(List.of(KEY), List.of("api.test"), false), two, chunk))
                    .as("chunk size " + chunk).isEqualTo(want).contains("body PLACEHOLDER-KEY");
        }
    }

    @Test
    void passesTrafficWithoutPlaceholdersUnchanged() throws Exception {
        String s = "GET / HTTP/1.1\r\nHost: other.test\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                + "GET /x HTTP/1.0\n\n";
        for (int chunk : new int[] {1, 3, 7, 1000}) {
            assertThat(run(new SecretFilter(List.of(KEY, TLS_ONLY), List.of("other.test"), false), s, chunk)).isEqualTo(s);
        }
    }

    @Test
    void chunkedBodiesPassAndTheNextRequestIsStillReplaced() throws Exception {
        String s = "POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nPLAC\r\n0\r\nTrailer: 1\r\n\r\n"
                + "GET / HTTP/1.1\r\nHost: api.test\r\nA: PLACEHOLDER-KEY\r\n\r\n";
        assertThat(run(new SecretFilter(List.of(KEY), List.of("api.test"), false), s, 5))
                .endsWith("A: real-value-123\r\n\r\n").contains("4;x=y\r\nPLAC\r\n");
    }

    @Test
    void aPlaceholderTowardAnotherHostIsAViolationEvenSplitAcrossChunks() {
        String s = "GET / HTTP/1.1\r\nHost: evil.test\r\nAuthorization: PLACEHOLDER-KEY\r\n\r\n";
        for (int chunk : new int[] {1, 4, 100}) {
            assertThatThrownBy(() -> run(new SecretFilter(List.of(KEY), List.of("evil.test"), false), s, chunk))
                    .isInstanceOf(SecretFilter.SecretViolation.class).hasMessageContaining("secret API_KEY")
                    .hasMessageNotContaining("real-value");
        }
        // the connection goes to an allowed name, but the request names another
        assertThatThrownBy(() -> run(new SecretFilter(List.of(KEY), List.of("api.test"), false), s, 9))
                .isInstanceOf(SecretFilter.SecretViolation.class).hasMessageContaining("Host evil.test");
        // in a body, and in a raw non-HTTP stream
        String body = "POST / HTTP/1.1\r\nHost: evil.test\r\nContent-Length: 20\r\n\r\nxxxxxPLACEHOLDER-KEY";
        assertThatThrownBy(() -> run(new SecretFilter(List.of(KEY), List.of("evil.test"), false), body, 3))
                .isInstanceOf(SecretFilter.SecretViolation.class);
        assertThatThrownBy(() -> run(new SecretFilter(List.of(KEY), List.of(), false), "garbage PLACEHOLDER-KEY", 2))
                .isInstanceOf(SecretFilter.SecretViolation.class);
    }

    @Test
    void requireTlsRefusesPlaintextAndAllowsIntercepted() throws Exception {
        String s = "GET / HTTP/1.1\r\nHost: x.api.test\r\nAuthorization: PLACEHOLDER-TLS\r\n\r\n";
        assertThatThrownBy(() -> run(new SecretFilter(List.of(TLS_ONLY), List.of("x.api.test"), false), s, 6))
                .isInstanceOf(SecretFilter.SecretViolation.class).hasMessageContaining("plaintext");
        assertThat(run(new SecretFilter(List.of(TLS_ONLY), List.of("x.api.test"), true), s, 6)).contains("Authorization: tls-value");
        // the pattern is for subdomains only
        assertThatThrownBy(() -> run(new SecretFilter(List.of(TLS_ONLY), List.of("api.test"), true),
                s.replace("x.api.test", "api.test"), 6)).isInstanceOf(SecretFilter.SecretViolation.class);
    }
}

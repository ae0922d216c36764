package io.microsandbox.image.oci;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.PullPolicy;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** A registry on 127.0.0.1 that answers what the test scripts: malformed or lying answers fail the pull with a typed error that names them. */
class HostileRegistryTest {
    @TempDir
    Path home;
    private HttpServer server;
    private final Map<String, Consumer<HttpExchange>> answers = new HashMap<>();

    @BeforeEach
    void start() throws IOException {
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 16);
        server.createContext("/", ex -> {
            try (ex) {
                Consumer<HttpExchange> answer = answers.get(ex.getRequestURI().getPath());
                if (answer == null) {
                    ex.sendResponseHeaders(404, -1);
                } else {
                    answer.accept(ex);
                }
            }
        });
        server.start();
    }

    @AfterEach
    void stop() {
        server.stop(0);
    }

    private String image() {
        return "127.0.0.1:" + server.getAddress().getPort() + "/x:v1";
    }

    private static void send(HttpExchange ex, int status, Map<String, String> headers, byte[] body) {
        try {
            headers.forEach((k, v) -> ex.getResponseHeaders().add(k, v));
            ex.sendResponseHeaders(status, body == null ? -1 : body.length);
            if (body != null) {
                ex.getResponseBody().write(body);
            }
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private void failsWith(String message) {
        assertThatThrownBy(() -> new OciImages(home).pull(image(), PullPolicy.ALWAYS, null, null))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.IMAGE_PULL_FAILED))
                .hasMessageContaining(message);
    }

    @Test
    void aRedirectToSomethingThatIsNotAnHttpUrlFails() {
        answers.put("/v2/x/manifests/v1", ex -> send(ex, 302, Map.of("Location", "https:opaque"), null));
        failsWith("not an http(s) URL with a host");
        answers.put("/v2/x/manifests/v1", ex -> send(ex, 302, Map.of("Location", "file:///etc/passwd"), null));
        failsWith("not an http(s) URL with a host");
    }

    @Test
    void aTokenRealmThatIsNotAnAbsoluteUrlFails() {
        answers.put("/v2/x/manifests/v1", ex -> send(ex, 401, Map.of("WWW-Authenticate", "Bearer realm=\"/token\",service=\"s\""), null));
        failsWith("the token realm is");
    }

    private static byte[] json(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }

    private void serveManifest(String configDigest, long configSize, String layerDigest, long layerSize) {
        byte[] manifest = json("{\"schemaVersion\":2,\"mediaType\":\"" + RegistryClient.OCI_MANIFEST + "\",\"config\":{\"mediaType\":"
                + "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" + configDigest + "\",\"size\":" + configSize + "},\"layers\":["
                + "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"" + layerDigest + "\",\"size\":" + layerSize + "}]}");
        answers.put("/v2/x/manifests/v1", ex -> send(ex, 200, Map.of("Content-Type", RegistryClient.OCI_MANIFEST), manifest));
    }

    @Test
    void aConfigLargerThanAManifestMayBeIsRefusedBeforeItIsFetched() {
        String layer = Digests.of(new byte[1]);
        serveManifest(Digests.of(new byte[2]), 5L << 20, layer, 1);
        failsWith("more than the " + RegistryClient.MAX_MANIFEST + " a config may have");
    }

    /** A manifest that gives a cached layer another size fails; the layer, which other images share, stays in the cache. */
    @Test
    void aLyingSizeDoesNotEvictACachedBlob() throws Exception {
        byte[] layer = new byte[1024];
        String layerDigest = Digests.of(layer);
        OciImages images = new OciImages(home);
        images.store().putBlob(layerDigest, layer);
        byte[] config = json("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" + layerDigest + "\"]}}");
        String configDigest = Digests.of(config);
        answers.put("/v2/x/blobs/" + configDigest, ex -> send(ex, 200, Map.of(), config));
        serveManifest(configDigest, config.length, layerDigest, layer.length + 1);
        failsWith("that blob has 1024");
        assertThat(images.store().hasBlob(layerDigest)).isTrue();
    }
}

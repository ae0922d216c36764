package io.microsandbox.image.oci;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A registry front on 127.0.0.1 that speaks the token flow of Docker Hub: {@code /v2/...}
 * answers 401 with {@code WWW-Authenticate: Bearer realm=".../token",service=...,scope=...}
 * until a request carries the token; {@code /token} hands one out, to anybody or (with a
 * user) only for the right basic credentials. Authorized requests go to a {@link TestRegistry}.
 */
final class BearerFront implements AutoCloseable {
    private final HttpServer server;
    final AtomicInteger tokensIssued = new AtomicInteger();
    volatile String lastScope;

    BearerFront(TestRegistry target, String user, String password) throws IOException {
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 16);
        server.setExecutor(Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r, "bearer-front");
            t.setDaemon(true);
            return t;
        }));
        String token = "tok-" + System.nanoTime();
        String basic = user == null ? null : "Basic " + Base64.getEncoder().encodeToString((user + ":" + password).getBytes(StandardCharsets.UTF_8));
        server.createContext("/token", ex -> {
            try (ex) {
                lastScope = ex.getRequestURI().getQuery();
                if (basic != null && !basic.equals(ex.getRequestHeaders().getFirst("Authorization"))) {
                    ex.sendResponseHeaders(401, -1);
                    return;
                }
                tokensIssued.incrementAndGet();
                byte[] body = ("{\"token\":\"" + token + "\",\"expires_in\":300}").getBytes(StandardCharsets.UTF_8);
                ex.sendResponseHeaders(200, body.length);
                ex.getResponseBody().write(body);
            }
        });
        HttpClient http = HttpClient.newHttpClient();
        server.createContext("/v2/", ex -> {
            try (ex) {
                if (!("Bearer " + token).equals(ex.getRequestHeaders().getFirst("Authorization"))) {
                    String repo = ex.getRequestURI().getPath().replaceAll("^/v2/(.*)/(manifests|blobs)/.*$", "$1");
                    ex.getResponseHeaders().add("WWW-Authenticate", "Bearer realm=\"http://" + host() + "/token\",service=\"msb-test\",scope=\"repository:" + repo + ":pull\"");
                    ex.sendResponseHeaders(401, -1);
                    return;
                }
                HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(target.url() + ex.getRequestURI()))
                        .method(ex.getRequestMethod(), HttpRequest.BodyPublishers.noBody());
                String accept = ex.getRequestHeaders().getFirst("Accept");
                if (accept != null) {
                    b.header("Accept", accept);
                }
                HttpResponse<InputStream> resp = http.send(b.build(), HttpResponse.BodyHandlers.ofInputStream());
                for (Map.Entry<String, List<String>> h : resp.headers().map().entrySet()) {
                    if (!h.getKey().equalsIgnoreCase("content-length") && !h.getKey().startsWith(":")) {
                        ex.getResponseHeaders().put(h.getKey(), h.getValue());
                    }
                }
                long length = resp.headers().firstValueAsLong("Content-Length").orElse(0);
                ex.sendResponseHeaders(resp.statusCode(), length == 0 ? -1 : length);
                try (InputStream in = resp.body(); OutputStream out = ex.getResponseBody()) {
                    in.transferTo(out);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        server.start();
    }

    String host() {
        return "127.0.0.1:" + server.getAddress().getPort();
    }

    @Override
    public void close() {
        server.stop(0);
    }
}

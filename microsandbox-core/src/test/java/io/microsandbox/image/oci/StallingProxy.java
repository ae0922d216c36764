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
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;

/**
 * A registry front on 127.0.0.1 that forwards GETs to a {@link TestRegistry} and, while
 * {@code stall} is set, stops sending a blob after its first {@code stallAfter} bytes: a pull
 * through it hangs mid-download, to be killed there.
 */
final class StallingProxy implements AutoCloseable {
    private final HttpServer server;
    volatile boolean stall = true;
    private final long stallAfter;

    StallingProxy(TestRegistry target, long stallAfter) throws IOException {
        this.stallAfter = stallAfter;
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 16);
        server.setExecutor(Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r, "stalling-proxy");
            t.setDaemon(true);
            return t;
        }));
        HttpClient http = HttpClient.newHttpClient();
        server.createContext("/", ex -> {
            try {
                HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(target.url() + ex.getRequestURI()))
                        .method(ex.getRequestMethod(), HttpRequest.BodyPublishers.noBody());
                String accept = ex.getRequestHeaders().getFirst("Accept");
                if (accept != null) {
                    b.header("Accept", accept);
                }
                HttpResponse<InputStream> resp = http.send(b.build(), HttpResponse.BodyHandlers.ofInputStream());
                for (Map.Entry<String, List<String>> h : resp.headers().map().entrySet()) {
                    if (!h.getKey().equalsIgnoreCase("content-length") && !h.getKey().equalsIgnoreCase("transfer-encoding")
                            && !h.getKey().startsWith(":")) {
                        ex.getResponseHeaders().put(h.getKey(), h.getValue());
                    }
                }
                long length = resp.headers().firstValueAsLong("Content-Length").orElse(0);
                ex.sendResponseHeaders(resp.statusCode(), ex.getRequestMethod().equals("HEAD") || length == 0 ? -1 : length);
                boolean blob = ex.getRequestURI().getPath().contains("/blobs/");
                try (InputStream in = resp.body(); OutputStream out = ex.getResponseBody()) {
                    byte[] buf = new byte[1 << 16];
                    long sent = 0;
                    int n;
                    while ((n = in.read(buf)) > 0) {
                        out.write(buf, 0, n);
                        sent += n;
                        if (blob && stall && sent >= stallAfter) {
                            out.flush();
                            while (stall) {
                                Thread.sleep(50);
                            }
                        }
                    }
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (IOException e) {
                // the client went away
            } finally {
                ex.close();
            }
        });
        server.start();
    }

    String host() {
        return "127.0.0.1:" + server.getAddress().getPort();
    }

    @Override
    public void close() {
        stall = false;
        server.stop(0);
    }
}

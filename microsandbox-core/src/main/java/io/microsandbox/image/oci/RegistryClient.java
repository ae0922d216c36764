package io.microsandbox.image.oci;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.PullProgressListener;
import io.microsandbox.runtime.Json;
import io.microsandbox.RegistryAuth;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.InetAddress;
import java.net.URI;
import java.net.URLEncoder;
import java.net.UnknownHostException;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

/**
 * A client of the OCI distribution API v2 for one repository: manifests and blobs, with the
 * anonymous or authenticated bearer-token flow and basic auth. HTTPS, except for loopback
 * registries and those named insecure (system property {@code microsandbox.insecureRegistries}
 * or {@code MSB_INSECURE_REGISTRIES}, comma-separated {@code host[:port]}). Redirects are
 * followed by hand so that credentials never travel to another host.
 */
public final class RegistryClient {
    static final String OCI_INDEX = "application/vnd.oci.image.index.v1+json";
    static final String OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
    static final String DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";
    static final String DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
    static final String ACCEPT = String.join(", ", OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST);
    /** Manifests larger than this are refused (the registry's own limit is 4 MiB). */
    static final int MAX_MANIFEST = 4 << 20;
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern CHALLENGE_PARAM = Pattern.compile("(\\w+)=\"([^\"]*)\"");
    private static final HttpClient HTTP = HttpClient.newBuilder()
            .followRedirects(HttpClient.Redirect.NEVER)
            .connectTimeout(Duration.ofSeconds(15))
            .build();

    private final ImageReference ref;
    private final RegistryAuth auth;
    private final String base;
    private String authorization;

    public RegistryClient(ImageReference ref, RegistryAuth auth) {
        this.ref = ref;
        this.auth = auth;
        this.base = (plainHttp(ref.apiHost()) ? "http://" : "https://") + ref.apiHost() + "/v2/" + ref.repository();
    }

    /** Plain HTTP only for loopback and configured insecure registries. */
    static boolean plainHttp(String hostPort) {
        String configured = System.getProperty("microsandbox.insecureRegistries", System.getenv("MSB_INSECURE_REGISTRIES"));
        if (configured != null) {
            Set<String> insecure = Arrays.stream(configured.split(",")).map(String::strip).filter(s -> !s.isEmpty())
                    .map(s -> s.toLowerCase(Locale.ROOT)).collect(Collectors.toSet());
            if (insecure.contains(hostPort.toLowerCase(Locale.ROOT))) {
                return true;
            }
        }
        String host = hostPort;
        if (host.startsWith("[")) {
            host = host.substring(1, Math.max(1, host.indexOf(']')));
        } else if (host.indexOf(':') >= 0) {
            host = host.substring(0, host.indexOf(':'));
        }
        if (host.equals("localhost")) {
            return true;
        }
        if (host.matches("[0-9.]+") || host.contains(":")) {
            try {
                return InetAddress.getByName(host).isLoopbackAddress();
            } catch (UnknownHostException e) {
                return false;
            }
        }
        return false;
    }

    /** A manifest or index as served: its bytes, media type and digest (computed here, never trusted from a header). */
    public record Manifest(byte[] body, String mediaType, String digest) {
        JsonNode json() {
            try {
                return JSON.readTree(body);
            } catch (IOException e) {
                throw new MicrosandboxException(ErrorKind.IMAGE_PULL_FAILED, "the manifest " + digest + " is not JSON: " + e.getMessage(), e);
            }
        }
    }

    /**
     * Fetches the manifest named by a tag or a digest; with a digest, the bytes must match it.
     *
     * @throws MicrosandboxException IMAGE_NOT_FOUND when the registry does not know it,
     *         IMAGE_PULL_FAILED for any other failure (unreachable, credentials, mismatch)
     */
    public Manifest manifest(String reference) {
        HttpResponse<InputStream> resp = send("GET", base + "/manifests/" + reference, ACCEPT);
        try (InputStream in = resp.body()) {
            if (resp.statusCode() == 404) {
                throw new MicrosandboxException(ErrorKind.IMAGE_NOT_FOUND,
                        "image " + ref.registry() + "/" + ref.repository() + ":" + reference + " not found in the registry" + errorDetail(in));
            }
            if (resp.statusCode() != 200) {
                throw failed("fetching manifest " + reference + " returned HTTP " + resp.statusCode() + errorDetail(in));
            }
            byte[] body = in.readNBytes(MAX_MANIFEST + 1);
            if (body.length > MAX_MANIFEST) {
                throw failed("the manifest " + reference + " is larger than " + MAX_MANIFEST + " bytes");
            }
            String digest = Digests.of(body);
            if (Digests.valid(reference) && !digest.equals(reference)) {
                throw failed("digest mismatch: the registry served manifest " + digest + " for " + reference);
            }
            String type = resp.headers().firstValue("Content-Type").orElse("");
            int semi = type.indexOf(';');
            type = (semi >= 0 ? type.substring(0, semi) : type).strip();
            JsonNode json = JSON.readTree(body);
            if (json.hasNonNull("mediaType")) {
                type = json.get("mediaType").asText();
            }
            return new Manifest(body, type, digest);
        } catch (IOException e) {
            throw failed("reading manifest " + reference + " from " + ref.apiHost() + ": " + e.getMessage(), e);
        }
    }

    /**
     * Downloads a blob into {@code dest} (an existing empty file), hashing as it goes; at most
     * {@code size} bytes are accepted and the result must match {@code digest}.
     */
    public void blob(String digest, long size, Path dest, PullProgressListener listener, String image) {
        HttpResponse<InputStream> resp = send("GET", base + "/blobs/" + digest, "*/*");
        try (InputStream in = resp.body(); OutputStream out = Files.newOutputStream(dest)) {
            if (resp.statusCode() == 404) {
                throw new MicrosandboxException(ErrorKind.IMAGE_PULL_FAILED, "blob " + digest + " of " + ref + " is missing in the registry" + errorDetail(in));
            }
            if (resp.statusCode() != 200) {
                throw failed("fetching blob " + digest + " returned HTTP " + resp.statusCode() + errorDetail(in));
            }
            MessageDigest md = Digests.sha256();
            byte[] buf = new byte[1 << 17];
            long done = 0;
            long lastReport = 0;
            int n;
            while ((n = in.read(buf)) > 0) {
                done += n;
                if (done > size) {
                    throw failed("blob " + digest + " is larger than the " + size + " bytes its descriptor says");
                }
                md.update(buf, 0, n);
                out.write(buf, 0, n);
                if (done - lastReport >= (1 << 20) || done == size) {
                    listener.onProgress(image, digest, PullProgressListener.Phase.DOWNLOADING, done, size);
                    lastReport = done;
                }
            }
            listener.onProgress(image, digest, PullProgressListener.Phase.VERIFYING, done, size);
            if (done != size) {
                throw failed("blob " + digest + " ended after " + done + " of " + size + " bytes");
            }
            String got = Digests.of(md);
            if (!got.equals(digest)) {
                throw failed("digest mismatch: blob " + digest + " downloaded as " + got);
            }
        } catch (IOException e) {
            throw failed("downloading blob " + digest + " from " + ref.apiHost() + ": " + e.getMessage(), e);
        }
    }

    // HTTP with authentication and redirects

    private HttpResponse<InputStream> send(String method, String url, String accept) {
        URI uri = URI.create(url);
        boolean triedAuth = false;
        for (int hop = 0; hop < 10; hop++) {
            boolean sameHost = uri.getAuthority().equalsIgnoreCase(ref.apiHost());
            HttpRequest.Builder b = HttpRequest.newBuilder(uri).method(method, HttpRequest.BodyPublishers.noBody())
                    .timeout(Duration.ofMinutes(2)).header("Accept", accept)
                    .header("User-Agent", "microsandbox-java");
            if (sameHost && authorization != null) {
                b.header("Authorization", authorization);
            }
            HttpResponse<InputStream> resp = exchange(b.build());
            int status = resp.statusCode();
            if (status == 401 && sameHost && !triedAuth) {
                String challenge = resp.headers().firstValue("WWW-Authenticate").orElse("");
                discard(resp);
                authenticate(challenge);
                triedAuth = true;
                continue;
            }
            if (status == 401 || status == 403) {
                String detail = errorDetail(resp.body());
                throw failed((auth != null ? "authentication failed: the registry " + ref.apiHost() + " rejected the credentials of user '" + auth.username() + "'"
                        : "the registry " + ref.apiHost() + " requires credentials (RegistryAuth) for " + ref.repository()) + " (HTTP " + status + ")" + detail);
            }
            if (status == 301 || status == 302 || status == 303 || status == 307 || status == 308) {
                String location = resp.headers().firstValue("Location").orElse(null);
                discard(resp);
                if (location == null) {
                    throw failed("HTTP " + status + " without a Location from " + uri);
                }
                URI from = uri;
                URI next = httpUri(() -> from.resolve(location), "the registry redirected to");
                if (uri.getScheme().equals("https") && !next.getScheme().equals("https")) {
                    throw failed("the registry redirected from HTTPS to " + next.getScheme() + ": refused");
                }
                uri = next;
                continue;
            }
            return resp;
        }
        throw failed("too many redirects from " + url);
    }

    /** An absolute http(s) URI with a host from what a registry sent, or a pull failure that names it. */
    private static URI httpUri(java.util.function.Supplier<URI> parse, String what) {
        URI uri;
        try {
            uri = parse.get();
        } catch (IllegalArgumentException e) {
            throw failed(what + " an invalid URL: " + e.getMessage());
        }
        if (uri.getScheme() == null || !(uri.getScheme().equals("https") || uri.getScheme().equals("http")) || uri.getAuthority() == null) {
            throw failed(what + " " + Json.brief(uri.toString(), 200) + ", which is not an http(s) URL with a host");
        }
        return uri;
    }

    private HttpResponse<InputStream> exchange(HttpRequest request) {
        try {
            return HTTP.send(request, info -> HttpResponse.BodySubscribers.mapping(HttpResponse.BodySubscribers.ofInputStream(), StallGuard::guard));
        } catch (ConnectException | HttpConnectTimeoutException e) {
            throw failed("cannot reach the registry " + request.uri().getAuthority() + ": " + (e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName()), e);
        } catch (HttpTimeoutException e) {
            throw failed("the registry " + request.uri().getAuthority() + " timed out", e);
        } catch (IOException e) {
            String why = e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName();
            if (e.getCause() instanceof ConnectException) {
                why = "connection refused";
            }
            throw failed("cannot reach the registry " + request.uri().getAuthority() + ": " + why, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MicrosandboxException(ErrorKind.CANCELLED, "interrupted while talking to " + request.uri().getAuthority(), e);
        }
    }

    /** Answers a 401 challenge: basic credentials, or a bearer token from the challenge's realm. */
    private void authenticate(String challenge) {
        String scheme = challenge.strip().split("\\s+", 2)[0].toLowerCase(Locale.ROOT);
        Map<String, String> params = new LinkedHashMap<>();
        Matcher m = CHALLENGE_PARAM.matcher(challenge);
        while (m.find()) {
            params.put(m.group(1).toLowerCase(Locale.ROOT), m.group(2));
        }
        if (scheme.equals("basic")) {
            if (auth == null) {
                throw failed("the registry " + ref.apiHost() + " requires credentials (RegistryAuth) for " + ref.repository());
            }
            authorization = basic();
            return;
        }
        if (!scheme.equals("bearer") || !params.containsKey("realm")) {
            throw failed("the registry " + ref.apiHost() + " asks for an unsupported authentication: " + challenge);
        }
        StringBuilder url = new StringBuilder(params.get("realm"));
        url.append(url.indexOf("?") >= 0 ? '&' : '?');
        if (params.containsKey("service")) {
            url.append("service=").append(URLEncoder.encode(params.get("service"), StandardCharsets.UTF_8)).append('&');
        }
        String scope = params.getOrDefault("scope", "repository:" + ref.repository() + ":pull");
        url.append("scope=").append(URLEncoder.encode(scope, StandardCharsets.UTF_8));
        URI tokenUri = httpUri(() -> URI.create(url.toString()), "the token realm is");
        if (!tokenUri.getScheme().equals("https") && !(tokenUri.getScheme().equals("http") && plainHttp(tokenUri.getAuthority()))) {
            throw failed("the token realm " + tokenUri + " is not HTTPS: refused");
        }
        HttpRequest.Builder b = HttpRequest.newBuilder(tokenUri).GET().timeout(Duration.ofSeconds(60));
        if (auth != null) {
            b.header("Authorization", basic());
        }
        HttpResponse<InputStream> resp = exchange(b.build());
        try (InputStream in = resp.body()) {
            if (resp.statusCode() == 401 || resp.statusCode() == 403) {
                throw failed(auth != null
                        ? "authentication failed: the token service " + tokenUri.getAuthority() + " rejected the credentials of user '" + auth.username() + "'"
                        : "the token service " + tokenUri.getAuthority() + " refused anonymous access to " + ref.repository());
            }
            if (resp.statusCode() != 200) {
                throw failed("the token service " + tokenUri.getAuthority() + " returned HTTP " + resp.statusCode());
            }
            JsonNode json = JSON.readTree(in.readNBytes(1 << 20));
            String token = json.hasNonNull("token") ? json.get("token").asText() : json.path("access_token").asText(null);
            if (token == null || token.isEmpty()) {
                throw failed("the token service " + tokenUri.getAuthority() + " returned no token");
            }
            if (!token.chars().allMatch(c -> c > ' ' && c < 0x7f)) {
                // it goes into a header line as it is
                throw failed("the token service " + tokenUri.getAuthority() + " returned a token with characters a header cannot carry");
            }
            authorization = "Bearer " + token;
        } catch (IOException e) {
            throw failed("reading a token from " + tokenUri.getAuthority() + ": " + e.getMessage(), e);
        }
    }

    private String basic() {
        return "Basic " + Base64.getEncoder().encodeToString((auth.username() + ":" + auth.password()).getBytes(StandardCharsets.UTF_8));
    }

    private static void discard(HttpResponse<InputStream> resp) {
        try (InputStream in = resp.body()) {
            in.readNBytes(1 << 16);
        } catch (IOException e) {
            // nothing to keep
        }
    }

    /** The registry's error codes, e.g. " (MANIFEST_UNKNOWN: manifest unknown)". */
    private static String errorDetail(InputStream in) {
        try (in) {
            byte[] body = in.readNBytes(1 << 16);
            JsonNode errors = JSON.readTree(body).path("errors");
            if (errors.isArray() && errors.size() > 0) {
                List<String> parts = new java.util.ArrayList<>();
                for (JsonNode e : errors) {
                    parts.add(e.path("code").asText() + ": " + e.path("message").asText());
                }
                return " (" + String.join("; ", parts) + ")";
            }
        } catch (IOException | RuntimeException e) {
            // not a registry error body
        }
        return "";
    }

    static MicrosandboxException failed(String message) {
        return new MicrosandboxException(ErrorKind.IMAGE_PULL_FAILED, message);
    }

    static MicrosandboxException failed(String message, Throwable cause) {
        return new MicrosandboxException(ErrorKind.IMAGE_PULL_FAILED, message, cause);
    }
}

package io.microsandbox.runtime.network;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.NetworkPolicy;
import io.microsandbox.NetworkRule.Direction;
import io.microsandbox.NetworkRule.Protocol;
import io.microsandbox.PortBinding;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.Printable;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.Protocol.Net;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * The host side of a sandbox's network (docs/network.md): every connection the guest opens
 * arrives as a {@code net.connect} session from the agent, is checked against the policy,
 * and only then opened here as a real socket; name lookups arrive as {@code net.dns} and are
 * answered by policy; published ports are host listeners whose connections go to the agent
 * as {@code net.open} sessions. Each connection has a reader and a writer thread; the agent's
 * and the host's windows bound what waits anywhere.
 */
public final class NetworkRelay implements AutoCloseable {
    /** Credit the agent starts with (its NET_WINDOW), and ours toward a published port's guest side. */
    static final int WINDOW = 256 * 1024;
    /** The most credit a guest may announce for what we send it (the agent announces 1 MiB). */
    private static final long MAX_GUEST_WINDOW = 4L * 1024 * 1024;
    private static final int CHUNK = 256 * 1024;
    /**
     * What each connection's reader holds while it waits for the upstream: a fast stream's
     * further bytes, already waiting in the socket, are taken in the same read up to a
     * {@link #CHUNK}. A 256 KiB buffer per connection would put a thousand idle connections
     * past the supervisor's heap.
     */
    private static final int WAITING_READ_BUFFER = 16 * 1024;
    /** The buffer of each direction of an intercepted connection. */
    private static final int COPY_BUFFER = 32 * 1024;
    /** Heap that request bodies held to replace secrets' placeholders in may take: the bodies, and two copies as they are sent. */
    public static final long SECRET_BODY_HEAP = 3 * RequestFilter.BODY_BUDGET;
    private static final int MAX_CONNECTIONS = 1024;
    private static final int CONNECT_TIMEOUT_MS = 10_000;
    /** How long an orderly close waits for a peer to read what the guest sent before it; then the connection is reset. */
    static final long CLOSE_LINGER_MS = 30_000;
    private static final int DNS_TIMEOUT_MS = 3_000;
    private static final int REPORTS_PER_MINUTE = 200;
    private static final int MAX_UDP_FLOWS = 256;
    /** A UDP flow with no datagram either way for this long is closed (UDP has no end of its own). */
    private static final int UDP_IDLE_MS = 60_000;
    /** How long a connection's first bytes are awaited when domain rules need its server name. */
    private static final int SNIFF_TIMEOUT_MS = 3_000;
    /** Ids of sessions the host starts (published ports): apart from client requests' guest ids, which count up from 1. */
    private static final int HOST_ID_BASE = 0x4000_0000;

    private final NetworkSettings settings;
    private final PolicyMatcher matcher;
    private final GuestChannel guest;
    private final Consumer<String> systemLog;
    private final List<InetSocketAddress> resolvers;
    private final Map<Integer, Connection> connections = new ConcurrentHashMap<>();
    private final Map<Integer, UdpFlow> udpFlows = new ConcurrentHashMap<>();
    private final LookedUpNames lookedUp = new LookedUpNames();
    private final ExecutorService workers;
    private final List<ServerSocket> listeners = new ArrayList<>();
    private final List<DatagramSocket> udpListeners = new ArrayList<>();
    private final List<Thread> publishers = new ArrayList<>();
    private final AtomicInteger hostIds = new AtomicInteger();
    private final AtomicLong rxBytes = new AtomicLong();
    private final AtomicLong txBytes = new AtomicLong();
    private volatile boolean closed;
    /** Connections the guest closed whose writer still hands the peer their last bytes; reset by {@link #close()}. */
    private final Set<Connection> lingering = ConcurrentHashMap.newKeySet();
    private final LeafCertificates tls;
    private final javax.net.ssl.SSLContext upstreamTls;
    private ServerSocket pairServer; // guarded by this
    private final Object reportLock = new Object();
    private long reportWindowStart = System.nanoTime(); // guarded by reportLock
    private int reportsInWindow; // guarded by reportLock
    private long reportsLeftOut; // guarded by reportLock
    private volatile List<io.microsandbox.Secret> secrets = List.of();
    private volatile Runnable onTerminate = () -> { };
    /** What request bodies held by the connections' secret filters may still take together. */
    private final java.util.concurrent.atomic.AtomicLong secretBodyBudget = new java.util.concurrent.atomic.AtomicLong(RequestFilter.BODY_BUDGET);

    public NetworkRelay(NetworkSettings settings, AddressGroups groups, GuestChannel guest, Consumer<String> systemLog) {
        this(settings, groups, guest, systemLog, null);
    }

    /** @param tls the home's CA's certificates when the policy intercepts TLS, else null */
    public NetworkRelay(NetworkSettings settings, AddressGroups groups, GuestChannel guest, Consumer<String> systemLog,
                        LeafCertificates tls) {
        this.tls = settings.policy().tlsInterception() ? tls : null;
        this.upstreamTls = this.tls != null ? upstreamContext(settings.policy()) : null;
        this.settings = settings;
        this.matcher = new PolicyMatcher(settings.policy(), groups);
        this.guest = guest;
        this.systemLog = systemLog;
        this.resolvers = resolvers(settings.policy());
        this.workers = new ThreadPoolExecutor(0, MAX_CONNECTIONS * 2 + 64, 30, TimeUnit.SECONDS, new SynchronousQueue<>(), r -> {
            Thread t = new Thread(r, "net-worker");
            t.setDaemon(true);
            return t;
        });
    }

    /** Opens the published ports' listeners; {@code INVALID_CONFIG} when one is taken (nothing stays open then). */
    public void start() {
        try {
            for (PortBinding p : settings.ports()) {
                if (p.protocol() == Protocol.UDP) {
                    udpListeners.add(NetworkSettings.bindUdp(p));
                } else {
                    listeners.add(NetworkSettings.bind(p));
                }
            }
        } catch (RuntimeException e) {
            close();
            throw e;
        }
        int tcp = 0;
        int udp = 0;
        for (PortBinding binding : settings.ports()) {
            Runnable serve;
            if (binding.protocol() == Protocol.UDP) {
                DatagramSocket server = udpListeners.get(udp++);
                serve = () -> servePublishedUdp(server, binding);
            } else {
                ServerSocket server = listeners.get(tcp++);
                serve = () -> acceptPublished(server, binding);
            }
            Thread t = new Thread(serve, "net-publish-" + binding.protocol() + "-" + binding.hostPort());
            t.setDaemon(true);
            t.start();
            publishers.add(t);
        }
    }

    /**
     * Logs a denial as a system entry: at most {@link #REPORTS_PER_MINUTE} a minute, so a guest
     * that retries in a loop cannot flood the logs; what was left out is counted in the next one.
     */
    private void report(String message) {
        long now = System.nanoTime();
        String line;
        synchronized (reportLock) {
            if (now - reportWindowStart > TimeUnit.MINUTES.toNanos(1)) {
                reportWindowStart = now;
                reportsInWindow = 0;
            }
            if (++reportsInWindow > REPORTS_PER_MINUTE) {
                reportsLeftOut++;
                return;
            }
            // names and requests in it are the guest's: one line, nothing a terminal would act on
            line = Printable.line(message) + (reportsLeftOut == 0 ? "" : " (" + reportsLeftOut + " more not logged before this)");
            reportsLeftOut = 0;
        }
        systemLog.accept(line);
    }

    /**
     * The sandbox's secrets (docs/network.md, "Secrets"): their placeholders are replaced toward
     * allowed hosts and are violations anywhere else; {@code terminate} stops the sandbox for a
     * {@link io.microsandbox.Secret.Violation#TERMINATE} violation. Set before the guest connects.
     */
    public void secrets(List<io.microsandbox.Secret> secrets, Runnable terminate) {
        this.secrets = List.copyOf(secrets);
        this.onTerminate = terminate;
    }

    /** A placeholder went where it may not: the connection is reset, and logged or the sandbox stopped as the secret says. */
    private void violated(Connection c, RequestFilter.Violation v) {
        if (v.secret() == null) { // a request the policy refuses
            abort(c, "network: " + v.getMessage() + ": connection reset");
            return;
        }
        io.microsandbox.Secret.Violation action = v.secret().onViolation();
        abort(c, action == io.microsandbox.Secret.Violation.BLOCK ? null
                : "network: " + v.getMessage() + ": connection reset"
                        + (action == io.microsandbox.Secret.Violation.TERMINATE ? "; stopping the sandbox" : ""));
        if (action == io.microsandbox.Secret.Violation.TERMINATE) {
            onTerminate.run();
        }
    }

    /** TCP connections and UDP flows open now, the guest's and published ports'. */
    public int openFlows() {
        return connections.size() + udpFlows.size();
    }

    /** Bytes the guest received over the network (connections and lookups). */
    public long rxBytes() {
        return rxBytes.get();
    }

    /** Bytes the guest sent over the network. */
    public long txBytes() {
        return txBytes.get();
    }

    /** A {@code net.*} frame from the agent; called by the agent reader, never blocks. */
    public void fromGuest(Frame frame) {
        if (closed) {
            return;
        }
        int id = frame.id();
        switch (frame.type()) {
            case Net.CONNECT -> {
                if (!guestStarted(id) || connections.size() >= MAX_CONNECTIONS || connections.containsKey(id)) {
                    guest.urgent(close(id, true));
                    return;
                }
                Connection c = new Connection(id);
                Long window = frame.number("window");
                if (window != null && window > 0) {
                    c.credit = Math.min(window, MAX_GUEST_WINDOW);
                }
                connections.put(id, c);
                submit(() -> connectOut(c, frame), () -> {
                    connections.remove(id);
                    guest.urgent(close(id, true));
                });
            }
            case Net.DNS -> submit(() -> lookup(id, frame.bytes("query")), () -> reply(id, new byte[0])); // frees the agent's slot
            case Net.UDP -> {
                if (!guestStarted(id) || udpFlows.size() >= MAX_UDP_FLOWS || udpFlows.containsKey(id)) {
                    guest.urgent(close(id, true));
                    return;
                }
                UdpFlow f = new UdpFlow(id);
                udpFlows.put(id, f);
                submit(() -> openUdp(f, frame), () -> {
                    udpFlows.remove(id);
                    guest.urgent(close(id, true));
                });
            }
            case Net.CONNECTED -> {
                Connection c = connections.get(id);
                if (c != null && c.socket != null) {
                    c.startReader();
                }
            }
            case Net.DATA -> {
                Connection c = connections.get(id);
                if (c != null) {
                    c.fromGuest(frame.bytes("data"));
                } else {
                    UdpFlow f = udpFlows.get(id);
                    if (f != null) {
                        f.fromGuest(frame.bytes("data"));
                    }
                }
            }
            case Net.WINDOW -> {
                Connection c = connections.get(id);
                Long bytes = frame.number("bytes");
                if (c != null && bytes != null && bytes > 0) {
                    c.grant(bytes);
                }
            }
            case Net.CLOSE -> {
                Connection c = connections.remove(id);
                if (c != null) {
                    c.shut(frame.payload().path("reset").asBoolean(true));
                }
                UdpFlow f = udpFlows.remove(id);
                if (f != null) {
                    f.close();
                }
            }
            default -> {
                // an unknown net.* type from the guest: nothing to do
            }
        }
    }

    /**
     * Whether {@code id} is one the agent may start a session with (top bit set, docs/protocol.md):
     * one of the host's own ids would let a later published connection take its place in the
     * map, leaving the guest's socket and threads to nobody.
     */
    private static boolean guestStarted(int id) {
        return (id & 0x8000_0000) != 0;
    }

    /** Runs {@code task} on a worker; {@code refused} when none takes it (closing, or past the thread bound): the guest's session must still end. */
    private void submit(Runnable task, Runnable refused) {
        try {
            workers.execute(task);
        } catch (java.util.concurrent.RejectedExecutionException e) {
            refused.run();
        }
    }

    private void connectOut(Connection c, Frame frame) {
        InetSocketAddress destination = requestedDestination(frame);
        if (destination == null) {
            abort(c, "network: refused a malformed connection request from the guest: " + Json.brief(frame.payload()));
            return;
        }
        InetAddress address = destination.getAddress();
        int port = destination.getPort();
        String proto = frame.text("proto");
        if (!"tcp".equals(proto)) {
            abort(c, "network: refused a " + proto + " connection to " + address.getHostAddress() + ": only TCP is carried");
            return;
        }
        Collection<String> names = namesOf(address);
        List<String> claimed = List.of();
        boolean nameStillToCome = false;
        boolean nameHidden = false;
        if (tls != null || matcher.needsServerName(Protocol.TCP, port)) {
            // domain rules also match the TLS SNI / HTTP Host: let the guest send its first bytes,
            // kept from the first (they may come before this thread waits for them)
            c.startSniffing();
            guest.urgent(new Frame(c.id, 0, Net.CONNECTED, Json.object()));
            ServerNameSniffer.Result sniffed = c.awaitServerName();
            claimed = sniffed.name().map(List::of).orElse(List.of());
            nameStillToCome = sniffed.state() == ServerNameSniffer.State.NEED_MORE;
            nameHidden = sniffed.state() == ServerNameSniffer.State.HIDDEN;
        }
        PolicyMatcher.Decision d = matcher.connection(Direction.EGRESS, Protocol.TCP, address, port, names, claimed);
        String target = describe(address, port, names) + (claimed.isEmpty() ? "" : " for " + claimed.get(0));
        if (!d.allowed()) {
            abort(c, "network: denied tcp connection to " + target + " by " + d.reason());
            return;
        }
        if (nameHidden) {
            String refusal = hiddenNameRefusal(address, port, target);
            if (refusal != null) {
                abort(c, refusal);
                return;
            }
        }
        RequestFilter.HostPolicy hostPolicy = requestHostPolicy(address, port, names, target);
        if (tls != null && c.headIsTls() && !claimed.isEmpty() && !bypassed(claimed.get(0))) {
            intercept(c, address, port, claimed.get(0), hostPolicy);
            return;
        }
        if (nameStillToCome) {
            // a silent client is let through (the server may speak first), but a name its first
            // bytes give later is checked then: waiting out the sniff must not get a denied name
            // past the policy, nor TLS past the interception
            c.lateName = (sniffed, isTls) -> {
                Optional<String> late = sniffed.name();
                if (isTls && late.isEmpty() && sniffed.state() != ServerNameSniffer.State.NONE) {
                    // a handshake still cut short when decided, or unreadable: its name is hidden
                    return hiddenNameRefusal(address, port, target);
                }
                if (late.isEmpty()) {
                    return null;
                }
                PolicyMatcher.Decision named = matcher.connection(Direction.EGRESS, Protocol.TCP, address, port, names, List.of(late.get()));
                if (!named.allowed()) {
                    return "network: denied tcp connection to " + target + " for " + late.get() + ", named after "
                            + SNIFF_TIMEOUT_MS + " ms, by " + named.reason();
                }
                if (tls != null && isTls && !bypassed(late.get())) {
                    return "network: the TLS handshake for " + late.get() + " to " + target + " began more than "
                            + SNIFF_TIMEOUT_MS + " ms after the connection, too late to intercept: reset";
                }
                return null;
            };
        }
        if (!secrets.isEmpty() || hostPolicy != null) { // plaintext names: only those this relay resolved to the address
            c.filter = new RequestFilter(secrets, List.copyOf(names), false, secretBodyBudget, hostPolicy);
        }
        Socket s = new Socket();
        try {
            s.setTcpNoDelay(true);
            s.connect(destination, CONNECT_TIMEOUT_MS);
        } catch (IOException e) {
            closeQuietly(s, true);
            abort(c, null);
            return;
        }
        if (!c.attach(s)) {
            return; // the guest gave up meanwhile
        }
        if (!c.sniffing()) { // else the guest was told when its first bytes were awaited
            guest.urgent(new Frame(c.id, 0, Net.CONNECTED, Json.object()));
        }
        c.startReader();
    }

    /**
     * Why a TLS connection whose ClientHello hides its server name (split past the sniff, padded
     * past {@link ServerNameSniffer#MAX_BYTES}, malformed, or dripped in slower than the sniff
     * waits) is reset, or null: without the name only the address may allow it (a name looked up
     * for a shared address would let the guest reach any site behind it), and never intercepted.
     */
    private String hiddenNameRefusal(InetAddress address, int port, String target) {
        PolicyMatcher.Decision byAddress = matcher.connection(Direction.EGRESS, Protocol.TCP, address, port, List.of(), List.of());
        return byAddress.allowed() ? null : "network: denied tcp connection to " + target
                + ": its TLS ClientHello hides the server name from the policy (split, padded, malformed or too slow), and its address alone is not allowed ("
                + byAddress.reason() + ")";
    }

    // ---- TLS interception ----

    /**
     * When domain rules apply to the connection, what each of its requests is checked by, as its
     * first bytes were: a later request of a keep-alive connection, or one inside intercepted
     * TLS (domain fronting), must not reach a denied host through an allowed one's address.
     */
    private RequestFilter.HostPolicy requestHostPolicy(InetAddress address, int port, Collection<String> names, String target) {
        if (!matcher.needsServerName(Protocol.TCP, port)) {
            return null;
        }
        return hosts -> {
            PolicyMatcher.Decision d = matcher.connection(Direction.EGRESS, Protocol.TCP, address, port, names, hosts);
            return d.allowed() ? null : "denied a request for " + String.join(", ", hosts) + " on the tcp connection to " + target
                    + " by " + d.reason();
        };
    }

    private boolean bypassed(String name) {
        return settings.policy().tlsBypass().stream().anyMatch(b -> io.microsandbox.NetworkDestination.parse(b).matchesName(name));
    }

    /**
     * The guest's TLS ends here: its bytes go through a loopback socket pair into a TLS server
     * presenting a certificate for {@code name} from the home's CA, and a TLS connection of
     * our own, verified against the host's trust store, carries the plaintext upstream.
     */
    private void intercept(Connection c, InetAddress address, int port, String name, RequestFilter.HostPolicy hostPolicy) {
        javax.net.ssl.SSLSocket up = null;
        Socket[] pair = null;
        try {
            up = connectTlsVerifiedFor(upstreamTls, address, port, name, CONNECT_TIMEOUT_MS);
            pair = loopbackPair();
        } catch (IOException | RuntimeException e) {
            closeQuietly(up);
            abort(c, "network: TLS to " + name + " (" + address.getHostAddress() + ":" + port + ") failed: " + e.getMessage());
            return;
        }
        if (!c.attach(pair[0])) {
            closeQuietly(up);
            closeQuietly(pair[1]);
            return;
        }
        c.startReader();
        try {
            javax.net.ssl.SSLSocket guestTls = (javax.net.ssl.SSLSocket) tls.serverContext(name).getSocketFactory()
                    .createSocket(pair[1], null, pair[1].getPort(), true);
            guestTls.setUseClientMode(false);
            javax.net.ssl.SSLSocket upstream = up;
            // the upstream certificate was verified for name: the plaintext may carry secrets allowed there
            RequestFilter filter = secrets.isEmpty() && hostPolicy == null ? null
                    : new RequestFilter(secrets, List.of(name), true, secretBodyBudget, hostPolicy);
            Thread t = new Thread(() -> pumpFiltered(c, guestTls, upstream, filter), "net-tls-up-" + Integer.toHexString(c.id));
            t.setDaemon(true);
            t.start();
            pump(upstream, guestTls);
        } catch (IOException e) {
            closeQuietly(up);
            closeQuietly(pair[1]);
        } catch (RuntimeException | LinkageError e) {
            // no certificate for the name (the CA unreadable, Bouncy Castle missing): said, not silent
            closeQuietly(up);
            closeQuietly(pair[1]);
            abort(c, "network: TLS interception for " + name + " failed: " + e);
        }
    }

    /** Copies until either side ends, then closes both. */
    private static void pump(Socket from, Socket to) {
        try {
            copy(from, to, null);
        } catch (IOException | RequestFilter.Violation e) {
            // one side failed: both end (without a filter there is no violation)
        } finally {
            closeQuietly(from);
            closeQuietly(to);
        }
    }

    /** {@link #pump} for the guest's side of an intercepted connection, through its secret filter when there is one. */
    private void pumpFiltered(Connection c, Socket from, Socket to, RequestFilter filter) {
        if (filter == null) {
            pump(from, to);
            return;
        }
        try {
            copy(from, to, filter);
        } catch (RequestFilter.Violation v) {
            closeQuietly(to, true);
            violated(c, v);
        } catch (IOException e) {
            // one side failed: both end
        } finally {
            filter.close();
            closeQuietly(from);
            closeQuietly(to);
        }
    }

    /** Copies {@code from} to {@code to} until the end of {@code from}, through {@code filter} when it is not null. */
    private static void copy(Socket from, Socket to, RequestFilter filter) throws IOException, RequestFilter.Violation {
        // one side is TLS, whose records carry 16 KiB at most: a larger buffer per connection would only sit idle
        byte[] buf = new byte[COPY_BUFFER];
        InputStream in = from.getInputStream();
        OutputStream out = to.getOutputStream();
        int n;
        while ((n = in.read(buf)) > 0) {
            if (filter == null) {
                out.write(buf, 0, n);
            } else {
                out.write(filter.filter(java.util.Arrays.copyOf(buf, n)));
            }
            out.flush();
        }
        if (filter != null) {
            out.write(filter.finish());
            out.flush();
        }
    }

    private static void closeQuietly(Socket s) {
        if (s != null) {
            closeQuietly(s, false);
        }
    }

    /** A connected pair of loopback sockets, from a listener of this relay's own. */
    private synchronized Socket[] loopbackPair() throws IOException {
        if (pairServer == null) {
            pairServer = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
            pairServer.setSoTimeout(CONNECT_TIMEOUT_MS);
        }
        Socket a = new Socket(InetAddress.getLoopbackAddress(), pairServer.getLocalPort());
        while (true) {
            Socket b = pairServer.accept();
            if (b.getPort() == a.getLocalPort()) {
                return new Socket[] {a, b};
            }
            b.close(); // someone else's connection
        }
    }

    /** The TLS context for upstream servers: the JDK's trust store, plus the policy's extra CA file. */
    /**
     * A TLS connection to {@code address} whose certificate must be valid for {@code name}. The
     * TLS socket is layered on a connected one under that name: one connected to the bare address
     * would accept a certificate for the address when the name does not match (the JDK falls back
     * to the peer host), and secrets allowed for the name would go to whoever holds an IP certificate.
     */
    static javax.net.ssl.SSLSocket connectTlsVerifiedFor(javax.net.ssl.SSLContext context, InetAddress address, int port, String name,
                                                         int timeoutMillis) throws IOException {
        Socket plain = new Socket();
        try {
            plain.connect(new InetSocketAddress(address, port), timeoutMillis);
            javax.net.ssl.SSLSocket up = (javax.net.ssl.SSLSocket) context.getSocketFactory().createSocket(plain, name, port, true);
            javax.net.ssl.SSLParameters params = up.getSSLParameters();
            params.setServerNames(List.of(new javax.net.ssl.SNIHostName(name)));
            params.setEndpointIdentificationAlgorithm("HTTPS");
            up.setSSLParameters(params);
            up.setSoTimeout(timeoutMillis);
            up.startHandshake();
            up.setSoTimeout(0);
            return up;
        } catch (IOException | RuntimeException e) {
            closeQuietly(plain);
            throw e;
        }
    }

    private static javax.net.ssl.SSLContext upstreamContext(NetworkPolicy policy) {
        try {
            javax.net.ssl.TrustManagerFactory def = javax.net.ssl.TrustManagerFactory.getInstance(javax.net.ssl.TrustManagerFactory.getDefaultAlgorithm());
            def.init((java.security.KeyStore) null);
            javax.net.ssl.X509TrustManager system = (javax.net.ssl.X509TrustManager) def.getTrustManagers()[0];
            javax.net.ssl.X509TrustManager extra = null;
            if (policy.tlsTrustedCaFile() != null) {
                java.security.KeyStore ks = java.security.KeyStore.getInstance(java.security.KeyStore.getDefaultType());
                ks.load(null, null);
                int i = 0;
                try (InputStream in = Files.newInputStream(Path.of(policy.tlsTrustedCaFile()))) {
                    for (java.security.cert.Certificate cert : java.security.cert.CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                        ks.setCertificateEntry("ca" + i++, cert);
                    }
                }
                javax.net.ssl.TrustManagerFactory f = javax.net.ssl.TrustManagerFactory.getInstance(javax.net.ssl.TrustManagerFactory.getDefaultAlgorithm());
                f.init(ks);
                extra = (javax.net.ssl.X509TrustManager) f.getTrustManagers()[0];
            }
            javax.net.ssl.X509TrustManager added = extra;
            javax.net.ssl.X509TrustManager both = new javax.net.ssl.X509TrustManager() {
                @Override
                public void checkClientTrusted(java.security.cert.X509Certificate[] chain, String authType) throws java.security.cert.CertificateException {
                    system.checkClientTrusted(chain, authType);
                }

                @Override
                public void checkServerTrusted(java.security.cert.X509Certificate[] chain, String authType) throws java.security.cert.CertificateException {
                    try {
                        system.checkServerTrusted(chain, authType);
                    } catch (java.security.cert.CertificateException e) {
                        if (added == null) {
                            throw e;
                        }
                        added.checkServerTrusted(chain, authType);
                    }
                }

                @Override
                public java.security.cert.X509Certificate[] getAcceptedIssuers() {
                    return system.getAcceptedIssuers();
                }
            };
            javax.net.ssl.SSLContext ctx = javax.net.ssl.SSLContext.getInstance("TLS");
            ctx.init(null, new javax.net.ssl.TrustManager[] {both}, null);
            return ctx;
        } catch (IOException | java.security.GeneralSecurityException e) {
            throw new io.microsandbox.MicrosandboxException(io.microsandbox.ErrorKind.TLS,
                    "cannot set up the upstream TLS trust: " + e.getMessage(), e);
        }
    }

    /** Ends a session from the host side with a reset; logs {@code reason} when given. */
    private void abort(Connection c, String reason) {
        if (reason != null) {
            report(reason);
        }
        if (connections.remove(c.id, c)) {
            guest.urgent(close(c.id, true));
        }
        c.shut(true);
    }

    private static Frame close(int id, boolean reset) {
        ObjectNode p = Json.object();
        p.put("reset", reset);
        return new Frame(id, io.microsandbox.runtime.agent.Protocol.FLAG_TERMINAL, Net.CLOSE, p);
    }

    private void acceptPublished(ServerSocket server, PortBinding binding) {
        while (!closed) {
            Socket s;
            try {
                s = server.accept();
            } catch (IOException e) {
                return; // closed
            }
            InetAddress peer = s.getInetAddress();
            PolicyMatcher.Decision d = matcher.connection(Direction.INGRESS, Protocol.TCP, peer, binding.guestPort(), List.of());
            if (!d.allowed() || connections.size() >= MAX_CONNECTIONS) {
                report("network: refused a connection from " + peer.getHostAddress() + " to published port "
                        + binding.hostPort() + (d.allowed() ? ": too many connections" : " by " + d.reason()));
                closeQuietly(s, true);
                continue;
            }
            int id = HOST_ID_BASE | (hostIds.incrementAndGet() & 0x3fff_ffff);
            Connection c = new Connection(id);
            c.attach(s);
            connections.put(id, c);
            ObjectNode p = Json.object();
            p.put("port", binding.guestPort());
            p.put("window", WINDOW);
            guest.urgent(new Frame(id, io.microsandbox.runtime.agent.Protocol.FLAG_SESSION_START, Net.OPEN, p));
        }
    }

    // ---- UDP ----

    private void openUdp(UdpFlow f, Frame frame) {
        InetSocketAddress destination = requestedDestination(frame);
        if (destination == null) {
            endUdp(f, "network: refused a malformed UDP request from the guest: " + Json.brief(frame.payload()));
            return;
        }
        InetAddress address = destination.getAddress();
        int port = destination.getPort();
        Collection<String> names = namesOf(address);
        PolicyMatcher.Decision d = matcher.connection(Direction.EGRESS, Protocol.UDP, address, port, names);
        if (!d.allowed()) {
            endUdp(f, "network: denied udp to " + describe(address, port, names) + " by " + d.reason());
            return;
        }
        try {
            DatagramSocket s = new DatagramSocket();
            s.connect(destination);
            s.setSoTimeout(UDP_IDLE_MS);
            if (!f.open(s)) {
                s.close();
                return;
            }
        } catch (IOException e) {
            endUdp(f, null);
            return;
        }
        f.receiveLoop();
    }

    /** The address literal and port a guest's {@code net.connect} or UDP request names, or null when either is malformed. */
    private static InetSocketAddress requestedDestination(Frame frame) {
        InetAddress address = InetLiterals.parse(frame.text("dst"));
        Long port = frame.number("port");
        return address == null || port == null || port < 1 || port > 65535 ? null : new InetSocketAddress(address, port.intValue());
    }

    /** A published UDP port: datagrams from each client address are one flow to the guest port. */
    private void servePublishedUdp(DatagramSocket server, PortBinding binding) {
        Map<java.net.SocketAddress, UdpFlow> byClient = new java.util.HashMap<>();
        byte[] buf = new byte[65536];
        try {
            server.setSoTimeout(1000);
        } catch (IOException e) {
            return;
        }
        while (!closed && !server.isClosed()) {
            DatagramPacket p = new DatagramPacket(buf, buf.length);
            try {
                server.receive(p);
            } catch (SocketTimeoutException e) {
                byClient.values().removeIf(f -> {
                    boolean idle = System.nanoTime() - f.lastActivity >= TimeUnit.MILLISECONDS.toNanos(UDP_IDLE_MS);
                    if (idle) {
                        endUdp(f, null);
                    }
                    return idle || !udpFlows.containsKey(f.id);
                });
                continue;
            } catch (IOException e) {
                return; // closed
            }
            java.net.SocketAddress client = p.getSocketAddress();
            UdpFlow f = byClient.get(client);
            if (f == null || !udpFlows.containsKey(f.id)) {
                PolicyMatcher.Decision d = matcher.connection(Direction.INGRESS, Protocol.UDP, p.getAddress(), binding.guestPort(), List.of());
                if (!d.allowed() || udpFlows.size() >= MAX_UDP_FLOWS) {
                    report("network: dropped datagrams from " + p.getAddress().getHostAddress() + " to published udp port "
                            + binding.hostPort() + (d.allowed() ? ": too many flows" : " by " + d.reason()));
                    continue;
                }
                f = new UdpFlow(HOST_ID_BASE | (hostIds.incrementAndGet() & 0x3fff_ffff));
                f.open(server, client);
                udpFlows.put(f.id, f);
                byClient.put(client, f);
                ObjectNode open = Json.object();
                open.put("port", binding.guestPort());
                guest.urgent(new Frame(f.id, io.microsandbox.runtime.agent.Protocol.FLAG_SESSION_START, Net.UDP_OPEN, open));
            }
            f.lastActivity = System.nanoTime();
            rxBytes.addAndGet(p.getLength());
            ObjectNode payload = Json.object();
            payload.put("data", java.util.Arrays.copyOf(buf, p.getLength()));
            try {
                guest.send(new Frame(f.id, 0, Net.DATA, payload), 0); // a full channel drops it
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    private void endUdp(UdpFlow f, String reason) {
        if (reason != null) {
            report(reason);
        }
        if (udpFlows.remove(f.id, f)) {
            guest.urgent(close(f.id, true));
        }
        f.close();
    }

    /**
     * One UDP flow: a guest address and port to one destination (a connected host socket of its
     * own), or a published port's client (the port's shared socket and the client's address).
     */
    private final class UdpFlow {
        final int id;
        private DatagramSocket socket; // guarded by this
        private java.net.SocketAddress peer; // a published port's client; guarded by this
        private final List<byte[]> early = new ArrayList<>(); // datagrams before the socket opened; guarded by this
        private boolean closed; // guarded by this
        volatile long lastActivity = System.nanoTime();

        UdpFlow(int id) {
            this.id = id;
        }

        synchronized boolean open(DatagramSocket s) {
            return open(s, null);
        }

        synchronized boolean open(DatagramSocket s, java.net.SocketAddress client) {
            if (closed) {
                return false;
            }
            socket = s;
            peer = client;
            for (byte[] d : early) {
                send(d);
            }
            early.clear();
            return true;
        }

        synchronized void fromGuest(byte[] data) {
            txBytes.addAndGet(data.length);
            lastActivity = System.nanoTime();
            if (socket != null) {
                send(data);
            } else if (early.size() < 64) {
                early.add(data);
            }
        }

        private void send(byte[] data) {
            try {
                // UDP: never blocks for long
                socket.send(peer == null ? new DatagramPacket(data, data.length) : new DatagramPacket(data, data.length, peer));
            } catch (IOException e) {
                // ICMP unreachable for an earlier datagram and the like: UDP carries on
            }
        }

        void receiveLoop() {
            byte[] buf = new byte[65536];
            DatagramSocket s;
            synchronized (this) {
                s = socket;
            }
            while (!s.isClosed()) {
                try {
                    DatagramPacket p = new DatagramPacket(buf, buf.length);
                    s.receive(p);
                    lastActivity = System.nanoTime();
                    rxBytes.addAndGet(p.getLength());
                    ObjectNode payload = Json.object();
                    payload.put("data", java.util.Arrays.copyOf(buf, p.getLength()));
                    // a full channel drops the datagram, as a full network would
                    guest.send(new Frame(id, 0, Net.DATA, payload), 0);
                } catch (SocketTimeoutException e) {
                    if (System.nanoTime() - lastActivity >= TimeUnit.MILLISECONDS.toNanos(UDP_IDLE_MS)) {
                        endUdp(this, null);
                        return;
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return;
                } catch (IOException e) {
                    if (!s.isClosed()) {
                        continue; // an ICMP error for one datagram
                    }
                    return;
                }
            }
        }

        synchronized void close() {
            closed = true;
            if (socket != null && peer == null) { // a published port's socket is shared
                socket.close();
            }
        }
    }

    // ---- DNS ----

    private void lookup(int id, byte[] query) {
        txBytes.addAndGet(query.length);
        DnsMessage.Question q;
        try {
            if (!DnsMessage.standardQuery(query)) {
                throw new IllegalArgumentException("not a standard query");
            }
            q = DnsMessage.question(query);
        } catch (IllegalArgumentException e) {
            reply(id, new byte[0]);
            return;
        }
        PolicyMatcher.Decision d = matcher.lookup(q.name());
        if (!d.allowed()) {
            report("network: lookup of " + q.name() + " denied by " + d.reason());
            reply(id, DnsMessage.error(query, q, DnsMessage.NXDOMAIN));
            return;
        }
        byte[] answer = forward(query);
        if (answer == null) {
            reply(id, DnsMessage.error(query, q, DnsMessage.SERVFAIL));
            return;
        }
        try {
            List<InetAddress> addresses = DnsMessage.addresses(answer);
            for (InetAddress a : addresses) {
                if (!matcher.answerAllowed(a)) {
                    report("network: answer for " + q.name() + " holds " + a.getHostAddress()
                            + ", not a public address: refused (rebinding protection)");
                    reply(id, DnsMessage.error(query, q, DnsMessage.REFUSED));
                    return;
                }
            }
            for (InetAddress a : addresses) {
                lookedUp.add(a, q.name());
            }
        } catch (IllegalArgumentException e) {
            reply(id, DnsMessage.error(query, q, DnsMessage.SERVFAIL));
            return;
        }
        reply(id, answer);
    }

    private byte[] forward(byte[] query) {
        for (InetSocketAddress server : resolvers) {
            try (DatagramSocket s = new DatagramSocket()) {
                s.setSoTimeout(DNS_TIMEOUT_MS);
                s.connect(server);
                s.send(new DatagramPacket(query, query.length));
                byte[] buf = new byte[4096];
                long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(DNS_TIMEOUT_MS);
                while (System.nanoTime() < deadline) {
                    DatagramPacket p = new DatagramPacket(buf, buf.length);
                    s.receive(p);
                    // the answer to this query: same id
                    if (p.getLength() >= 12 && buf[0] == query[0] && buf[1] == query[1]) {
                        return java.util.Arrays.copyOf(buf, p.getLength());
                    }
                }
            } catch (SocketTimeoutException e) {
                // next server
            } catch (IOException e) {
                // next server
            }
        }
        return null;
    }

    private void reply(int id, byte[] answer) {
        rxBytes.addAndGet(answer.length);
        ObjectNode p = Json.object();
        p.put("reply", answer);
        guest.urgent(new Frame(id, io.microsandbox.runtime.agent.Protocol.FLAG_TERMINAL, Net.DNS_REPLY, p));
    }

    private Collection<String> namesOf(InetAddress address) {
        return lookedUp.of(address);
    }

    private static String describe(InetAddress address, int port, Collection<String> names) {
        String a = address.getHostAddress() + ":" + port;
        return names.isEmpty() ? a : a + " (" + String.join(", ", names) + ")";
    }

    /** The resolvers the policy names, else the host's from /etc/resolv.conf. */
    static List<InetSocketAddress> resolvers(NetworkPolicy policy) {
        List<InetSocketAddress> out = new ArrayList<>();
        for (String s : policy.dnsServers()) {
            out.add(NetworkPolicy.parseServer(s));
        }
        if (out.isEmpty()) {
            try {
                for (String line : Files.readAllLines(Path.of("/etc/resolv.conf"))) {
                    String[] f = line.trim().split("\\s+");
                    if (f.length >= 2 && f[0].equals("nameserver")) {
                        try {
                            out.add(NetworkPolicy.parseServer(f[1].contains(":") ? "[" + f[1] + "]" : f[1]));
                        } catch (RuntimeException e) {
                            // a scoped IPv6 nameserver or other form we do not use
                        }
                    }
                }
            } catch (IOException e) {
                // no resolver: every lookup fails with SERVFAIL
            }
        }
        return out;
    }

    private static void closeQuietly(Socket s, boolean reset) {
        try {
            if (reset) {
                s.setSoLinger(true, 0);
            }
            s.close();
        } catch (IOException e) {
            // closing anyway
        }
    }

    @Override
    public void close() {
        closed = true;
        for (ServerSocket s : listeners) {
            try {
                s.close();
            } catch (IOException e) {
                // closing anyway
            }
        }
        udpListeners.forEach(DatagramSocket::close);
        synchronized (this) {
            if (pairServer != null) {
                try {
                    pairServer.close();
                } catch (IOException e) {
                    // closing anyway
                }
            }
        }
        // a socket closed while a thread is blocked in it is released when that thread returns:
        // wait for them, so the ports are free when close() returns
        for (Thread t : publishers) {
            try {
                t.join(2000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        for (Connection c : connections.values()) {
            c.shut(true);
        }
        connections.clear();
        lingering.forEach(Connection::stopLingering);
        udpFlows.values().forEach(UdpFlow::close);
        udpFlows.clear();
        workers.shutdownNow();
    }

    /** One carried connection: a real socket and the agent's session. */
    private final class Connection {
        private static final byte[] EOF = new byte[0];
        final int id;
        volatile Socket socket;
        private final LinkedBlockingQueue<byte[]> toSocket = new LinkedBlockingQueue<>();
        private final AtomicLong queued = new AtomicLong();
        private long credit = WINDOW; // guarded by this (set before the connection is shared)
        private boolean readerStarted; // guarded by this
        private boolean shut; // guarded by this
        /** The writer has ended (its socket may be closed without cutting a write short); guarded by this. */
        private boolean writerDone;
        /** An orderly close waits for the writer: it closes the socket once the guest's last bytes are out; guarded by this. */
        private boolean closeWhenWritten;
        private byte[] head; // the guest's first bytes while its server name is awaited; guarded by this
        private int headLen; // guarded by this
        private boolean headEnded; // the guest sent EOF; guarded by this
        /** Secrets' placeholders in what the guest sends; set before the writer starts, used by it only. */
        RequestFilter filter;
        /**
         * Set (before the writer starts) when the guest had not named its server when the
         * connection was decided: given what its first bytes tell once they come (or once the
         * sniff stops waiting) and whether they begin a TLS handshake, it returns why the
         * connection must be reset, or null. The writer holds those bytes until then.
         */
        java.util.function.BiFunction<ServerNameSniffer.Result, Boolean, String> lateName;
        /** The guest's first bytes, held by the writer while {@link #lateName} waits for them; writer only. */
        private java.io.ByteArrayOutputStream lateHead;
        private long lateHeadSince;
        private volatile boolean upstreamSpoke;

        Connection(int id) {
            this.id = id;
        }

        /** Sets the socket and starts the writer; false when the session ended first. */
        synchronized boolean attach(Socket s) {
            if (shut) {
                closeQuietly(s, true);
                return false;
            }
            socket = s;
            Thread w = new Thread(this::writeLoop, "net-write-" + Integer.toHexString(id));
            w.setDaemon(true);
            w.start();
            return true;
        }

        synchronized void startReader() {
            if (readerStarted || shut) {
                return;
            }
            readerStarted = true;
            Thread r = new Thread(this::readLoop, "net-read-" + Integer.toHexString(id));
            r.setDaemon(true);
            r.start();
        }

        synchronized boolean sniffing() {
            return head != null;
        }

        /** Whether the guest's first bytes are a TLS handshake record. */
        synchronized boolean headIsTls() {
            return head != null && headLen > 0 && (head[0] & 0xff) == 0x16;
        }

        /** Keeps the guest's first bytes from now on, for {@link #awaitServerName}. */
        synchronized void startSniffing() {
            head = new byte[ServerNameSniffer.MAX_BYTES];
        }

        /**
         * Waits for the guest's first bytes, kept since {@link #startSniffing}, to name a server
         * (or not); a silent client is decided without a name.
         */
        ServerNameSniffer.Result awaitServerName() {
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(SNIFF_TIMEOUT_MS);
            synchronized (this) {
                try {
                    while (true) {
                        ServerNameSniffer.Result r = ServerNameSniffer.sniff(head, headLen);
                        long left = deadline - System.nanoTime();
                        if (r.state() != ServerNameSniffer.State.NEED_MORE || headEnded || shut || left <= 0
                                || headLen == head.length) {
                            return r;
                        }
                        TimeUnit.NANOSECONDS.timedWait(this, left);
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return ServerNameSniffer.Result.NONE;
                }
            }
        }

        private synchronized void sniffed(byte[] data) {
            if (head != null) {
                int n = Math.min(data.length, head.length - headLen);
                System.arraycopy(data, 0, head, headLen, n);
                headLen += n;
                headEnded |= data.length == 0;
                notifyAll();
            }
        }

        void fromGuest(byte[] data) {
            txBytes.addAndGet(data.length);
            sniffed(data);
            // the agent keeps within the window it was given; twice that is a hostile guest
            if (queued.addAndGet(data.length) > 2L * WINDOW) {
                abort(this, "network: the guest overran the window of a connection; reset");
                return;
            }
            toSocket.add(data.length == 0 ? EOF : data);
        }

        synchronized void grant(long bytes) {
            credit = Math.min(credit + bytes, 1L << 30);
            notifyAll();
        }

        private synchronized int awaitCredit() throws InterruptedException {
            while (credit <= 0 && !shut) {
                wait(1000);
            }
            return shut ? 0 : (int) Math.min(credit, CHUNK);
        }

        private synchronized void spend(int n) {
            credit -= n;
        }

        private void readLoop() {
            byte[] buf = new byte[WAITING_READ_BUFFER];
            try {
                InputStream in = socket.getInputStream();
                while (true) {
                    int want = awaitCredit();
                    if (want == 0) {
                        return;
                    }
                    int n = in.read(buf, 0, Math.min(want, buf.length));
                    // more waiting in the socket (a fast download) is taken now, without blocking
                    int more = n == buf.length && want > n ? Math.min(in.available(), want - n) : 0;
                    byte[] data = n < 0 ? new byte[0] : java.util.Arrays.copyOf(buf, n + more);
                    if (more > 0) {
                        int got = in.readNBytes(data, n, more);
                        n += got;
                        if (got < more) {
                            data = java.util.Arrays.copyOf(data, n);
                        }
                    }
                    ObjectNode p = Json.object();
                    p.put("data", data);
                    if (n > 0) {
                        spend(n);
                        rxBytes.addAndGet(n);
                        upstreamSpoke = true;
                    }
                    while (!guest.send(new Frame(id, 0, Net.DATA, p), 1000)) {
                        if (isShut()) {
                            return;
                        }
                    }
                    if (n < 0) {
                        return; // EOF sent; the agent ends the session once both sides are done
                    }
                }
            } catch (IOException e) {
                if (!isShut()) {
                    abort(this, null);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }

        /** Window credit whose frame was dropped, to go with the next one (the writer thread's). */
        private long unsentCredit;

        private void writeLoop() {
            try {
                writeQueued();
            } finally {
                boolean close;
                synchronized (this) {
                    writerDone = true;
                    close = closeWhenWritten;
                }
                if (close) {
                    closeQuietly(socket, false);
                    lingering.remove(this);
                }
            }
        }

        private void writeQueued() {
            try {
                OutputStream out = socket.getOutputStream();
                while (true) {
                    byte[] data = toSocket.poll(1, TimeUnit.SECONDS);
                    if (data == null) {
                        if (isShut()) {
                            return;
                        }
                        if (unsentCredit > 0) {
                            credit(0); // the guest may read again: without it, its side waits for ever
                        }
                        if (lateName != null && lateHead != null && !awaitingLateName() && !releaseLateHead(out)) {
                            return;
                        }
                        continue;
                    }
                    if (lateName != null) {
                        if (data != EOF) {
                            holdLateHead(data);
                            if (awaitingLateName()) {
                                continue;
                            }
                        }
                        if (!releaseLateHead(out)) {
                            return;
                        }
                        if (data != EOF) {
                            continue; // written with the held bytes
                        }
                    }
                    if (data == EOF) {
                        if (filter != null) {
                            out.write(filter.finish());
                        }
                        socket.shutdownOutput();
                        return;
                    }
                    out.write(filter == null ? data : filter.filter(data));
                    queued.addAndGet(-data.length);
                    credit(data.length);
                }
            } catch (RequestFilter.Violation v) {
                violated(this, v);
            } catch (IOException e) {
                if (!isShut()) {
                    abort(this, null);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                if (filter != null) {
                    filter.close(); // a body it held gives its room back
                }
            }
        }

        /**
         * Gives the guest back {@code bytes} of its window, with what an earlier window frame that
         * was dropped (the agent had left too many control frames unread) did not get to it.
         * The writer thread's alone.
         */
        private void credit(long bytes) {
            long total = unsentCredit + bytes;
            ObjectNode p = Json.object();
            p.put("bytes", total);
            unsentCredit = guest.urgent(new Frame(id, 0, Net.WINDOW, p)) ? 0 : total;
        }

        private void holdLateHead(byte[] data) {
            if (lateHead == null) {
                lateHead = new java.io.ByteArrayOutputStream();
                lateHeadSince = System.nanoTime();
            }
            lateHead.writeBytes(data);
        }

        /** Whether the held first bytes may still grow into a name: not complete, the server silent, within the sniff's time. */
        private boolean awaitingLateName() {
            byte[] held = lateHead.toByteArray();
            return ServerNameSniffer.sniff(held, Math.min(held.length, ServerNameSniffer.MAX_BYTES)).state() == ServerNameSniffer.State.NEED_MORE
                    && !upstreamSpoke && held.length < ServerNameSniffer.MAX_BYTES
                    && System.nanoTime() - lateHeadSince < TimeUnit.MILLISECONDS.toNanos(SNIFF_TIMEOUT_MS);
        }

        /** Decides on the held first bytes: resets the connection (false) or writes them on and stops holding. */
        private boolean releaseLateHead(OutputStream out) throws IOException, RequestFilter.Violation {
            byte[] held = lateHead == null ? new byte[0] : lateHead.toByteArray();
            ServerNameSniffer.Result r = ServerNameSniffer.sniff(held, Math.min(held.length, ServerNameSniffer.MAX_BYTES));
            String refusal = lateName.apply(r, held.length > 0 && (held[0] & 0xff) == 0x16);
            lateName = null;
            lateHead = null;
            if (refusal != null) {
                abort(this, refusal);
                return false;
            }
            if (held.length > 0) {
                out.write(filter == null ? held : filter.filter(held));
                queued.addAndGet(-held.length);
                credit(held.length);
            }
            return true;
        }

        private synchronized boolean isShut() {
            return shut;
        }

        /** Resets a connection still handing its peer the guest's last bytes (the linger is over, or the relay closed). */
        private void stopLingering() {
            if (lingering.remove(this)) {
                closeQuietly(socket, true);
            }
        }

        void shut(boolean reset) {
            Socket s;
            synchronized (this) {
                if (shut) {
                    return;
                }
                shut = true;
                s = socket;
                notifyAll();
                if (!reset && s != null && !writerDone) {
                    // an orderly end: what the guest sent before it is still owed to the peer,
                    // which gets it (then EOF) as fast as it reads, for at most CLOSE_LINGER_MS
                    closeWhenWritten = true;
                    lingering.add(this);
                    CompletableFuture.delayedExecutor(CLOSE_LINGER_MS, TimeUnit.MILLISECONDS, Runnable::run).execute(this::stopLingering);
                    if (closed) {
                        stopLingering(); // the relay closed meanwhile: its sweep may have missed this one
                    }
                    return;
                }
            }
            if (s != null) {
                closeQuietly(s, reset);
            }
        }
    }
}

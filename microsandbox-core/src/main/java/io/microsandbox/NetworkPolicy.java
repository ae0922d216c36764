package io.microsandbox;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Which network connections a sandbox may make, enforced on the host: every connection the
 * guest opens, and every name it looks up, reaches the sandbox's supervisor, which checks it
 * here before it opens anything (see docs/network.md).
 *
 * <p>Rules are tried in order and the first whose direction, protocol, port and destination
 * match decides; when none does, {@link #defaultAction()} does. Names: a lookup is answered
 * unless the first rule matching the name (by domain, or {@code *}) denies it (then the guest
 * gets NXDOMAIN), or the policy resolves no names at all ({@link #none()}). With rebinding
 * protection (on except in {@link #allowAll()}), an answer that holds a non-public address
 * (private, loopback, link-local, metadata, multicast, the host) is refused unless a rule
 * naming addresses (a CIDR block or a group) explicitly allows that address.
 *
 * <pre>{@code
 * NetworkPolicy.publicOnly()                                 // the default
 * NetworkPolicy.fromProfiles(Profile.PUBLIC, Profile.PRIVATE)
 * NetworkPolicy.builder()
 *     .rule(NetworkRule.deny(".tracker.example"))
 *     .rule(NetworkRule.allow("group:public").ports(80, 443))
 *     .build()                                               // everything else denied
 * }</pre>
 */
public final class NetworkPolicy {

    /** Ready-made groups of destinations for {@link #fromProfiles}. */
    public enum Profile {
        /** The public internet. */
        PUBLIC,
        /** Private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) and link-local, the metadata addresses and the host's own addresses excepted. */
        PRIVATE,
        /** The machine the sandbox runs on. */
        HOST
    }

    private final List<NetworkRule> rules;
    private final NetworkRule.Action defaultAction;
    private final boolean resolveNames;
    private final boolean rebindingProtection;
    private final List<String> dnsServers;
    private final boolean tlsInterception;
    private final List<String> tlsBypass;
    private final String tlsTrustedCaFile;

    private NetworkPolicy(Builder b) {
        this.rules = List.copyOf(b.rules);
        this.defaultAction = b.defaultAction;
        this.resolveNames = b.resolveNames;
        this.rebindingProtection = b.rebindingProtection;
        this.dnsServers = List.copyOf(b.dnsServers);
        this.tlsInterception = b.tlsInterception;
        this.tlsBypass = List.copyOf(b.tlsBypass);
        this.tlsTrustedCaFile = b.tlsTrustedCaFile;
    }

    /** No network at all: no connection, no name lookup. */
    public static NetworkPolicy none() {
        return builder().resolveNames(false).build();
    }

    /** Every destination, the host and private ranges included, and no rebinding protection. */
    public static NetworkPolicy allowAll() {
        return builder().rule(NetworkRule.allow("*")).rebindingProtection(false).build();
    }

    /** The default: the public internet and DNS; private ranges, link-local, metadata and the host denied. */
    public static NetworkPolicy publicOnly() {
        return fromProfiles(Profile.PUBLIC);
    }

    /** The union of the given profiles; everything else denied. */
    public static NetworkPolicy fromProfiles(Profile... profiles) {
        java.util.EnumSet<Profile> set = java.util.EnumSet.noneOf(Profile.class);
        set.addAll(java.util.Arrays.asList(profiles));
        Builder b = builder();
        if (set.contains(Profile.PRIVATE) || set.contains(Profile.HOST)) {
            // first: no profile reaches a metadata address, not even one the host has bound itself
            b.rule(NetworkRule.deny("group:metadata"));
        }
        if (set.contains(Profile.HOST)) {
            b.rule(NetworkRule.allow("group:host"));
        } else if (set.contains(Profile.PRIVATE)) {
            // the host's own private addresses (a cloud VM's 10.x, docker0) are the host, not the private network
            b.rule(NetworkRule.deny("group:host"));
        }
        if (set.contains(Profile.PUBLIC)) {
            b.rule(NetworkRule.allow("group:public"));
        }
        if (set.contains(Profile.PRIVATE)) {
            b.rule(NetworkRule.allow("group:private")).rule(NetworkRule.allow("group:link-local"));
        }
        return b.build();
    }

    /** An empty policy to build: no rules, default action deny, names resolved, rebinding protection on. */
    public static Builder builder() {
        return new Builder();
    }

    /** A builder holding this policy's settings. */
    public Builder toBuilder() {
        Builder b = new Builder();
        b.rules.addAll(rules);
        b.defaultAction = defaultAction;
        b.resolveNames = resolveNames;
        b.rebindingProtection = rebindingProtection;
        b.dnsServers.addAll(dnsServers);
        b.tlsInterception = tlsInterception;
        b.tlsBypass.addAll(tlsBypass);
        b.tlsTrustedCaFile = tlsTrustedCaFile;
        return b;
    }

    /** The rules in order; the first that matches a connection decides. */
    public List<NetworkRule> rules() {
        return rules;
    }

    /** What happens to a connection no rule matches: {@link NetworkRule.Action#DENY} unless set. */
    public NetworkRule.Action defaultAction() {
        return defaultAction;
    }

    /** Whether the guest's name lookups are answered at all. */
    public boolean resolveNames() {
        return resolveNames;
    }

    /**
     * Whether answers to the guest's name lookups that are not public addresses are refused
     * unless a rule naming addresses (CIDR or group) allows them: a public name must not lead
     * the guest to the host's network (DNS rebinding).
     */
    public boolean rebindingProtection() {
        return rebindingProtection;
    }

    /** The resolvers the host asks ({@code address} or {@code address:port}); empty: the host's own from {@code /etc/resolv.conf}. */
    public List<String> dnsServers() {
        return dnsServers;
    }

    /** Whether the host terminates the guest's TLS (see {@link Builder#tlsInterception}). */
    public boolean tlsInterception() {
        return tlsInterception;
    }

    /** Names whose TLS passes untouched: exact names or {@code .suffix} patterns. */
    public List<String> tlsBypass() {
        return tlsBypass;
    }

    /** A PEM file of CA certificates trusted for upstream servers besides the JDK's trust store, or null. */
    public String tlsTrustedCaFile() {
        return tlsTrustedCaFile;
    }

    /** Whether nothing at all can pass (no rule allows anything, no names): the guest then gets no network. */
    public boolean isNone() {
        return !resolveNames && defaultAction == NetworkRule.Action.DENY
                && rules.stream().noneMatch(r -> r.action() == NetworkRule.Action.ALLOW && r.direction() == NetworkRule.Direction.EGRESS);
    }

    /** The policy as JSON, the form it is persisted in. */
    public ObjectNode toJsonNode() {
        ObjectNode n = Json.object();
        ArrayNode arr = n.putArray("rules");
        for (NetworkRule r : rules) {
            ObjectNode rn = arr.addObject();
            rn.put("action", r.action().name().toLowerCase(Locale.ROOT));
            rn.put("direction", r.direction().name().toLowerCase(Locale.ROOT));
            rn.put("destination", r.destination().toString());
            ArrayNode protocols = rn.putArray("protocols");
            r.protocols().stream().map(p -> p.name().toLowerCase(Locale.ROOT)).sorted().forEach(protocols::add);
            ArrayNode ports = rn.putArray("ports");
            r.ports().forEach(p -> ports.add(p.toString()));
        }
        n.put("defaultAction", defaultAction.name().toLowerCase(Locale.ROOT));
        n.put("resolveNames", resolveNames);
        n.put("rebindingProtection", rebindingProtection);
        ArrayNode dns = n.putArray("dnsServers");
        dnsServers.forEach(dns::add);
        n.put("tlsInterception", tlsInterception);
        ArrayNode bypass = n.putArray("tlsBypass");
        tlsBypass.forEach(bypass::add);
        n.put("tlsTrustedCaFile", tlsTrustedCaFile);
        return n;
    }

    /** Parses {@link #toJsonNode()}'s form; {@link ErrorKind#INVALID_CONFIG} when it is not valid. */
    public static NetworkPolicy fromJsonNode(JsonNode n) {
        try {
            Builder b = builder();
            for (JsonNode rn : n.path("rules")) {
                List<NetworkRule.Protocol> protocols = new ArrayList<>();
                rn.path("protocols").forEach(p -> protocols.add(NetworkRule.Protocol.valueOf(p.asText().toUpperCase(Locale.ROOT))));
                List<NetworkRule.PortRange> ports = new ArrayList<>();
                for (JsonNode p : rn.path("ports")) {
                    String[] fromTo = p.asText().split("-", 2);
                    int from = Integer.parseInt(fromTo[0]);
                    ports.add(new NetworkRule.PortRange(from, fromTo.length == 2 ? Integer.parseInt(fromTo[1]) : from));
                }
                b.rule(new NetworkRule(NetworkRule.Action.valueOf(rn.path("action").asText().toUpperCase(Locale.ROOT)),
                        NetworkRule.Direction.valueOf(rn.path("direction").asText("egress").toUpperCase(Locale.ROOT)),
                        NetworkDestination.parse(rn.path("destination").asText()), java.util.Set.copyOf(protocols), ports));
            }
            b.defaultAction(NetworkRule.Action.valueOf(n.path("defaultAction").asText("deny").toUpperCase(Locale.ROOT)));
            b.resolveNames(n.path("resolveNames").asBoolean(true));
            b.rebindingProtection(n.path("rebindingProtection").asBoolean(true));
            n.path("dnsServers").forEach(d -> b.dnsServers.add(d.asText()));
            b.tlsInterception = n.path("tlsInterception").asBoolean(false);
            n.path("tlsBypass").forEach(d -> b.tlsBypass.add(d.asText()));
            b.tlsTrustedCaFile = n.hasNonNull("tlsTrustedCaFile") ? n.get("tlsTrustedCaFile").asText() : null;
            return b.build();
        } catch (IllegalArgumentException e) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "invalid network policy: " + e.getMessage(), e);
        }
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof NetworkPolicy other && toJsonNode().equals(other.toJsonNode());
    }

    @Override
    public int hashCode() {
        return toJsonNode().hashCode();
    }

    @Override
    public String toString() {
        return "NetworkPolicy" + Json.toText(toJsonNode());
    }

    /** Builds a policy; by default no rules, default action deny, names resolved, rebinding protection on. */
    public static final class Builder {
        private final List<NetworkRule> rules = new ArrayList<>();
        private NetworkRule.Action defaultAction = NetworkRule.Action.DENY;
        private boolean resolveNames = true;
        private boolean rebindingProtection = true;
        private final List<String> dnsServers = new ArrayList<>();
        private boolean tlsInterception;
        private final List<String> tlsBypass = new ArrayList<>();
        private String tlsTrustedCaFile;

        private Builder() {
        }

        /**
         * TLS interception: the host terminates the guest's TLS connections (those whose SNI is
         * not bypassed) with a certificate for the SNI signed by a CA under the home directory,
         * which the guest trusts (installed into its trust store at boot), and opens its own TLS
         * connection upstream, verified against the host's trust store. Off by default.
         */
        public Builder tlsInterception(boolean on) {
            this.tlsInterception = on;
            return this;
        }

        /** Names whose TLS is not intercepted: exact names or {@code .suffix} patterns. */
        public Builder tlsBypass(String... names) {
            for (String n : names) {
                NetworkDestination d = NetworkDestination.parse(n);
                if (d.kind() != NetworkDestination.Kind.DOMAIN && d.kind() != NetworkDestination.Kind.DOMAIN_SUFFIX) {
                    throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "TLS bypass entry \"" + n + "\" is not a name or .suffix");
                }
                tlsBypass.add(d.toString());
            }
            return this;
        }

        /** A PEM file of CA certificates the host also trusts for upstream servers (for private CAs). */
        public Builder tlsTrustedCaFile(String pemFile) {
            this.tlsTrustedCaFile = pemFile;
            return this;
        }

        /** Adds a rule after the ones already added (the first match wins). */
        public Builder rule(NetworkRule rule) {
            rules.add(java.util.Objects.requireNonNull(rule, "rule"));
            return this;
        }

        /** What happens to a connection no rule matches; {@link NetworkRule.Action#DENY} unless set. */
        public Builder defaultAction(NetworkRule.Action action) {
            this.defaultAction = java.util.Objects.requireNonNull(action, "action");
            return this;
        }

        /**
         * Whether the guest's name lookups are answered at all (true unless set); with false
         * every lookup gets NXDOMAIN and only rules by address can let a connection out.
         */
        public Builder resolveNames(boolean resolveNames) {
            this.resolveNames = resolveNames;
            return this;
        }

        /**
         * Refuse lookup answers that are not public addresses unless an address rule allows
         * them (on unless set; see {@link NetworkPolicy#rebindingProtection()}). Turning it off
         * lets any allowed name lead the guest to private or loopback addresses.
         */
        public Builder rebindingProtection(boolean on) {
            this.rebindingProtection = on;
            return this;
        }

        /** The resolvers the host forwards allowed lookups to, {@code address} or {@code address:port} (IPv4 literals, IPv6 in brackets). */
        public Builder dnsServers(String... servers) {
            dnsServers.clear();
            for (String s : servers) {
                parseServer(s);
                dnsServers.add(s);
            }
            return this;
        }

        public NetworkPolicy build() {
            return new NetworkPolicy(this);
        }
    }

    /** A resolver address as {@code address[:port]}, port 53 by default. */
    public static java.net.InetSocketAddress parseServer(String text) {
        String host = text;
        int port = 53;
        int colon = text.lastIndexOf(':');
        if (text.startsWith("[")) {
            int close = text.indexOf(']');
            host = text.substring(1, Math.max(1, close));
            if (close > 0 && close + 1 < text.length() && text.charAt(close + 1) == ':') {
                port = parsePort(text, text.substring(close + 2));
            }
        } else if (colon > 0 && text.indexOf(':') == colon) {
            host = text.substring(0, colon);
            port = parsePort(text, text.substring(colon + 1));
        }
        byte[] bytes = NetworkDestination.Cidr.literal(host);
        if (bytes == null) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "DNS server \"" + text + "\" is not an address literal");
        }
        try {
            return new java.net.InetSocketAddress(java.net.InetAddress.getByAddress(bytes), port);
        } catch (java.net.UnknownHostException e) {
            throw new IllegalStateException(e);
        }
    }

    private static int parsePort(String text, String port) {
        try {
            int p = Integer.parseInt(port);
            if (p > 0 && p < 65536) {
                return p;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "invalid port in DNS server \"" + text + "\"");
    }
}

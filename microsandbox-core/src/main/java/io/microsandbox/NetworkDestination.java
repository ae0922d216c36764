package io.microsandbox;

import java.net.InetAddress;
import java.util.Locale;
import java.util.regex.Pattern;

/**
 * What a {@link NetworkRule} is about: anything ({@code *}), an address block (CIDR), an
 * exact domain name, every name under a domain ({@code .example.com}: the domain and its
 * subdomains), or a group of addresses.
 *
 * @param kind  the kind of destination
 * @param value the normalised text: the CIDR block, the lower-case name (a suffix without its
 *              leading dot), or the group's name; {@code *} for {@link Kind#ANY}
 */
public record NetworkDestination(Kind kind, String value) {

    /** The kinds of destination. */
    public enum Kind { ANY, CIDR, DOMAIN, DOMAIN_SUFFIX, GROUP }

    /**
     * Groups of addresses. {@code PUBLIC} is every address in none of the others (and not
     * reserved); {@code METADATA} is the cloud metadata and credential addresses (169.254.169.254,
     * 169.254.170.2, 169.254.170.23, 100.100.100.200, 168.63.129.16, fd00:ec2::254, fd00:ec2::23); {@code HOST} is every address of the machine the sandbox runs on, its
     * loopback and the unspecified addresses included.
     */
    public enum Group { PUBLIC, PRIVATE, LOOPBACK, LINK_LOCAL, METADATA, MULTICAST, HOST }

    private static final Pattern NAME = Pattern.compile("(?i)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*");

    public NetworkDestination {
        if (kind == null || value == null) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "a network destination needs a kind and a value");
        }
    }

    /**
     * Parses a destination: {@code *}; a CIDR block or a single address ({@code 10.0.0.0/8},
     * {@code 192.168.1.5}, {@code fd00::/8}); {@code group:private} (any {@link Group}, also
     * spelled {@code link-local}); {@code .example.com} (the domain and every name under it);
     * or an exact name {@code api.example.com}.
     *
     * @throws MicrosandboxException {@link ErrorKind#INVALID_CONFIG} naming what is wrong
     */
    public static NetworkDestination parse(String text) {
        if (text == null || text.isBlank()) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "empty network destination");
        }
        String t = text.trim();
        if (t.equals("*")) {
            return new NetworkDestination(Kind.ANY, "*");
        }
        if (t.regionMatches(true, 0, "group:", 0, 6)) {
            return group(parseGroup(t.substring(6)));
        }
        if (t.contains("/") || looksLikeAddress(t)) {
            return new NetworkDestination(Kind.CIDR, Cidr.parse(t).toString());
        }
        boolean suffix = t.startsWith(".");
        String name = (suffix ? t.substring(1) : t).toLowerCase(Locale.ROOT);
        if (name.endsWith(".")) {
            name = name.substring(0, name.length() - 1);
        }
        if (name.length() > 253 || !NAME.matcher(name).matches()) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "invalid network destination \"" + text
                    + "\": not *, a CIDR block, group:NAME, .suffix or a domain name");
        }
        return new NetworkDestination(suffix ? Kind.DOMAIN_SUFFIX : Kind.DOMAIN, name);
    }

    /** The destination of a group. */
    public static NetworkDestination group(Group group) {
        return new NetworkDestination(Kind.GROUP, group.name().toLowerCase(Locale.ROOT).replace('_', '-'));
    }

    /** The group of a {@link Kind#GROUP} destination. */
    public Group group() {
        return parseGroup(value);
    }

    private static Group parseGroup(String name) {
        try {
            return Group.valueOf(name.trim().toUpperCase(Locale.ROOT).replace('-', '_'));
        } catch (IllegalArgumentException e) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "unknown address group \"" + name
                    + "\" (public, private, loopback, link-local, metadata, multicast, host)");
        }
    }

    private static boolean looksLikeAddress(String t) {
        return t.contains(":") || t.matches("[0-9.]+");
    }

    /** Whether this destination matches a domain name (lower case, no trailing dot). */
    public boolean matchesName(String name) {
        return switch (kind) {
            case DOMAIN -> name.equals(value);
            case DOMAIN_SUFFIX -> name.equals(value) || name.endsWith("." + value);
            default -> false;
        };
    }

    /** Whether this destination matches an address block (a CIDR destination). */
    public boolean matchesCidr(InetAddress address) {
        return kind == Kind.CIDR && Cidr.parse(value).contains(address);
    }

    @Override
    public String toString() {
        return switch (kind) {
            case ANY -> "*";
            case DOMAIN_SUFFIX -> "." + value;
            case GROUP -> "group:" + value;
            default -> value;
        };
    }

    /** An address block; literal addresses only (no name lookups). */
    record Cidr(byte[] network, int prefix) {
        static Cidr parse(String text) {
            int slash = text.indexOf('/');
            String addr = slash < 0 ? text : text.substring(0, slash);
            byte[] bytes = literal(addr);
            if (bytes == null) {
                throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "invalid address in \"" + text + "\"");
            }
            int prefix = bytes.length * 8;
            if (slash >= 0) {
                try {
                    prefix = Integer.parseInt(text.substring(slash + 1));
                } catch (NumberFormatException e) {
                    prefix = -1;
                }
                if (prefix < 0 || prefix > bytes.length * 8) {
                    throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "invalid prefix length in \"" + text + "\"");
                }
            }
            return new Cidr(mask(bytes, prefix), prefix);
        }

        boolean contains(InetAddress address) {
            byte[] a = address.getAddress();
            return a.length == network.length && java.util.Arrays.equals(mask(a, prefix), network);
        }

        private static byte[] mask(byte[] bytes, int prefix) {
            byte[] out = bytes.clone();
            for (int i = 0; i < out.length; i++) {
                int keep = Math.max(0, Math.min(8, prefix - i * 8));
                out[i] &= (byte) (0xff << (8 - keep));
            }
            return out;
        }

        /** The bytes of an IPv4 or IPv6 literal, or null; never resolves a name. */
        static byte[] literal(String text) {
            InetAddress a = io.microsandbox.runtime.network.InetLiterals.parse(text);
            return a == null ? null : a.getAddress();
        }

        @Override
        public String toString() {
            try {
                return InetAddress.getByAddress(network).getHostAddress() + "/" + prefix;
            } catch (java.net.UnknownHostException e) {
                throw new IllegalStateException(e);
            }
        }
    }
}

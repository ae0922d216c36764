package io.microsandbox.runtime.network;

import io.microsandbox.NetworkDestination.Group;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.NetworkInterface;
import java.net.SocketException;
import java.util.Collections;
import java.util.HashSet;
import java.util.Set;

/**
 * Which {@link Group}s an address is in. The host's own addresses are read again when a second
 * has passed since the last read: an address the host gains later (a privacy IPv6 address, a
 * VPN, a DHCP change) is the host's too.
 */
public final class AddressGroups {
    /** How long a read of the host's addresses stands. */
    static final java.time.Duration HOST_ADDRESSES_FRESH = java.time.Duration.ofSeconds(1);

    private final java.util.function.Supplier<Set<InetAddress>> hostAddressSource;
    private final long freshNanos;
    private volatile Set<InetAddress> hostAddresses;
    private volatile long readAtNanos;

    /** Groups with a fixed set of host addresses. */
    public AddressGroups(Set<InetAddress> hostAddresses) {
        this(() -> hostAddresses, java.time.Duration.ofDays(365));
    }

    /**
     * Groups whose host addresses come from {@code source}, read again once {@code fresh} has
     * passed; a read that gives null (it failed) keeps the last good one.
     */
    AddressGroups(java.util.function.Supplier<Set<InetAddress>> source, java.time.Duration fresh) {
        this.hostAddressSource = source;
        this.freshNanos = fresh.toNanos();
        Set<InetAddress> first = source.get();
        this.hostAddresses = first == null ? Set.of() : Set.copyOf(first);
        this.readAtNanos = System.nanoTime();
    }

    /** The addresses of every interface of this machine, read again as they change. */
    public static AddressGroups ofThisHost() {
        return new AddressGroups(AddressGroups::interfaceAddresses, HOST_ADDRESSES_FRESH);
    }

    private Set<InetAddress> hostAddresses() {
        long now = System.nanoTime();
        if (now - readAtNanos > freshNanos) {
            // two threads may both read: the same answer, no lock needed
            Set<InetAddress> read = hostAddressSource.get();
            if (read != null) { // a failed read keeps the last good one: the host's addresses must never look public
                hostAddresses = Set.copyOf(read);
            }
            readAtNanos = now;
        }
        return hostAddresses;
    }

    private static Set<InetAddress> interfaceAddresses() {
        Set<InetAddress> addresses = new HashSet<>();
        try {
            for (NetworkInterface ni : Collections.list(NetworkInterface.getNetworkInterfaces())) {
                for (InetAddress a : Collections.list(ni.getInetAddresses())) {
                    addresses.add(withoutScope(a));
                }
            }
        } catch (SocketException | RuntimeException e) {
            // an interface gone mid-read, no descriptors left: no answer (loopback and the
            // unspecified addresses count as the host without it)
            return null;
        }
        return addresses;
    }

    private static InetAddress withoutScope(InetAddress a) {
        try {
            return InetAddress.getByAddress(a.getAddress());
        } catch (java.net.UnknownHostException e) {
            return a;
        }
    }

    /**
     * Cloud metadata and credential endpoints: 169.254.169.254 (AWS, GCP, Azure, OpenStack, and
     * AWS's IPv6 fd00:ec2::254), AWS ECS task credentials 169.254.170.2 and EKS Pod Identity
     * 169.254.170.23 (fd00:ec2::23), Alibaba Cloud 100.100.100.200, Azure's WireServer 168.63.129.16.
     */
    private static final Set<String> CLOUD_METADATA = Set.of("169.254.169.254", "169.254.170.2", "169.254.170.23",
            "100.100.100.200", "168.63.129.16", "fd00:ec2:0:0:0:0:0:254", "fd00:ec2:0:0:0:0:0:23");

    public boolean in(InetAddress address, Group group) {
        Inet4Address carried = carriedIpv4(address);
        if (carried != null) {
            // reached through the IPv4 address it carries: 64:ff9b::a9fe:a9fe is the metadata endpoint
            return in(carried, group);
        }
        byte[] b = address.getAddress();
        int o0 = b[0] & 0xff;
        int o1 = b[1] & 0xff;
        boolean v4 = address instanceof Inet4Address;
        return switch (group) {
            case LOOPBACK -> address.isLoopbackAddress();
            case PRIVATE -> v4 ? o0 == 10 || (o0 == 172 && (o1 & 0xf0) == 16) || (o0 == 192 && o1 == 168) || (o0 == 100 && (o1 & 0xc0) == 64)
                    : (o0 & 0xfe) == 0xfc;
            case LINK_LOCAL -> address.isLinkLocalAddress();
            case METADATA -> CLOUD_METADATA.contains(withoutScope(address).getHostAddress());
            case MULTICAST -> address.isMulticastAddress();
            case HOST -> address.isLoopbackAddress() || address.isAnyLocalAddress() || (v4 && o0 == 0)
                    || hostAddresses().contains(withoutScope(address));
            case PUBLIC -> isPublic(address, v4, o0);
        };
    }

    private boolean isPublic(InetAddress address, boolean v4, int o0) {
        for (Group g : Group.values()) {
            if (g != Group.PUBLIC && in(address, g)) {
                return false;
            }
        }
        byte[] b = address.getAddress();
        int o1 = b[1] & 0xff;
        // reserved (240/4, broadcast), IETF protocol assignments (192.0.0.0/24) and the
        // benchmarking range (198.18.0.0/15, used inside networks) are not the internet; nor is site-local IPv6
        return v4 ? o0 < 240 && !(o0 == 192 && o1 == 0 && b[2] == 0) && !(o0 == 198 && (o1 & 0xfe) == 18)
                : !address.isSiteLocalAddress();
    }

    /**
     * The IPv4 address an IPv6 address reaches: NAT64's (64:ff9b::/96, the local-use
     * 64:ff9b:1::/48), 6to4's (2002::/16), Teredo's client (2001::/32, its last 32 bits
     * inverted) and the IPv4-compatible form (::a.b.c.d); null for any other address.
     */
    static Inet4Address carriedIpv4(InetAddress address) {
        byte[] b = address.getAddress();
        if (b.length != 16) {
            return null;
        }
        int at = -1;
        boolean invert = false;
        if (b[0] == 0 && b[1] == 0x64 && b[2] == (byte) 0xff && b[3] == (byte) 0x9b) {
            boolean wellKnown = zeros(b, 4, 12);
            boolean localUse = b[4] == 0 && b[5] == 1;
            at = wellKnown || localUse ? 12 : -1;
        } else if (b[0] == 0x20 && b[1] == 0x02) {
            at = 2;
        } else if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) {
            at = 12;
            invert = true;
        } else if (zeros(b, 0, 12) && !zeros(b, 12, 15)) { // not :: or ::1
            at = 12;
        }
        if (at < 0) {
            return null;
        }
        byte[] v4 = new byte[4];
        for (int i = 0; i < 4; i++) {
            v4[i] = (byte) (invert ? ~b[at + i] : b[at + i]);
        }
        try {
            return (Inet4Address) InetAddress.getByAddress(v4);
        } catch (java.net.UnknownHostException e) {
            throw new IllegalStateException(e); // four bytes are always an address
        }
    }

    private static boolean zeros(byte[] b, int from, int to) {
        for (int i = from; i < to; i++) {
            if (b[i] != 0) {
                return false;
            }
        }
        return true;
    }
}

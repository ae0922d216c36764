package io.microsandbox.runtime.network;

import io.microsandbox.NetworkDestination.Group;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.NetworkInterface;
import java.net.SocketException;
import java.util.Collections;
import java.util.HashSet;
import java.util.Set;

/** Which {@link Group}s an address is in; the host's own addresses are taken once at start. */
public final class AddressGroups {
    private final Set<InetAddress> hostAddresses;

    public AddressGroups(Set<InetAddress> hostAddresses) {
        this.hostAddresses = Set.copyOf(hostAddresses);
    }

    /** The addresses of every interface of this machine. */
    public static AddressGroups ofThisHost() {
        Set<InetAddress> addresses = new HashSet<>();
        try {
            for (NetworkInterface ni : Collections.list(NetworkInterface.getNetworkInterfaces())) {
                for (InetAddress a : Collections.list(ni.getInetAddresses())) {
                    addresses.add(withoutScope(a));
                }
            }
        } catch (SocketException e) {
            // no interface list: loopback and the unspecified addresses still count as the host
        }
        return new AddressGroups(addresses);
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
                    || hostAddresses.contains(withoutScope(address));
            case PUBLIC -> isPublic(address, v4, o0);
        };
    }

    private boolean isPublic(InetAddress address, boolean v4, int o0) {
        for (Group g : Group.values()) {
            if (g != Group.PUBLIC && in(address, g)) {
                return false;
            }
        }
        // reserved (240/4, broadcast) and IPv4-mapped or site-local IPv6 are not the internet
        return v4 ? o0 < 240 : !address.isSiteLocalAddress();
    }
}

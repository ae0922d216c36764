package io.microsandbox;

/**
 * A published port: connections to {@code bindAddress:hostPort} on the host reach
 * {@code 127.0.0.1:guestPort} (and any guest service listening on all addresses) inside the
 * sandbox, while it runs.
 *
 * @param bindAddress the host address to listen on (an IPv4 or IPv6 literal; default {@code 127.0.0.1})
 * @param hostPort    the host port
 * @param guestPort   the guest port
 * @param protocol    {@link NetworkRule.Protocol#TCP} or {@link NetworkRule.Protocol#UDP} (datagrams from
 *                    each client address are a flow to the guest port; idle flows end after 60 s)
 */
public record PortBinding(String bindAddress, int hostPort, int guestPort, NetworkRule.Protocol protocol) {
    public PortBinding {
        bindAddress = bindAddress == null ? "127.0.0.1" : bindAddress;
        protocol = protocol == null ? NetworkRule.Protocol.TCP : protocol;
        if (hostPort < 1 || hostPort > 65535 || guestPort < 1 || guestPort > 65535) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "invalid published port " + hostPort + " -> " + guestPort);
        }
        if (NetworkDestination.Cidr.literal(bindAddress) == null) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "bind address \"" + bindAddress + "\" is not an address literal");
        }
    }

    /** TCP {@code 127.0.0.1:hostPort -> guestPort}. */
    public static PortBinding tcp(int hostPort, int guestPort) {
        return new PortBinding("127.0.0.1", hostPort, guestPort, NetworkRule.Protocol.TCP);
    }

    /** UDP {@code 127.0.0.1:hostPort -> guestPort}. */
    public static PortBinding udp(int hostPort, int guestPort) {
        return new PortBinding("127.0.0.1", hostPort, guestPort, NetworkRule.Protocol.UDP);
    }

    /** TCP {@code bindAddress:hostPort -> guestPort}. */
    public static PortBinding tcp(String bindAddress, int hostPort, int guestPort) {
        return new PortBinding(bindAddress, hostPort, guestPort, NetworkRule.Protocol.TCP);
    }

    /** UDP {@code bindAddress:hostPort -> guestPort}. */
    public static PortBinding udp(String bindAddress, int hostPort, int guestPort) {
        return new PortBinding(bindAddress, hostPort, guestPort, NetworkRule.Protocol.UDP);
    }
}

package io.microsandbox;

import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * One rule of a {@link NetworkPolicy}: what to do ({@link Action}) with connections in a
 * {@link Direction} to a {@link NetworkDestination}, limited to some protocols and ports.
 * The first rule that matches a connection decides.
 *
 * <pre>{@code
 * NetworkRule.deny("10.0.0.0/8")
 * NetworkRule.allow(".example.com").protocols(Protocol.TCP).ports(443)
 * NetworkRule.allow("group:private").ports(5432)
 * }</pre>
 *
 * @param action      allow or deny
 * @param direction   {@link Direction#EGRESS}: connections the guest opens; {@link Direction#INGRESS}:
 *                    connections to its published ports (the destination is then the client's address)
 * @param destination what the rule is about
 * @param protocols   the protocols it applies to; empty: all
 * @param ports       the destination ports (ranges, inclusive) it applies to; empty: all
 */
public record NetworkRule(Action action, Direction direction, NetworkDestination destination, Set<Protocol> protocols,
                          List<PortRange> ports) {

    /** What a rule does with the connections it matches. */
    public enum Action { ALLOW, DENY }

    /** Which connections a rule is about. */
    public enum Direction { EGRESS, INGRESS }

    /** Transport protocols. */
    public enum Protocol { TCP, UDP }

    /** Ports {@code from} to {@code to}, both included. */
    public record PortRange(int from, int to) {
        public PortRange {
            if (from < 1 || to > 65535 || from > to) {
                throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "invalid port range " + from + "-" + to);
            }
        }

        boolean contains(int port) {
            return port >= from && port <= to;
        }

        @Override
        public String toString() {
            return from == to ? Integer.toString(from) : from + "-" + to;
        }
    }

    public NetworkRule {
        if (action == null || direction == null || destination == null) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG, "a network rule needs an action, a direction and a destination");
        }
        protocols = protocols == null ? Set.of() : Set.copyOf(protocols);
        ports = ports == null ? List.of() : List.copyOf(ports);
    }

    /** An egress rule allowing {@code destination} (see {@link NetworkDestination#parse}) on every protocol and port. */
    public static NetworkRule allow(String destination) {
        return new NetworkRule(Action.ALLOW, Direction.EGRESS, NetworkDestination.parse(destination), Set.of(), List.of());
    }

    /** An egress rule denying {@code destination} (see {@link NetworkDestination#parse}) on every protocol and port. */
    public static NetworkRule deny(String destination) {
        return new NetworkRule(Action.DENY, Direction.EGRESS, NetworkDestination.parse(destination), Set.of(), List.of());
    }

    /** This rule limited to {@code protocols}. */
    public NetworkRule protocols(Protocol... protocols) {
        return new NetworkRule(action, direction, destination, Set.of(protocols), ports);
    }

    /** This rule limited to these destination ports. */
    public NetworkRule ports(int... ports) {
        List<PortRange> ranges = new java.util.ArrayList<>();
        for (int p : ports) {
            ranges.add(new PortRange(p, p));
        }
        return new NetworkRule(action, direction, destination, protocols, ranges);
    }

    /** This rule limited to destination ports {@code from} to {@code to}. */
    public NetworkRule portRange(int from, int to) {
        return new NetworkRule(action, direction, destination, protocols, List.of(new PortRange(from, to)));
    }

    /** This rule for the given direction. */
    public NetworkRule direction(Direction direction) {
        return new NetworkRule(action, direction, destination, protocols, ports);
    }

    /** Whether the rule applies to this protocol and port (the destination aside). */
    public boolean appliesTo(Direction direction, Protocol protocol, int port) {
        return this.direction == direction && (protocols.isEmpty() || protocols.contains(protocol))
                && (ports.isEmpty() || ports.stream().anyMatch(r -> r.contains(port)));
    }

    @Override
    public String toString() {
        StringBuilder s = new StringBuilder(action.name().toLowerCase(Locale.ROOT));
        if (direction == Direction.INGRESS) {
            s.append(" ingress");
        }
        s.append(' ').append(destination);
        if (!protocols.isEmpty()) {
            s.append(' ').append(protocols.stream().map(p -> p.name().toLowerCase(Locale.ROOT)).sorted().toList());
        }
        if (!ports.isEmpty()) {
            s.append(" ports ").append(ports);
        }
        return s.toString();
    }
}

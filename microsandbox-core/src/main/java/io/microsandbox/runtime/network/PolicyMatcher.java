package io.microsandbox.runtime.network;

import io.microsandbox.NetworkDestination;
import io.microsandbox.NetworkPolicy;
import io.microsandbox.NetworkRule;
import io.microsandbox.NetworkRule.Action;
import io.microsandbox.NetworkRule.Direction;
import io.microsandbox.NetworkRule.Protocol;
import java.net.InetAddress;
import java.util.Collection;
import java.util.List;
import java.util.Locale;

/** Decides connections and name lookups by a {@link NetworkPolicy}: the first matching rule wins. */
public final class PolicyMatcher {
    private final NetworkPolicy policy;
    private final AddressGroups groups;

    /** A verdict and why: the rule (with its 1-based position) or the default. */
    public record Decision(boolean allowed, String reason) {
    }

    public PolicyMatcher(NetworkPolicy policy, AddressGroups groups) {
        this.policy = policy;
        this.groups = groups;
    }

    /**
     * A connection to {@code address:port}; {@code names} are the names the guest looked up
     * for that address (lower case).
     */
    public Decision connection(Direction direction, Protocol protocol, InetAddress address, int port, Collection<String> names) {
        return connection(direction, protocol, address, port, names, List.of());
    }

    /**
     * A connection, with the names the client itself claimed in its first bytes (TLS SNI,
     * HTTP Host). A deny rule by domain matches when any name, looked up or claimed, matches it;
     * an allow rule by domain only when a looked-up name matches it and so does every claimed
     * one: a denied name cannot hide behind an allowed address, and an allowed name cannot
     * be claimed toward an address it does not resolve to.
     */
    public Decision connection(Direction direction, Protocol protocol, InetAddress address, int port,
                               Collection<String> lookedUp, Collection<String> claimed) {
        int i = 0;
        for (NetworkRule rule : policy.rules()) {
            i++;
            if (rule.appliesTo(direction, protocol, port) && matches(rule, address, lookedUp, claimed)) {
                return new Decision(rule.action() == Action.ALLOW, "rule " + i + " (" + rule + ")");
            }
        }
        if (direction == Direction.INGRESS) {
            return new Decision(true, "default for published ports (allow)");
        }
        return new Decision(policy.defaultAction() == Action.ALLOW,
                "default (" + policy.defaultAction().name().toLowerCase(Locale.ROOT) + ")");
    }

    /** Whether some rule that applies to this protocol and port matches by domain: then the server name matters. */
    public boolean needsServerName(Protocol protocol, int port) {
        return policy.rules().stream().anyMatch(r -> r.appliesTo(Direction.EGRESS, protocol, port)
                && (r.destination().kind() == NetworkDestination.Kind.DOMAIN || r.destination().kind() == NetworkDestination.Kind.DOMAIN_SUFFIX));
    }

    private boolean matches(NetworkRule rule, InetAddress address, Collection<String> lookedUp, Collection<String> claimed) {
        NetworkDestination d = rule.destination();
        if (d.kind() != NetworkDestination.Kind.DOMAIN && d.kind() != NetworkDestination.Kind.DOMAIN_SUFFIX) {
            return matches(d, address, lookedUp);
        }
        if (rule.action() == Action.DENY) {
            return lookedUp.stream().anyMatch(d::matchesName) || claimed.stream().anyMatch(d::matchesName);
        }
        return lookedUp.stream().anyMatch(d::matchesName) && claimed.stream().allMatch(d::matchesName);
    }

    /** A name lookup: the first egress rule that names it by domain, or {@code *} without limits, decides; else it resolves. */
    public Decision lookup(String name) {
        if (!policy.resolveNames()) {
            return new Decision(false, "the policy resolves no names");
        }
        int i = 0;
        for (NetworkRule rule : policy.rules()) {
            i++;
            if (rule.direction() != Direction.EGRESS) {
                continue;
            }
            NetworkDestination d = rule.destination();
            boolean unlimitedAny = d.kind() == NetworkDestination.Kind.ANY && rule.protocols().isEmpty() && rule.ports().isEmpty();
            if (unlimitedAny || d.matchesName(name)) {
                return new Decision(rule.action() == Action.ALLOW, "rule " + i + " (" + rule + ")");
            }
        }
        return new Decision(true, "names resolve unless a rule denies them");
    }

    /**
     * Rebinding protection: may a lookup's answer hold this address? Public addresses may; any
     * other only when the first rule naming addresses (CIDR or group) that covers it allows it.
     */
    public boolean answerAllowed(InetAddress address) {
        if (!policy.rebindingProtection() || groups.in(address, NetworkDestination.Group.PUBLIC)) {
            return true;
        }
        for (NetworkRule rule : policy.rules()) {
            NetworkDestination d = rule.destination();
            boolean byAddress = d.kind() == NetworkDestination.Kind.CIDR || d.kind() == NetworkDestination.Kind.GROUP;
            if (rule.direction() == Direction.EGRESS && byAddress && matches(d, address, java.util.List.of())) {
                return rule.action() == Action.ALLOW;
            }
        }
        return false;
    }

    private boolean matches(NetworkDestination d, InetAddress address, Collection<String> names) {
        return switch (d.kind()) {
            case ANY -> true;
            case CIDR -> d.matchesCidr(address);
            case GROUP -> groups.in(address, d.group());
            case DOMAIN, DOMAIN_SUFFIX -> names.stream().anyMatch(d::matchesName);
        };
    }
}

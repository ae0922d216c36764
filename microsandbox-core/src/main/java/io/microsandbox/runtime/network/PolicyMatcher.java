package io.microsandbox.runtime.network;

import io.microsandbox.NetworkDestination;
import io.microsandbox.NetworkPolicy;
import io.microsandbox.NetworkRule;
import io.microsandbox.NetworkRule.Action;
import io.microsandbox.NetworkRule.Direction;
import io.microsandbox.NetworkRule.Protocol;
import java.net.InetAddress;
import java.util.Collection;
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
     * A connection to {@code address:port}; {@code names} are the names the guest knows the
     * address by (from its lookups, or the TLS SNI / HTTP Host it sent), lower case.
     */
    public Decision connection(Direction direction, Protocol protocol, InetAddress address, int port, Collection<String> names) {
        int i = 0;
        for (NetworkRule rule : policy.rules()) {
            i++;
            if (rule.appliesTo(direction, protocol, port) && matches(rule.destination(), address, names)) {
                return new Decision(rule.action() == Action.ALLOW, "rule " + i + " (" + rule + ")");
            }
        }
        if (direction == Direction.INGRESS) {
            return new Decision(true, "default for published ports (allow)");
        }
        return new Decision(policy.defaultAction() == Action.ALLOW,
                "default (" + policy.defaultAction().name().toLowerCase(Locale.ROOT) + ")");
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

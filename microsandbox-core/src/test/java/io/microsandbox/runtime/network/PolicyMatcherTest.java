package io.microsandbox.runtime.network;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.NetworkDestination;
import io.microsandbox.NetworkDestination.Group;
import io.microsandbox.NetworkPolicy;
import io.microsandbox.NetworkPolicy.Profile;
import io.microsandbox.NetworkRule;
import io.microsandbox.NetworkRule.Direction;
import io.microsandbox.NetworkRule.Protocol;
import java.net.InetAddress;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class PolicyMatcherTest {
    private static final InetAddress HOST_NIC = ip("192.0.2.7");
    private static final AddressGroups GROUPS = new AddressGroups(Set.of(HOST_NIC));

    private static InetAddress ip(String s) {
        return InetLiterals.parse(s);
    }

    private static boolean tcp(NetworkPolicy p, String address, int port, String... names) {
        return new PolicyMatcher(p, GROUPS).connection(Direction.EGRESS, Protocol.TCP, ip(address), port, List.of(names)).allowed();
    }

    @Test
    void groupsClassifyAddresses() {
        assertThat(GROUPS.in(ip("10.1.2.3"), Group.PRIVATE)).isTrue();
        assertThat(GROUPS.in(ip("172.16.0.1"), Group.PRIVATE)).isTrue();
        assertThat(GROUPS.in(ip("172.32.0.1"), Group.PRIVATE)).isFalse();
        assertThat(GROUPS.in(ip("192.168.9.9"), Group.PRIVATE)).isTrue();
        assertThat(GROUPS.in(ip("100.64.0.1"), Group.PRIVATE)).isTrue();
        assertThat(GROUPS.in(ip("fd12::1"), Group.PRIVATE)).isTrue();
        assertThat(GROUPS.in(ip("169.254.169.254"), Group.METADATA)).isTrue();
        assertThat(GROUPS.in(ip("169.254.169.254"), Group.LINK_LOCAL)).isTrue();
        assertThat(GROUPS.in(ip("169.254.1.1"), Group.METADATA)).isFalse();
        assertThat(GROUPS.in(ip("fd00:ec2::254"), Group.METADATA)).isTrue();
        assertThat(GROUPS.in(ip("224.0.0.251"), Group.MULTICAST)).isTrue();
        assertThat(GROUPS.in(ip("127.0.0.1"), Group.LOOPBACK)).isTrue();
        assertThat(GROUPS.in(ip("127.0.0.1"), Group.HOST)).isTrue();
        assertThat(GROUPS.in(ip("0.0.0.0"), Group.HOST)).isTrue();
        assertThat(GROUPS.in(HOST_NIC, Group.HOST)).isTrue();
        assertThat(GROUPS.in(ip("203.0.113.10"), Group.PUBLIC)).isTrue();
        assertThat(GROUPS.in(ip("8.8.8.8"), Group.PUBLIC)).isTrue();
        assertThat(GROUPS.in(ip("2001:db8::1"), Group.PUBLIC)).isTrue();
        for (String notPublic : new String[] {"10.0.0.1", "127.0.0.1", "169.254.169.254", "169.254.3.3", "224.1.1.1",
                "255.255.255.255", "240.0.0.1", "0.0.0.0", "192.0.2.7", "::1", "fe80::1"}) {
            assertThat(GROUPS.in(ip(notPublic), Group.PUBLIC)).as(notPublic).isFalse();
        }
    }

    /** An IPv6 address that carries an IPv4 one (NAT64, 6to4, Teredo, IPv4-compatible) is in that address's groups. */
    @Test
    void addressesCarriedInIpv6AreClassifiedAsTheIpv4TheyReach() {
        assertThat(GROUPS.in(ip("64:ff9b::a9fe:a9fe"), Group.METADATA)).as("NAT64 of 169.254.169.254").isTrue();
        assertThat(GROUPS.in(ip("64:ff9b::a9fe:a9fe"), Group.PUBLIC)).isFalse();
        assertThat(GROUPS.in(ip("64:ff9b::a00:5"), Group.PRIVATE)).as("NAT64 of 10.0.0.5").isTrue();
        assertThat(GROUPS.in(ip("64:ff9b:1::a00:5"), Group.PRIVATE)).as("local-use NAT64").isTrue();
        assertThat(GROUPS.in(ip("2002:a00:5::1"), Group.PRIVATE)).as("6to4 of 10.0.0.5").isTrue();
        assertThat(GROUPS.in(ip("2001:0:4136:e378:8000:63bf:f5ff:fffa"), Group.PRIVATE)).as("Teredo client 10.0.0.5").isTrue();
        assertThat(GROUPS.in(ip("::7f00:1"), Group.LOOPBACK)).as("IPv4-compatible 127.0.0.1").isTrue();
        assertThat(GROUPS.in(ip("::c000:207"), Group.HOST)).as("the host's own address, compatible form").isTrue();
        assertThat(GROUPS.in(ip("64:ff9b::808:808"), Group.PUBLIC)).as("NAT64 of a public address").isTrue();
        assertThat(GROUPS.in(ip("192.0.0.192"), Group.PUBLIC)).isFalse();
        assertThat(GROUPS.in(ip("198.18.0.1"), Group.PUBLIC)).isFalse();
        assertThat(GROUPS.in(ip("198.20.0.1"), Group.PUBLIC)).isTrue();
        assertThat(GROUPS.in(ip("2606:4700::1111"), Group.PUBLIC)).isTrue();
        assertThat(GROUPS.in(ip("::1"), Group.LOOPBACK)).isTrue();
    }

    /** An address the host gains after the sandbox started (a VPN, a privacy IPv6 address) is the host's too, once the read is stale. */
    @Test
    void anAddressTheHostGainsLaterIsTheHostsToo() throws Exception {
        java.util.Set<InetAddress> addresses = new java.util.concurrent.CopyOnWriteArraySet<>(Set.of(HOST_NIC));
        AddressGroups groups = new AddressGroups(() -> addresses, java.time.Duration.ofMillis(50));
        InetAddress later = ip("2001:db8::5");
        assertThat(groups.in(later, Group.HOST)).isFalse();
        addresses.add(later);
        Thread.sleep(100);
        assertThat(groups.in(later, Group.HOST)).isTrue();
        assertThat(groups.in(later, Group.PUBLIC)).isFalse();
        // a read that fails keeps the last good one
        java.util.concurrent.atomic.AtomicBoolean failing = new java.util.concurrent.atomic.AtomicBoolean();
        AddressGroups flaky = new AddressGroups(() -> failing.get() ? null : Set.of(HOST_NIC), java.time.Duration.ofMillis(50));
        failing.set(true);
        Thread.sleep(100);
        assertThat(flaky.in(HOST_NIC, Group.HOST)).isTrue();
    }

    @Test
    void defaultPolicyAllowsOnlyThePublicInternet() {
        NetworkPolicy p = NetworkPolicy.publicOnly();
        assertThat(tcp(p, "203.0.113.10", 80)).isTrue();
        assertThat(tcp(p, "10.200.0.10", 80)).isFalse();
        assertThat(tcp(p, "192.168.1.1", 443)).isFalse();
        assertThat(tcp(p, "169.254.169.254", 80)).isFalse();
        assertThat(tcp(p, "127.0.0.1", 22)).isFalse();
        assertThat(tcp(p, "192.0.2.7", 8080)).isFalse();
        assertThat(new PolicyMatcher(p, GROUPS).lookup("example.com").allowed()).isTrue();
    }

    @Test
    void profilesAddUp() {
        NetworkPolicy p = NetworkPolicy.fromProfiles(Profile.PUBLIC, Profile.PRIVATE);
        assertThat(tcp(p, "10.200.0.10", 80)).isTrue();
        assertThat(tcp(p, "169.254.3.3", 80)).isTrue();
        assertThat(tcp(p, "169.254.169.254", 80)).as("metadata stays denied").isFalse();
        assertThat(tcp(p, "192.0.2.7", 80)).isFalse();
        // the host's own private address (a cloud VM's 10.x) is the host, not the private network
        AddressGroups cloudHost = new AddressGroups(Set.of(ip("10.0.0.5")));
        assertThat(new PolicyMatcher(p, cloudHost).connection(Direction.EGRESS, Protocol.TCP, ip("10.0.0.5"), 22, List.of()).allowed()).isFalse();
        assertThat(new PolicyMatcher(p, cloudHost).connection(Direction.EGRESS, Protocol.TCP, ip("10.0.0.6"), 22, List.of()).allowed()).isTrue();
        NetworkPolicy privateAndHost = NetworkPolicy.fromProfiles(Profile.PRIVATE, Profile.HOST);
        assertThat(new PolicyMatcher(privateAndHost, cloudHost).connection(Direction.EGRESS, Protocol.TCP, ip("10.0.0.5"), 22, List.of()).allowed()).isTrue();
        // other clouds' metadata and credential endpoints are metadata too
        for (String metadata : List.of("169.254.170.2", "169.254.170.23", "100.100.100.200", "168.63.129.16", "fd00:ec2::254")) {
            assertThat(tcp(p, metadata, 80)).as(metadata).isFalse();
            assertThat(tcp(NetworkPolicy.publicOnly(), metadata, 80)).as(metadata).isFalse();
        }
        NetworkPolicy host = NetworkPolicy.fromProfiles(Profile.HOST);
        assertThat(tcp(host, "192.0.2.7", 80)).isTrue();
        assertThat(tcp(host, "127.0.0.1", 80)).isTrue();
        assertThat(tcp(host, "203.0.113.10", 80)).isFalse();
    }

    @Test
    void noneAndAllowAll() {
        assertThat(NetworkPolicy.none().isNone()).isTrue();
        assertThat(tcp(NetworkPolicy.none(), "203.0.113.10", 80)).isFalse();
        assertThat(new PolicyMatcher(NetworkPolicy.none(), GROUPS).lookup("example.com").allowed()).isFalse();
        assertThat(tcp(NetworkPolicy.allowAll(), "169.254.169.254", 80)).isTrue();
        assertThat(new PolicyMatcher(NetworkPolicy.allowAll(), GROUPS).answerAllowed(ip("10.0.0.1"))).isTrue();
        assertThat(NetworkPolicy.publicOnly().isNone()).isFalse();
    }

    @Test
    void firstMatchWins() {
        NetworkPolicy denyFirst = NetworkPolicy.builder()
                .rule(NetworkRule.deny("10.200.0.10"))
                .rule(NetworkRule.allow("10.0.0.0/8"))
                .build();
        assertThat(tcp(denyFirst, "10.200.0.10", 80)).isFalse();
        assertThat(tcp(denyFirst, "10.200.0.11", 80)).isTrue();
        NetworkPolicy allowFirst = NetworkPolicy.builder()
                .rule(NetworkRule.allow("10.0.0.0/8"))
                .rule(NetworkRule.deny("10.200.0.10"))
                .build();
        assertThat(tcp(allowFirst, "10.200.0.10", 80)).isTrue();
        PolicyMatcher.Decision d = new PolicyMatcher(denyFirst, GROUPS)
                .connection(Direction.EGRESS, Protocol.TCP, ip("10.200.0.10"), 80, List.of());
        assertThat(d.reason()).contains("rule 1").contains("deny 10.200.0.10/32");
        assertThat(new PolicyMatcher(denyFirst, GROUPS)
                .connection(Direction.EGRESS, Protocol.TCP, ip("8.8.8.8"), 80, List.of()).reason()).startsWith("default");
    }

    @Test
    void protocolsAndPortsLimitARule() {
        NetworkPolicy p = NetworkPolicy.builder()
                .rule(NetworkRule.allow("group:public").protocols(Protocol.TCP).ports(80, 443))
                .rule(NetworkRule.allow("group:private").portRange(5000, 5010))
                .build();
        assertThat(tcp(p, "203.0.113.10", 443)).isTrue();
        assertThat(tcp(p, "203.0.113.10", 22)).isFalse();
        assertThat(new PolicyMatcher(p, GROUPS).connection(Direction.EGRESS, Protocol.UDP, ip("203.0.113.10"), 443, List.of())
                .allowed()).isFalse();
        assertThat(tcp(p, "10.0.0.1", 5005)).isTrue();
        assertThat(tcp(p, "10.0.0.1", 5011)).isFalse();
    }

    @Test
    void domainsMatchExactlyOrBySuffix() {
        NetworkPolicy p = NetworkPolicy.builder()
                .rule(NetworkRule.deny("bad.example.com"))
                .rule(NetworkRule.allow(".example.com"))
                .rule(NetworkRule.allow("Exact.Test."))
                .build();
        assertThat(tcp(p, "203.0.113.10", 80, "www.example.com")).isTrue();
        assertThat(tcp(p, "203.0.113.10", 80, "example.com")).isTrue();
        assertThat(tcp(p, "203.0.113.10", 80, "notexample.com")).isFalse();
        assertThat(tcp(p, "203.0.113.10", 80, "bad.example.com")).isFalse();
        assertThat(tcp(p, "203.0.113.10", 80, "exact.test")).isTrue();
        assertThat(tcp(p, "203.0.113.10", 80, "sub.exact.test")).isFalse();
        assertThat(tcp(p, "203.0.113.10", 80)).as("no name: domain rules do not match").isFalse();
        PolicyMatcher m = new PolicyMatcher(p, GROUPS);
        assertThat(m.lookup("bad.example.com").allowed()).isFalse();
        assertThat(m.lookup("www.example.com").allowed()).isTrue();
        assertThat(m.lookup("other.test").allowed()).as("names resolve unless denied").isTrue();
    }

    @Test
    void lookupsFollowUnlimitedWildcardsOnly() {
        assertThat(new PolicyMatcher(NetworkPolicy.builder().rule(NetworkRule.deny("*")).build(), GROUPS)
                .lookup("example.com").allowed()).isFalse();
        assertThat(new PolicyMatcher(NetworkPolicy.builder().rule(NetworkRule.deny("*").ports(22)).build(), GROUPS)
                .lookup("example.com").allowed()).isTrue();
    }

    @Test
    void rebindingProtectionRefusesNonPublicAnswersUnlessAllowedByAddress() {
        PolicyMatcher def = new PolicyMatcher(NetworkPolicy.publicOnly(), GROUPS);
        assertThat(def.answerAllowed(ip("203.0.113.10"))).isTrue();
        assertThat(def.answerAllowed(ip("10.200.0.10"))).isFalse();
        assertThat(def.answerAllowed(ip("169.254.169.254"))).isFalse();
        assertThat(def.answerAllowed(ip("127.0.0.1"))).isFalse();
        PolicyMatcher domainOnly = new PolicyMatcher(NetworkPolicy.builder().rule(NetworkRule.allow("internal.test")).build(), GROUPS);
        assertThat(domainOnly.answerAllowed(ip("10.200.0.10"))).as("a domain rule does not vouch for its addresses").isFalse();
        PolicyMatcher byCidr = new PolicyMatcher(NetworkPolicy.builder().rule(NetworkRule.allow("10.200.0.0/24")).build(), GROUPS);
        assertThat(byCidr.answerAllowed(ip("10.200.0.10"))).isTrue();
        assertThat(byCidr.answerAllowed(ip("10.201.0.10"))).isFalse();
    }

    @Test
    void ingressRulesApplyToPublishedPortsOnly() {
        NetworkPolicy p = NetworkPolicy.builder()
                .rule(NetworkRule.deny("10.0.0.0/8").direction(Direction.INGRESS))
                .build();
        PolicyMatcher m = new PolicyMatcher(p, GROUPS);
        assertThat(m.connection(Direction.INGRESS, Protocol.TCP, ip("10.1.1.1"), 8080, List.of()).allowed()).isFalse();
        assertThat(m.connection(Direction.INGRESS, Protocol.TCP, ip("127.0.0.1"), 8080, List.of()).allowed()).isTrue();
        assertThat(m.connection(Direction.EGRESS, Protocol.TCP, ip("203.0.113.10"), 80, List.of()).allowed())
                .as("the ingress rule leaves egress to the default").isFalse();
    }

    @Test
    void destinationsParse() {
        assertThat(NetworkDestination.parse("*").kind()).isEqualTo(NetworkDestination.Kind.ANY);
        assertThat(NetworkDestination.parse("10.1.2.3/8").toString()).isEqualTo("10.0.0.0/8");
        assertThat(NetworkDestination.parse("10.1.2.3").toString()).isEqualTo("10.1.2.3/32");
        assertThat(NetworkDestination.parse("fd00::1/8").kind()).isEqualTo(NetworkDestination.Kind.CIDR);
        assertThat(NetworkDestination.parse("group:Link-Local").group()).isEqualTo(Group.LINK_LOCAL);
        assertThat(NetworkDestination.parse(".Example.COM").toString()).isEqualTo(".example.com");
        for (String bad : new String[] {"", "10.0.0.0/33", "300.1.1.1", "group:nowhere", "a..b", "x y", "-a.com"}) {
            assertThatThrownBy(() -> NetworkDestination.parse(bad)).as(bad)
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
        }
    }

    @Test
    void policiesRoundTripThroughJson() {
        NetworkPolicy p = NetworkPolicy.builder()
                .rule(NetworkRule.deny(".tracker.test").protocols(Protocol.TCP).ports(443).portRange(8000, 8100))
                .rule(NetworkRule.allow("group:public").direction(Direction.INGRESS))
                .defaultAction(NetworkRule.Action.ALLOW)
                .rebindingProtection(false)
                .dnsServers("127.0.0.1:5353", "[::1]:53")
                .tlsInterception(true)
                .tlsBypass("bank.test", ".internal.test")
                .tlsTrustedCaFile("/etc/private-ca.pem")
                .build();
        assertThat(NetworkPolicy.fromJsonNode(p.toJsonNode())).isEqualTo(p);
        assertThat(NetworkPolicy.parseServer("127.0.0.1:5353").getPort()).isEqualTo(5353);
        assertThat(NetworkPolicy.parseServer("10.0.0.2").getPort()).isEqualTo(53);
        assertThatThrownBy(() -> NetworkPolicy.parseServer("dns.example:53")).isInstanceOf(MicrosandboxException.class);
        assertThat(p.tlsBypass()).containsExactly("bank.test", ".internal.test");
        assertThatThrownBy(() -> NetworkPolicy.builder().tlsBypass("10.0.0.0/8")).isInstanceOf(MicrosandboxException.class);
    }
}

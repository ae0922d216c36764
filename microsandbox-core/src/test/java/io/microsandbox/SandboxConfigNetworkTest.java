package io.microsandbox;

import java.util.Map;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class SandboxConfigNetworkTest {
    @Test
    void networkAndPortsArePersistedWithTheConfig() {
        SandboxConfig config = SandboxConfig.builder().image("/rootfs")
                .network(NetworkPolicy.builder().rule(NetworkRule.allow(".example.com").ports(443)).dnsServers("127.0.0.1:5353").build())
                .ports(Map.of(8080, 80))
                .portsUdp(Map.of(5353, 53))
                .portBindings(PortBinding.tcp("0.0.0.0", 9000, 9001))
                .build();
        SandboxConfig back = SandboxConfig.fromJson(config.toJson());
        assertThat(back.network()).isEqualTo(config.network());
        assertThat(back.ports()).containsExactlyInAnyOrderElementsOf(config.ports());
        assertThat(back).isEqualTo(config);
        assertThat(SandboxConfig.builder().image("/rootfs").build().network()).isEqualTo(NetworkPolicy.publicOnly());
        // a config persisted before the network existed reads as the default
        assertThat(SandboxConfig.fromJson("{\"image\":\"/rootfs\"}").network()).isEqualTo(NetworkPolicy.publicOnly());
    }

    /** As the Go SDK's maps merge: the latest mapping of a host port wins. */
    @Test
    void aHostPortMappedAgainGoesToItsLatestGuestPort() {
        SandboxConfig config = SandboxConfig.builder().image("/rootfs").ports(Map.of(8080, 80)).ports(Map.of(8080, 81, 9090, 90))
                .portsUdp(Map.of(8080, 53)).portBindings(PortBinding.tcp("0.0.0.0", 7070, 70)).ports(Map.of(7070, 71)).build();
        assertThat(config.ports()).containsExactlyInAnyOrder(PortBinding.tcp(8080, 81), PortBinding.tcp(9090, 90), PortBinding.udp(8080, 53),
                PortBinding.tcp(7070, 71));
    }

    @Test
    void badPortsAreInvalidConfig() {
        assertThatThrownBy(() -> SandboxConfig.builder().image("/rootfs").ports(Map.of(8080, 80))
                .portBindings(PortBinding.tcp("0.0.0.0", 8080, 81)).build())
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
        assertThatThrownBy(() -> PortBinding.tcp(0, 80)).isInstanceOf(MicrosandboxException.class);
        assertThatThrownBy(() -> PortBinding.tcp("localhost", 8080, 80)).isInstanceOf(MicrosandboxException.class);
        assertThat(PortBinding.udp(5353, 53).bindAddress()).isEqualTo("127.0.0.1");
        assertThat(PortBinding.udp("0.0.0.0", 5353, 53)).isEqualTo(new PortBinding("0.0.0.0", 5353, 53, NetworkRule.Protocol.UDP));
    }
}

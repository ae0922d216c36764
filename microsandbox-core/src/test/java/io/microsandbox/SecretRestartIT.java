package io.microsandbox;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.time.Duration;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Secrets across a restart and a checkpoint restore, against real VMs: their values are never
 * stored, so a start or restore without them is refused with a message that says what to give,
 * and one with them substitutes again, under the placeholder the guest already knows. Needs root
 * (the test host lives in a network namespace, see {@link NetTestHosts}).
 */
class SecretRestartIT {
    private static final String VALUE = "real-restart-" + UUID.randomUUID();
    private static final String PLACEHOLDER = "restart-placeholder-0001";
    private static NetTestHosts hosts;

    @BeforeAll
    static void hosts() throws Exception {
        Assumptions.assumeTrue(NetTestHosts.isRoot(), "SecretRestartIT needs root (network namespaces and veth pairs); skipped");
        hosts = new NetTestHosts(Map.of("pub.test", NetTestHosts.PUBLIC_IP));
        hosts.startAuthorizationChecker("Bearer " + VALUE);
    }

    @AfterAll
    static void cleanUp() throws IOException {
        if (hosts != null) {
            hosts.close();
        }
    }

    /** One plaintext request with the secret's environment variable as bearer token: the server answers ok or bad. */
    private static String request(Sandbox sb) {
        String client = """
                import http.client, os
                c = http.client.HTTPConnection("pub.test", 8080, timeout=30)
                c.request("GET", "/", headers={"Authorization": "Bearer " + os.environ["API_KEY"]})
                print(c.getresponse().read().decode(), flush=True)
                """;
        ExecOutput out = sb.shell("python3 -c '" + client + "'", ExecOptions.builder().timeout(Duration.ofSeconds(120)).build());
        assertThat(out.exitCode()).as(out.stderr()).isZero();
        return out.stdout().trim();
    }

    @Test
    void aRestartOrARestoreNeedsTheValuesAgainAndSubstitutesWithThem() {
        Secret key = Secret.env("API_KEY", VALUE).allowHosts("pub.test").requireTls(false).placeholder(PLACEHOLDER).build();
        NetworkPolicy policy = NetworkPolicy.publicOnly().toBuilder().dnsServers(hosts.dnsServer()).build();
        String name = TestSandboxes.uniqueName("secret-restart");
        String restored = name + "-restored";
        String checkpointName = name + "-cp";
        Microsandbox runtime = Microsandbox.defaultRuntime();
        try {
            try (Sandbox sb = runtime.create(name, TestSandboxes.config().network(policy).secret(key).build())) {
                assertThat(request(sb)).isEqualTo("ok");
                sb.checkpoint(checkpointName);
                sb.stop();
            }

            SandboxHandle stopped = runtime.get(name);
            assertThat(stopped.config().secrets()).singleElement().satisfies(s -> {
                assertThat(s.placeholder()).isEqualTo(PLACEHOLDER);
                assertThat(s.hasValue()).isFalse();
            });
            assertThatThrownBy(stopped::start).isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                assertThat(e.getMessage()).contains("sandbox '" + name + "' uses secrets [API_KEY], whose values are never stored");
            });
            assertThat(runtime.get(name).status().isTerminal()).as("a refused start leaves it stopped").isTrue();
            try (Sandbox again = stopped.start(Map.of("API_KEY", VALUE))) {
                assertThat(again.shell("echo $API_KEY").stdout().trim()).isEqualTo(PLACEHOLDER);
                assertThat(request(again)).isEqualTo("ok");
                again.stop();
            }

            Checkpoint checkpoint = runtime.checkpoints().get(checkpointName);
            assertThatThrownBy(() -> runtime.restore(restored, checkpoint, RestoreOptions.defaults()))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG);
                        assertThat(e.getMessage()).contains("uses secrets [API_KEY]");
                    });
            assertThat(runtime.find(restored)).as("a refused restore leaves no sandbox").isEmpty();
            try (Sandbox back = runtime.restore(restored, checkpoint,
                    RestoreOptions.builder().secretValues(Map.of("API_KEY", VALUE)).build())) {
                assertThat(request(back)).isEqualTo("ok");
            }
        } finally {
            for (String n : new String[] {name, restored}) {
                runtime.find(n).ifPresent(h -> {
                    h.kill();
                    h.remove();
                });
            }
            try {
                runtime.checkpoints().remove(checkpointName);
            } catch (MicrosandboxException e) {
                // never taken
            }
        }
    }
}

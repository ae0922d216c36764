package io.microsandbox.ssh;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.util.Set;
import java.util.stream.Collectors;
import org.apache.sshd.common.keyprovider.KeyPairProvider;
import org.apache.sshd.server.SshServer;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** An SSH server that cannot start releases what it started on the way. */
class SshServerStartTest {
    @Test
    void aServerWhosePortIsTakenFailsTypedAndLeavesNoThreadsBehind() throws Exception {
        Set<Thread> before = Thread.getAllStackTraces().keySet();
        try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getByName(SshServerEndpoint.HOST))) {
            for (int i = 0; i < 3; i++) {
                SshServer server = SshServer.setUpDefaultServer();
                server.setHost(SshServerEndpoint.HOST);
                server.setPort(taken.getLocalPort());
                server.setKeyPairProvider(KeyPairProvider.wrap(SshKeys.generate()));
                server.setPublickeyAuthenticator((user, key, session) -> false);
                assertThatThrownBy(() -> SandboxSsh.startOrRelease(server, "sandbox test"))
                        .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                            assertThat(e.kind()).isEqualTo(ErrorKind.IO);
                            assertThat(e.getMessage()).contains(Integer.toString(taken.getLocalPort())).contains("sandbox test");
                        });
                assertThat(server.isOpen()).isFalse();
            }
        }
        long deadline = System.nanoTime() + 10_000_000_000L;
        Set<String> left;
        do {
            Thread.sleep(100);
            left = Thread.getAllStackTraces().keySet().stream().filter(t -> !before.contains(t) && t.isAlive())
                    .map(Thread::getName).filter(n -> n.startsWith("sshd-")).collect(Collectors.toSet());
        } while (!left.isEmpty() && System.nanoTime() < deadline);
        assertThat(left).as("threads of the failed servers").isEmpty();
    }
}

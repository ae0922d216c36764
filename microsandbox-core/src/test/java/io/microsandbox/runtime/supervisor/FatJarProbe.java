package io.microsandbox.runtime.supervisor;

import io.microsandbox.Microsandbox;
import io.microsandbox.NetworkPolicy;
import io.microsandbox.Sandbox;
import io.microsandbox.SandboxConfig;
import java.nio.file.Path;
import java.util.List;

/**
 * The main class of the fat jar {@link FatJarIT} builds: started with {@code java -jar}, it
 * boots a sandbox with TLS interception on the home, kernel and image given as arguments and
 * runs Python in it.
 */
public final class FatJarProbe {
    private FatJarProbe() {
    }

    public static void main(String[] args) {
        Microsandbox runtime = Microsandbox.builder().home(Path.of(args[0])).kernelDir(Path.of(args[1])).build();
        System.out.println("core location: " + Microsandbox.class.getProtectionDomain().getCodeSource().getLocation());
        SupervisorClassPath.ClassPaths classPaths = SupervisorClassPath.forHome(runtime.home());
        System.out.println("supervisor class path: " + classPaths.supervisor());
        // TLS interception: the supervisor mints certificates with Bouncy Castle, which it gets apart
        System.out.println("tls class path: " + classPaths.tls());
        NetworkPolicy intercepting = NetworkPolicy.publicOnly().toBuilder().tlsInterception(true).build();
        try (Sandbox sb = runtime.create("fat-jar", SandboxConfig.builder().image(args[2]).memoryMib(256).ephemeral(true)
                .network(intercepting).build())) {
            System.out.println("python says: " + sb.exec("python3", List.of("-c", "print(6 * 7)")).stdout().strip());
            System.out.println("guest trusts the CA: " + sb.shell("grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt").stdout().strip());
        }
        System.out.println("left behind: " + runtime.list().size());
    }
}

package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.runtime.network.LeafCertificates;
import java.io.File;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import javax.net.ssl.SSLContext;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TlsLibrariesTest {
    private static final String AUTHORITY = "io.microsandbox.runtime.network.TlsAuthority";

    /**
     * Under a parent that has the core but no Bouncy Castle, as a supervisor's application
     * class loader, the authority is defined by a loader of its own, finds Bouncy Castle there,
     * and mints a certificate; the interface the relay holds is still the parent's.
     */
    @Test
    void theAuthorityFindsBouncyCastleInALoaderOfItsOwn(@TempDir Path home) throws Exception {
        URL core = TlsLibraries.class.getProtectionDomain().getCodeSource().getLocation();
        List<String> bouncyCastle = SupervisorClassPath.locations(SupervisorClassPath.TLS_CLASSES, true).stream()
                .map(location -> SupervisorClassPath.parse(location).file().toString()).distinct().toList();
        try (URLClassLoader supervisor = new URLClassLoader(new URL[] {core}, ClassLoader.getPlatformClassLoader())) {
            assertThat(supervisor.getResource("org/bouncycastle/asn1/x500/X500Name.class")).isNull();
            ClassLoader loader = TlsLibraries.loaderFor(String.join(File.pathSeparator, bouncyCastle), supervisor);

            Class<?> authority = Class.forName(AUTHORITY, true, loader);
            assertThat(authority.getClassLoader()).isSameAs(loader);
            assertThat(Class.forName("org.bouncycastle.asn1.x500.X500Name", false, loader).getClassLoader()).isSameAs(loader);
            Class<?> leafCertificates = Class.forName(LeafCertificates.class.getName(), false, loader);
            assertThat(leafCertificates.getClassLoader()).isSameAs(supervisor);
            assertThat(leafCertificates.isAssignableFrom(authority)).isTrue();

            Object opened = authority.getMethod("open", Path.class).invoke(null, home);
            Object context = leafCertificates.getMethod("serverContext", String.class).invoke(opened, "www.example.test");
            assertThat(context).isInstanceOf(SSLContext.class);
            assertThat(Files.readString(home.resolve("tls/ca.pem"))).startsWith("-----BEGIN CERTIFICATE-----");
        }
    }

    @Test
    void withoutAClassPathOfItsOwnTheAuthorityComesFromTheParent(@TempDir Path home) throws Exception {
        ClassLoader parent = TlsLibrariesTest.class.getClassLoader();
        assertThat(TlsLibraries.loaderFor("", parent)).isSameAs(parent);
        assertThat(TlsLibraries.open(home).serverContext("host.test")).isNotNull();
    }
}

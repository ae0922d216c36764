package io.microsandbox.runtime.network;

import java.math.BigInteger;
import java.net.InetAddress;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.util.Date;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The upstream of an intercepted connection must hold a certificate for the name the guest
 * asked for: secrets allowed for that name go over it. A server whose certificate names only its
 * address is refused (the JDK would accept it for a socket connected to the bare address).
 */
class UpstreamTlsIdentityTest {

    @Test
    @Timeout(60)
    void anUpstreamCertifiedOnlyForItsAddressIsRefused() throws Exception {
        InetAddress loopback = InetAddress.getByName("127.0.0.1");
        try (Server server = new Server(new GeneralName(GeneralName.iPAddress, "127.0.0.1"))) {
            assertThatThrownBy(() -> NetworkRelay.connectTlsVerifiedFor(server.trusting(), loopback, server.port(), "api.test", 5000).close())
                    .isInstanceOf(javax.net.ssl.SSLHandshakeException.class);
        }
        try (Server server = new Server(new GeneralName(GeneralName.dNSName, "api.test"))) {
            try (SSLSocket up = NetworkRelay.connectTlsVerifiedFor(server.trusting(), loopback, server.port(), "api.test", 5000)) {
                assertThat(up.getSession().getPeerHost()).isEqualTo("api.test");
            }
        }
    }

    /** A TLS server on 127.0.0.1 with a self-signed certificate for one subject alternative name. */
    private static final class Server implements AutoCloseable {
        private final KeyStore trust;
        private final SSLServerSocket socket;

        Server(GeneralName san) throws Exception {
            KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
            g.initialize(256);
            KeyPair pair = g.generateKeyPair();
            Instant now = Instant.now();
            X500Name subject = new X500Name("CN=upstream");
            JcaX509v3CertificateBuilder b = new JcaX509v3CertificateBuilder(subject, BigInteger.ONE,
                    Date.from(now.minus(Duration.ofDays(1))), Date.from(now.plus(Duration.ofDays(1))), subject, pair.getPublic());
            b.addExtension(Extension.subjectAlternativeName, false, new GeneralNames(san));
            X509Certificate cert = new JcaX509CertificateConverter()
                    .getCertificate(b.build(new JcaContentSignerBuilder("SHA256withECDSA").build(pair.getPrivate())));
            KeyStore keys = KeyStore.getInstance("PKCS12");
            keys.load(null, null);
            keys.setKeyEntry("k", pair.getPrivate(), new char[0], new java.security.cert.Certificate[] {cert});
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(keys, new char[0]);
            SSLContext serverContext = SSLContext.getInstance("TLS");
            serverContext.init(kmf.getKeyManagers(), null, null);
            socket = (SSLServerSocket) serverContext.getServerSocketFactory().createServerSocket(0, 4, InetAddress.getByName("127.0.0.1"));
            Thread t = new Thread(() -> {
                while (!socket.isClosed()) {
                    try (SSLSocket s = (SSLSocket) socket.accept()) {
                        s.startHandshake();
                        s.getInputStream().read();
                    } catch (java.io.IOException e) {
                        // the client refused the certificate, or went
                    }
                }
            }, "tls-upstream");
            t.setDaemon(true);
            t.start();
            trust = KeyStore.getInstance("PKCS12");
            trust.load(null, null);
            trust.setCertificateEntry("upstream", cert);
        }

        SSLContext trusting() throws Exception {
            TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            tmf.init(trust);
            SSLContext c = SSLContext.getInstance("TLS");
            c.init(null, tmf.getTrustManagers(), null);
            return c;
        }

        int port() {
            return socket.getLocalPort();
        }

        @Override
        public void close() throws Exception {
            socket.close();
        }
    }
}

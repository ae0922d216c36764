package io.microsandbox.runtime.network;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.OwnerOnly;
import java.io.IOException;
import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.Date;
import java.util.Map;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;
import org.bouncycastle.openssl.jcajce.JcaPEMWriter;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/**
 * The certificate authority of TLS interception: created once under {@code <home>/tls}
 * ({@code ca.pem}, {@code ca.key} owner-only), installed into guests' trust stores, and signing
 * a leaf certificate per host name, minted on first use and kept for the supervisor's life.
 */
public final class TlsAuthority implements LeafCertificates {
    private static final SecureRandom RANDOM = new SecureRandom();
    private final X509Certificate ca;
    private final PrivateKey caKey;
    private final String caPem;
    /** Leaves kept at most: a guest naming random subdomains under a wildcard host would otherwise add one each for ever. */
    static final int MAX_LEAVES = 256;
    /** A leaf is minted again after this: it is valid for 30 days, and a sandbox may run longer. */
    private static final Duration LEAF_REFRESH = Duration.ofDays(7);

    private record Leaf(SSLContext context, Instant minted) {
    }

    /** Least recently used first; guarded by itself. */
    private final Map<String, Leaf> leaves = new java.util.LinkedHashMap<>(16, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<String, Leaf> eldest) {
            return size() > MAX_LEAVES;
        }
    };

    private TlsAuthority(X509Certificate ca, PrivateKey caKey, String caPem) {
        this.ca = ca;
        this.caKey = caKey;
        this.caPem = caPem;
    }

    /** The home's authority, created on first use. */
    public static synchronized TlsAuthority open(Path home) {
        Path dir = home.resolve("tls");
        Path cert = dir.resolve("ca.pem");
        Path key = dir.resolve("ca.key");
        try {
            if (!Files.exists(cert) || !Files.exists(key)) {
                OwnerOnly.directories(home, dir);
                try (java.nio.channels.FileChannel creating = awaitCreationLock(dir.resolve(".create.lock"))) {
                    // another process may have made the pair while this one waited: it is made once
                    if (!Files.exists(cert) || !Files.exists(key)) {
                        create(cert, key);
                    }
                }
            }
            String certPem = Files.readString(cert, StandardCharsets.US_ASCII);
            X509Certificate c;
            PrivateKey k;
            try (PEMParser p = new PEMParser(new StringReader(certPem))) {
                c = new JcaX509CertificateConverter().getCertificate((X509CertificateHolder) p.readObject());
            }
            try (PEMParser p = new PEMParser(new StringReader(Files.readString(key, StandardCharsets.US_ASCII)))) {
                Object o = p.readObject();
                k = new JcaPEMKeyConverter().getPrivateKey(o instanceof org.bouncycastle.openssl.PEMKeyPair pair
                        ? pair.getPrivateKeyInfo() // an "EC PRIVATE KEY"
                        : (PrivateKeyInfo) o);
            }
            return new TlsAuthority(c, k, certPem);
        } catch (IOException | java.security.GeneralSecurityException | org.bouncycastle.operator.OperatorCreationException | ClassCastException e) {
            throw new MicrosandboxException(ErrorKind.TLS, "cannot open the TLS interception CA under " + dir + ": " + e.getMessage(), e);
        }
    }

    /** A new CA: the key first, then the certificate, each written whole, under the creation lock. */
    private static void create(Path cert, Path key) throws IOException, java.security.GeneralSecurityException,
            org.bouncycastle.operator.OperatorCreationException {
        KeyPair pair = ecKeys();
        Instant now = Instant.now();
        X500Name name = new X500Name("CN=microsandbox CA " + Long.toHexString(RANDOM.nextLong()));
        JcaX509v3CertificateBuilder b = new JcaX509v3CertificateBuilder(name, new BigInteger(64, RANDOM),
                Date.from(now.minus(Duration.ofDays(1))), Date.from(now.plus(Duration.ofDays(3650))), name, pair.getPublic());
        b.addExtension(Extension.basicConstraints, true, new BasicConstraints(0));
        b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign));
        X509Certificate c = sign(b, pair.getPrivate());
        OwnerOnly.write(key, pem(new org.bouncycastle.openssl.jcajce.JcaPKCS8Generator(pair.getPrivate(), null))
                .getBytes(StandardCharsets.US_ASCII));
        OwnerOnly.write(cert, pem(c).getBytes(StandardCharsets.US_ASCII));
    }

    /** How long a process waits for another that creates the CA (a key pair and a signature: milliseconds). */
    private static final Duration CREATION_WAIT = Duration.ofSeconds(30);

    /**
     * The lock under which one process at a time creates the CA: two at once would leave one's
     * key beside the other's certificate. A {@code FileChannel} lock, not the JNI library's
     * (this class may live in a class loader of its own, which cannot load that library again);
     * within a JVM {@link #open} is synchronized, so no other channel of it is on the file.
     */
    private static java.nio.channels.FileChannel awaitCreationLock(Path file) throws IOException {
        java.nio.channels.FileChannel channel = OwnerOnly.open(file, java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.WRITE);
        long deadline = System.nanoTime() + CREATION_WAIT.toNanos();
        try {
            while (tryLock(channel) == null) {
                if (System.nanoTime() - deadline > 0) {
                    throw new IOException("another process has been creating the CA (" + file + " is locked) for over " + CREATION_WAIT);
                }
                Thread.sleep(10);
            }
            return channel; // closing it lets go of the lock
        } catch (InterruptedException e) {
            channel.close();
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while another process created the CA", e);
        } catch (IOException | RuntimeException e) {
            channel.close();
            throw e;
        }
    }

    /** The lock, or null while another holds it (in this JVM too: the authority loaded by a second class loader). */
    private static java.nio.channels.FileLock tryLock(java.nio.channels.FileChannel channel) throws IOException {
        try {
            return channel.tryLock();
        } catch (java.nio.channels.OverlappingFileLockException e) {
            return null;
        }
    }

    /** The CA certificate, PEM: what guests trust. */
    public String caPem() {
        return caPem;
    }

    /** A server context presenting a leaf certificate for {@code host}, signed by this CA. */
    @Override
    public SSLContext serverContext(String host) {
        synchronized (leaves) {
            Leaf kept = leaves.get(host);
            if (kept != null && kept.minted().plus(LEAF_REFRESH).isAfter(Instant.now())) {
                return kept.context();
            }
        }
        // minted outside the lock: other names' handshakes do not wait for it
        Leaf fresh = new Leaf(mint(host), Instant.now());
        synchronized (leaves) {
            leaves.put(host, fresh);
        }
        return fresh.context();
    }

    /** How many leaves are kept, for tests. */
    int keptLeaves() {
        synchronized (leaves) {
            return leaves.size();
        }
    }

    private SSLContext mint(String host) {
        try {
            KeyPair pair = ecKeys();
            Instant now = Instant.now();
            JcaX509v3CertificateBuilder b = new JcaX509v3CertificateBuilder(ca, new BigInteger(64, RANDOM),
                    Date.from(now.minus(Duration.ofDays(1))), Date.from(now.plus(Duration.ofDays(30))),
                    new X500Name("CN=" + host.replaceAll("[,=+<>#;\"\\\\]", "")), pair.getPublic());
            b.addExtension(Extension.subjectAlternativeName, false, new GeneralNames(new GeneralName(GeneralName.dNSName, host)));
            b.addExtension(Extension.basicConstraints, true, new BasicConstraints(false));
            b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.digitalSignature));
            b.addExtension(Extension.extendedKeyUsage, false, new ExtendedKeyUsage(KeyPurposeId.id_kp_serverAuth));
            X509Certificate leaf = sign(b, caKey);
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(null, null);
            char[] pw = new char[0];
            ks.setKeyEntry("leaf", pair.getPrivate(), pw, new X509Certificate[] {leaf, ca});
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, pw);
            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(kmf.getKeyManagers(), null, null);
            return ctx;
        } catch (IOException | java.security.GeneralSecurityException | org.bouncycastle.operator.OperatorCreationException e) {
            throw new MicrosandboxException(ErrorKind.TLS, "cannot mint a certificate for " + host + ": " + e.getMessage(), e);
        }
    }

    private static KeyPair ecKeys() throws java.security.GeneralSecurityException {
        KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
        g.initialize(new ECGenParameterSpec("secp256r1"), RANDOM);
        return g.generateKeyPair();
    }

    private static X509Certificate sign(JcaX509v3CertificateBuilder b, PrivateKey key)
            throws org.bouncycastle.operator.OperatorCreationException, java.security.cert.CertificateException {
        return new JcaX509CertificateConverter().getCertificate(b.build(new JcaContentSignerBuilder("SHA256withECDSA").build(key)));
    }

    private static String pem(Object o) throws IOException {
        StringWriter w = new StringWriter();
        try (JcaPEMWriter p = new JcaPEMWriter(w)) {
            p.writeObject(o);
        }
        return w.toString();
    }
}

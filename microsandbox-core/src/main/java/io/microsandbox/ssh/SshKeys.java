package io.microsandbox.ssh;

import io.microsandbox.runtime.OwnerOnly;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PublicKey;
import java.security.spec.ECGenParameterSpec;
import java.util.ArrayList;
import java.util.List;
import org.apache.sshd.common.config.keys.AuthorizedKeyEntry;
import org.apache.sshd.common.config.keys.PublicKeyEntry;
import org.apache.sshd.common.config.keys.PublicKeyEntryResolver;
import org.apache.sshd.common.config.keys.writer.openssh.OpenSSHKeyPairResourceWriter;
import org.apache.sshd.common.keyprovider.FileKeyPairProvider;

/** Key pairs in OpenSSH's own file formats: ECDSA P-256, which the JDK makes without extra providers. */
final class SshKeys {
    private SshKeys() {
    }

    static KeyPair generate() {
        try {
            KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
            g.initialize(new ECGenParameterSpec("secp256r1"));
            return g.generateKeyPair();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("the JDK cannot generate an EC P-256 key pair", e);
        }
    }

    /**
     * The key pair in {@code privateKey} (OpenSSH format), generated and written there first
     * (0600, and {@code privateKey.pub} beside it) when the file does not exist yet.
     */
    static KeyPair loadOrCreate(Path privateKey, String comment) throws IOException {
        if (!Files.exists(privateKey)) {
            KeyPair pair = generate();
            write(privateKey, pair, comment);
            return pair;
        }
        requirePrivate(privateKey);
        FileKeyPairProvider provider = new FileKeyPairProvider(privateKey);
        try {
            for (KeyPair pair : provider.loadKeys(null)) {
                return pair;
            }
        } catch (RuntimeException e) {
            throw new IOException("cannot read the key in " + privateKey + ": " + e.getMessage(), e);
        }
        throw new IOException(privateKey + " holds no key");
    }

    /**
     * Refuses a private key file that is a symbolic link or that its group or others may read
     * or write: whoever can read a host key can pose as the endpoint, whoever can replace a
     * client key can log in.
     */
    static void requirePrivate(Path privateKey) throws IOException {
        PosixFileAttributes attrs = Files.readAttributes(privateKey, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        if (!attrs.isRegularFile()) {
            throw new IOException(privateKey + " is not a regular file (a symbolic link?); a key file must be one");
        }
        if (!OwnerOnly.isOwnerOnly(attrs.permissions())) {
            throw new IOException(privateKey + " is open to its group or others (" + PosixFilePermissions.toString(attrs.permissions())
                    + "); a private key must be owner-only (chmod 600) or removed to be generated anew");
        }
    }

    /** Writes the private key (0600, atomically) and the public key as {@code <file>.pub}. */
    static void write(Path privateKey, KeyPair pair, String comment) throws IOException {
        OwnerOnly.directories(privateKey.getParent(), privateKey.getParent());
        ByteArrayOutputStream priv = new ByteArrayOutputStream();
        try {
            OpenSSHKeyPairResourceWriter.INSTANCE.writePrivateKey(pair, comment, null, priv);
        } catch (GeneralSecurityException e) {
            throw new IOException("cannot encode the key pair: " + e.getMessage(), e);
        }
        OwnerOnly.write(privateKey, priv.toByteArray());
        OwnerOnly.write(publicKeyFile(privateKey), (PublicKeyEntry.toString(pair.getPublic()) + " " + comment + "\n").getBytes(StandardCharsets.UTF_8));
    }

    static Path publicKeyFile(Path privateKey) {
        return privateKey.resolveSibling(privateKey.getFileName() + ".pub");
    }

    /**
     * The keys of an {@code authorized_keys} or {@code .pub} file. A key with options
     * ({@code command=}, {@code restrict}, {@code from=}, ...) is refused: this server would not
     * enforce them, so a key limited to one command would get a shell.
     */
    static List<PublicKey> readAuthorized(Path file) throws IOException {
        List<PublicKey> keys = new ArrayList<>();
        try {
            for (AuthorizedKeyEntry entry : AuthorizedKeyEntry.readAuthorizedKeys(file)) {
                if (entry.getLoginOptions() != null && !entry.getLoginOptions().isEmpty()) {
                    throw new IOException("the key " + (entry.getComment() == null ? "" : "'" + entry.getComment() + "' ") + "in " + file
                            + " has options (" + String.join(", ", entry.getLoginOptions().keySet())
                            + ") that this SSH server does not enforce; give it the key without them");
                }
                keys.add(entry.resolvePublicKey(null, PublicKeyEntryResolver.FAILING));
            }
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            throw new IOException("cannot read the keys in " + file + ": " + e.getMessage(), e);
        }
        return keys;
    }
}

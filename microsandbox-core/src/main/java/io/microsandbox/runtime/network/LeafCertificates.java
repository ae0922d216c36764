package io.microsandbox.runtime.network;

import javax.net.ssl.SSLContext;

/**
 * What TLS interception presents to the guest: a server context per host name, with a leaf
 * certificate signed by the interception CA. {@link TlsAuthority} is the implementation; the
 * relay sees only this interface, so that a supervisor can load the authority (and Bouncy
 * Castle under it) in a class loader of its own.
 */
public interface LeafCertificates {
    /** A server context presenting a leaf certificate for {@code host}. */
    SSLContext serverContext(String host);
}

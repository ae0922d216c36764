package io.microsandbox.runtime.supervisor;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.network.LeafCertificates;
import java.io.File;
import java.lang.reflect.InvocationTargetException;
import java.net.MalformedURLException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Bouncy Castle in a supervisor, which mints TLS interception's certificates with it
 * ({@code runtime.network.TlsAuthority}). Its jars stay off the supervisor's class path: any
 * service look-up (sqlite-jdbc's logging starts one) opens every jar there and keeps each one's
 * directory on the heap, close to 1 MiB for Bouncy Castle's 8,000 entries, in every supervisor,
 * most of which never intercept (an idle supervisor's RSS went from 51.7 to 50.0 MiB without
 * them). The creator passes them in {@value #CLASS_PATH_PROPERTY} instead, and the first
 * sandbox that intercepts loads the authority in a class loader of its own over them. Without the property (a class path named by hand, or one jar holding
 * everything) the authority and Bouncy Castle come from the supervisor's class path.
 */
final class TlsLibraries {
    /** System property of the supervisor JVM: the class path of the libraries only TLS interception uses. */
    static final String CLASS_PATH_PROPERTY = "microsandbox.supervisor.tlsClassPath";
    private static final String AUTHORITY = "io.microsandbox.runtime.network.TlsAuthority";

    private static ClassLoader loader; // guarded by TlsLibraries.class

    private TlsLibraries() {
    }

    /**
     * The interception CA of {@code home} (created on first use), loaded with Bouncy Castle.
     *
     * @throws MicrosandboxException {@link ErrorKind#TLS} when the CA cannot be opened or Bouncy
     *         Castle cannot be loaded
     */
    static LeafCertificates open(Path home) {
        try {
            Class<?> authority = Class.forName(AUTHORITY, true, loader());
            return (LeafCertificates) authority.getMethod("open", Path.class).invoke(null, home);
        } catch (InvocationTargetException e) {
            Throwable cause = e.getCause();
            if (cause instanceof MicrosandboxException typed) {
                throw typed;
            }
            if (cause instanceof LinkageError) {
                throw unavailable(cause);
            }
            if (cause instanceof Error error) {
                throw error;
            }
            throw new MicrosandboxException(ErrorKind.TLS, "cannot open the TLS interception CA under " + home + ": " + cause, cause);
        } catch (ReflectiveOperationException | LinkageError | MalformedURLException | ClassCastException
                | java.nio.file.InvalidPathException e) {
            throw unavailable(e);
        }
    }

    private static MicrosandboxException unavailable(Throwable cause) {
        return new MicrosandboxException(ErrorKind.TLS, "TLS interception cannot load Bouncy Castle (bcprov, bcpkix, bcutil) in the"
                + " supervisor: " + cause + "; with -D" + SupervisorClassPath.OVERRIDE_PROPERTY + " the class path named there must"
                + " hold them too", cause);
    }

    private static synchronized ClassLoader loader() throws MalformedURLException {
        if (loader == null) {
            loader = loaderFor(System.getProperty(CLASS_PATH_PROPERTY, ""), TlsLibraries.class.getClassLoader());
        }
        return loader;
    }

    /** {@code parent} when {@code classPath} is empty, else an {@link AuthorityLoader} over it and the core. */
    static ClassLoader loaderFor(String classPath, ClassLoader parent) throws MalformedURLException {
        if (classPath.isBlank()) {
            return parent;
        }
        List<URL> urls = new ArrayList<>();
        // the authority's own class file: in the core, with this class
        urls.add(TlsLibraries.class.getProtectionDomain().getCodeSource().getLocation());
        for (String entry : classPath.split(File.pathSeparator)) {
            if (!entry.isEmpty()) {
                urls.add(Path.of(entry).toUri().toURL());
            }
        }
        return new AuthorityLoader(urls.toArray(URL[]::new), parent);
    }

    /**
     * Defines the authority itself, so that its references to Bouncy Castle resolve here;
     * everything else (the core, the JDK) comes from the parent as usual, the
     * {@link LeafCertificates} the relay holds included.
     */
    private static final class AuthorityLoader extends URLClassLoader {
        static {
            registerAsParallelCapable();
        }

        AuthorityLoader(URL[] urls, ClassLoader parent) {
            super("microsandbox-tls", urls, parent);
        }

        @Override
        protected Class<?> loadClass(String name, boolean resolve) throws ClassNotFoundException {
            if (!name.equals(AUTHORITY) && !name.startsWith(AUTHORITY + "$")) {
                return super.loadClass(name, resolve);
            }
            synchronized (getClassLoadingLock(name)) {
                Class<?> type = findLoadedClass(name);
                if (type == null) {
                    type = findClass(name);
                }
                if (resolve) {
                    resolveClass(type);
                }
                return type;
            }
        }
    }
}

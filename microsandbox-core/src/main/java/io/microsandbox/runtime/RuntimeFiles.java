package io.microsandbox.runtime;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;

/**
 * Locates the microsandbox home directory and unpacks the native files the core jar carries
 * (the JNI library {@code libmsbjni.so}, the guest agent {@code msb-agent}) onto disk, where
 * they can be loaded or copied.
 *
 * <p>Files are extracted to {@code <home>/runtime/<version>-<hash>/<name>}, where the hash is
 * the first 12 hex digits of the SHA-256 of the file's bytes. Extraction is atomic (temp file
 * in the same directory, then an atomic rename), so any number of JVMs may race on it, and a
 * file already there with identical content is reused. The home, the runtime directories and
 * the files are the owner's only ({@code 0700}, see {@link OwnerOnly}). A JVM started by
 * another (a supervisor) uses the copies its parent handed down instead, see
 * {@link #HANDED_DOWN_PREFIX}.
 */
public final class RuntimeFiles {

    /** Classpath folder holding the native files built for this platform. */
    public static final String RESOURCE_DIR = "/io/microsandbox/native/linux-x86_64/";

    /** System property naming the microsandbox home directory. */
    public static final String HOME_PROPERTY = "microsandbox.home";

    /** Environment variable naming the microsandbox home directory. */
    public static final String HOME_ENV = "MSB_HOME";

    /**
     * Prefix of the system properties ({@code microsandbox.native.<file name>}) by which a JVM
     * hands the files it extracted to a JVM it starts (a supervisor): the child uses them as
     * they are instead of reading each resource out of its jar and comparing it with the file
     * (30-50 ms of a supervisor's start for SQLite's library).
     */
    static final String HANDED_DOWN_PREFIX = "microsandbox.native.";

    private static final ConcurrentMap<String, Path> EXTRACTED = new ConcurrentHashMap<>();

    /** Where this JVM's own native libraries go; see {@link #nativeHome()}. */
    private static volatile Path nativeHome;

    private RuntimeFiles() {
    }

    /**
     * The home under which this JVM's own native libraries (the JNI library, SQLite's) are
     * extracted: loaded once per JVM, they go under the home of the first
     * {@code io.microsandbox.Microsandbox} runtime that used its home (opened its database) in this JVM, else the
     * {@linkplain #defaultHome() default home}.
     */
    public static Path nativeHome() {
        Path home = nativeHome;
        return home != null ? home : defaultHome();
    }

    /** Makes {@code home} the {@link #nativeHome()} unless one was chosen before. */
    public static void preferNativeHome(Path home) {
        synchronized (RuntimeFiles.class) {
            if (nativeHome == null) {
                nativeHome = home.toAbsolutePath().normalize();
            }
        }
    }

    /**
     * The microsandbox home directory: the system property {@value #HOME_PROPERTY}, else the
     * environment variable {@value #HOME_ENV}, else {@code ~/.microsandbox}. Not created here.
     *
     * @return the absolute home directory
     */
    public static Path defaultHome() {
        String dir = System.getProperty(HOME_PROPERTY);
        if (dir == null || dir.isBlank()) {
            dir = System.getenv(HOME_ENV);
        }
        if (dir == null || dir.isBlank()) {
            return Path.of(System.getProperty("user.home"), ".microsandbox").toAbsolutePath();
        }
        return Path.of(dir).toAbsolutePath();
    }

    /** {@code home} with its symbolic links resolved as far as it exists (it may not yet). */
    public static Path realHome(Path home) {
        Path abs = home.toAbsolutePath().normalize();
        try {
            return abs.toRealPath();
        } catch (java.io.IOException e) {
            return abs;
        }
    }

    /**
     * Whether {@code real} (a path with its links resolved) is the root, the home, a directory
     * holding the home or one inside it: the home holds every sandbox's disks, SSH keys and
     * state, so none of these may become what a guest sees.
     */
    public static boolean overlapsHome(Path home, Path real) {
        Path realHome = realHome(home);
        return real.getNameCount() == 0 || realHome.startsWith(real) || real.startsWith(realHome);
    }

    /**
     * The version used in runtime directory names: the jar manifest's
     * {@code Implementation-Version}, or {@code "dev"} outside a jar that has one.
     *
     * @return the version string, never null
     */
    public static String version() {
        Package p = RuntimeFiles.class.getPackage();
        String v = p == null ? null : p.getImplementationVersion();
        return v == null || v.isBlank() ? "dev" : v.replaceAll("[^A-Za-z0-9._+-]", "_");
    }

    /**
     * Extracts the native file {@code name} from the classpath folder {@value #RESOURCE_DIR}
     * to {@code <defaultHome>/runtime/<version>-<sha256 prefix>/<name>}, marks it executable
     * by its owner only ({@code 0700}, the directories too) and returns its path. Reuses an identical file already there; results are cached per
     * name for the life of the JVM.
     *
     * @param name plain file name, e.g. {@code libmsbjni.so} or {@code msb-agent}
     * @return absolute path of the extracted file
     * @throws IllegalArgumentException if {@code name} is not a plain file name
     * @throws IllegalStateException if the resource is not on the classpath (the native build
     *     did not run, or this platform is not supported)
     * @throws UncheckedIOException if the file cannot be written
     */
    public static Path extract(String name) {
        return extract(defaultHome(), name);
    }

    /**
     * Like {@link #extract(String)}, under {@code <home>/runtime/} of the given home.
     *
     * @param home the microsandbox home directory
     * @param name plain file name, e.g. {@code msb-agent}
     * @return absolute path of the extracted file
     */
    public static Path extract(Path home, String name) {
        if (name == null || name.isEmpty() || name.contains("/") || name.equals(".") || name.equals("..")) {
            throw new IllegalArgumentException("not a plain file name: " + name);
        }
        return extractResource(home, RESOURCE_DIR + name);
    }

    /**
     * Like {@link #extract(String)} for any classpath resource, e.g. a dependency's native
     * library; the file keeps the resource's file name.
     *
     * @param resource absolute resource path, e.g. {@code /org/sqlite/native/Linux/x86_64/libsqlitejdbc.so}
     */
    public static Path extractResource(String resource) {
        return extractResource(defaultHome(), resource);
    }

    /**
     * Like {@link #extractResource(String)}, under {@code <home>/runtime/} of the given home;
     * results are cached per home and resource.
     */
    public static Path extractResource(Path home, String resource) {
        Path absolute = home.toAbsolutePath().normalize();
        return EXTRACTED.computeIfAbsent(absolute + "\0" + resource, key -> {
            Path handedDown = handedDown(resource);
            return handedDown != null ? handedDown : doExtract(absolute, resource);
        });
    }

    /**
     * The file a parent JVM handed down for {@code resource}: an absolute path to a regular
     * file of this process's user that nobody else may use, as extraction leaves it; else null.
     */
    private static Path handedDown(String resource) {
        String value = System.getProperty(HANDED_DOWN_PREFIX + resource.substring(resource.lastIndexOf('/') + 1));
        if (value == null || value.isEmpty()) {
            return null;
        }
        Path file = Path.of(value);
        try {
            if (!file.isAbsolute() || !Files.isRegularFile(file, LinkOption.NOFOLLOW_LINKS)) {
                return null;
            }
            OwnerOnly.requireOwnedByUs(file);
            return OwnerOnly.isOwnerOnly(Files.getPosixFilePermissions(file, LinkOption.NOFOLLOW_LINKS)) ? file : null;
        } catch (IOException e) {
            return null;
        }
    }

    /**
     * System properties for a JVM this one starts that hand it the files named {@code names}
     * (plain file names) that this JVM has extracted and that are still there (see
     * {@link #HANDED_DOWN_PREFIX}); a file the child needs and does not get this way it
     * extracts itself.
     */
    public static List<String> handDownOptions(java.util.Collection<String> names) {
        java.util.Map<String, String> byName = new java.util.TreeMap<>();
        for (Map.Entry<String, Path> e : EXTRACTED.entrySet()) {
            String resource = e.getKey().substring(e.getKey().indexOf('\0') + 1);
            String name = resource.substring(resource.lastIndexOf('/') + 1);
            if (names.contains(name) && Files.isRegularFile(e.getValue(), LinkOption.NOFOLLOW_LINKS)) {
                byName.putIfAbsent(name, e.getValue().toString());
            }
        }
        List<String> options = new java.util.ArrayList<>();
        byName.forEach((name, path) -> options.add("-D" + HANDED_DOWN_PREFIX + name + "=" + path));
        return options;
    }

    private static Path doExtract(Path home, String resource) {
        String name = resource.substring(resource.lastIndexOf('/') + 1);
        byte[] bytes;
        try (InputStream in = RuntimeFiles.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalStateException("native resource " + resource + " is not on the classpath: "
                        + "the native build did not run (make in microsandbox-core/src/main/native, run by the "
                        + "Maven compile phase), or this platform (" + System.getProperty("os.name") + "/"
                        + System.getProperty("os.arch") + ") is not supported");
            }
            bytes = in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read native resource " + resource, e);
        }

        Path dir = home.resolve("runtime").resolve(version() + "-" + sha256Prefix(bytes));
        Path target = dir.resolve(name);
        try {
            OwnerOnly.directories(home, dir);
            if (isIdentical(target, bytes)) {
                OwnerOnly.restrict(target, OwnerOnly.EXECUTABLE);
                return target;
            }
            Path tmp = OwnerOnly.createTempFile(dir, "." + name + ".", ".tmp");
            try {
                Files.write(tmp, bytes);
                OwnerOnly.restrict(tmp, OwnerOnly.EXECUTABLE);
                try {
                    Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
                } catch (AtomicMoveNotSupportedException e) {
                    throw new IOException("file system of " + dir + " cannot rename atomically", e);
                }
            } finally {
                Files.deleteIfExists(tmp);
            }
            return target;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot extract native file " + name + " to " + target, e);
        }
    }

    private static boolean isIdentical(Path file, byte[] bytes) throws IOException {
        if (!Files.isRegularFile(file, LinkOption.NOFOLLOW_LINKS) || Files.size(file) != bytes.length) {
            return false;
        }
        return Arrays.equals(Files.readAllBytes(file), bytes);
    }

    static String sha256Prefix(byte[] bytes) {
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(bytes);
            return HexFormat.of().formatHex(digest).substring(0, 12);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 unavailable", e);
        }
    }
}

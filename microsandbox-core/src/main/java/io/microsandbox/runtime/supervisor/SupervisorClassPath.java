package io.microsandbox.runtime.supervisor;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.RuntimeFiles;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.CodeSource;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.function.Function;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/**
 * The class path of the supervisor JVM: the jars (or directories) of the libraries it uses,
 * {@link #REQUIRED_CLASSES}, normally as they appear on the caller's {@code java.class.path},
 * and nothing else of it; and apart from it, the class path of what only TLS interception
 * uses, {@link #TLS_CLASSES} (Bouncy Castle, loaded by {@link TlsLibraries}). When those
 * classes were not loaded from plain jars or directories on that class path, as in a Spring
 * Boot fat jar started with {@code java -jar app.jar} whose libraries are nested under
 * {@code BOOT-INF/lib/}, the jar each of them came from is found through its
 * {@link CodeSource}; nested jars are copied out of the outer jar once, into
 * {@code <home>/runtime/<version>-<hash>/lib/}, and the supervisor runs with those.
 *
 * <p>Understood locations: {@code file:} jars and directories, {@code jar:file:/x.jar!/},
 * Spring Boot 3.2+ nested jars {@code jar:nested:/path/app.jar/!BOOT-INF/lib/x.jar!/} (also
 * without the {@code jar:} wrapper), and the older Spring Boot form
 * {@code jar:file:/path/app.jar!/BOOT-INF/lib/x.jar!/}.
 *
 * <p>The copies are checked: the directory's hash covers the names, sizes and CRC-32s of the
 * nested entries, each file is written to a temporary file and moved into place atomically,
 * and a file already there is reused only when its size and CRC-32 match the entry. Any number
 * of JVMs may race on it. Directories are {@code 0700}, files {@code 0600}.
 *
 * <p>The system property {@value #OVERRIDE_PROPERTY} replaces the computed class path; the
 * supervisor then loads Bouncy Castle from it as well.
 */
public final class SupervisorClassPath {
    /** System property: a class path for the supervisor JVM, used as given instead of the computed one. */
    public static final String OVERRIDE_PROPERTY = "microsandbox.supervisor.classpath";

    /** One class of every library the supervisor's main touches. */
    static final List<String> REQUIRED_CLASSES = List.of(
            "io.microsandbox.runtime.supervisor.Supervisor",
            "com.fasterxml.jackson.core.JsonFactory",
            "com.fasterxml.jackson.databind.JsonNode",
            "com.fasterxml.jackson.annotation.JsonProperty",
            "org.sqlite.JDBC");

    /** One class of every library only TLS interception uses ({@code TlsAuthority}): bcprov, bcpkix and the bcutil that bcpkix needs. */
    static final List<String> TLS_CLASSES = List.of(
            "org.bouncycastle.asn1.x500.X500Name",
            "org.bouncycastle.cert.X509CertificateHolder",
            "org.bouncycastle.asn1.cms.ContentInfo");

    /**
     * The supervisor's class path, and that of the libraries only TLS interception loads
     * (empty when they are on the first, are missing, or the supervisor is to take them from there).
     */
    public record ClassPaths(String supervisor, String tls) {
    }

    private static final ConcurrentMap<Path, ClassPaths> CACHE = new ConcurrentHashMap<>();

    private SupervisorClassPath() {
    }

    /**
     * The class paths to start a supervisor with, for runtimes on {@code home}: the override
     * property when set (and no separate one for TLS), else computed once per home for the
     * life of the JVM (see the class comment). Nested jars are copied under {@code <home>/runtime/}.
     *
     * @throws MicrosandboxException {@link ErrorKind#BOOT_FAILED} when a needed class comes
     *         from somewhere that cannot be put on a class path, or the copy fails
     */
    public static ClassPaths forHome(Path home) {
        String override = System.getProperty(OVERRIDE_PROPERTY);
        if (override != null && !override.isBlank()) {
            return new ClassPaths(override, "");
        }
        return CACHE.computeIfAbsent(home.toAbsolutePath().normalize(),
                h -> compute(h, locations(REQUIRED_CLASSES, true), locations(TLS_CLASSES, false),
                        System.getProperty("java.class.path", "")));
    }

    /**
     * Where each of the named classes was loaded from, as URLs in external form. A missing
     * class is an error when {@code required}, else left out (Bouncy Castle: only a sandbox
     * that intercepts TLS needs it, and says so then).
     */
    static List<String> locations(List<String> classNames, boolean required) {
        ClassLoader loader = SupervisorClassPath.class.getClassLoader();
        List<String> locations = new ArrayList<>();
        for (String name : classNames) {
            try {
                locations.add(location(Class.forName(name, false, loader)));
            } catch (ClassNotFoundException e) {
                if (required) {
                    throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "the supervisor needs " + name
                            + ", which is not on the class path", e);
                }
            }
        }
        return locations;
    }

    /** The location a class was loaded from: its code source, else the jar or directory of its class file. */
    static String location(Class<?> type) {
        CodeSource source = type.getProtectionDomain().getCodeSource();
        if (source != null && source.getLocation() != null) {
            return source.getLocation().toExternalForm();
        }
        String resource = type.getName().replace('.', '/') + ".class";
        ClassLoader loader = type.getClassLoader() != null ? type.getClassLoader() : ClassLoader.getSystemClassLoader();
        URL url = loader.getResource(resource);
        if (url == null) {
            throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "cannot tell where " + type.getName() + " was loaded from");
        }
        String text = url.toExternalForm();
        // jar:file:/x.jar!/a/B.class -> jar:file:/x.jar!/, file:/dir/a/B.class -> file:/dir/
        return text.substring(0, text.length() - resource.length());
    }

    /**
     * The class paths for classes loaded from {@code supervisorLocations} and, apart,
     * {@code tlsLocations} (all of them on the first when the two share an entry): the
     * entries of {@code javaClassPath} that hold them, in its order, when every location is
     * a plain jar or directory on it, else the locations themselves, nested jars copied out
     * under {@code home}. Never the rest of the caller's class path: a supervisor opens every
     * jar on its class path (service look-ups), and keeps each one's directory on its heap.
     */
    static ClassPaths compute(Path home, List<String> supervisorLocations, List<String> tlsLocations, String javaClassPath) {
        List<Source> supervisorSources = supervisorLocations.stream().map(SupervisorClassPath::parse).toList();
        List<Source> tlsSources = tlsLocations.stream().map(SupervisorClassPath::parse).toList();
        Map<Path, String> onClassPath = new LinkedHashMap<>();
        for (String entry : javaClassPath.split(File.pathSeparator)) {
            if (!entry.isEmpty()) {
                onClassPath.putIfAbsent(normalize(Path.of(entry)), entry);
            }
        }
        List<Source> all = new ArrayList<>(supervisorSources);
        all.addAll(tlsSources);
        Function<Source, String> entryOf;
        Comparator<String> order;
        if (all.stream().allMatch(s -> s.entry() == null && onClassPath.containsKey(normalize(s.file())))) {
            // as the caller's class path spells them, in its order
            List<String> spelled = new ArrayList<>(onClassPath.values());
            entryOf = s -> onClassPath.get(normalize(s.file()));
            order = Comparator.comparingInt(spelled::indexOf);
        } else {
            List<Source> nested = all.stream().filter(s -> s.entry() != null).distinct().toList();
            Map<Source, Path> copies = nested.isEmpty() ? Map.of() : copyOut(home, nested);
            entryOf = s -> (s.entry() == null ? normalize(s.file()) : copies.get(s)).toString();
            // in the locations' order
            order = (x, y) -> 0;
        }
        Set<String> supervisor = new LinkedHashSet<>();
        supervisorSources.forEach(s -> supervisor.add(entryOf.apply(s)));
        Set<String> tls = new LinkedHashSet<>();
        tlsSources.forEach(s -> tls.add(entryOf.apply(s)));
        if (!Collections.disjoint(supervisor, tls)) {
            // a jar of both (a shaded one): Bouncy Castle all on the supervisor's, never split between two loaders
            supervisor.addAll(tls);
            tls.clear();
        }
        return new ClassPaths(join(supervisor, order), join(tls, order));
    }

    private static String join(Set<String> entries, Comparator<String> order) {
        return String.join(File.pathSeparator, entries.stream().sorted(order).toList());
    }

    private static Path normalize(Path path) {
        return path.toAbsolutePath().normalize();
    }

    /**
     * A class path element: a plain jar or directory ({@code entry} null), or the jar stored
     * as {@code entry} inside the jar {@code file}.
     */
    record Source(Path file, String entry) {
    }

    /**
     * Parses a code source location.
     *
     * @throws MicrosandboxException {@link ErrorKind#BOOT_FAILED} for a location that cannot be put on a class path
     */
    static Source parse(String location) {
        String s = location;
        if (s.startsWith("jar:")) {
            s = s.substring(4);
            if (s.endsWith("!/")) {
                s = s.substring(0, s.length() - 2);
            }
        }
        try {
            if (s.startsWith("nested:")) {
                // Spring Boot 3.2+: nested:<outer jar path>/!<entry>
                String rest = s.substring("nested:".length());
                int separator = rest.indexOf("/!");
                if (separator < 0) {
                    throw unsupported(location, "no /! separator");
                }
                return nestedJar(location, Path.of(decode(rest.substring(0, separator))), decode(rest.substring(separator + 2)));
            }
            if (s.startsWith("file:")) {
                int bang = s.indexOf("!/");
                if (bang < 0) {
                    return new Source(Path.of(URI.create(s)), null);
                }
                Path outer = Path.of(URI.create(s.substring(0, bang)));
                String entry = decode(s.substring(bang + 2));
                if (entry.endsWith("!/")) {
                    entry = entry.substring(0, entry.length() - 2);
                }
                return entry.isEmpty() ? new Source(outer, null) : nestedJar(location, outer, entry);
            }
        } catch (IllegalArgumentException e) {
            throw unsupported(location, e.getMessage());
        }
        throw unsupported(location, "not a file, jar or Spring Boot nested jar location");
    }

    private static Source nestedJar(String location, Path outer, String entry) {
        while (entry.startsWith("/")) {
            entry = entry.substring(1);
        }
        if (entry.isEmpty() || entry.endsWith("/") || entry.contains("!/")) {
            throw unsupported(location, "only jars nested one level deep can be copied out, not '" + entry + "'");
        }
        return new Source(outer, entry);
    }

    private static MicrosandboxException unsupported(String location, String why) {
        return new MicrosandboxException(ErrorKind.BOOT_FAILED, "the supervisor JVM cannot load classes from " + location
                + " (" + why + "); put the microsandbox core and its dependencies on the class path as plain jars,"
                + " or name a class path for the supervisor with -D" + OVERRIDE_PROPERTY + "=...");
    }

    /** Percent-decoding as in URIs: {@code +} stays a plus. */
    static String decode(String text) {
        if (text.indexOf('%') < 0) {
            return text;
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c == '%' && i + 2 < text.length()) {
                out.write(Integer.parseInt(text.substring(i + 1, i + 3), 16));
                i += 2;
            } else {
                byte[] bytes = String.valueOf(c).getBytes(StandardCharsets.UTF_8);
                out.write(bytes, 0, bytes.length);
            }
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    /** Copies the nested jars into {@code <home>/runtime/<version>-<hash>/lib/}, or reuses the copies there. */
    static Map<Source, Path> copyOut(Path home, List<Source> nested) {
        Map<Path, ZipFile> open = new LinkedHashMap<>();
        try {
            Map<Source, ZipEntry> entries = new LinkedHashMap<>();
            StringBuilder identity = new StringBuilder();
            for (Source source : nested) {
                ZipFile zip = open.get(source.file());
                if (zip == null) {
                    zip = new ZipFile(source.file().toFile());
                    open.put(source.file(), zip);
                }
                ZipEntry entry = zip.getEntry(source.entry());
                if (entry == null || entry.isDirectory()) {
                    throw new IOException("no jar " + source.entry() + " in " + source.file());
                }
                entries.put(source, entry);
                identity.append(source.entry()).append('\0').append(entry.getSize()).append('\0').append(entry.getCrc()).append('\n');
            }
            Path absoluteHome = normalize(home);
            Path dir = absoluteHome.resolve("runtime").resolve(RuntimeFiles.version() + "-" + sha256Prefix(identity.toString())).resolve("lib");
            OwnerOnly.directories(absoluteHome, dir);
            Map<Source, Path> copies = new LinkedHashMap<>();
            Set<String> names = new LinkedHashSet<>();
            for (Map.Entry<Source, ZipEntry> e : entries.entrySet()) {
                String name = e.getKey().entry().substring(e.getKey().entry().lastIndexOf('/') + 1);
                if (!names.add(name)) {
                    name = names.size() + "-" + name;
                    names.add(name);
                }
                Path target = dir.resolve(name);
                copy(open.get(e.getKey().file()), e.getValue(), target);
                copies.put(e.getKey(), target);
            }
            return copies;
        } catch (IOException e) {
            throw new MicrosandboxException(ErrorKind.BOOT_FAILED, "cannot copy the supervisor's jars out of "
                    + nested.get(0).file() + " under " + home + ": " + e.getMessage(), e);
        } finally {
            for (ZipFile zip : open.values()) {
                try {
                    zip.close();
                } catch (IOException ignored) {
                    // read only
                }
            }
        }
    }

    private static void copy(ZipFile zip, ZipEntry entry, Path target) throws IOException {
        if (matches(target, entry)) {
            OwnerOnly.restrictFile(target);
            return;
        }
        Path dir = target.getParent();
        Path tmp = OwnerOnly.createTempFile(dir, "." + target.getFileName() + ".", ".tmp");
        try {
            CRC32 crc = new CRC32();
            long size = 0;
            try (InputStream in = zip.getInputStream(entry); OutputStream out = Files.newOutputStream(tmp)) {
                byte[] buffer = new byte[64 * 1024];
                for (int n; (n = in.read(buffer)) > 0; ) {
                    out.write(buffer, 0, n);
                    crc.update(buffer, 0, n);
                    size += n;
                }
            }
            if ((entry.getSize() >= 0 && size != entry.getSize()) || (entry.getCrc() >= 0 && crc.getValue() != entry.getCrc())) {
                throw new IOException(entry.getName() + " does not match its size or CRC-32 in " + zip.getName());
            }
            OwnerOnly.restrictFile(tmp);
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                throw new IOException("file system of " + dir + " cannot rename atomically", e);
            }
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** Whether {@code file} is a complete copy of {@code entry}: same size and CRC-32. */
    static boolean matches(Path file, ZipEntry entry) throws IOException {
        if (!Files.isRegularFile(file, LinkOption.NOFOLLOW_LINKS) || Files.size(file) != entry.getSize()) {
            return false;
        }
        CRC32 crc = new CRC32();
        try (InputStream in = Files.newInputStream(file)) {
            byte[] buffer = new byte[64 * 1024];
            for (int n; (n = in.read(buffer)) > 0; ) {
                crc.update(buffer, 0, n);
            }
        }
        return crc.getValue() == entry.getCrc();
    }

    private static String sha256Prefix(String text) {
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(digest).substring(0, 12);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 unavailable", e);
        }
    }
}

package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import io.microsandbox.runtime.supervisor.SupervisorClassPath.Source;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.stream.Stream;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SupervisorClassPathTest {

    @Test
    void parsesPlainAndNestedLocations() {
        assertThat(SupervisorClassPath.parse("file:/opt/app/lib/jackson-core.jar"))
                .isEqualTo(new Source(Path.of("/opt/app/lib/jackson-core.jar"), null));
        assertThat(SupervisorClassPath.parse("file:/opt/app/classes/"))
                .isEqualTo(new Source(Path.of("/opt/app/classes"), null));
        assertThat(SupervisorClassPath.parse("jar:file:/opt/app/lib/x.jar!/"))
                .isEqualTo(new Source(Path.of("/opt/app/lib/x.jar"), null));
        // Spring Boot 3.2+ / 4
        assertThat(SupervisorClassPath.parse("jar:nested:/srv/my%20app/app.jar/!BOOT-INF/lib/jackson-core-2.19.jar!/"))
                .isEqualTo(new Source(Path.of("/srv/my app/app.jar"), "BOOT-INF/lib/jackson-core-2.19.jar"));
        assertThat(SupervisorClassPath.parse("nested:/srv/app.jar/!BOOT-INF/lib/c++-lib.jar"))
                .isEqualTo(new Source(Path.of("/srv/app.jar"), "BOOT-INF/lib/c++-lib.jar"));
        // Spring Boot up to 3.1
        assertThat(SupervisorClassPath.parse("jar:file:/srv/app.jar!/BOOT-INF/lib/sqlite-jdbc.jar!/"))
                .isEqualTo(new Source(Path.of("/srv/app.jar"), "BOOT-INF/lib/sqlite-jdbc.jar"));
    }

    @Test
    void findsWhereClassesCameFrom() {
        assertThat(SupervisorClassPath.location(SupervisorClassPathTest.class)).startsWith("file:").endsWith("/test-classes/");
        assertThat(SupervisorClassPath.locations(SupervisorClassPath.REQUIRED_CLASSES, true)).hasSameSizeAs(SupervisorClassPath.REQUIRED_CLASSES)
                .allSatisfy(location -> assertThat(SupervisorClassPath.parse(location).entry()).isNull());
        assertThat(SupervisorClassPath.decode("/srv/my%20app/c%2B%2B+x.jar")).isEqualTo("/srv/my app/c+++x.jar");
    }

    @Test
    void theOverridePropertyWins(@TempDir Path home) {
        String old = System.getProperty(SupervisorClassPath.OVERRIDE_PROPERTY);
        System.setProperty(SupervisorClassPath.OVERRIDE_PROPERTY, "/opt/supervisor/*");
        try {
            assertThat(SupervisorClassPath.forHome(home)).isEqualTo(new SupervisorClassPath.ClassPaths("/opt/supervisor/*", ""));
        } finally {
            if (old == null) {
                System.clearProperty(SupervisorClassPath.OVERRIDE_PROPERTY);
            } else {
                System.setProperty(SupervisorClassPath.OVERRIDE_PROPERTY, old);
            }
        }
        // from plain jars and directories nothing is copied; Bouncy Castle comes apart
        SupervisorClassPath.ClassPaths computed = SupervisorClassPath.forHome(home);
        assertThat(computed.supervisor()).contains("jackson-core").contains("sqlite-jdbc").doesNotContain("bcprov");
        assertThat(computed.tls().split(File.pathSeparator)).hasSize(3)
                .allSatisfy(entry -> assertThat(Path.of(entry).getFileName().toString()).startsWith("bc"));
        assertThat(home).isEmptyDirectory();
    }

    @Test
    void refusesLocationsThatCannotBeOnAClassPath() {
        for (String location : List.of("jrt:/java.base", "http://example.com/x.jar",
                "jar:nested:/srv/app.jar/!BOOT-INF/classes/!/", "nested:/srv/app.jar")) {
            assertThatThrownBy(() -> SupervisorClassPath.parse(location))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                        assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
                        assertThat(e.getMessage()).contains(location).contains(SupervisorClassPath.OVERRIDE_PROPERTY);
                    });
        }
    }

    @Test
    void keepsOnlyTheEntriesOfTheCallersClassPathItsClassesComeFromInTheirOrder(@TempDir Path dir) throws IOException {
        Path a = jar(dir.resolve("a.jar"), Map.of("a/A.class", "a"));
        Path classes = Files.createDirectories(dir.resolve("classes"));
        Path tls = jar(dir.resolve("tls.jar"), Map.of("t/T.class", "t"));
        String classPath = dir.resolve("first.jar") + File.pathSeparator + tls + File.pathSeparator + classes
                + File.pathSeparator + dir.resolve("other.jar") + File.pathSeparator + a;
        assertThat(SupervisorClassPath.compute(dir.resolve("home"), List.of(a.toUri().toString(), classes.toUri().toString()),
                List.of(tls.toUri().toString()), classPath))
                .isEqualTo(new SupervisorClassPath.ClassPaths(classes + File.pathSeparator + a, tls.toString()));
        assertThat(dir.resolve("home")).doesNotExist();
        // a class from somewhere else: the class paths are built from the locations
        Path b = jar(dir.resolve("b.jar"), Map.of("b/B.class", "b"));
        assertThat(SupervisorClassPath.compute(dir.resolve("home"), List.of(a.toUri().toString(), b.toUri().toString()),
                List.of(tls.toUri().toString()), classPath))
                .isEqualTo(new SupervisorClassPath.ClassPaths(a + File.pathSeparator + b, tls.toString()));
        // TLS's libraries in a jar that the supervisor has anyway (a shaded jar): no class path of their own
        assertThat(SupervisorClassPath.compute(dir.resolve("home"), List.of(a.toUri().toString()), List.of(a.toUri().toString()), classPath))
                .isEqualTo(new SupervisorClassPath.ClassPaths(a.toString(), ""));
        // some of them there: all of them there, never split between two class loaders
        assertThat(SupervisorClassPath.compute(dir.resolve("home"), List.of(a.toUri().toString()),
                List.of(a.toUri().toString(), tls.toUri().toString()), classPath))
                .isEqualTo(new SupervisorClassPath.ClassPaths(tls + File.pathSeparator + a, ""));
        assertThat(SupervisorClassPath.compute(dir.resolve("home"), List.of(a.toUri().toString()),
                List.of(b.toUri().toString(), a.toUri().toString()), classPath))
                .isEqualTo(new SupervisorClassPath.ClassPaths(a + File.pathSeparator + b, ""));
        // none of them at all: nothing apart
        assertThat(SupervisorClassPath.compute(dir.resolve("home"), List.of(a.toUri().toString()), List.of(), classPath))
                .isEqualTo(new SupervisorClassPath.ClassPaths(a.toString(), ""));
    }

    @Test
    void copiesNestedJarsOutOfAFatJarOnce(@TempDir Path dir) throws Exception {
        Path a = jar(dir.resolve("a.jar"), Map.of("a/A.class", "alpha"));
        Path b = jar(dir.resolve("b.jar"), Map.of("b/B.class", "beta"));
        Path app = fatJar(dir.resolve("app.jar"), List.of(a, b));
        Path home = dir.resolve("home");
        List<String> locations = List.of(
                "jar:nested:" + app + "/!BOOT-INF/lib/a.jar!/",
                "jar:file:" + app + "!/BOOT-INF/lib/b.jar!/",
                "jar:nested:" + app + "/!BOOT-INF/lib/a.jar!/");

        String classPath = SupervisorClassPath.compute(home, locations, List.of(), app.toString()).supervisor();

        List<Path> entries = Arrays.stream(classPath.split(File.pathSeparator)).map(Path::of).toList();
        assertThat(entries).hasSize(2);
        assertThat(entries.get(0).getFileName()).hasToString("a.jar");
        assertThat(entries.get(1).getFileName()).hasToString("b.jar");
        Path lib = entries.get(0).getParent();
        assertThat(entries.get(1).getParent()).isEqualTo(lib);
        assertThat(lib.getFileName()).hasToString("lib");
        assertThat(lib.getParent().getParent()).isEqualTo(home.resolve("runtime"));
        assertThat(lib.getParent().getFileName().toString()).matches("[A-Za-z0-9._+-]+-[0-9a-f]{12}");
        assertThat(Files.readAllBytes(entries.get(0))).isEqualTo(Files.readAllBytes(a));
        assertThat(Files.readAllBytes(entries.get(1))).isEqualTo(Files.readAllBytes(b));
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(entries.get(0)))).isEqualTo("rw-------");
        for (Path p = lib; !p.equals(home.getParent()); p = p.getParent()) {
            assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(p))).as(p.toString()).isEqualTo("rwx------");
        }
        try (Stream<Path> files = Files.list(lib)) {
            assertThat(files.map(p -> p.getFileName().toString())).containsExactlyInAnyOrder("a.jar", "b.jar");
        }

        // a second JVM (or runtime) reuses the copies as they are
        FileTime written = FileTime.fromMillis(1_000_000_000_000L);
        Files.setLastModifiedTime(entries.get(0), written);
        assertThat(SupervisorClassPath.compute(home, locations, List.of(), app.toString()).supervisor()).isEqualTo(classPath);
        assertThat(Files.getLastModifiedTime(entries.get(0))).isEqualTo(written);

        // a damaged copy (same size, other bytes) is replaced
        byte[] damaged = Files.readAllBytes(entries.get(0));
        damaged[damaged.length / 2] ^= 0x55;
        Files.write(entries.get(0), damaged);
        assertThat(SupervisorClassPath.compute(home, locations, List.of(), app.toString()).supervisor()).isEqualTo(classPath);
        assertThat(Files.readAllBytes(entries.get(0))).isEqualTo(Files.readAllBytes(a));

        // other content goes to another directory: two versions of an app never mix
        Path a2 = jar(dir.resolve("a2/a.jar"), Map.of("a/A.class", "alpha, version 2"));
        Path app2 = fatJar(dir.resolve("app2.jar"), List.of(a2, b));
        String classPath2 = SupervisorClassPath.compute(home, List.of("jar:nested:" + app2 + "/!BOOT-INF/lib/a.jar!/"), List.of(),
                app2.toString()).supervisor();
        assertThat(Path.of(classPath2).getParent()).isNotEqualTo(lib);
        assertThat(Files.readAllBytes(Path.of(classPath2))).isEqualTo(Files.readAllBytes(a2));
    }

    @Test
    void aMissingNestedJarIsReported(@TempDir Path dir) throws IOException {
        Path app = fatJar(dir.resolve("app.jar"), List.of(jar(dir.resolve("a.jar"), Map.of("a/A.class", "a"))));
        assertThatThrownBy(() -> SupervisorClassPath.compute(dir.resolve("home"),
                List.of("jar:nested:" + app + "/!BOOT-INF/lib/gone.jar!/"), List.of(), app.toString()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
                    assertThat(e.getMessage()).contains("BOOT-INF/lib/gone.jar");
                });
    }

    /**
     * The real thing: the supervisor's libraries (the core, Jackson, sqlite-jdbc) and Bouncy
     * Castle packed as a Spring Boot fat jar packs them, found through nested locations, copied
     * out, and a supervisor JVM started on the result loads all of them (its warm-up touches
     * the JNI library, Jackson and SQLite) and exits cleanly when its creator sends no spec.
     */
    @Test
    void aSupervisorRunsFromTheJarsCopiedOutOfAFatJar(@TempDir Path dir) throws Exception {
        List<Path> libraries = new ArrayList<>();
        for (String location : SupervisorClassPath.locations(SupervisorClassPath.REQUIRED_CLASSES, true)) {
            Path path = SupervisorClassPath.parse(location).file();
            libraries.add(Files.isDirectory(path) ? jarOf(path, dir.resolve("microsandbox-core.jar")) : path);
        }
        List<Path> tlsLibraries = SupervisorClassPath.locations(SupervisorClassPath.TLS_CLASSES, true).stream()
                .map(location -> SupervisorClassPath.parse(location).file()).distinct().toList();
        List<Path> all = new ArrayList<>(libraries);
        all.addAll(tlsLibraries);
        Path app = fatJar(dir.resolve("app.jar"), all);
        Path home = dir.resolve("home");

        SupervisorClassPath.ClassPaths classPaths = SupervisorClassPath.compute(home, nested(app, libraries), nested(app, tlsLibraries),
                app.toString());

        String classPath = classPaths.supervisor();
        assertThat(classPath.split(File.pathSeparator)).hasSize(libraries.size())
                .allSatisfy(entry -> assertThat(Path.of(entry)).startsWith(home.resolve("runtime")));
        assertThat(classPaths.tls().split(File.pathSeparator)).hasSize(3)
                .allSatisfy(entry -> assertThat(Path.of(entry).getParent()).isEqualTo(Path.of(classPath.split(File.pathSeparator)[0]).getParent()))
                .allSatisfy(entry -> assertThat(Path.of(entry).getFileName().toString()).startsWith("bc"));
        Process supervisor = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", classPath, "-Dmicrosandbox.home=" + home, Supervisor.class.getName())
                .redirectErrorStream(true).start();
        supervisor.getOutputStream().close();
        assertThat(supervisor.waitFor(60, TimeUnit.SECONDS)).isTrue();
        String output = new String(supervisor.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(supervisor.exitValue()).as(output).isZero();
        assertThat(output).doesNotContain("Exception").doesNotContain("Error");
        // its warm-up loaded the JNI library out of the copied core jar, into the given home
        try (Stream<Path> files = Files.walk(home.resolve("runtime"))) {
            assertThat(files.map(p -> p.getFileName().toString())).contains("libmsbjni.so");
        }
    }

    private static List<String> nested(Path app, List<Path> libraries) {
        return libraries.stream().map(p -> "jar:nested:" + app + "/!BOOT-INF/lib/" + p.getFileName() + "!/").toList();
    }

    /** A jar with the given entries. */
    private static Path jar(Path file, Map<String, String> entries) throws IOException {
        Files.createDirectories(file.getParent());
        try (JarOutputStream out = new JarOutputStream(Files.newOutputStream(file))) {
            for (Map.Entry<String, String> e : new LinkedHashMap<>(entries).entrySet()) {
                out.putNextEntry(new JarEntry(e.getKey()));
                out.write(e.getValue().getBytes(StandardCharsets.UTF_8));
                out.closeEntry();
            }
        }
        return file;
    }

    /** A jar of a directory tree, e.g. target/classes (also for FatJarIT and SupervisorCdsIT). */
    static Path jarOf(Path dir, Path file) throws IOException {
        try (JarOutputStream out = new JarOutputStream(Files.newOutputStream(file)); Stream<Path> walk = Files.walk(dir)) {
            for (Path p : walk.filter(Files::isRegularFile).sorted().toList()) {
                out.putNextEntry(new JarEntry(dir.relativize(p).toString().replace(File.separatorChar, '/')));
                Files.copy(p, out);
                out.closeEntry();
            }
        }
        return file;
    }

    /** A jar laid out as Spring Boot's: the libraries stored (not compressed) under BOOT-INF/lib/. */
    private static Path fatJar(Path file, List<Path> libraries) throws IOException {
        try (JarOutputStream out = new JarOutputStream(Files.newOutputStream(file))) {
            out.putNextEntry(new JarEntry("META-INF/MANIFEST.MF"));
            out.write("Manifest-Version: 1.0\nMain-Class: org.springframework.boot.loader.launch.JarLauncher\n\n"
                    .getBytes(StandardCharsets.UTF_8));
            out.closeEntry();
            out.putNextEntry(new JarEntry("BOOT-INF/classes/app/App.class"));
            out.write(new byte[] {1, 2, 3});
            out.closeEntry();
            for (Path library : libraries) {
                byte[] bytes = Files.readAllBytes(library);
                CRC32 crc = new CRC32();
                crc.update(bytes);
                JarEntry entry = new JarEntry("BOOT-INF/lib/" + library.getFileName());
                entry.setMethod(ZipEntry.STORED);
                entry.setSize(bytes.length);
                entry.setCompressedSize(bytes.length);
                entry.setCrc(crc.getValue());
                out.putNextEntry(entry);
                out.write(bytes);
                out.closeEntry();
            }
        }
        return file;
    }
}

package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.jar.Attributes;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code java -jar app.jar} with a real Spring Boot launcher ({@code JarLauncher} from
 * {@code spring-boot-loader}, which the build copies to {@code target/test-jars}; the core
 * does not depend on it): the libraries are nested under {@code BOOT-INF/lib/}, so the supervisor can only run
 * from copies. The app boots a sandbox and runs Python in it.
 */
class FatJarIT {

    @Test
    void aSandboxBootsFromAFatJarStartedWithJavaJar(@TempDir Path dir) throws Exception {
        String loaderProperty = System.getProperty("msb.test.springBootLoader", "");
        Path loader = Path.of(loaderProperty.isEmpty() ? "/nonexistent" : loaderProperty);
        assertThat(loader).as("Spring Boot's loader jar (msb.test.springBootLoader); run the test through Maven,"
                + " whose pre-integration-test phase copies it").isRegularFile();

        Path app = dir.resolve("app.jar");
        buildFatJar(app, loader, dir);
        Path home = dir.resolve("home");
        Process process = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-jar", app.toString(), home.toString(),
                io.microsandbox.runtime.vmm.KernelBundle.locate(io.microsandbox.runtime.RuntimeFiles.defaultHome()).dir().toString(),
                System.getProperty("msb.test.rootfs"))
                .directory(dir.toFile()).redirectErrorStream(true).start();
        process.getOutputStream().close();
        boolean finished = process.waitFor(300, TimeUnit.SECONDS);
        if (!finished) {
            process.destroyForcibly().waitFor();
        }
        String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(finished).as(output).isTrue();
        assertThat(process.exitValue()).as(output).isZero();

        assertThat(output).contains("core location: jar:nested:" + app + "/!BOOT-INF/lib/");
        assertThat(output).contains("python says: 42").contains("left behind: 0");
        String classPath = output.lines().filter(l -> l.startsWith("supervisor class path: ")).findFirst().orElseThrow()
                .substring("supervisor class path: ".length());
        assertThat(classPath.split(File.pathSeparator)).isNotEmpty()
                .allSatisfy(entry -> assertThat(Path.of(entry)).startsWith(home.resolve("runtime")).isRegularFile());
        assertThat(classPath).contains("sqlite-jdbc").contains("jackson-core").contains("jackson-databind").contains("jackson-annotations")
                .doesNotContain("bcprov");
        // Bouncy Castle apart, for TLS interception only
        String tlsClassPath = output.lines().filter(l -> l.startsWith("tls class path: ")).findFirst().orElseThrow()
                .substring("tls class path: ".length());
        assertThat(tlsClassPath.split(File.pathSeparator)).hasSize(3)
                .allSatisfy(entry -> assertThat(Path.of(entry)).startsWith(home.resolve("runtime")).isRegularFile());
        assertThat(tlsClassPath).contains("bcprov").contains("bcpkix").contains("bcutil");
        assertThat(output).containsPattern("guest trusts the CA: [1-9]");
    }

    /**
     * A jar laid out as spring-boot-maven-plugin lays it out: the launcher's classes at the
     * root, the probe under {@code BOOT-INF/classes/}, the libraries stored under {@code BOOT-INF/lib/}.
     */
    private static void buildFatJar(Path app, Path loader, Path work) throws IOException {
        Set<Path> libraries = new LinkedHashSet<>();
        List<String> locations = new ArrayList<>(SupervisorClassPath.locations(SupervisorClassPath.REQUIRED_CLASSES, true));
        locations.addAll(SupervisorClassPath.locations(SupervisorClassPath.TLS_CLASSES, true));
        for (String location : locations) {
            libraries.add(SupervisorClassPath.parse(location).file());
        }
        // the probe's JVM also builds the initramfs: commons-compress and what it needs
        for (String name : List.of("org.apache.commons.compress.archivers.cpio.CpioArchiveOutputStream",
                "org.apache.commons.io.IOUtils", "org.apache.commons.codec.binary.Hex", "org.apache.commons.lang3.StringUtils")) {
            try {
                libraries.add(SupervisorClassPath.parse(SupervisorClassPath.location(Class.forName(name))).file());
            } catch (ClassNotFoundException e) {
                // not a dependency of this commons-compress
            }
        }
        List<Path> jars = new ArrayList<>();
        for (Path library : libraries) {
            jars.add(Files.isDirectory(library) ? SupervisorClassPathTest.jarOf(library, work.resolve("microsandbox-core.jar")) : library);
        }
        Manifest manifest = new Manifest();
        Attributes main = manifest.getMainAttributes();
        main.put(Attributes.Name.MANIFEST_VERSION, "1.0");
        main.put(Attributes.Name.MAIN_CLASS, "org.springframework.boot.loader.launch.JarLauncher");
        main.putValue("Start-Class", FatJarProbe.class.getName());
        main.putValue("Spring-Boot-Classes", "BOOT-INF/classes/");
        main.putValue("Spring-Boot-Lib", "BOOT-INF/lib/");
        try (JarOutputStream out = new JarOutputStream(Files.newOutputStream(app), manifest);
                JarFile launcher = new JarFile(loader.toFile())) {
            for (Enumeration<JarEntry> entries = launcher.entries(); entries.hasMoreElements(); ) {
                JarEntry entry = entries.nextElement();
                if (entry.getName().startsWith("org/") && !entry.isDirectory()) {
                    try (InputStream in = launcher.getInputStream(entry)) {
                        out.putNextEntry(new JarEntry(entry.getName()));
                        in.transferTo(out);
                        out.closeEntry();
                    }
                }
            }
            String probe = FatJarProbe.class.getName().replace('.', '/') + ".class";
            // the launcher finds BOOT-INF/classes/ and the packages in it through directory entries
            String path = "BOOT-INF/classes/" + probe;
            for (int slash = path.indexOf('/'); slash >= 0; slash = path.indexOf('/', slash + 1)) {
                out.putNextEntry(new JarEntry(path.substring(0, slash + 1)));
                out.closeEntry();
            }
            out.putNextEntry(new JarEntry("BOOT-INF/lib/"));
            out.closeEntry();
            try (InputStream in = FatJarProbe.class.getClassLoader().getResourceAsStream(probe)) {
                out.putNextEntry(new JarEntry("BOOT-INF/classes/" + probe));
                in.transferTo(out);
                out.closeEntry();
            }
            for (Path jar : jars) {
                byte[] bytes = Files.readAllBytes(jar);
                CRC32 crc = new CRC32();
                crc.update(bytes);
                JarEntry entry = new JarEntry("BOOT-INF/lib/" + jar.getFileName());
                entry.setMethod(ZipEntry.STORED);
                entry.setSize(bytes.length);
                entry.setCompressedSize(bytes.length);
                entry.setCrc(crc.getValue());
                out.putNextEntry(entry);
                out.write(bytes);
                out.closeEntry();
            }
        }
    }

}

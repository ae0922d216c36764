package io.microsandbox.runtime.supervisor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The spec file a creator writes and its supervisor reads, also as databind's mapper wrote and reads it. */
class SupervisorSpecTest {
    private static final ObjectMapper MAPPER = new ObjectMapper();

    private static SupervisorSpec sample(Map<String, Object> restore) {
        Map<String, Object> configure = new LinkedHashMap<>();
        configure.put("hostname", "box");
        configure.put("env", List.of("A=1", "B=\u00e9"));
        configure.put("mounts", List.of(Map.of("path", "/data", "type", "tmpfs", "size_mib", 64)));
        configure.put("network", true);
        configure.put("log_level", null);
        return new SupervisorSpec("box", List.of("qemu-system-x86_64", "-m", "512"), "/home/s/box", "/run/b", configure,
                60_000, true, "/home", false, 5_000, 30_000, 9_000_000_000L, restore);
    }

    @Test
    void aWrittenSpecReadsBackTheSame(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("supervisor.json");
        for (SupervisorSpec spec : List.of(sample(null), sample(Map.of("ram_file", "/c/ram.bin", "memory_uri", "file:/c/m")))) {
            spec.write(file);
            assertThat(SupervisorSpec.read(file)).isEqualTo(spec);
            assertThat(Files.getPosixFilePermissions(file)).isEqualTo(PosixFilePermissions.fromString("rw-------"));
        }
    }

    @Test
    void specsReadAndWriteAsTheMapperDidForRecords(@TempDir Path dir) throws IOException {
        SupervisorSpec spec = sample(Map.of("hostname", "h"));
        Path old = dir.resolve("old.json");
        Files.write(old, MAPPER.writerWithDefaultPrettyPrinter().writeValueAsBytes(spec));
        assertThat(SupervisorSpec.read(old)).isEqualTo(spec);
        Path fresh = dir.resolve("new.json");
        spec.write(fresh);
        assertThat(Files.readString(fresh)).isEqualTo(Files.readString(old));
        assertThat(MAPPER.readValue(fresh.toFile(), SupervisorSpec.class)).isEqualTo(spec);
    }

    @Test
    void aSpecWrittenBeforeCacheReclaimReadsAsNeverReclaiming(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("supervisor.json");
        sample(null).write(file);
        Files.writeString(file, Files.readString(file).replaceAll("\\s*\"cacheReclaimAfterMs\" : 30000,", ""));
        assertThat(Files.readString(file)).doesNotContain("cacheReclaimAfterMs");
        assertThat(SupervisorSpec.read(file).cacheReclaimAfterMs()).isZero();
    }

    @Test
    void aSpecOfTheWrongShapeIsRefusedNamingTheField(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("supervisor.json");
        Files.writeString(file, "{\"name\":\"x\",\"vmmArgv\":\"qemu\"}");
        assertThatThrownBy(() -> SupervisorSpec.read(file)).isInstanceOf(IOException.class).hasMessageContaining("\"vmmArgv\"");
        Files.writeString(file, "{\"name\":\"x\",\"configure\":[]}");
        assertThatThrownBy(() -> SupervisorSpec.read(file)).isInstanceOf(IOException.class).hasMessageContaining("\"configure\"");
        Files.writeString(file, "[]");
        assertThatThrownBy(() -> SupervisorSpec.read(file)).isInstanceOf(IOException.class).hasMessageContaining("JSON object");
    }

    @Test
    void theWarmUpRuns() throws IOException {
        SupervisorSpec.warmUp();
    }
}

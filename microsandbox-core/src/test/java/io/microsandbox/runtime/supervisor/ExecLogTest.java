package io.microsandbox.runtime.supervisor;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

class ExecLogTest {
    @TempDir
    Path dir;

    @Test
    void writesJsonLinesAndReadsThemBack() throws Exception {
        Path file = dir.resolve("exec.log");
        try (ExecLog log = ExecLog.append(file)) {
            log.write("system", null, "sandbox started".getBytes(StandardCharsets.UTF_8));
            log.write("stdout", 1L, "hi\n".getBytes(StandardCharsets.UTF_8));
            log.write("stderr", 1L, "oops\n".getBytes(StandardCharsets.UTF_8));
        }
        List<ExecLog.Line> lines = ExecLog.read(file);
        assertThat(lines).extracting(ExecLog.Line::source).containsExactly("system", "stdout", "stderr");
        assertThat(lines.get(0).session()).isNull();
        assertThat(lines.get(1).session()).isEqualTo(1L);
        assertThat(lines.get(1).text()).isEqualTo("hi\n");
        assertThat(Files.readAllLines(file).get(1)).contains("\"s\":\"stdout\"").contains("\"id\":1");
    }

    @Test
    void rotatesAtTenMebibytesKeepingOneGeneration() throws Exception {
        Path file = dir.resolve("exec.log");
        byte[] chunk = "x".repeat(64 * 1024).getBytes(StandardCharsets.UTF_8);
        try (ExecLog log = ExecLog.append(file)) {
            for (long i = 0; i < 200; i++) { // about 12.5 MiB
                log.write("stdout", i, chunk);
            }
        }
        assertThat(file.resolveSibling("exec.log.1")).exists();
        assertThat(Files.size(file)).isLessThan(ExecLog.ROTATE_BYTES);
        List<ExecLog.Line> lines = ExecLog.read(file);
        assertThat(lines).hasSize(200);
        assertThat(lines).extracting(ExecLog.Line::session).isSorted();
    }

    @Test
    void skipsATornLastLine() throws Exception {
        Path file = dir.resolve("exec.log");
        try (ExecLog log = ExecLog.append(file)) {
            log.write("stdout", 3L, "whole\n".getBytes(StandardCharsets.UTF_8));
        }
        Files.writeString(file, "{\"t\":\"2026-01-01T00:00:00Z\",\"s\":\"std", StandardOpenOption.APPEND);
        assertThat(ExecLog.read(file)).extracting(ExecLog.Line::text).containsExactly("whole\n");
    }

    private static byte[] bytes(int... values) {
        byte[] b = new byte[values.length];
        for (int i = 0; i < values.length; i++) {
            b[i] = (byte) values[i];
        }
        return b;
    }

    private static byte[] concat(List<byte[]> parts) {
        java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();
        parts.forEach(all::writeBytes);
        return all.toByteArray();
    }

    @Test
    void aCharacterSplitAcrossChunksReadsBackAsOneCharacter() throws Exception {
        Path file = dir.resolve("exec.log");
        byte[] euro = "\u20ac".getBytes(StandardCharsets.UTF_8); // E2 82 AC
        assertThat(euro).hasSize(3);
        try (ExecLog log = ExecLog.append(file)) {
            log.write("stdout", 1L, concat(List.of("price: ".getBytes(StandardCharsets.UTF_8), bytes(0xe2, 0x82))));
            log.write("stderr", 1L, "between\n".getBytes(StandardCharsets.UTF_8)); // another stream meanwhile
            log.write("stdout", 1L, concat(List.of(bytes(0xac), " each\n".getBytes(StandardCharsets.UTF_8))));
        }
        List<ExecLog.Line> lines = ExecLog.read(file);
        String stdout = lines.stream().filter(l -> l.source().equals("stdout")).map(ExecLog.Line::text)
                .collect(java.util.stream.Collectors.joining());
        assertThat(stdout).isEqualTo("price: \u20ac each\n").doesNotContain("\ufffd");
        assertThat(lines).extracting(ExecLog.Line::text).containsExactly("price: ", "between\n", "\u20ac each\n");
        assertThat(Files.readString(file)).doesNotContain("\"b\"");
    }

    @Test
    void aCharacterSplitInThreeChunksAndAFourByteOneAreWhole() throws Exception {
        Path file = dir.resolve("exec.log");
        byte[] smile = "\ud83d\ude00".getBytes(StandardCharsets.UTF_8); // F0 9F 98 80
        try (ExecLog log = ExecLog.append(file)) {
            log.write("output", 7L, new byte[] {smile[0]});
            log.write("output", 7L, new byte[] {smile[1], smile[2]});
            log.write("output", 7L, new byte[] {smile[3]});
        }
        assertThat(ExecLog.read(file)).extracting(ExecLog.Line::text).containsExactly("\ud83d\ude00");
    }

    @Test
    void randomBinaryChunksReadBackByteExact() throws Exception {
        Path file = dir.resolve("exec.log");
        java.util.Random random = new java.util.Random(42);
        java.util.Map<String, List<byte[]>> written = new java.util.TreeMap<>();
        try (ExecLog log = ExecLog.append(file)) {
            for (int i = 0; i < 400; i++) {
                long session = 1 + random.nextInt(3);
                String source = random.nextBoolean() ? "stdout" : "stderr";
                byte[] chunk = new byte[random.nextInt(3000)];
                random.nextBytes(chunk);
                if (random.nextInt(4) == 0) { // some text with a character cut at the end
                    chunk = concat(List.of("\u00e9t\u00e9 \u20ac".getBytes(StandardCharsets.UTF_8), bytes(0xe2, 0x82)));
                }
                log.write(source, session, chunk);
                written.computeIfAbsent(session + "/" + source, k -> new ArrayList<>()).add(chunk);
            }
        }
        java.util.Map<String, List<byte[]>> read = new java.util.TreeMap<>();
        for (ExecLog.Line line : ExecLog.read(file)) {
            read.computeIfAbsent(line.session() + "/" + line.source(), k -> new ArrayList<>()).add(line.data());
        }
        assertThat(read.keySet()).isEqualTo(written.keySet());
        for (String stream : written.keySet()) {
            assertThat(concat(read.get(stream))).as(stream).isEqualTo(concat(written.get(stream)));
        }
        assertThat(Files.readString(file)).contains("\"b\":");
    }

    @Test
    void aLoneChunkThatIsNotUtf8IsStoredAsBase64Exactly() throws Exception {
        Path file = dir.resolve("exec.log");
        byte[] binary = bytes(0x00, 0xff, 0xfe, 0x80, 0x41, 0xc3);
        try (ExecLog log = ExecLog.append(file)) {
            log.write("stdout", 1L, binary);
            log.write("system", null, bytes(0xe2, 0x82)); // system lines have no next chunk
        }
        List<ExecLog.Line> lines = ExecLog.read(file);
        assertThat(lines).hasSize(2);
        assertThat(lines.get(0).data()).isEqualTo(binary);
        assertThat(lines.get(1).data()).isEqualTo(bytes(0xe2, 0x82));
        assertThat(Files.readAllLines(file).get(0)).contains("\"b\":\"" + java.util.Base64.getEncoder().encodeToString(binary) + "\"")
                .doesNotContain("\"d\"");
    }

    @Test
    void heldBackBytesAreWrittenWhenTheSessionEndsOrTooManyStreamsHoldSome() throws Exception {
        Path file = dir.resolve("exec.log");
        try (ExecLog log = ExecLog.append(file)) {
            log.write("stdout", 1L, bytes(0x41, 0xe2));
            log.endSession(1L);
            assertThat(ExecLog.read(file)).extracting(ExecLog.Line::data).containsExactly(bytes(0x41), bytes(0xe2));
            for (long session = 100; session < 100 + ExecLog.MAX_HELD + 1; session++) {
                log.write("stderr", session, bytes(0xf0, 0x9f));
            }
            List<ExecLog.Line> lines = ExecLog.read(file);
            assertThat(lines).hasSize(3);
            assertThat(lines.get(2).session()).as("the oldest held stream is written out").isEqualTo(100L);
        }
        assertThat(ExecLog.read(file)).hasSize(2 + ExecLog.MAX_HELD + 1);
    }

    @Test
    void readsLinesOfTheOldFormatAndSurvivesALineTornInsideACharacter() throws Exception {
        Path file = dir.resolve("exec.log");
        byte[] torn = "{\"t\":\"2026-01-01T00:00:01Z\",\"s\":\"stdout\",\"d\":\"\u20ac".getBytes(StandardCharsets.UTF_8);
        Files.write(file, concat(List.of(
                "{\"t\":\"2026-01-01T00:00:00Z\",\"s\":\"stdout\",\"d\":\"caf\u00e9 \ufffd\",\"id\":2}\n".getBytes(StandardCharsets.UTF_8),
                Arrays.copyOf(torn, torn.length - 1))));
        List<ExecLog.Line> lines = ExecLog.read(file);
        assertThat(lines).hasSize(1);
        assertThat(lines.get(0).text()).isEqualTo("caf\u00e9 \ufffd");
        assertThat(lines.get(0).session()).isEqualTo(2L);
    }
}

package io.microsandbox.runtime.supervisor;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;

/** Entry numbers across reopen and rotation, and the follower that reads by them. */
class ExecLogFollowerTest {
    @TempDir
    Path dir;

    /** A poll that fails part-way (here, after the older generation was read) loses no entry: the next one returns them. */
    @Test
    void aFailedPollReturnsNothingAndTheNextReadsItsEntriesAgain() throws Exception {
        Path scratch = dir.resolve("scratch.log");
        try (ExecLog log = ExecLog.append(scratch)) {
            for (int i = 1; i <= 5; i++) {
                log.write("stdout", 1L, ("line " + i + "\n").getBytes(StandardCharsets.UTF_8));
            }
        }
        List<String> written = Files.readAllLines(scratch);
        Path file = dir.resolve("exec.log");
        Files.write(ExecLog.rotated(file), written.subList(0, 3));
        Files.createDirectory(file); // a read of it fails after the older generation's entries were taken
        ExecLog.Follower follower = new ExecLog.Follower(file, 0);
        org.assertj.core.api.Assertions.assertThatThrownBy(follower::poll).isInstanceOf(java.io.IOException.class);
        assertThat(follower.last()).isZero();
        Files.delete(file);
        Files.write(file, written.subList(3, 5));
        assertThat(follower.poll()).extracting(ExecLog.Line::text).containsExactly("line 1\n", "line 2\n", "line 3\n", "line 4\n", "line 5\n");
    }

    @Test
    void numbersContinueAcrossAReopenAndARotation() throws Exception {
        Path file = dir.resolve("exec.log");
        try (ExecLog log = ExecLog.append(file)) {
            log.write("system", null, bytes("one"));
            log.write("system", null, bytes("two"));
        }
        try (ExecLog log = ExecLog.append(file)) {
            log.write("system", null, bytes("three"));
        }
        assertThat(ExecLog.read(file)).extracting(ExecLog.Line::seq).containsExactly(1L, 2L, 3L);
        // after a rotation the current file is empty: the number comes from the older generation
        Files.move(file, ExecLog.rotated(file));
        try (ExecLog log = ExecLog.append(file)) {
            log.write("system", null, bytes("four"));
        }
        assertThat(ExecLog.read(file)).extracting(ExecLog.Line::seq).containsExactly(1L, 2L, 3L, 4L);
    }

    @Test
    void aFollowerSeesEveryEntryOnceAcrossRotationsAndPartialLines() throws Exception {
        Path file = dir.resolve("exec.log");
        ExecLog.Follower follower = new ExecLog.Follower(file, 0);
        List<String> seen = new ArrayList<>();
        String chunk = "x".repeat(100_000);
        int written = 0;
        try (ExecLog log = ExecLog.append(file)) {
            for (int round = 0; round < 30; round++) {
                for (int i = 0; i < 25; i++) {
                    log.write("stdout", 1L, bytes("#" + written++ + " " + chunk));
                }
                follower.poll().forEach(l -> seen.add(l.text()));
            }
        }
        // a torn line at the end (a writer that died mid-line) is not taken until it is whole
        Files.writeString(file, "{\"t\":\"2026-01-01T00:00:00Z\",\"s\":\"stdout\",\"d\":\"torn\",\"n\":99999",
                StandardOpenOption.APPEND);
        follower.poll().forEach(l -> seen.add(l.text()));
        assertThat(Files.exists(ExecLog.rotated(file))).isTrue();
        // 750 entries of 100 kB rotate every 10 MiB: the follower that polled often lost nothing
        assertThat(seen).hasSize(written);
        for (int i = 0; i < written; i++) {
            assertThat(seen.get(i)).startsWith("#" + i + " ");
        }
        Files.writeString(file, "}\n", StandardOpenOption.APPEND);
        assertThat(follower.poll()).extracting(ExecLog.Line::text).containsExactly("torn");
    }

    @Test
    void aFollowerStartsAfterTheGivenNumber() throws Exception {
        Path file = dir.resolve("exec.log");
        try (ExecLog log = ExecLog.append(file)) {
            for (int i = 1; i <= 5; i++) {
                log.write("system", null, bytes("e" + i));
            }
        }
        assertThat(new ExecLog.Follower(file, 3).poll()).extracting(ExecLog.Line::text).containsExactly("e4", "e5");
    }

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }
}

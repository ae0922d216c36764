package io.microsandbox.runtime.agent;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * The short version of {@link FrameFuzz} for the default test run (scripts/fuzz.sh runs
 * 10 million inputs with the supervisor's heap).
 */
class FrameFuzzTest {

    @Test
    void decoderKeepsItsContractOnShortFuzzRun() {
        FrameFuzz.Report report = FrameFuzz.run(20_000, 1, true);
        ByteArrayOutputStream text = new ByteArrayOutputStream();
        report.print(new PrintStream(text, true, StandardCharsets.UTF_8));
        assertThat(report.findingCount()).as(text.toString(StandardCharsets.UTF_8)).isZero();
        assertThat(report.inputs).isEqualTo(20_000);
        assertThat(report.frames).isPositive();
        assertThat(report.protocolErrors).isPositive();
    }
}

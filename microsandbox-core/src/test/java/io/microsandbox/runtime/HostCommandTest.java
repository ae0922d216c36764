package io.microsandbox.runtime;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

class HostCommandTest {

    @Test
    @Timeout(20)
    void aToolThatLeavesAChildHoldingItsOutputDoesNotHangTheCaller() throws IOException {
        // reading the pipe to its end waited for the background sleep as well
        HostCommand.Result r = HostCommand.run(List.of("sh", "-c", "sleep 30 & echo done; exit 3"), Duration.ofSeconds(10), 1024);
        assertThat(r.exitCode()).isEqualTo(3);
        assertThat(r.succeeded()).isFalse();
        assertThat(r.output()).isEqualTo("done\n");
    }

    @Test
    @Timeout(20)
    void aHungToolIsKilledAtItsTimeout() {
        assertThatThrownBy(() -> HostCommand.run(List.of("sleep", "30"), Duration.ofSeconds(1), 1024))
                .isInstanceOf(IOException.class).hasMessageContaining("sleep did not finish within PT1S");
    }

    @Test
    @Timeout(20)
    void outputPastTheLimitIsAnError() {
        assertThatThrownBy(() -> HostCommand.run(List.of("head", "-c", "5000", "/dev/zero"), Duration.ofSeconds(10), 4096))
                .isInstanceOf(IOException.class).hasMessageContaining("more than 4096 bytes");
    }
    /** A tool killed at its timeout takes what it started with it: nothing of it runs on. */
    @Test
    @Timeout(30)
    void aKilledToolTakesItsChildrenWithIt() throws InterruptedException {
        String marker = "30" + ProcessHandle.current().pid() % 1000 + ".5";
        assertThatThrownBy(() -> HostCommand.run(List.of("sh", "-c", "sleep " + marker + " & sleep 31"), Duration.ofSeconds(1), 1024))
                .isInstanceOf(IOException.class).hasMessageContaining("did not finish");
        // killed, not yet reaped by init on a loaded machine: given a few seconds to be gone
        long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(10);
        while (ProcessHandle.allProcesses().anyMatch(h -> h.info().commandLine().orElse("").contains("sleep " + marker))
                && System.nanoTime() < deadline) {
            Thread.sleep(50);
        }
        assertThat(ProcessHandle.allProcesses().filter(h -> h.info().commandLine().orElse("").contains("sleep " + marker)))
                .as("the tool's child").isEmpty();
    }

    /** Output past the limit stops the tool as it writes, not at its timeout (a tool writing without end fills the disk meanwhile). */
    @Test
    @Timeout(60)
    void aToolWritingPastItsLimitIsStoppedBeforeItsTimeout() {
        assertThatThrownBy(() -> HostCommand.run(List.of("sh", "-c", "head -c 1000000 /dev/zero; sleep 300"), Duration.ofSeconds(120), 4096))
                .isInstanceOf(IOException.class).hasMessageContaining("more than 4096 bytes");
    }
}

package io.microsandbox.runtime.supervisor;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;

class BootTimelineTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void readsTheGuestsBootTimesFromHelloAndReady() {
        ObjectNode hello = JSON.createObjectNode().put("v", 2).put("boot_time_ns", 500_000_000L)
                .put("modules", 0).put("hello_time_ns", 520_000_000L);
        ObjectNode ready = JSON.createObjectNode().put("boot_time_ns", 500_000_000L)
                .put("init_time_ns", 630_000_000L).put("ready_time_ns", 640_000_000L);
        assertThat(Supervisor.bootTimeline(hello, ready, 1_100_000_000L)).isEqualTo(
                "kernel start to agent start 500 ms, agent start to hello 20 ms (0 modules, agent port),"
                        + " hello to root mounted 110 ms, to ready 120 ms; agent start to ready 140 ms;"
                        + " QEMU start to ready 1100 ms (host clock)");
    }

    @Test
    void anOlderAgentsHelloWithoutTimesStillGivesATimeline() {
        ObjectNode hello = JSON.createObjectNode().put("v", 2).put("agent", "0.1.0");
        ObjectNode ready = JSON.createObjectNode().put("boot_time_ns", 900_000_000L)
                .put("init_time_ns", 1_000_000_000L).put("ready_time_ns", 1_000_000_000L);
        assertThat(Supervisor.bootTimeline(hello, ready, 1_500_000_000L))
                .startsWith("kernel start to agent start 900 ms, agent start to hello 0 ms (0 modules")
                .endsWith("QEMU start to ready 1500 ms (host clock)");
    }
}

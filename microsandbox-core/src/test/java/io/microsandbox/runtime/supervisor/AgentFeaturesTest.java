package io.microsandbox.runtime.supervisor;

import io.microsandbox.runtime.Json;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;

/** What of the agent's feature list reaches clients: short names, a bounded number, nothing else. */
class AgentFeaturesTest {
    @Test
    void onlyShortPlainNamesUpToTheLimitAreHandedOn() throws Exception {
        assertThat(Supervisor.agentFeatures(Json.parse("{\"features\": [\"fs_exclusive\", 7, \"Bad Name\", \"" + "x".repeat(33)
                + "\", {\"a\": 1}, \"ok_2\"]}"))).hasSize(2).extracting(n -> n.textValue()).containsExactly("fs_exclusive", "ok_2");
        assertThat(Supervisor.agentFeatures(Json.parse("{\"agent\": \"0.1.0\"}"))).as("an earlier agent's hello").isEmpty();
        assertThat(Supervisor.agentFeatures(Json.parse("{\"features\": \"fs_exclusive\"}"))).as("not a list").isEmpty();
        StringBuilder many = new StringBuilder("{\"features\": [");
        for (int i = 0; i < 1000; i++) {
            many.append(i == 0 ? "" : ",").append("\"f").append(i).append('"');
        }
        assertThat(Supervisor.agentFeatures(Json.parse(many.append("]}").toString()))).hasSize(Supervisor.MAX_AGENT_FEATURES);
    }
}

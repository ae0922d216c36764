package io.microsandbox.spring.pool;

import static org.assertj.core.api.Assertions.assertThat;

import io.microsandbox.Sandbox;
import org.junit.jupiter.api.Test;

class PoolCheckpointTest {

    private static String name(String pool, String instance) {
        return new PoolCheckpoint(null, pool, instance).name();
    }

    @Test
    void pairsThatJoinAlikeHaveTheirOwnCheckpoint() {
        assertThat(name("default-web", "1")).isNotEqualTo(name("default", "web-1"));
        assertThat(name("default", "node/1")).as("ids that read alike once made a name").isNotEqualTo(name("default", "node_1"));
        assertThat(name("py", "node/1")).startsWith("spring-pool-py-node_1-").isEqualTo(name("py", "node/1"));
    }

    @Test
    void aLongInstanceIdStillMakesAValidName() {
        String name = name("default", "x".repeat(300));
        assertThat(name).hasSizeLessThanOrEqualTo(Sandbox.MAX_NAME_BYTES).isNotEqualTo(name("default", "x".repeat(299)));
    }
}

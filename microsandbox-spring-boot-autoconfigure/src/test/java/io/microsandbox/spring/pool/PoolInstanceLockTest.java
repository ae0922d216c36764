package io.microsandbox.spring.pool;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PoolInstanceLockTest {

    @TempDir
    Path home;

    @Test
    void aSecondOpenPoolOfTheSameInstanceRunsAsTheNextFreeId() {
        try (PoolInstanceLock first = PoolInstanceLock.claim(home, "default", "app");
             PoolInstanceLock second = PoolInstanceLock.claim(home, "default", "app");
             PoolInstanceLock otherPool = PoolInstanceLock.claim(home, "other", "app")) {
            assertThat(first.instanceId()).isEqualTo("app");
            assertThat(second.instanceId()).isEqualTo("app#2");
            assertThat(otherPool.instanceId()).as("another pool's ids are its own").isEqualTo("app");
            first.close();
            try (PoolInstanceLock restarted = PoolInstanceLock.claim(home, "default", "app")) {
                assertThat(restarted.instanceId()).as("a restart takes the first free id back").isEqualTo("app");
            }
        }
    }

    @Test
    void onlyAnIdLeftUnusedForLongEnoughIsAbandoned() throws Exception {
        Duration quiet = Duration.ofMinutes(5);
        assertThat(PoolInstanceLock.claimAbandoned(home, "default", "app", 2, quiet)).as("never used").isNull();
        try (PoolInstanceLock first = PoolInstanceLock.claim(home, "default", "app");
             PoolInstanceLock second = PoolInstanceLock.claim(home, "default", "app")) {
            assertThat(PoolInstanceLock.claimAbandoned(home, "default", "app", 2, quiet)).as("held").isNull();
        }
        assertThat(PoolInstanceLock.claimAbandoned(home, "default", "app", 2, quiet)).as("released a moment ago").isNull();
        try (var files = Files.list(home.resolve("pools"))) {
            for (Path f : files.toList()) {
                Files.setLastModifiedTime(f, FileTime.from(Instant.now().minus(quiet).minusSeconds(1)));
            }
        }
        try (PoolInstanceLock abandoned = PoolInstanceLock.claimAbandoned(home, "default", "app", 2, quiet)) {
            assertThat(abandoned).isNotNull();
            assertThat(abandoned.instanceId()).isEqualTo("app#2");
            // an instance starting while it is cleaned up takes another id
            try (PoolInstanceLock starting = PoolInstanceLock.claim(home, "default", "app");
                 PoolInstanceLock next = PoolInstanceLock.claim(home, "default", "app")) {
                assertThat(starting.instanceId()).isEqualTo("app");
                assertThat(next.instanceId()).isEqualTo("app#3");
            }
        }
    }

    @Test
    void allInstancesTakenIsAConfigurationError() {
        List<PoolInstanceLock> held = new ArrayList<>();
        try {
            for (int i = 0; i < PoolInstanceLock.MAX_INSTANCES; i++) {
                held.add(PoolInstanceLock.claim(home, "default", "app"));
            }
            assertThatThrownBy(() -> PoolInstanceLock.claim(home, "default", "app"))
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG))
                    .hasMessageContaining("microsandbox.pool.instance-id");
        } finally {
            held.forEach(PoolInstanceLock::close);
        }
    }
}

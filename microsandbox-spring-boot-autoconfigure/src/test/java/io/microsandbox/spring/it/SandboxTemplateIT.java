package io.microsandbox.spring.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.microsandbox.ExecOutput;
import io.microsandbox.Microsandbox;
import io.microsandbox.ErrorKind;
import io.microsandbox.SandboxConfig;
import io.microsandbox.SandboxStatus;
import io.microsandbox.spring.SandboxAccessException;
import io.microsandbox.spring.SandboxExecutionFailedException;
import io.microsandbox.spring.SandboxOperations;
import io.microsandbox.spring.SandboxTemplate;
import io.microsandbox.spring.SandboxTimeoutException;
import io.microsandbox.spring.actuate.MicrosandboxEndpoint;
import io.microsandbox.spring.actuate.SandboxPoolHealthIndicator;
import io.microsandbox.spring.pool.PoolMemberView;
import io.microsandbox.spring.pool.SandboxPool;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.search.MeterNotFoundException;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.micrometer.observation.ObservationRegistry;
import io.micrometer.observation.tck.TestObservationRegistry;
import io.micrometer.observation.tck.TestObservationRegistryAssert;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.springframework.boot.actuate.endpoint.InvalidEndpointRequestException;
import org.springframework.boot.health.contributor.Status;

/**
 * One context, one pool (min-idle 1, max-size 1): the template's exec, shell and run in Python,
 * a callback on one sandbox, errors, a timeout that discards its member, meters and the
 * observation, health, and the endpoint's listing and draining. One member at most keeps every
 * count exact: with two, housekeeping that runs during a borrow boots a second idle member.
 */
class SandboxTemplateIT {

    static final Path HOME = VmTestSupport.home("template");

    @AfterAll
    static void nothingLeft() throws InterruptedException {
        VmTestSupport.assertNothingLeft(HOME);
    }

    @Test
    void templateMetersHealthAndEndpoint() {
        TestObservationRegistry observations = TestObservationRegistry.create();
        VmTestSupport.runner(HOME)
                .withBean(MeterRegistry.class, SimpleMeterRegistry::new)
                .withBean(ObservationRegistry.class, () -> observations)
                .withPropertyValues("microsandbox.pool.max-size=1", "microsandbox.pool.sandbox-metrics=true", "microsandbox.env.API_TOKEN=s3cret-value")
                .run(context -> {
                    assertThat(context).hasNotFailed();
                    SandboxTemplate template = context.getBean(SandboxTemplate.class);
                    SandboxPool pool = context.getBean(SandboxPool.class);
                    MeterRegistry meters = context.getBean(MeterRegistry.class);

                    // warm-up to min-idle in the background
                    VmTestSupport.await("warm-up to min-idle", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);
                    assertThat(meters.get("microsandbox.pool.sandboxes").tag("state", "idle").gauge().value()).isEqualTo(1.0);
                    assertThat(meters.get("microsandbox.pool.created").counter().count()).isEqualTo(1.0);
                    assertThat(meters.get("microsandbox.pool.boot").timer().count()).isEqualTo(1);

                    ExecOutput echo = template.exec("echo", "hello", "pool");
                    assertThat(echo.stdout()).isEqualTo("hello pool\n");
                    assertThat(echo.exitCode()).isZero();

                    ExecOutput py = template.run("python", "import sys\nprint(6*7)\nprint('err', file=sys.stderr)\nsys.exit(3)");
                    assertThat(py.stdout()).isEqualTo("42\n");
                    assertThat(py.stderr()).isEqualTo("err\n");
                    assertThat(py.exitCode()).isEqualTo(3);

                    // quotes and newlines reach the interpreter untouched: no shell line
                    assertThat(template.run("python", "print(\"it's \\\"quoted\\\"; $(rm -rf /)\")").stdout())
                            .isEqualTo("it's \"quoted\"; $(rm -rf /)\n");
                    assertThat(template.withStdin("abc").run("python", "import sys; print(sys.stdin.read().upper())").stdout())
                            .isEqualTo("ABC\n");
                    assertThat(template.withEnv(Map.of("X", "1")).withCwd("/tmp").shell("echo $X $(pwd)").stdout())
                            .isEqualTo("1 /tmp\n");
                    assertThat(template.run("sh", "echo from sh").stdout()).isEqualTo("from sh\n");

                    // a callback keeps one sandbox for several steps
                    SandboxOperations[] kept = new SandboxOperations[1];
                    List<String> steps = template.execute(sb -> {
                        kept[0] = sb;
                        sb.shell("echo state > /tmp/kept");
                        return List.of(((SandboxTemplate) sb).sandboxName(), sb.exec("cat", "/tmp/kept").stdout());
                    });
                    assertThat(steps.get(1)).isEqualTo("state\n");
                    assertThat(pool.member(steps.get(0))).isPresent();
                    assertThat(pool.stats().active()).isZero();
                    // the callback's template is not usable once its sandbox went back to the pool
                    assertThatThrownBy(() -> kept[0].exec("true"))
                            .isInstanceOfSatisfying(SandboxAccessException.class, e -> assertThat(e.getKind()).isEqualTo(ErrorKind.INVALID_HANDLE))
                            .hasMessageContaining("returned it to the pool");

                    // a program that is not there: the sandbox is fine and stays
                    assertThatThrownBy(() -> template.exec("no-such-program"))
                            .isInstanceOf(SandboxExecutionFailedException.class);
                    assertThat(meters.find("microsandbox.pool.discarded").counter()).isNull();

                    // a timeout discards its member; the pool boots another
                    String before = pool.members().iterator().next().name();
                    assertThatThrownBy(() -> template.withTimeout(Duration.ofSeconds(2)).run("python", "import time; time.sleep(60)"))
                            .isInstanceOf(SandboxTimeoutException.class);
                    assertThat(meters.get("microsandbox.pool.discarded").counter().count()).isEqualTo(1.0);
                    assertThat(pool.member(before)).isEmpty();
                    VmTestSupport.await("replacement after the timeout", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);
                    assertThat(template.exec("true").exitCode()).isZero();

                    // meters moved
                    assertThat(meters.get("microsandbox.pool.acquire").timer().count()).isGreaterThanOrEqualTo(9);
                    assertThat(meters.get("microsandbox.pool.usage").timer().count()).isGreaterThanOrEqualTo(9);
                    assertThat(meters.get("microsandbox.pool.exec").tag("outcome", "success").timer().count()).isGreaterThanOrEqualTo(6);
                    assertThat(meters.get("microsandbox.pool.exec").tag("outcome", "nonzero-exit").timer().count()).isEqualTo(1);
                    assertThat(meters.get("microsandbox.pool.exec").tag("outcome", "timeout").timer().count()).isEqualTo(1);
                    assertThat(meters.get("microsandbox.pool.created").counter().count()).isEqualTo(2.0);
                    TestObservationRegistryAssert.assertThat(observations)
                            .hasObservationWithNameEqualTo("microsandbox.exec")
                            .that().hasLowCardinalityKeyValue("pool", "default")
                            .hasLowCardinalityKeyValue("outcome", "success");
                    // per-sandbox gauges from the core's metrics, sampled in the background
                    String member = pool.members().iterator().next().name();
                    VmTestSupport.await("a metrics sample", Duration.ofSeconds(30), () -> {
                        try {
                            return meters.get("microsandbox.sandbox.memory.used").tag("sandbox", member).gauge().value() > 0;
                        } catch (MeterNotFoundException e) {
                            return false;
                        }
                    });
                    assertThat(meters.find("microsandbox.sandbox.cpu").tag("sandbox", before).gauge())
                            .as("gauges of a discarded sandbox are removed").isNull();

                    assertThat(context.getBean(SandboxPoolHealthIndicator.class).health().getStatus()).isEqualTo(Status.UP);

                    // the endpoint lists the member and drains it
                    MicrosandboxEndpoint endpoint = context.getBean(MicrosandboxEndpoint.class);
                    @SuppressWarnings("unchecked")
                    List<Map<String, Object>> listed = (List<Map<String, Object>>) endpoint.sandboxes().get("sandboxes");
                    assertThat(listed).anySatisfy(s -> {
                        assertThat(s.get("name")).isEqualTo(member);
                        assertThat(s.get("status")).isEqualTo("running");
                        assertThat(s.get("pool")).isEqualTo("default");
                        assertThat(s.get("poolState")).isEqualTo("idle");
                    });
                    assertThat(endpoint.sandbox(member)).containsKey("metrics");
                    assertThat(String.valueOf(endpoint.sandbox(member))).contains("API_TOKEN").doesNotContain("s3cret-value");
                    assertThat(template.shell("echo $API_TOKEN").stdout()).isEqualTo("s3cret-value\n");
                    // a sandbox of the same home outside the pool is not the endpoint's to stop
                    Microsandbox runtime = context.getBean(Microsandbox.class);
                    runtime.create("outsider", SandboxConfig.builder().image(VmTestSupport.image()).memoryMib(256).build()).detach();
                    try {
                        assertThatThrownBy(() -> endpoint.operate("outsider", "kill"))
                                .isInstanceOf(InvalidEndpointRequestException.class).hasMessageContaining("not a member of pool 'default'");
                        assertThat(runtime.get("outsider").status()).isEqualTo(SandboxStatus.RUNNING);
                    } finally {
                        runtime.get("outsider").kill();
                        runtime.remove("outsider");
                    }
                    endpoint.operate(member, "drain");
                    assertThat(pool.member(member)).isEmpty();
                    VmTestSupport.await("the drained sandbox removed", Duration.ofSeconds(60), () -> runtime.find(member).isEmpty());
                    VmTestSupport.await("a new member after the drain", Duration.ofSeconds(90), () -> pool.stats().idle() == 1);
                    assertThat(meters.get("microsandbox.pool.rotated").counter().count()).isEqualTo(1.0);
                    PoolMemberView fresh = pool.members().iterator().next();
                    assertThat(fresh.name()).isNotEqualTo(member);
                });
    }
}

package io.microsandbox;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * A custom init as PID 1 while the agent serves from a child (issue 13). The test image has
 * no systemd, so the init is a shell script written into the image by a patch: it starts a
 * "service", and on SIGTERM (what a graceful stop sends a non-systemd init) leaves a marker in
 * a bind mount and stops the service.
 */
class InitIT {
    private static final String INIT = """
            #!/bin/sh
            sleep 100000 &
            echo $! > /run/service.pid
            trap 'echo "asked to stop: $*" > /mnt/share/marker; kill $(cat /run/service.pid)' TERM
            while :; do sleep 1 & wait $!; done
            """;

    @TempDir
    Path tmp;

    @Test
    @Timeout(300)
    void autoFindsTheImageInitWhichBecomesPid1AndAGracefulStopAsksItToStop() throws Exception {
        Path share = Files.createDirectories(tmp.resolve("share"));
        String name = TestSandboxes.uniqueName("init");
        SandboxConfig config = TestSandboxes.config()
                .patch(Patch.text("/usr/sbin/init", INIT, PatchOptions.mode(0755)))  // /sbin is /usr/sbin in Debian
                .mount("/mnt/share", Mount.bind(share, MountOptions.defaults()))
                .init(Init.auto())
                .build();
        try {
            try (Sandbox sb = Sandbox.create(name, config)) {
                // the agent answers while PID 1 may still be starting the init: wait (in the guest,
                // 60 s at most) for the pid file the init writes once it has started its service
                ExecOutput out = sb.shell("i=0; while [ ! -s /run/service.pid ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done;"
                        + " tr '\\0' ' ' < /proc/1/cmdline; echo; grep PPid /proc/$(cat /run/service.pid)/status;"
                        + " grep PPid /proc/self/status");
                String[] lines = out.stdout().split("\n");
                assertThat(lines[0]).isEqualTo("/bin/sh /sbin/init ");
                assertThat(lines[1]).isEqualTo("PPid:\t1");
                // the command's parent is the agent, which is not PID 1 any more
                assertThat(lines[2]).startsWith("PPid:\t").isNotEqualTo("PPid:\t1");
                assertThat(sb.exec("true", List.of()).success()).isTrue();
                sb.stop();
            }
            assertThat(Files.readString(share.resolve("marker"))).startsWith("asked to stop");
            SandboxStopResult stop = Sandbox.get(name).lastStop().orElseThrow();
            assertThat(stop.status()).isEqualTo(SandboxStatus.STOPPED);
            assertThat(stop.signal()).as("the VMM powered off, not killed").isNull();
            assertThat(stop.exitCode()).isZero();
            try (Sandbox again = Sandbox.start(name)) {
                assertThat(again.shell("tr '\\0' ' ' < /proc/1/cmdline").stdout()).isEqualTo("/bin/sh /sbin/init ");
                again.kill();
            }
        } finally {
            Microsandbox.defaultRuntime().find(name).ifPresent(h -> Sandbox.remove(name));
        }
    }

    /**
     * An init that never gets a signal (here it becomes a sleep): the agent still learns at
     * once that a command ended. Its SIGCHLD came through a signalfd that epoll watched on
     * behalf of the process that became PID 1, so a command's result waited for PID 1's next
     * signal (for a quiet init, for ever; under systemd, a minute and a half once, while it
     * waited for a device).
     */
    @Test
    @Timeout(300)
    void commandsEndAtOnceUnderAnInitThatGetsNoSignals() {
        String name = TestSandboxes.uniqueName("init-quiet");
        SandboxConfig config = TestSandboxes.config()
                .patch(Patch.text("/opt/quiet-init", "#!/bin/sh\nexec sleep 1000000\n", PatchOptions.mode(0755)))
                .init(Init.cmd("/opt/quiet-init"))
                .build();
        ExecOptions bounded = ExecOptions.builder().timeout(Duration.ofSeconds(30)).build();
        try (Sandbox sb = Sandbox.create(name, config)) {
            assertThat(sb.shell("tr '\\0' ' ' < /proc/1/cmdline", bounded).stdout()).isEqualTo("sleep 1000000 ");
            // no longer PID 1, the agent keeps out of the OOM killer's choice; its commands do not
            assertThat(sb.shell("cat /proc/$PPID/oom_score_adj /proc/self/oom_score_adj", bounded).stdout()).isEqualTo("-1000\n0\n");
            for (int i = 0; i < 5; i++) {
                long start = System.nanoTime();
                assertThat(sb.exec("true", List.of(), bounded).success()).isTrue();
                assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(20));
            }
            sb.kill();
        } finally {
            Microsandbox.defaultRuntime().find(name).ifPresent(h -> Sandbox.remove(name));
        }
    }

    @Test
    @Timeout(300)
    void cmdPassesArgumentsAndEnvironmentAndAMissingInitFailsTheBootByName() {
        String name = TestSandboxes.uniqueName("init-cmd");
        SandboxConfig config = TestSandboxes.config()
                .patch(Patch.text("/opt/my-init", INIT.replace("/mnt/share/marker", "/dev/null"), PatchOptions.mode(0755)))
                .init(Init.cmd("/opt/my-init", List.of("first", "second"), Map.of("INIT_FLAVOUR", "test")))
                .build();
        try (Sandbox sb = Sandbox.create(name, config)) {
            assertThat(sb.shell("tr '\\0' ' ' < /proc/1/cmdline; echo; tr '\\0' '\\n' < /proc/1/environ | grep INIT_FLAVOUR").stdout())
                    .isEqualTo("/bin/sh /opt/my-init first second \nINIT_FLAVOUR=test\n");
            sb.stop();
        } finally {
            Microsandbox.defaultRuntime().find(name).ifPresent(h -> Sandbox.remove(name));
        }
        String missing = TestSandboxes.uniqueName("init-missing");
        assertThatThrownBy(() -> Sandbox.create(missing, TestSandboxes.config().init(Init.auto()).build()))
                .isInstanceOfSatisfying(MicrosandboxException.class, e -> {
                    assertThat(e.kind()).isEqualTo(ErrorKind.BOOT_FAILED);
                    assertThat(e.getMessage()).contains("none of /sbin/init");
                });
        assertThat(Microsandbox.defaultRuntime().find(missing)).isEmpty();
    }

    /**
     * systemd from a Debian image (scripts/setup.sh builds test-images/debian-systemd) as PID
     * 1 through Init.auto(): a unit it starts is visible from exec, and a graceful stop makes
     * systemd stop its units (the unit's ExecStop leaves a marker in a bind mount) and the VM
     * ends by itself.
     */
    @Test
    @Timeout(400)
    void systemdRunsItsUnitsAndStopsThemOnAGracefulStop() throws Exception {
        Path image = Path.of(TestSandboxes.rootfs()).resolveSibling("debian-systemd");
        assumeTrue(Files.isDirectory(image), "the systemd test image " + image + " is built by scripts/setup.sh");
        Path share = Files.createDirectories(tmp.resolve("share"));
        String unit = """
                [Unit]
                Description=microsandbox probe
                [Service]
                ExecStart=/bin/sh -c 'echo started > /run/msb-probe; exec sleep infinity'
                ExecStop=/bin/sh -c 'echo stopped-by-systemd > /mnt/share/stopped'
                [Install]
                WantedBy=multi-user.target
                """;
        String name = TestSandboxes.uniqueName("systemd");
        SandboxConfig config = SandboxConfig.builder().image(image.toString()).memoryMib(512).bootTimeout(Duration.ofSeconds(120))
                .patch(Patch.text("/etc/systemd/system/msb-probe.service", unit),
                        Patch.mkdir("/etc/systemd/system/multi-user.target.wants"),
                        Patch.symlink("/etc/systemd/system/msb-probe.service", "/etc/systemd/system/multi-user.target.wants/msb-probe.service"))
                .mount("/mnt/share", Mount.bind(share, MountOptions.defaults()))
                .init(Init.auto())
                .build();
        try {
            bootAndStopSystemd(name, config);
            assertThat(Files.readString(share.resolve("stopped"))).isEqualTo("stopped-by-systemd\n");
            SandboxStopResult stop = Sandbox.get(name).lastStop().orElseThrow();
            assertThat(stop.signal()).as("the VMM powered off, not killed").isNull();
            assertThat(stop.exitCode()).isZero();
        } finally {
            Microsandbox.defaultRuntime().find(name).ifPresent(h -> Sandbox.remove(name));
        }
    }

    private static void bootAndStopSystemd(String name, SandboxConfig config) throws InterruptedException {
        try (Sandbox sb = Sandbox.create(name, config)) {
            // the executable, not /proc/1/comm: systemd renames itself only once it runs
            assertThat(sb.shell("readlink /proc/1/exe").stdout()).endsWith("/systemd\n");
            String state = "";
            long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
            while (!state.equals("active") && System.nanoTime() < deadline) {
                Thread.sleep(500);
                state = sb.shell("systemctl is-active msb-probe.service").stdout().trim();
            }
            assertThat(state).isEqualTo("active");
            assertThat(sb.shell("cat /run/msb-probe").stdout()).isEqualTo("started\n");
            long t0 = System.nanoTime();
            sb.stop(Duration.ofSeconds(30));
            // under 6 s systemd powered the VM off itself; the agent's own power-off comes after 6 s
            System.out.printf("graceful stop of systemd took %d ms%n", (System.nanoTime() - t0) / 1_000_000);
        }
    }
}

package io.microsandbox;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Values the guest agent would refuse only after a boot, or drop or cut silently, are
 * refused up front: by SandboxConfig as INVALID_CONFIG, by ExecOptions as INVALID_ARGUMENT.
 */
class GuestLimitsTest {

    private static void refusedByConfig(Consumer<SandboxConfig.Builder> setting, String messagePart) {
        SandboxConfig.Builder b = SandboxConfig.builder().image("/img");
        setting.accept(b);
        assertThatThrownBy(b::build).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG)).hasMessageContaining(messagePart);
    }

    private static void refusedByExecOptions(Consumer<ExecOptions.Builder> setting, String messagePart) {
        ExecOptions.Builder b = ExecOptions.builder();
        setting.accept(b);
        assertThatThrownBy(b::build).isInstanceOfSatisfying(MicrosandboxException.class,
                e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_ARGUMENT)).hasMessageContaining(messagePart);
    }

    @Test
    void execOptionsRefuseEnvNamesWithEqualsOrNulNamingTheVariable() {
        refusedByExecOptions(b -> b.env("A=B", "x"), "'A=B'");
        refusedByExecOptions(b -> b.env("NUL\0NAME", "x"), "'NUL\\0NAME'");
        refusedByExecOptions(b -> b.env("", "x"), "is empty");
        refusedByExecOptions(b -> b.env("VALUE", "a\0b"), "'VALUE' contains a NUL character in its value");
        Map<String, String> withNull = new LinkedHashMap<>();
        withNull.put("UNSET", null);
        refusedByExecOptions(b -> b.env(withNull), "'UNSET' has a null value");
        assertThat(ExecOptions.builder().env("GOOD_NAME", "any = value").build().env()).containsEntry("GOOD_NAME", "any = value");
    }

    @Test
    void sandboxConfigRefusesTheSameEnvironmentThroughTheSameCheck() {
        refusedByConfig(b -> b.env("A=B", "x"), "environment variable name 'A=B' is empty or contains '=' or NUL");
        refusedByConfig(b -> b.env("VALUE", "a\0b"), "'VALUE' contains a NUL character in its value");
    }

    @Test
    void environmentSizes() {
        String big = "x".repeat(GuestLimits.ENV_ENTRY_MAX_BYTES - 2); // "B=" + value
        assertThat(ExecOptions.builder().env("B", big).build().env()).hasSize(1);
        refusedByExecOptions(b -> b.env("B", big + "x"), "'B' is 131072 bytes");
        refusedByConfig(b -> b.env("B", big + "\u00e9"), "'B' is 131073 bytes"); // bytes, not characters

        Map<String, String> many = new LinkedHashMap<>();
        for (int i = 0; i < 9; i++) {
            many.put("V" + i, "y".repeat(120 * 1024));
        }
        refusedByConfig(b -> b.env(many), "the environment is");
        refusedByExecOptions(b -> b.env(many), "over the limit of 1048576");
    }

    @Test
    void hostnameOverSixtyFourBytesIsRefusedBeforeTheBoot() {
        assertThat(SandboxConfig.builder().image("/img").hostname("h".repeat(64)).build().hostname()).hasSize(64);
        refusedByConfig(b -> b.hostname("h".repeat(65)), "65 bytes, over the guest's 64");
        refusedByConfig(b -> b.hostname("\u00e9".repeat(33)), "66 bytes");
        refusedByConfig(b -> b.hostname("a\0b"), "hostname 'a\\0b' contains a NUL character");
    }

    @Test
    void userAndDirectoriesMustFitTheAgentsBuffersAndHaveNoNul() {
        // a NUL made the agent ignore the value: the command ran as root, or in the home directory
        refusedByConfig(b -> b.user("nobody\0"), "user 'nobody\\0' contains a NUL character");
        refusedByExecOptions(b -> b.user("nobody\0"), "contains a NUL character");
        refusedByConfig(b -> b.user("u".repeat(256)), "256 bytes, over the guest's 255");
        refusedByExecOptions(b -> b.user("u".repeat(256)), "over the guest's 255");
        assertThat(ExecOptions.builder().user("u".repeat(255)).build().user()).hasSize(255);

        refusedByConfig(b -> b.workdir("relative"), "workdir must be an absolute guest path, got 'relative'");
        refusedByConfig(b -> b.workdir("/srv\0/x"), "workdir '/srv\\0/x' contains a NUL character");
        refusedByConfig(b -> b.workdir("/" + "d".repeat(4095)), "4096 bytes, over the guest's 4095");
        refusedByExecOptions(b -> b.cwd("/tmp\0"), "cwd '/tmp\\0' contains a NUL character");
        refusedByExecOptions(b -> b.cwd("/" + "d".repeat(4095)), "cwd is 4096 bytes");
        refusedByExecOptions(b -> b.cwd("tmp"), "cwd must be an absolute guest path");
        assertThat(ExecOptions.builder().cwd("/" + "d".repeat(4094)).build().cwd()).hasSize(4095);

        refusedByConfig(b -> b.shell("/bin/sh\0"), "shell '/bin/sh\\0' contains a NUL character");
        refusedByConfig(b -> b.shell(" "), "shell must not be empty");
    }
}

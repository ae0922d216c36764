package io.microsandbox.image.oci;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import org.junit.jupiter.api.Test;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class ImageReferenceTest {
    static final String D = "sha256:" + "ab".repeat(32);

    @Test
    void normalizesAsDocker() {
        assertThat(ImageReference.parse("python").toString()).isEqualTo("docker.io/library/python:latest");
        assertThat(ImageReference.parse("python:3.12-slim").tag()).isEqualTo("3.12-slim");
        assertThat(ImageReference.parse("user/app").toString()).isEqualTo("docker.io/user/app:latest");
        assertThat(ImageReference.parse("docker.io/python").toString()).isEqualTo("docker.io/library/python:latest");
        assertThat(ImageReference.parse("ghcr.io/org/team/app:1").registry()).isEqualTo("ghcr.io");
        assertThat(ImageReference.parse("localhost/app").registry()).isEqualTo("localhost");
        assertThat(ImageReference.parse("127.0.0.1:5000/a/b").repository()).isEqualTo("a/b");
        ImageReference pinned = ImageReference.parse("python:3.12@" + D);
        assertThat(pinned.tag()).isEqualTo("3.12");
        assertThat(pinned.reference()).isEqualTo(D);
        assertThat(ImageReference.parse("python@" + D).tag()).isNull();
        assertThat(ImageReference.parse("python").apiHost()).isEqualTo("registry-1.docker.io");
    }

    @Test
    void refusesMalformedReferences() {
        for (String bad : new String[] {"", "Python", "a//b", "a:b:c", "a@sha256:12", "a@md5:" + "0".repeat(32), " a", "a/-b"}) {
            assertThatThrownBy(() -> ImageReference.parse(bad)).as(bad)
                    .isInstanceOfSatisfying(MicrosandboxException.class, e -> assertThat(e.kind()).isEqualTo(ErrorKind.INVALID_CONFIG));
        }
        assertThat(ImageReference.looksLikeReference("/srv/rootfs")).isFalse();
        assertThat(ImageReference.looksLikeReference("./rootfs")).isFalse();
        assertThat(ImageReference.looksLikeReference("python:3.12")).isTrue();
    }

    @Test
    void plainHttpOnlyForLoopbackAndConfiguredRegistries() {
        assertThat(RegistryClient.plainHttp("registry-1.docker.io")).isFalse();
        assertThat(RegistryClient.plainHttp("ghcr.io")).isFalse();
        assertThat(RegistryClient.plainHttp("10.0.0.5:5000")).isFalse();
        assertThat(RegistryClient.plainHttp("127.0.0.1:5000")).isTrue();
        assertThat(RegistryClient.plainHttp("localhost:5000")).isTrue();
        assertThat(RegistryClient.plainHttp("[::1]:5000")).isTrue();
        System.setProperty("microsandbox.insecureRegistries", "10.0.0.5:5000, registry.lan");
        try {
            assertThat(RegistryClient.plainHttp("10.0.0.5:5000")).isTrue();
            assertThat(RegistryClient.plainHttp("registry.lan")).isTrue();
            assertThat(RegistryClient.plainHttp("registry.lan:443")).isFalse();
        } finally {
            System.clearProperty("microsandbox.insecureRegistries");
        }
    }
}

package io.microsandbox.spring.autoconfigure;

import io.microsandbox.MicrosandboxException;
import io.microsandbox.RegistryAuth;
import io.microsandbox.SandboxConfig;
import io.microsandbox.image.oci.ImageReference;
import io.microsandbox.spring.MicrosandboxProperties;
import io.microsandbox.spring.SandboxConfigCustomizer;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.List;

/** Turns the {@code microsandbox.*} properties into a validated core {@link SandboxConfig}. */
public final class SandboxConfigFactory {

    private SandboxConfigFactory() {
    }

    /** The file or directory {@code image} names, or null when there is none (or it cannot name one: a NUL in it). */
    private static Path existing(String image) {
        try {
            Path path = Path.of(image);
            return Files.exists(path) ? path : null;
        } catch (InvalidPathException e) {
            return null;
        }
    }

    /**
     * The sandbox configuration {@code microsandbox.*} describes, after the customizers.
     *
     * @throws MicrosandboxConfigurationException when a property is missing or wrong, saying which
     */
    public static SandboxConfig create(MicrosandboxProperties p, List<SandboxConfigCustomizer> customizers) {
        if (p.getImage() == null || p.getImage().isBlank()) {
            throw new MicrosandboxConfigurationException("microsandbox.image is not set: the sandboxes need a root filesystem.",
                    "Set microsandbox.image to an OCI image reference (for example python:3.12-slim), or to a local directory "
                            + "holding an unpacked root filesystem (for example ~/.microsandbox/test-images/debian-python, "
                            + "which scripts/setup.sh installs).", null);
        }
        String image = p.getImage().strip();
        Path local = existing(image);
        if (ImageReference.looksLikePath(image) && local == null) {
            throw new MicrosandboxConfigurationException("microsandbox.image '" + image + "' does not exist.",
                    "Point microsandbox.image at an existing local directory holding an unpacked root filesystem "
                            + "(scripts/setup.sh installs one under ~/.microsandbox/test-images/debian-python), "
                            + "an OCI image layout or archive, or give an OCI image reference such as python:3.12-slim.", null);
        }
        if (local != null) {
            image = local.toAbsolutePath().toString(); // the sandboxes do not depend on the working directory
        }
        if (p.getRegistry().getUsername() != null && p.getRegistry().getPassword() == null) {
            throw new MicrosandboxConfigurationException("microsandbox.registry.username is set, but microsandbox.registry.password is not.",
                    "Set microsandbox.registry.password to the password or access token of that user at the registry.", null);
        }
        if (p.getMemory() == null || p.getMemory().compareTo(MicrosandboxProperties.MIN_MEMORY) < 0) {
            throw new MicrosandboxConfigurationException("microsandbox.memory is " + p.getMemory()
                    + ", below the minimum of 64MB.", "Set microsandbox.memory to 64MB or more (for example 256MB).", null);
        }
        try {
            SandboxConfig.Builder b = SandboxConfig.builder()
                    .image(image)
                    .pullPolicy(p.getPullPolicy())
                    .memoryMib((int) p.getMemory().toMegabytes())
                    .cpus(p.getCpus())
                    .env(p.getEnv())
                    .labels(p.getLabels())
                    .accelerator(p.getAccelerator())
                    .bootTimeout(p.getBootTimeout())
                    .idleTimeout(p.getIdleTimeout())
                    .cacheReclaimAfter(p.getCacheReclaimAfter())
                    .maxDuration(p.getMaxDuration());
            if (p.getRegistry().getUsername() != null) {
                b.registryAuth(new RegistryAuth(p.getRegistry().getUsername(), p.getRegistry().getPassword()));
            }
            if (p.getWorkdir() != null) {
                b.workdir(p.getWorkdir());
            }
            if (p.getUser() != null) {
                b.user(p.getUser());
            }
            if (p.getShell() != null) {
                b.shell(p.getShell());
            }
            for (SandboxConfigCustomizer c : customizers) {
                c.customize(b);
            }
            return b.build();
        } catch (MicrosandboxException e) {
            throw new MicrosandboxConfigurationException("The microsandbox.* properties do not make a valid sandbox configuration: "
                    + e.getMessage(), "Fix the microsandbox.* property named above (or the SandboxConfigCustomizer that set it).", e);
        }
    }
}

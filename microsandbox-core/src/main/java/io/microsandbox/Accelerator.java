package io.microsandbox;

/**
 * How QEMU runs guest code. {@link #AUTO} uses KVM when a probe boot of the sandbox kernel
 * succeeds on this host (the answer is remembered) and TCG software emulation otherwise.
 * The environment variable {@code MSB_ACCEL} ({@code auto}, {@code kvm}, {@code tcg})
 * overrides a configured {@code AUTO}.
 */
public enum Accelerator {
    AUTO,
    KVM,
    TCG;

    /** Parses {@code auto}, {@code kvm} or {@code tcg}, ignoring case. */
    public static Accelerator parse(String value) {
        try {
            return valueOf(value.trim().toUpperCase(java.util.Locale.ROOT));
        } catch (IllegalArgumentException | NullPointerException e) {
            throw new MicrosandboxException(ErrorKind.INVALID_CONFIG,
                    "accelerator must be auto, kvm or tcg, not '" + value + "'");
        }
    }
}

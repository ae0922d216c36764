package io.microsandbox;

/**
 * The versions of what runs a sandbox, from {@link Sandbox#runtimeVersion()}. A part that could
 * not be determined is null.
 *
 * @param sdk      this SDK (the core jar), as {@link Sandbox#sdkVersion()}
 * @param protocol the agent protocol version both ends speak
 * @param agent    the guest agent's version, from its handshake
 * @param kernel   the guest kernel's release ({@code uname -r} inside the guest)
 * @param qemu     the VMM, from QEMU's {@code query-version} (with the distribution's package version)
 */
public record RuntimeVersion(String sdk, int protocol, String agent, String kernel, String qemu) {
}

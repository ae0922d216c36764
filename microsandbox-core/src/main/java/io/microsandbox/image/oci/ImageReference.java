package io.microsandbox.image.oci;

import io.microsandbox.ErrorKind;
import io.microsandbox.MicrosandboxException;
import java.util.Locale;
import java.util.regex.Pattern;

/**
 * An OCI image reference, normalized as Docker does: {@code python} is
 * {@code docker.io/library/python:latest}, {@code user/app} is {@code docker.io/user/app:latest};
 * a first component with a dot or a colon, or {@code localhost}, names the registry. A
 * {@code @sha256:...} digest pins the manifest; a tag alone is resolved at the registry.
 */
public record ImageReference(String registry, String repository, String tag, String digest) {
    public static final String DOCKER_HUB = "docker.io";
    private static final Pattern COMPONENT = Pattern.compile("[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*");
    private static final Pattern TAG = Pattern.compile("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
    private static final Pattern DIGEST = Pattern.compile("sha256:[0-9a-f]{64}");

    /** Parses {@code [registry/]repository[:tag][@sha256:hex]}. */
    public static ImageReference parse(String ref) {
        if (ref == null || ref.isBlank() || !ref.strip().equals(ref)) {
            throw bad(ref, "empty or surrounded by spaces");
        }
        String rest = ref;
        String digest = null;
        int at = rest.indexOf('@');
        if (at >= 0) {
            digest = rest.substring(at + 1);
            rest = rest.substring(0, at);
            if (!DIGEST.matcher(digest).matches()) {
                throw bad(ref, "the digest must be sha256: and 64 lowercase hex digits");
            }
        }
        String registry = DOCKER_HUB;
        int slash = rest.indexOf('/');
        if (slash > 0) {
            String first = rest.substring(0, slash);
            if (first.contains(".") || first.contains(":") || first.equals("localhost")) {
                registry = first.toLowerCase(Locale.ROOT);
                rest = rest.substring(slash + 1);
            }
        }
        String tag = null;
        int colon = rest.lastIndexOf(':');
        if (colon >= 0) {
            tag = rest.substring(colon + 1);
            rest = rest.substring(0, colon);
            if (!TAG.matcher(tag).matches()) {
                throw bad(ref, "invalid tag '" + tag + "'");
            }
        }
        if (rest.isEmpty()) {
            throw bad(ref, "no repository name");
        }
        for (String component : rest.split("/", -1)) {
            if (!COMPONENT.matcher(component).matches()) {
                throw bad(ref, "invalid repository name '" + rest + "' (lowercase letters, digits, separators)");
            }
        }
        if (registry.equals(DOCKER_HUB) && !rest.contains("/")) {
            rest = "library/" + rest;
        }
        if (tag == null && digest == null) {
            tag = "latest";
        }
        return new ImageReference(registry, rest, tag, digest);
    }

    /** Whether {@code s} is spelt as a file path (absolute, relative to {@code .} or {@code ~}), which no reference is. */
    public static boolean looksLikePath(String s) {
        return s.startsWith("/") || s.startsWith(".") || s.startsWith("~");
    }

    /** Whether {@code s} reads as an image reference rather than a file path. */
    public static boolean looksLikeReference(String s) {
        if (s == null || s.isEmpty() || looksLikePath(s)) {
            return false;
        }
        try {
            parse(s);
            return true;
        } catch (MicrosandboxException e) {
            return false;
        }
    }

    /** The tag or the digest to ask the registry for: the digest when both are given. */
    public String reference() {
        return digest != null ? digest : tag;
    }

    /** The host the API is served on ({@code registry-1.docker.io} for Docker Hub). */
    public String apiHost() {
        return registry.equals(DOCKER_HUB) ? "registry-1.docker.io" : registry;
    }

    /** The fully qualified form, e.g. {@code docker.io/library/python:latest}. */
    @Override
    public String toString() {
        return registry + "/" + repository + (tag != null ? ":" + tag : "") + (digest != null ? "@" + digest : "");
    }

    private static MicrosandboxException bad(String ref, String why) {
        return new MicrosandboxException(ErrorKind.INVALID_CONFIG, "invalid image reference '" + ref + "': " + why);
    }
}

package io.microsandbox.image;

import java.io.IOException;

/**
 * Paths put into {@code debugfs} requests, which come from images (names, symbolic link
 * targets): debugfs reads each request as words, so a quote, a backslash or a control
 * character in a path could end its word and add arguments (or, in a script, commands) of the
 * image's choosing. Such a path is refused, never escaped.
 */
public final class DebugfsPaths {
    private DebugfsPaths() {
    }

    /**
     * {@code path} in double quotes, one word of a request.
     *
     * @throws IOException naming {@code what} when the path holds a quote, a backslash or a control character
     */
    public static String quote(String path, String what) throws IOException {
        for (int i = 0; i < path.length(); i++) {
            char c = path.charAt(i);
            if (c == '"' || c == '\\' || Character.isISOControl(c)) {
                throw new IOException("cannot " + what + " " + io.microsandbox.runtime.Printable.brief(path, 200)
                        + ": debugfs cannot be given a path with a quote, a backslash or a control character");
            }
        }
        return "\"" + path + "\"";
    }
}

package io.microsandbox.runtime;

/**
 * Text a guest or an image controls, made safe to put in a log line or an error message that
 * someone reads in a terminal: control characters (an escape sequence could rewrite the
 * screen or the clipboard), line and paragraph separators and invisible format characters
 * (bidirectional overrides make text read other than it is) are written as escapes.
 */
public final class Printable {
    private Printable() {
    }

    /** {@code text} on one line: every such character escaped, line ends included. */
    public static String line(String text) {
        return escape(text, false);
    }

    /** {@code text} that may span lines: line ends and tabs kept, every other such character escaped. */
    public static String lines(String text) {
        return escape(text, true);
    }

    /** {@link #line} cut to {@code max} characters, saying how long it was: a name quoted in a message. */
    public static String brief(String text, int max) {
        return Json.brief(line(text), max);
    }

    private static String escape(String text, boolean keepLineEnds) {
        StringBuilder out = null;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            boolean kept = keepLineEnds && (c == '\n' || c == '\t');
            if (!kept && needsEscape(c)) {
                if (out == null) {
                    out = new StringBuilder(text.length() + 16).append(text, 0, i);
                }
                out.append(c < 0x100 ? String.format("\\x%02x", (int) c) : String.format("\\u%04x", (int) c));
            } else if (out != null) {
                out.append(c);
            }
        }
        return out == null ? text : out.toString();
    }

    private static boolean needsEscape(char c) {
        int type = Character.getType(c);
        return Character.isISOControl(c) || type == Character.LINE_SEPARATOR || type == Character.PARAGRAPH_SEPARATOR
                || type == Character.FORMAT;
    }
}

package io.microsandbox.runtime.network;

import java.net.InetAddress;
import java.net.UnknownHostException;

/** Address literals, parsed without ever resolving a name (InetAddress.getByName would look up anything else). */
public final class InetLiterals {
    private InetLiterals() {
    }

    /** The address an IPv4 dotted quad or an IPv6 literal names, or null. */
    public static InetAddress parse(String text) {
        if (text == null) {
            return null;
        }
        if (text.matches("[0-9]{1,3}(\\.[0-9]{1,3}){3}")) {
            String[] parts = text.split("\\.");
            byte[] b = new byte[4];
            for (int i = 0; i < 4; i++) {
                int v = Integer.parseInt(parts[i]);
                if (v > 255) {
                    return null;
                }
                b[i] = (byte) v;
            }
            return byAddress(b);
        }
        if (text.contains(":") && text.matches("[0-9a-fA-F:.]+")) {
            try {
                return InetAddress.getByName(text); // colons: always parsed as a literal, never looked up
            } catch (UnknownHostException e) {
                return null;
            }
        }
        return null;
    }

    private static InetAddress byAddress(byte[] b) {
        try {
            return InetAddress.getByAddress(b);
        } catch (UnknownHostException e) {
            throw new IllegalStateException(e);
        }
    }
}

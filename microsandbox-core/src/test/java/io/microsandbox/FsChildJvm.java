package io.microsandbox;

import java.io.InputStream;
import java.io.OutputStream;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.Random;

/**
 * The client half of the 1 GiB stream test (or, with {@code forever}, a writer that never ends), run in a JVM with a small heap: connects to a
 * running sandbox, writes {@code mib} MiB of pseudo-random data to a guest file through
 * {@link SandboxFs#writeStream}, reads it back through {@link SandboxFs#readStream}, and
 * prints {@code WROTE <sha256>} and {@code READ <sha256>} with the heap's peak.
 */
public final class FsChildJvm {
    private FsChildJvm() {
    }

    public static void main(String[] args) throws Exception {
        String name = args[0];
        String path = args[1];
        Sandbox sb = Sandbox.connect(name);
        SandboxFs fs = sb.fs();
        if (args[2].equals("forever")) {
            // a client that dies half-way: writes until it is killed
            try (OutputStream out = fs.writeStream(path)) {
                byte[] chunk = new byte[1 << 20];
                while (true) {
                    out.write(chunk);
                }
            }
        }
        int mib = Integer.parseInt(args[2]);
        byte[] buf = new byte[1 << 20];
        Random random = new Random(1);
        MessageDigest sent = MessageDigest.getInstance("SHA-256");
        long t0 = System.nanoTime();
        try (OutputStream out = fs.writeStream(path)) {
            for (int i = 0; i < mib; i++) {
                random.nextBytes(buf);
                sent.update(buf);
                out.write(buf);
            }
        }
        long t1 = System.nanoTime();
        System.out.println("WROTE " + HexFormat.of().formatHex(sent.digest()));
        MessageDigest received = MessageDigest.getInstance("SHA-256");
        long total = 0;
        try (InputStream in = fs.readStream(path)) {
            int n;
            while ((n = in.read(buf)) > 0) {
                received.update(buf, 0, n);
                total += n;
            }
        }
        long t2 = System.nanoTime();
        System.out.println("READ " + HexFormat.of().formatHex(received.digest()) + " " + total);
        System.out.printf("TIMES write %.1f s, read %.1f s, max heap %d MiB%n", (t1 - t0) / 1e9, (t2 - t1) / 1e9,
                Runtime.getRuntime().maxMemory() >> 20);
        System.out.flush();
        sb.detach();
        System.exit(0);
    }
}

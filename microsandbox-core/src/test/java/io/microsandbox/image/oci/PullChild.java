package io.microsandbox.image.oci;

import io.microsandbox.PullPolicy;
import java.nio.file.Path;

/** A second JVM that pulls one image into a home and prints what it downloaded. */
public final class PullChild {
    private PullChild() {
    }

    public static void main(String[] args) {
        OciImages oci = new OciImages(Path.of(args[0]));
        OciImages.Image img = oci.pull(args[1], PullPolicy.IF_MISSING, null, null);
        if (args.length > 2 && args[2].equals("disk")) {
            oci.lowerDisk(img, null, null);
        }
        System.out.println("PULLED " + img.manifestDigest());
        System.out.println("DOWNLOADED " + oci.blobsDownloaded());
    }

    static Process start(Path home, String image, String... extra) throws java.io.IOException {
        String javaBin = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        java.util.List<String> cmd = new java.util.ArrayList<>(java.util.List.of(javaBin, "-XX:-UsePerfData", "-cp", System.getProperty("java.class.path"),
                PullChild.class.getName(), home.toString(), image));
        cmd.addAll(java.util.List.of(extra));
        return new ProcessBuilder(cmd).redirectErrorStream(true).start();
    }
}

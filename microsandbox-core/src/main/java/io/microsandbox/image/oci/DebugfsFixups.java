package io.microsandbox.image.oci;

import io.microsandbox.runtime.HostCommand;
import io.microsandbox.runtime.OwnerOnly;
import io.microsandbox.runtime.SandboxPreparer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Without root, the staging tree cannot hold other users' files, device nodes or
 * {@code trusted.*}/{@code security.*} attributes. {@code debugfs -w} (e2fsprogs) edits the
 * finished ext4 image as a plain file and needs no privilege: owners, modes, devices and
 * xattrs are set on the disk afterwards, one script for the whole image.
 */
final class DebugfsFixups {
    private DebugfsFixups() {
    }

    static void apply(Path disk, List<LayerApplier.Fixup> fixups, Path tmpDir) throws IOException {
        if (fixups.isEmpty()) {
            return;
        }
        Path work = Files.createTempDirectory(tmpDir, "debugfs.");
        try {
            StringBuilder script = new StringBuilder();
            int n = 0;
            for (LayerApplier.Fixup f : fixups) {
                String p = "/" + f.path();
                String q = io.microsandbox.image.DebugfsPaths.quote(p, "fix up (without root)");
                if (f.device() != '\0') {
                    script.append("rm ").append(q).append('\n');
                    // mknod takes a name in the current directory, not a path
                    int slash = p.lastIndexOf('/');
                    script.append("cd \"").append(slash == 0 ? "/" : p.substring(0, slash)).append("\"\n");
                    script.append("mknod \"").append(p.substring(slash + 1)).append("\" ").append(f.device());
                    if (f.device() != 'p') {
                        script.append(' ').append(f.major()).append(' ').append(f.minor());
                    }
                    script.append('\n');
                }
                script.append("sif ").append(q).append(" uid ").append(f.uid()).append('\n');
                script.append("sif ").append(q).append(" gid ").append(f.gid()).append('\n');
                if ((f.mode() & 0170000) != 0120000) {
                    script.append("sif ").append(q).append(" mode 0").append(Integer.toOctalString(f.mode())).append('\n');
                }
                for (Map.Entry<String, byte[]> x : f.xattrs().entrySet()) {
                    if (!PaxXattrs.validName(x.getKey())) {
                        // the name is a bare word of the script: it must not be able to end the line
                        throw new IOException("cannot fix up " + p + " without root (an invalid extended attribute name)");
                    }
                    Path value = work.resolve("x" + (n++));
                    Files.write(value, x.getValue());
                    script.append("ea_set -f \"").append(value).append("\" ").append(q).append(' ').append(x.getKey()).append('\n');
                }
            }
            Path file = work.resolve("script");
            OwnerOnly.write(file, script.toString().getBytes(StandardCharsets.UTF_8));
            HostCommand.Result r = HostCommand.run(List.of(io.microsandbox.image.RootDisks.e2fsprogsTool("debugfs"), "-w", "-f", file.toString(), disk.toString()),
                    Duration.ofMinutes(10), 64 << 20);
            String out = r.output();
            if (!r.succeeded()) {
                throw new IOException("debugfs failed: " + tail(out));
            }
            // debugfs reports a failed command on its output and goes on
            for (String line : out.split("\n")) {
                String l = line.toLowerCase(Locale.ROOT);
                if (!line.startsWith("debugfs") && (l.contains("not found") || l.contains("error") || l.contains("invalid")
                        || l.contains("usage:") || l.contains("couldn't") || l.contains("could not"))) {
                    throw new IOException("debugfs could not apply owners/modes/devices/xattrs: " + line.strip());
                }
            }
        } finally {
            SandboxPreparer.deleteTree(work);
        }
    }

    private static String tail(String s) {
        return s.length() > 2000 ? s.substring(s.length() - 2000) : s;
    }
}

package io.microsandbox.image;

import io.microsandbox.runtime.HostCommand;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads the read-only lower ext4 disk from the host with {@code debugfs} (e2fsprogs): what a
 * path is, its mode and owner, a link's target, a file's bytes. Never writes to the disk.
 * debugfs exits 0 whatever fails and says so on its output: each answer is read for that, as
 * a disk it cannot open would otherwise look empty (patches applied as if nothing were there).
 */
final class LowerFs {
    private static final Pattern TYPE = Pattern.compile("Inode: (\\d+)\\s+Type: (\\S+)\\s+Mode:\\s+(\\d+)");
    private static final Pattern OWNER = Pattern.compile("User:\\s+(\\d+)\\s+Group:\\s+(\\d+)");
    private static final Pattern FAST_LINK = Pattern.compile("Fast link dest: \"(.*)\"");

    private final Path disk;

    LowerFs(Path disk) {
        this.disk = disk;
    }

    /** An entry of the lower: type is regular, directory, symlink, ... */
    record Entry(String path, long inode, String type, int mode, int uid, int gid, String linkTarget) {
        boolean isDirectory() {
            return type.equals("directory");
        }

        boolean isSymlink() {
            return type.equals("symlink");
        }
    }

    /** The entry at {@code path} itself (no link followed), or null when absent. */
    Entry stat(String path) throws IOException {
        String out = run("stat " + DebugfsPaths.quote(path, "read the image's"));
        Matcher t = TYPE.matcher(out);
        if (!t.find()) {
            if (out.contains("File not found by ext2_lookup")) {
                return null;
            }
            throw new IOException("debugfs cannot tell what " + path + " is in the image: " + answer(out));
        }
        Matcher o = OWNER.matcher(out);
        int uid = 0;
        int gid = 0;
        if (o.find()) {
            uid = Integer.parseInt(o.group(1));
            gid = Integer.parseInt(o.group(2));
        }
        String type = t.group(2);
        String target = null;
        if (type.equals("symlink")) {
            Matcher f = FAST_LINK.matcher(out);
            target = f.find() ? f.group(1) : withoutBanner(run("cat <" + t.group(1) + ">"));
        }
        return new Entry(path, Long.parseLong(t.group(1)), type, Integer.parseInt(t.group(3), 8), uid, gid, target);
    }

    /**
     * Resolves {@code path} as the guest would, following links in the directories on the way
     * (and the last component too when {@code followLast}); links never leave the image root.
     * Returns the resolved absolute path, whether or not it exists.
     */
    String resolve(String path, boolean followLast) throws IOException {
        List<String> todo = new ArrayList<>(split(path));
        List<String> done = new ArrayList<>();
        int hops = 0;
        while (!todo.isEmpty()) {
            String c = todo.remove(0);
            if (c.equals("..")) {
                if (!done.isEmpty()) {
                    done.remove(done.size() - 1);
                }
                continue;
            }
            String candidate = "/" + String.join("/", done) + (done.isEmpty() ? "" : "/") + c;
            if (!todo.isEmpty() || followLast) {
                Entry e = stat(candidate);
                if (e != null && e.isSymlink()) {
                    if (++hops > 40) {
                        throw new IOException("too many levels of symbolic links in " + path);
                    }
                    List<String> target = split(e.linkTarget());
                    if (e.linkTarget().startsWith("/")) {
                        done.clear();
                    }
                    todo.addAll(0, target);
                    continue;
                }
                if (e == null) {
                    // absent: the rest is created as given
                    done.add(c);
                    done.addAll(todo.stream().filter(s -> !s.equals("..")).toList());
                    break;
                }
            }
            done.add(c);
        }
        return "/" + String.join("/", done);
    }

    static List<String> split(String path) {
        List<String> out = new ArrayList<>();
        for (String s : path.split("/")) {
            if (!s.isEmpty() && !s.equals(".")) {
                out.add(s);
            }
        }
        return out;
    }

    /** Copies a regular file of the lower to {@code dest} on the host. */
    void dump(String path, Path dest) throws IOException {
        String out = run("dump " + DebugfsPaths.quote(path, "copy the image's") + " " + DebugfsPaths.quote(dest.toString(), "copy to"));
        if (!answer(out).isEmpty()) {
            throw new IOException("debugfs cannot copy " + path + " out of the image: " + answer(out));
        }
    }

    private String run(String request) throws IOException {
        // a listing of a large directory is long: bounded all the same
        String out = HostCommand.run(List.of(RootDisks.e2fsprogsTool("debugfs"), "-R", request, disk.toString()),
                Duration.ofSeconds(60), 64 << 20).output();
        if (out.contains("while trying to open") || out.contains("Filesystem not open")) {
            throw new IOException("debugfs cannot open the image's disk " + disk + ": " + answer(out));
        }
        return out;
    }

    /** What debugfs said besides its banner. */
    private static String answer(String out) {
        return withoutBanner(out).strip();
    }

    private static String withoutBanner(String out) {
        return out.replaceFirst("^debugfs [^\\n]*\\n", "");
    }
}

package io.microsandbox.runtime.supervisor;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.vmm.QemuCommand;
import java.io.IOException;
import java.util.List;

/**
 * The VM a spare supervisor boots ahead of its sandbox ({@link PreBoot}): the QEMU command
 * line of the home's last creation that had a fresh upper disk, or of its last restore, with
 * the paths in it that belong to that sandbox (its socket directory and its upper disk), and
 * the upper's size. The next creation adopts the booted VM when its own command line is the
 * same but for those paths (and, for a restore, its checkpoint the same).
 *
 * @param vmmArgv      the QEMU command line of that creation
 * @param runDir       its socket directory, as it appears in {@code vmmArgv}
 * @param upperDisk    its upper disk, as it appears in {@code vmmArgv}
 * @param upperSizeMib the upper disk's size
 * @param restore      for a restore, the checkpoint it came from; null for a boot
 */
public record PrebootShape(List<String> vmmArgv, String runDir, String upperDisk, int upperSizeMib, Restore restore) {
    /**
     * The checkpoint a restore loads: QEMU is started ahead waiting for it
     * ({@code -incoming defer}), with its guest memory filled from {@code ramFile} and its own
     * copy of the checkpoint's upper disk.
     *
     * @param ramFile     the checkpoint's guest memory file
     * @param memoryUri   where QEMU loads the device state from
     * @param upperFile   the checkpoint's upper disk, copied for the VM
     * @param upperDigest its content digest as the checkpoint's manifest records it (null: not recorded)
     */
    public record Restore(String ramFile, String memoryUri, String upperFile, String upperDigest) {
    }

    /** A shape to boot, with no checkpoint. */
    public PrebootShape(List<String> vmmArgv, String runDir, String upperDisk, int upperSizeMib) {
        this(vmmArgv, runDir, upperDisk, upperSizeMib, null);
    }

    /** The shape of the VM {@code spec} boots, whose upper disk is a fresh one of {@code upperSizeMib}. */
    public static PrebootShape of(SupervisorSpec spec, int upperSizeMib) {
        return new PrebootShape(List.copyOf(spec.vmmArgv()), spec.runDir(), spec.layout().upperDisk().toString(), upperSizeMib);
    }

    /** The shape of the restore {@code spec} runs, of the checkpoint {@code checkpoint}. */
    public static PrebootShape ofRestore(SupervisorSpec spec, Restore checkpoint) {
        return new PrebootShape(List.copyOf(spec.vmmArgv()), spec.runDir(), spec.layout().upperDisk().toString(), 0, checkpoint);
    }

    /**
     * {@code argv} with this shape's sandbox paths replaced by {@code runDir} and {@code upperDisk},
     * both as they stand in option values (commas doubled) and as they are.
     */
    static List<String> relocate(List<String> argv, String fromRunDir, String fromUpper, String runDir, String upperDisk) {
        return argv.stream().map(a -> a.replace(QemuCommand.optionValue(fromUpper), QemuCommand.optionValue(upperDisk))
                .replace(fromUpper, upperDisk)
                .replace(QemuCommand.optionValue(fromRunDir), QemuCommand.optionValue(runDir))
                .replace(fromRunDir, runDir)).toList();
    }

    /** Whether {@code arg} names {@code path}, as it is or as an option value. */
    static boolean mentions(String arg, String path) {
        return arg.contains(path) || arg.contains(QemuCommand.optionValue(path));
    }

    String toJson() {
        ObjectNode n = Json.object();
        n.set("vmmArgv", Json.tree(vmmArgv));
        n.put("runDir", runDir);
        n.put("upperDisk", upperDisk);
        n.put("upperSizeMib", upperSizeMib);
        if (restore == null) {
            n.putNull("restore");
        } else {
            n.putObject("restore").put("ramFile", restore.ramFile()).put("memoryUri", restore.memoryUri())
                    .put("upperFile", restore.upperFile()).put("upperDigest", restore.upperDigest());
        }
        return Json.toText(n);
    }

    /**
     * Reads what {@link #toJson} wrote.
     *
     * @throws IOException for text that is no shape, naming the field that is wrong
     */
    static PrebootShape fromJson(String json) throws IOException {
        JsonNode n = Json.parse(json);
        if (!n.isObject()) {
            throw new IOException("a pre-boot shape must be a JSON object, not " + n.getNodeType());
        }
        JsonNode r = Json.object(n, "restore");
        Restore restore = r == null ? null : new Restore(Json.string(r, "ramFile"), Json.string(r, "memoryUri"),
                Json.string(r, "upperFile"), Json.string(r, "upperDigest"));
        long upperSizeMib = Json.integer(n, "upperSizeMib");
        if (upperSizeMib < 0 || upperSizeMib > Integer.MAX_VALUE) {
            throw new IOException("\"upperSizeMib\" is out of range: " + upperSizeMib);
        }
        return new PrebootShape(Json.strings(n, "vmmArgv"), Json.string(n, "runDir"), Json.string(n, "upperDisk"),
                (int) upperSizeMib, restore);
    }
}

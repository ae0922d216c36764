package io.microsandbox.runtime.supervisor;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.util.List;

/**
 * The VM a spare supervisor boots ahead of its sandbox ({@link PreBoot}): the QEMU command
 * line of the home's last creation that had a fresh upper disk, with the paths in it that
 * belong to that sandbox (its socket directory and its upper disk), and the upper's size.
 * The next creation adopts the booted VM when its own command line is the same but for
 * those paths.
 *
 * @param vmmArgv      the QEMU command line of that creation
 * @param runDir       its socket directory, as it appears in {@code vmmArgv}
 * @param upperDisk    its upper disk, as it appears in {@code vmmArgv}
 * @param upperSizeMib the upper disk's size
 */
public record PrebootShape(List<String> vmmArgv, String runDir, String upperDisk, int upperSizeMib) {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** The shape of the VM {@code spec} boots, whose upper disk is a fresh one of {@code upperSizeMib}. */
    public static PrebootShape of(SupervisorSpec spec, int upperSizeMib) {
        return new PrebootShape(List.copyOf(spec.vmmArgv()), spec.runDir(), spec.layout().upperDisk().toString(), upperSizeMib);
    }

    /** {@code argv} with this shape's sandbox paths replaced by {@code runDir} and {@code upperDisk}. */
    static List<String> relocate(List<String> argv, String fromRunDir, String fromUpper, String runDir, String upperDisk) {
        return argv.stream().map(a -> a.replace(fromUpper, upperDisk).replace(fromRunDir, runDir)).toList();
    }

    String toJson() throws IOException {
        return JSON.writeValueAsString(this);
    }

    static PrebootShape fromJson(String json) throws IOException {
        return JSON.readValue(json, PrebootShape.class);
    }
}

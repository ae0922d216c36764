package io.microsandbox;

import io.microsandbox.runtime.RuntimeFiles;
import io.microsandbox.runtime.SandboxLayout;
import java.io.IOException;
import java.nio.file.Files;

/** The host processes behind a running sandbox, found through its pid file. */
record SandboxPids(long supervisorPid, long vmmPid) {

    static SandboxPids of(String name) {
        SandboxLayout layout = SandboxLayout.of(RuntimeFiles.defaultHome(), name);
        try {
            long supervisor = Long.parseLong(Files.readString(layout.pidFile()).strip());
            long vmm = ProcessHandle.of(supervisor).orElseThrow().children()
                    .filter(p -> p.info().command().orElse("").contains("qemu"))
                    .findFirst().orElseThrow().pid();
            return new SandboxPids(supervisor, vmm);
        } catch (IOException e) {
            throw new AssertionError("no pid file for sandbox " + name, e);
        }
    }

    static boolean alive(long pid) {
        return ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false);
    }
}

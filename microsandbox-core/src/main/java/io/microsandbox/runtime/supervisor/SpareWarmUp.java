package io.microsandbox.runtime.supervisor;

import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.Posix;
import io.microsandbox.runtime.agent.Frame;
import io.microsandbox.runtime.agent.FrameCodec;
import io.microsandbox.runtime.agent.Protocol;
import io.microsandbox.store.SandboxStore;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;

/**
 * What a supervisor does while it waits for its spec: it runs the code of a boot's path once,
 * so that the boot after the spec finds its classes loaded and initialised (interpreted
 * first runs and class initialisation cost 1 to 5 ms per step here, about 20 ms from the
 * spec to QEMU's start when done cold).
 */
final class SpareWarmUp {
    private SpareWarmUp() {
    }

    static void run() throws IOException {
        Posix.load();
        FrameCodec.read(new java.io.ByteArrayInputStream(FrameCodec.encode(
                new Frame(0, 0, Protocol.CORE_PING, Json.object()))));
        Json.toText(Json.object().put("warm", true));
        SandboxStore.preload();
        SupervisorSpec.warmUp();
        // a restore draws the guest's fresh entropy from it: a JVM's first one takes 15-20 ms to set up
        new java.security.SecureRandom().nextBytes(new byte[64]);
        Instant.now().toString();
        try {
            hostFiles(Files.createTempDirectory("msb-warm-up"));
        } catch (IOException | RuntimeException e) {
            // only a speed-up
        }
    }

    /**
     * The set-up's host I/O on throwaway files in {@code dir}, which it removes: listening UNIX
     * sockets with a client (the agent, client and console sockets), the exec log, the pid file.
     *
     * @return whether every step ran (it is only a speed-up: a failure skips the rest)
     */
    static boolean hostFiles(Path dir) {
        Path socket = dir.resolve("s");
        Path execLog = dir.resolve("exec.log");
        Path pid = dir.resolve("pid");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(socket));
            try (SocketChannel client = SocketChannel.open(UnixDomainSocketAddress.of(socket));
                 SocketChannel accepted = server.accept()) {
                client.write(ByteBuffer.wrap(new byte[] {1}));
                accepted.read(ByteBuffer.allocate(1));
            }
            ExecLog.append(execLog).close();
            Files.writeString(pid, Long.toString(ProcessHandle.current().pid()));
            return true;
        } catch (IOException | RuntimeException e) {
            return false;
        } finally {
            for (Path file : new Path[] {socket, execLog, pid, dir}) {
                try {
                    Files.deleteIfExists(file);
                } catch (IOException ignored) {
                    // a file of our own temporary directory: left for the system's cleaning
                }
            }
        }
    }
}

package io.microsandbox.runtime.vmm;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.microsandbox.runtime.agent.ChannelStreams;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/** Runs one QMP command against QEMU's monitor socket (greeting, capabilities, command). */
public final class QmpClient {
    private static final ObjectMapper JSON = new ObjectMapper();

    private QmpClient() {
    }

    /** Executes {@code command} (e.g. {@code stop}, {@code cont}) and returns its {@code return} value. */
    public static JsonNode execute(Path socket, String command) throws IOException {
        try (SocketChannel channel = SocketChannel.open(UnixDomainSocketAddress.of(socket))) {
            BufferedReader in = new BufferedReader(new InputStreamReader(ChannelStreams.input(channel), StandardCharsets.UTF_8));
            OutputStream out = ChannelStreams.output(channel);
            JsonNode greeting = JSON.readTree(in.readLine());
            if (greeting == null || !greeting.has("QMP")) {
                throw new IOException("no QMP greeting on " + socket);
            }
            call(in, out, "qmp_capabilities");
            return call(in, out, command);
        }
    }

    private static JsonNode call(BufferedReader in, OutputStream out, String command) throws IOException {
        out.write(("{\"execute\":\"" + command + "\"}\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
        String line;
        while ((line = in.readLine()) != null) {
            JsonNode reply = JSON.readTree(line);
            if (reply.has("return")) {
                return reply.get("return");
            }
            if (reply.has("error")) {
                throw new IOException("QMP " + command + " failed: " + reply.get("error").path("desc").asText());
            }
            // asynchronous events (STOP, RESUME, ...) come in between: skip them
        }
        throw new IOException("QMP connection closed during " + command);
    }
}

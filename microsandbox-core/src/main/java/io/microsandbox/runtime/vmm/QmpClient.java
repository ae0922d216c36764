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

    /** Closes the channels of calls that ran out of time, which ends their blocked reads. */
    private static final java.util.concurrent.ScheduledExecutorService DEADLINES =
            java.util.concurrent.Executors.newSingleThreadScheduledExecutor(r -> {
                Thread t = new Thread(r, "msb-qmp-deadlines");
                t.setDaemon(true);
                return t;
            });

    private QmpClient() {
    }

    /**
     * Executes {@code command} (e.g. {@code stop}, {@code cont}) and returns its {@code return}
     * value, failing once {@code timeout} has passed.
     */
    public static JsonNode execute(Path socket, String command, java.time.Duration timeout) throws IOException {
        return execute(socket, command, null, timeout);
    }

    /** Like {@link #execute(Path, String, java.time.Duration)}, with the command's {@code arguments} (null for none). */
    public static JsonNode execute(Path socket, String command, JsonNode arguments, java.time.Duration timeout) throws IOException {
        try (SocketChannel channel = SocketChannel.open(UnixDomainSocketAddress.of(socket))) {
            var deadline = DEADLINES.schedule(() -> {
                try {
                    channel.close();
                } catch (IOException ignored) {
                    // closing is what ends the call
                }
            }, timeout.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS);
            try {
                return execute(channel, command, arguments, socket);
            } catch (IOException e) {
                if (!channel.isOpen()) {
                    throw new IOException("QMP " + command + " got no answer within " + timeout, e);
                }
                throw e;
            } finally {
                deadline.cancel(false);
            }
        }
    }

    private static JsonNode execute(SocketChannel channel, String command, JsonNode arguments, Path socket) throws IOException {
        BufferedReader in = new BufferedReader(new InputStreamReader(ChannelStreams.input(channel), StandardCharsets.UTF_8));
        OutputStream out = ChannelStreams.output(channel);
        JsonNode greeting = JSON.readTree(in.readLine());
        if (greeting == null || !greeting.has("QMP")) {
            throw new IOException("no QMP greeting on " + socket);
        }
        call(in, out, "qmp_capabilities", null);
        return call(in, out, command, arguments);
    }

    private static JsonNode call(BufferedReader in, OutputStream out, String command, JsonNode arguments) throws IOException {
        var request = JSON.createObjectNode().put("execute", command);
        if (arguments != null) {
            request.set("arguments", arguments);
        }
        out.write((request + "\n").getBytes(StandardCharsets.UTF_8));
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

package io.microsandbox.runtime.vmm;

import com.fasterxml.jackson.databind.JsonNode;
import io.microsandbox.runtime.BoundedLines;
import io.microsandbox.runtime.Json;
import io.microsandbox.runtime.agent.ChannelStreams;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/** QMP commands against QEMU's monitor socket: one per connection (greeting, capabilities, command), or several over a {@link Session}. */
public final class QmpClient {

    /**
     * The longest line read from QEMU. Its answers to what we ask are a few KiB; QEMU runs the
     * guest's devices, so a QEMU the guest took over must not grow the supervisor's heap.
     */
    private static final int MAX_LINE_BYTES = 1 << 20;

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
        try (Session session = Session.open(socket, timeout)) {
            return session.execute(command, arguments, timeout);
        }
    }

    /**
     * One monitor connection kept open for several commands: what a caller polling QEMU's state
     * uses instead of a connection, greeting and capabilities negotiation per question.
     */
    public static final class Session implements java.io.Closeable {
        private final SocketChannel channel;
        private final Path socket;
        private final InputStream in;
        private final OutputStream out;
        private final JsonNode greeting;

        private Session(SocketChannel channel, Path socket, java.time.Duration timeout) throws IOException {
            this.channel = channel;
            this.socket = socket;
            this.in = new BufferedInputStream(ChannelStreams.input(channel));
            this.out = ChannelStreams.output(channel);
            // connected within the deadline too: a QEMU whose main loop is stuck accepts nobody,
            // and once its backlog (of one) is full a blocking connect would wait for ever
            greeting = within(timeout, "greeting", () -> {
                channel.connect(UnixDomainSocketAddress.of(socket));
                String line = BoundedLines.read(in, MAX_LINE_BYTES, "QEMU's monitor");
                JsonNode node = line == null ? null : Json.parse(line);
                if (node == null || !node.has("QMP")) {
                    throw new IOException("no QMP greeting on " + socket);
                }
                call(in, out, "qmp_capabilities", null);
                return node;
            });
        }

        /**
         * Connects to the monitor at {@code socket} and negotiates capabilities, failing once
         * {@code timeout} has passed. QEMU greets only once its main loop runs, so a session
         * that opens is a monitor that answers.
         */
        public static Session open(Path socket, java.time.Duration timeout) throws IOException {
            SocketChannel channel = SocketChannel.open(java.net.StandardProtocolFamily.UNIX);
            try {
                return new Session(channel, socket, timeout);
            } catch (IOException | RuntimeException e) {
                channel.close();
                throw e;
            }
        }

        /** QEMU's version from the greeting: {@code {"qemu": {"major", "minor", "micro"}, "package"}}. */
        public JsonNode version() {
            return greeting.path("QMP").path("version");
        }

        /** Executes {@code command} with {@code arguments} (null for none) and returns its {@code return} value. */
        public JsonNode execute(String command, JsonNode arguments, java.time.Duration timeout) throws IOException {
            return within(timeout, command, () -> call(in, out, command, arguments));
        }

        private interface Call {
            JsonNode run() throws IOException;
        }

        /** Runs {@code call}, closing the connection (which ends its blocked read) once {@code timeout} has passed. */
        private JsonNode within(java.time.Duration timeout, String what, Call call) throws IOException {
            var deadline = DEADLINES.schedule(() -> {
                try {
                    channel.close();
                } catch (IOException ignored) {
                    // closing is what ends the call
                }
            }, timeout.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS);
            try {
                return call.run();
            } catch (IOException e) {
                if (!channel.isOpen()) {
                    throw new IOException("QMP " + what + " got no answer within " + timeout + " on " + socket, e);
                }
                throw e;
            } finally {
                deadline.cancel(false);
            }
        }

        @Override
        public void close() throws IOException {
            channel.close();
        }
    }

    private static JsonNode call(InputStream in, OutputStream out, String command, JsonNode arguments) throws IOException {
        var request = Json.object().put("execute", command);
        if (arguments != null) {
            request.set("arguments", arguments);
        }
        out.write((Json.toText(request) + "\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
        String line;
        while ((line = BoundedLines.read(in, MAX_LINE_BYTES, "QEMU's monitor")) != null) {
            if (line.isBlank()) {
                continue;
            }
            JsonNode reply = Json.parse(line);
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

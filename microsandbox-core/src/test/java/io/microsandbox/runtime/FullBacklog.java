package io.microsandbox.runtime;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A Unix socket that listens and accepts nobody, with its backlog full: what a peer whose
 * acceptor is stuck looks like, where one more blocking connect would wait for ever.
 */
public final class FullBacklog implements AutoCloseable {
    private final ServerSocketChannel server;
    private final List<SocketChannel> queued = new ArrayList<>();

    /** Listens at {@code socket} with a backlog of one (as QEMU does) and fills it. */
    public FullBacklog(Path socket) throws IOException {
        server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(socket), 1);
        // a non-blocking connect that would wait fails with EAGAIN instead
        while (queued.size() < 16) {
            SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX);
            c.configureBlocking(false);
            queued.add(c);
            try {
                if (!c.connect(UnixDomainSocketAddress.of(socket))) {
                    return;
                }
            } catch (IOException wouldWait) {
                return;
            }
        }
        close();
        throw new IllegalStateException("the backlog of " + socket + " did not fill");
    }

    @Override
    public void close() throws IOException {
        for (SocketChannel c : queued) {
            c.close();
        }
        server.close();
    }
}

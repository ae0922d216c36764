package io.microsandbox.runtime.agent;

/** Constants of the agent protocol, version 2 (docs/protocol.md). */
public final class Protocol {
    /** Protocol version spoken by this build; a peer with another version is refused. */
    public static final int VERSION = 2;
    /** Largest frame after the length prefix; longer frames are rejected before allocation. */
    public static final int MAX_FRAME_BYTES = 4 * 1024 * 1024;
    /** Bytes of the id and flags that precede the CBOR body. */
    public static final int HEADER_BYTES = 5;

    public static final int FLAG_TERMINAL = 0x01;
    public static final int FLAG_SESSION_START = 0x02;
    public static final int FLAG_SHUTDOWN = 0x04;

    /** Largest stdin or output chunk we put in one frame, well below the frame limit. */
    public static final int CHUNK_BYTES = 64 * 1024;

    /**
     * Unacknowledged stdin bytes the host may have sent to one exec session; the agent returns
     * credit with {@link #EXEC_STDIN_WINDOW} as the process consumes its stdin.
     */
    public static final int STDIN_WINDOW = 1 << 20;
    /** Output credit (stdout and stderr together) of an exec.request without {@code window}. */
    public static final int DEFAULT_OUTPUT_WINDOW = 262144;

    public static final String CORE_HELLO = "core.hello";
    public static final String CORE_CONFIGURE = "core.configure";
    public static final String CORE_READY = "core.ready";
    public static final String CORE_ERROR = "core.error";
    public static final String CORE_PING = "core.ping";
    public static final String CORE_PONG = "core.pong";
    /** Ends the quiet spell a checkpoint's {@code core.ping {quiesce: true}} began (id 0, no answer). */
    public static final String CORE_RESUME = "core.resume";
    public static final String CORE_TOUCH = "core.touch";
    public static final String CORE_SHUTDOWN = "core.shutdown";
    public static final String CORE_STATS = "core.stats";
    public static final String CORE_RECLAIM = "core.reclaim";

    public static final String EXEC_REQUEST = "exec.request";
    public static final String EXEC_STARTED = "exec.started";
    public static final String EXEC_STDIN = "exec.stdin";
    public static final String EXEC_STDOUT = "exec.stdout";
    public static final String EXEC_STDERR = "exec.stderr";
    public static final String EXEC_EXITED = "exec.exited";
    public static final String EXEC_FAILED = "exec.failed";
    public static final String EXEC_SIGNAL = "exec.signal";
    /**
     * Host to agent: {@code {}} the session is given up: its process group is killed and its
     * output discarded, so it ends even with output unread.
     */
    public static final String EXEC_CANCEL = "exec.cancel";
    /**
     * Client to supervisor: {@code {}} the client lets the session go on without it: the
     * supervisor keeps logging its output, grants it credit itself, and does not end it when the
     * client leaves. The agent never sees it.
     */
    public static final String EXEC_DETACH = "exec.detach";
    public static final String EXEC_RESIZE = "exec.resize";
    /** Host to agent: {@code {bytes}} more output credit for the session. */
    public static final String EXEC_WINDOW = "exec.window";
    /** Agent to host: {@code {bytes[, closed]}} stdin credit returned as the process consumes it. */
    public static final String EXEC_STDIN_WINDOW = "exec.stdin_window";

    /** Host to agent, SESSION_START: a filesystem operation (docs/protocol.md, "Filesystem session"). */
    public static final String FS_REQUEST = "fs.request";
    /** Both ways: {@code {data}} file bytes; host to agent, empty data ends a write. */
    public static final String FS_DATA = "fs.data";
    /** Host to agent: {@code {bytes}} more read credit. */
    public static final String FS_WINDOW = "fs.window";
    /** Agent to host: {@code {bytes[, closed]}} write credit returned as the file takes the data. */
    public static final String FS_WRITE_WINDOW = "fs.write_window";
    /** Host to agent: abandon the operation (its worker is killed). */
    public static final String FS_CANCEL = "fs.cancel";
    /** Agent to host, TERMINAL: the operation succeeded, with its result. */
    public static final String FS_RESULT = "fs.result";
    /** Agent to host, TERMINAL: {@code {kind, errno, message, path}}. */
    public static final String FS_ERROR = "fs.error";
    /** Read credit of a file read without {@code window}, and the chunk size of file data. */
    public static final int FS_WINDOW_BYTES = 4 * 1024 * 1024;
    public static final int FS_CHUNK_BYTES = 256 * 1024;
    /**
     * Write data a client may have sent to an fs session and not had returned by
     * {@link #FS_WRITE_WINDOW}: the agent buffers what its worker has not taken yet (at most
     * 32 MiB per session, its hard limit).
     */
    public static final int FS_WRITE_WINDOW_BYTES = 4 * 1024 * 1024;

    public static final String SUP_HELLO = "sup.hello";
    public static final String SUP_WELCOME = "sup.welcome";
    public static final String SUP_STATUS = "sup.status";
    public static final String SUP_STOP = "sup.stop";
    public static final String SUP_KILL = "sup.kill";
    public static final String SUP_DRAIN = "sup.drain";
    public static final String SUP_PAUSE = "sup.pause";
    public static final String SUP_RESUME = "sup.resume";
    public static final String SUP_METRICS = "sup.metrics";
    public static final String SUP_OK = "sup.ok";
    public static final String SUP_ERROR = "sup.error";
    public static final String SUP_EXITED = "sup.exited";
    /** Client to supervisor: save guest memory and a copy of the upper disk (see docs/protocol.md, "Checkpoint"). */
    public static final String SUP_CHECKPOINT = "sup.checkpoint";
    /** Host to agent, id 0, after a restore from a checkpoint: {@code {entropy, realtime_ns, hostname}}. */
    public static final String CORE_RESTORE = "core.restore";
    /** Agent to host: the restore is applied. */
    public static final String CORE_RESTORED = "core.restored";

    private Protocol() {
    }

    /** The network relay's session frames on the guest link (docs/protocol.md, "Network session"); the supervisor answers them itself. */
    public static final class Net {
        /** agent -> host, SESSION_START: {proto, dst, port, window}, a guest connection to check and open. */
        public static final String CONNECT = "net.connect";
        /** host -> agent, SESSION_START: {port, window}, a published port's connection to open in the guest. */
        public static final String OPEN = "net.open";
        /** either way: the connection is open. */
        public static final String CONNECTED = "net.connected";
        /** either way: {data}; empty data is EOF. */
        public static final String DATA = "net.data";
        /** either way: {bytes} more credit. */
        public static final String WINDOW = "net.window";
        /** either way, TERMINAL: {reset} the session is over. */
        public static final String CLOSE = "net.close";
        /** agent -> host, SESSION_START: {query, dst}, a DNS query the guest sent. */
        public static final String DNS = "net.dns";
        /** agent -> host, SESSION_START: {dst, port}, a guest UDP flow to check and open; its datagrams follow as net.data. */
        public static final String UDP = "net.udp";
        /** host -> agent, SESSION_START: {port}, a published UDP port's new client: a flow to 127.0.0.1:port in the guest. */
        public static final String UDP_OPEN = "net.udp_open";
        /** host -> agent, TERMINAL: {reply}, the answer (empty: none). */
        public static final String DNS_REPLY = "net.dns_reply";

        private Net() {
        }
    }
}

/* msb-agent entry point: boot sequence, the port's frame I/O and the epoll loop. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/statvfs.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Port output queue watermarks for throttling session output (see port_throttled). */
#define TX_HIGH (8u * 1024 * 1024)
#define TX_LOW (1u * 1024 * 1024)
/* While the host end is disconnected the port is polled at this interval. */
#define HUP_POLL_MS 200

static int g_epoll = -1;
static int g_port = -1;
static bool g_port_in_loop;    /* false while the host end is disconnected */
static uint32_t g_port_events; /* events currently registered for the port */

static uint8_t *g_rx;          /* received bytes not yet parsed */
static size_t g_rx_len, g_rx_cap;

static cbor_buf g_tx;          /* queued frames; bytes [g_tx_off, g_tx.len) are unsent */
static size_t g_tx_off;
static size_t g_frame_start;   /* offset of the frame being built */
static bool g_throttled;
/* A checkpoint's quiet spell (core.ping with quiesce): from its pong until core.resume or
 * core.restore, nothing the guest does starts a frame to the host, so that the VM never stops
 * in the middle of one. Ends by itself after QUIESCE_MAX_NS of guest time, should the host
 * that asked for it be gone. */
#define QUIESCE_MAX_NS (10ull * 1000000000ull)
static bool g_quiesced;
static uint64_t g_quiesce_end_ns;

static enum { ST_WAIT_CONFIG, ST_READY } g_state = ST_WAIT_CONFIG;
static uint64_t g_boot_ns;

uint64_t now_boottime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int g_log_level = LOG_INFO;

/* The agent's own console fd for its log (see vlogmsg); -1 until the first line. */
static int console = -1;

void log_console_closed(void)
{
    console = -1;
}

static void vlogmsg(int level, const char *fmt, va_list ap)
{
    if (level < g_log_level)
        return;
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "msb-agent: ");
    n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    /* A console of its own that never blocks: a guest that stops the console (tcflow
     * TCOOFF) or a host that stops reading it would otherwise hang PID 1 in write. Lines it
     * cannot take are dropped and counted. Not fd 2 made non-blocking: after an init handoff
     * the init shares that file description. */
    static unsigned dropped;
    if (console < 0 && (console = open("/dev/console", O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) < 0) {
        /* before /dev is mounted: the kernel's console on fd 2, if any */
        ssize_t w = write(2, buf, (size_t)n);
        (void)w;
        return;
    }
    if (dropped) {
        char note[64];
        int m = snprintf(note, sizeof note, "msb-agent: (%u log lines dropped: the console was full)\n", dropped);
        if (write(console, note, (size_t)m) != m) {
            dropped++;
            return;
        }
        dropped = 0;
    }
    if (write(console, buf, (size_t)n) != n)
        dropped++;
}

void logmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlogmsg(LOG_WARN, fmt, ap);
    va_end(ap);
}

void errormsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlogmsg(LOG_ERROR, fmt, ap);
    va_end(ap);
}

void debugmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlogmsg(LOG_DEBUG, fmt, ap);
    va_end(ap);
}

/* ---- event loop registration ---- */

static uint64_t ev_key(int fd, enum ev_kind kind, uint32_t tag)
{
    /* tag (session id) | fd | kind: the fd lets handlers detect stale events for fds that
     * were closed and reused earlier in the same epoll_wait batch */
    return ((uint64_t)tag << 32) | ((uint64_t)(uint32_t)fd << 2) | (uint64_t)kind;
}

int ev_add(int fd, uint32_t events, enum ev_kind kind, uint32_t tag)
{
    struct epoll_event ev = { .events = events, .data.u64 = ev_key(fd, kind, tag) };
    return epoll_ctl(g_epoll, EPOLL_CTL_ADD, fd, &ev);
}

int ev_mod(int fd, uint32_t events, enum ev_kind kind, uint32_t tag)
{
    struct epoll_event ev = { .events = events, .data.u64 = ev_key(fd, kind, tag) };
    return epoll_ctl(g_epoll, EPOLL_CTL_MOD, fd, &ev);
}

void ev_del(int fd)
{
    epoll_ctl(g_epoll, EPOLL_CTL_DEL, fd, NULL);
}

/* ---- port output ---- */

bool port_throttled(void) { return g_throttled || g_quiesced; }

static void set_quiesced(bool on)
{
    if (on)
        g_quiesce_end_ns = now_boottime_ns() + QUIESCE_MAX_NS;
    if (on != g_quiesced) {
        g_quiesced = on;
        exec_throttle_changed();
        net_throttle_changed();
    }
}

/* epoll_wait's timeout: the quiet spell's end, when one is on, and a cancelled fs worker's
 * kill bound it. */
static int loop_timeout_ms(void)
{
    int ms = g_port_in_loop ? -1 : HUP_POLL_MS;
    int kill_ms = exec_deadline_ms();
    if (kill_ms >= 0 && (ms < 0 || kill_ms < ms))
        ms = kill_ms;
    if (g_quiesced) {
        uint64_t now = now_boottime_ns();
        int left = now >= g_quiesce_end_ns ? 0 : (int)((g_quiesce_end_ns - now) / 1000000u) + 1;
        if (ms < 0 || left < ms)
            ms = left;
    }
    return ms;
}

static void update_throttle(void)
{
    size_t pending = g_tx.len - g_tx_off;
    bool t = g_throttled ? pending > TX_LOW : pending > TX_HIGH;
    if (t != g_throttled) {
        g_throttled = t;
        exec_throttle_changed();
        net_throttle_changed();
    }
}

static void port_set_events(void)
{
    uint32_t want = EPOLLIN | (g_tx.len > g_tx_off ? EPOLLOUT : 0);
    if (g_port_in_loop && want != g_port_events && ev_mod(g_port, want, EV_PORT, 0) == 0)
        g_port_events = want;
}

static void port_flush(void)
{
    while (g_port >= 0 && g_tx_off < g_tx.len) {
        ssize_t n = write(g_port, g_tx.data + g_tx_off, g_tx.len - g_tx_off);
        if (n > 0) {
            g_tx_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            /* EAGAIN: ring full; anything else: host end gone, keep the data for a
             * reconnect (the queue is bounded by throttling) */
            break;
        }
    }
    if (g_tx_off == g_tx.len) {
        g_tx.len = g_tx_off = 0;
    } else if (g_tx_off > 65536 && g_tx_off > g_tx.len / 2) {
        memmove(g_tx.data, g_tx.data + g_tx_off, g_tx.len - g_tx_off);
        g_tx.len -= g_tx_off;
        g_tx_off = 0;
    }
    port_set_events();
    update_throttle();
}

/* Blocks until the queue is sent or timeout_ms passed (used before powering off). */
static void port_flush_blocking(int timeout_ms)
{
    uint64_t deadline = now_boottime_ns() + (uint64_t)timeout_ms * 1000000u;
    while (g_port >= 0 && g_tx_off < g_tx.len) {
        port_flush();
        if (g_tx_off == g_tx.len)
            break;
        uint64_t now = now_boottime_ns();
        if (now >= deadline)
            break;
        struct pollfd p = { .fd = g_port, .events = POLLOUT };
        poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
    }
}

cbor_buf *frame_begin(uint32_t id, uint8_t flags, const char *type, size_t npairs)
{
    uint8_t hdr[9] = { 0, 0, 0, 0, (uint8_t)(id >> 24), (uint8_t)(id >> 16),
                       (uint8_t)(id >> 8), (uint8_t)id, flags };
    g_frame_start = g_tx.len;
    cbor_put_raw(&g_tx, hdr, sizeof hdr);
    cbor_put_map(&g_tx, 3);
    cbor_put_text(&g_tx, "v");
    cbor_put_uint(&g_tx, PROTO_VERSION);
    cbor_put_text(&g_tx, "t");
    cbor_put_text(&g_tx, type);
    cbor_put_text(&g_tx, "p");
    cbor_put_map(&g_tx, npairs);
    return &g_tx;
}

size_t identity_pairs(bool have_uts)
{
    return have_uts ? 3 : 2;
}

void put_identity(cbor_buf *b, const struct utsname *uts)
{
    cbor_put_text(b, "agent");
    cbor_put_text(b, AGENT_VERSION);
    /* what this agent does beyond its protocol version: the host refuses a request that
     * needs one an older agent (of a sandbox started before) lacks, rather than see it ignored */
    cbor_put_text(b, "features");
    cbor_put_array(b, 1);
    cbor_put_text(b, "fs_exclusive");
    if (uts) {
        /* the kernel in use, for Sandbox.runtimeVersion() */
        cbor_put_text(b, "kernel");
        cbor_put_text(b, uts->release);
    }
}

void frame_end(void)
{
    if (g_tx.oom) {
        /* cannot happen short of the guest running out of memory; drop this frame only:
         * the frames before it are intact, and one of them may be partly sent already
         * (dropping the whole queue would cut the stream inside a frame) */
        logmsg("out of memory queueing a frame; frame dropped");
        g_tx.oom = false;
        g_tx.len = g_frame_start;
        return;
    }
    uint32_t len = (uint32_t)(g_tx.len - g_frame_start - 4);
    uint8_t *h = g_tx.data + g_frame_start;
    h[0] = (uint8_t)(len >> 24);
    h[1] = (uint8_t)(len >> 16);
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    port_flush();
}

uint8_t reply_flags(uint32_t id)
{
    return id != 0 && !exec_session_live(id) ? FLAG_TERMINAL : 0;
}

void send_error(uint32_t id, const char *stage, const char *message, int err)
{
    cbor_buf *b = frame_begin(id, reply_flags(id), "core.error", 3);
    cbor_put_text(b, "stage");
    cbor_put_text(b, stage);
    cbor_put_text(b, "message");
    cbor_put_text(b, message);
    cbor_put_text(b, "errno");
    cbor_put_int(b, err);
    frame_end();
}

static void send_empty(uint32_t id, uint8_t flags, const char *type)
{
    frame_begin(id, flags, type, 0);
    frame_end();
}

/* Reports a fatal boot error to the host and the console, then powers off. */
static void __attribute__((noreturn)) fatal(const char *stage, const char *msg, int err)
{
    errormsg("fatal: %s: %s (errno %d: %s)", stage, msg, err, strerror(err));
    send_error(0, stage, msg, err);
    port_flush_blocking(2000);
    power_off();
}

/* ---- message handling ---- */

static void do_configure(cbor_val p)
{
    const char *stage = "root";
    char msg[512] = "";
    int rc = setup_root(&stage, msg, sizeof msg);
    if (rc == 0)
        rc = apply_config(p, &stage, msg, sizeof msg);
    if (rc == 0 && g_config.init_cmd)
        rc = init_handoff(&g_config, &stage, msg, sizeof msg);
    if (rc < 0)
        fatal(stage, msg, -rc);
    uint64_t init_ns = now_boottime_ns();
    g_state = ST_READY;
    cbor_buf *b = frame_begin(0, 0, "core.ready", 3);
    cbor_put_text(b, "boot_time_ns");
    cbor_put_uint(b, g_boot_ns);
    cbor_put_text(b, "init_time_ns");
    cbor_put_uint(b, init_ns);
    cbor_put_text(b, "ready_time_ns");
    cbor_put_uint(b, now_boottime_ns());
    frame_end();
    /* The network comes up while the host reports the sandbox ready and its client connects:
     * frames are handled one at a time, so no request runs before it is up (about 35 ms under
     * emulation: lo, the sk_lookup program, resolv.conf's copy-up). */
    cbor_val network;
    bool want_network = false;
    if (cbor_map_get(p, "network", &network) && cbor_get_bool(network, &want_network) && want_network)
        net_setup();
    const char *ca;
    size_t ca_len;
    if (cbor_map_get(p, "tls_ca", &network) && cbor_get_text(network, &ca, &ca_len))
        net_install_ca(ca, ca_len);
}

static void __attribute__((noreturn)) do_shutdown(void)
{
    if (init_handed_off())
        init_request_poweroff();
    kill_all_and_sync();
    send_empty(0, FLAG_SHUTDOWN, "core.shutdown");
    port_flush_blocking(2000);
    power_off();
}

/* Guest figures for the host's metrics: memory from /proc/meminfo, the writable upper disk
 * from statvfs. The host adds what it measures itself (CPU, RSS, disk I/O). */
static void do_stats(uint32_t id)
{
    unsigned long long mem_total = 0, mem_available = 0, file_lru = 0, busy_file = 0, kib;
    char line[160];
    FILE *f = fopen("/proc/meminfo", "re");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
                mem_total = kib * 1024;
            else if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
                mem_available = kib * 1024;
            else if (sscanf(line, "Active(file): %llu kB", &kib) == 1 || sscanf(line, "Inactive(file): %llu kB", &kib) == 1)
                file_lru += kib * 1024;
            else if (sscanf(line, "Mapped: %llu kB", &kib) == 1 || sscanf(line, "Dirty: %llu kB", &kib) == 1)
                busy_file += kib * 1024;
        }
        fclose(f);
    }
    struct statvfs upper;
    bool have_upper = statvfs("/run/msb/upper", &upper) == 0;
    cbor_buf *b = frame_begin(id, reply_flags(id), "core.stats", have_upper ? 5 : 3);
    cbor_put_text(b, "mem_total_bytes");
    cbor_put_uint(b, mem_total);
    cbor_put_text(b, "mem_available_bytes");
    cbor_put_uint(b, mem_available);
    /* file pages that drop_caches frees, about: those on the file lists (tmpfs pages are on
     * the anonymous ones) less those mapped by processes or dirty, which it skips */
    cbor_put_text(b, "mem_file_bytes");
    cbor_put_uint(b, file_lru > busy_file ? file_lru - busy_file : 0);
    if (have_upper) {
        cbor_put_text(b, "upper_used_bytes");
        cbor_put_uint(b, (uint64_t)(upper.f_blocks - upper.f_bfree) * upper.f_frsize);
        cbor_put_text(b, "upper_free_bytes");
        cbor_put_uint(b, (uint64_t)upper.f_bavail * upper.f_frsize);
    }
    frame_end();
}

static void write_knob(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, value, strlen(value)) < 0)
        logmsg("reclaim: %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

/* core.reclaim: the host found the sandbox idle with much page cache, which the guest keeps
 * for ever when nothing presses on its memory, and which the host's page cache holds already.
 * Dropped, then compacted into the 4 MiB blocks that free page reporting hands back to the
 * host. Done by a child at the lowest priority: under TCG it takes about 0.1 s, during which
 * the agent keeps serving (reap_children ignores a pid that is no session's). Skipped while a
 * session runs (one may have started after the host decided) and without a balloon driver
 * (Debian's kernel has it as a module that is not loaded): nothing would reach the host. */
static void do_reclaim(void)
{
    if (exec_sessions_open())
        return;
    if (access("/sys/bus/virtio/drivers/virtio_balloon", F_OK) != 0) {
        logmsg("reclaim: no balloon driver, so dropped caches would not reach the host");
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        logmsg("reclaim: fork: %s", strerror(errno));
        return;
    }
    if (pid > 0)
        return;
    /* the agent's sockets and pipes held here would delay their peers' end-of-file */
    close_agent_fds();
    if (setpriority(PRIO_PROCESS, 0, 19) < 0)
        logmsg("reclaim: setpriority: %s", strerror(errno));
    write_knob("/proc/sys/vm/drop_caches", "3");
    write_knob("/proc/sys/vm/compact_memory", "1");
    _exit(0);
}

/* Frame flags are not needed to dispatch: the type says what a frame is. */
static void handle_frame(uint32_t id, const uint8_t *body, size_t blen)
{
    msg_ref m;
    switch (msg_parse(body, blen, &m)) {
    case MSG_OK:
        break;
    case MSG_BAD_VERSION:
        send_error(id, "protocol", "unsupported protocol version", EPROTO);
        return;
    default:
        send_error(id, "protocol", "malformed frame body", EINVAL);
        return;
    }
    cbor_val p = m.payload;

    if (msg_type_is(&m, "core.ping") || msg_type_is(&m, "core.touch")) {
        cbor_val v;
        bool quiesce = false;
        if (id == 0 && msg_type_is(&m, "core.ping") && cbor_map_get(p, "quiesce", &v))
            cbor_get_bool(v, &quiesce);
        if (quiesce)
            set_quiesced(true);
        send_empty(id, reply_flags(id), "core.pong");
    } else if (msg_type_is(&m, "core.resume")) {
        set_quiesced(false);
    } else if (msg_type_is(&m, "core.stats")) {
        do_stats(id);
    } else if (msg_type_is(&m, "core.configure")) {
        if (g_state == ST_WAIT_CONFIG)
            do_configure(p);
        else
            send_error(0, "protocol", "already configured", EALREADY);
    } else if (msg_type_is(&m, "core.restore")) {
        if (g_state == ST_READY) {
            set_quiesced(false);
            do_restore(p);
        }
        else
            send_error(0, "protocol", "core.restore before core.configure", EPROTO);
    } else if (msg_type_is(&m, "core.reclaim")) {
        if (id == 0)
            do_reclaim();
        else
            send_error(id, "protocol", "core.reclaim on a non-zero id", EINVAL);
    } else if (msg_type_is(&m, "core.shutdown")) {
        do_shutdown();
    } else if (m.tlen > 5 && memcmp(m.type, "exec.", 5) == 0) {
        if (id == 0) {
            send_error(0, "protocol", "exec message on id 0", EINVAL);
        } else if (msg_type_is(&m, "exec.request")) {
            if (g_state == ST_READY) {
                exec_request(id, p);
            } else {
                cbor_buf *b = frame_begin(id, FLAG_TERMINAL, "exec.failed", 4);
                cbor_put_text(b, "kind");
                cbor_put_text(b, "other");
                cbor_put_text(b, "errno");
                cbor_put_int(b, EAGAIN);
                cbor_put_text(b, "message");
                cbor_put_text(b, "sandbox not configured yet");
                cbor_put_text(b, "stage");
                cbor_put_text(b, "spawn");
                frame_end();
            }
        } else {
            exec_message(id, m.type, m.tlen, p);
        }
    } else if (m.tlen > 3 && memcmp(m.type, "fs.", 3) == 0) {
        if (id == 0) {
            send_error(0, "protocol", "fs message on id 0", EINVAL);
        } else if (msg_type_is(&m, "fs.request")) {
            if (g_state == ST_READY) {
                fs_request(id, p);
            } else {
                cbor_buf *b = frame_begin(id, FLAG_TERMINAL, "fs.error", 4);
                cbor_put_text(b, "kind");
                cbor_put_text(b, "other");
                cbor_put_text(b, "errno");
                cbor_put_int(b, EAGAIN);
                cbor_put_text(b, "message");
                cbor_put_bytes(b, "sandbox not configured yet", 26);
                cbor_put_text(b, "path");
                cbor_put_bytes(b, "", 0);
                frame_end();
            }
        } else {
            exec_message(id, m.type, m.tlen, p);
        }
    } else if (m.tlen > 4 && memcmp(m.type, "net.", 4) == 0) {
        if (id != 0)
            net_message(id, m.type, m.tlen, p);
    } else if (msg_type_is(&m, "core.error")) {
        logmsg("host reported an error (id %u)", id);
    } else {
        char msg[128];
        snprintf(msg, sizeof msg, "unknown message type %.*s", (int)(m.tlen > 64 ? 64 : m.tlen), m.type);
        send_error(id, "protocol", msg, ENOSYS);
    }
}

/* Host end closed: stop watching the port until it reconnects (see main loop). */
static void port_hangup(void)
{
    if (!g_port_in_loop)
        return;
    ev_del(g_port);
    g_port_in_loop = false;
    g_port_events = 0;
    g_rx_len = 0; /* a partial frame cannot continue on a new connection */
}

static void port_reconnect_check(void)
{
    struct pollfd p = { .fd = g_port, .events = POLLIN };
    if (poll(&p, 1, 0) >= 0 && !(p.revents & POLLHUP)) {
        g_port_events = EPOLLIN;
        if (ev_add(g_port, EPOLLIN, EV_PORT, 0) == 0) {
            g_port_in_loop = true;
            port_flush();
        }
    }
}

static void port_readable(void)
{
    for (;;) {
        if (g_rx_cap - g_rx_len < 65536 && g_rx_cap < MAX_FRAME + 4) {
            size_t cap = g_rx_cap ? g_rx_cap * 2 : 131072;
            if (cap > MAX_FRAME + 4)
                cap = MAX_FRAME + 4;
            uint8_t *n = realloc(g_rx, cap);
            if (!n) {
                logmsg("out of memory reading the port");
                return;
            }
            g_rx = n;
            g_rx_cap = cap;
        }
        ssize_t n = read(g_port, g_rx + g_rx_len, g_rx_cap - g_rx_len);
        if (n == 0) {
            port_hangup();
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                port_hangup();
            return;
        }
        g_rx_len += (size_t)n;

        size_t off = 0;
        frame_ref f;
        int rc;
        while ((rc = frame_split(g_rx + off, g_rx_len - off, &f)) == FRAME_OK) {
            handle_frame(f.id, f.body, f.blen);
            off += f.total;
            if (!g_port_in_loop)
                return;
        }
        if (rc == FRAME_BAD_LENGTH) {
            /* no way to resynchronise a byte stream: drop everything buffered */
            const uint8_t *h = g_rx + off;
            logmsg("protocol error: frame length %u", (unsigned)((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]));
            send_error(0, "protocol", "bad frame length", EPROTO);
            g_rx_len = 0;
            return;
        }
        if (off) {
            memmove(g_rx, g_rx + off, g_rx_len - off);
            g_rx_len -= off;
        }
    }
}

static void reap_children(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        exec_child_exited(pid, status);
}

/* SIGCHLD, read through a signalfd in the event loop */
static int g_sfd = -1;

static void drain_signalfd(void)
{
    struct signalfd_siginfo si;
    while (read(g_sfd, &si, sizeof si) == (ssize_t)sizeof si)
        ;
    reap_children();
}

/* SIGCHLD blocked (a signalfd reads only blocked signals; a no-op again after the init's fork)
 * and a signalfd for it added to the event loop. */
static int signals_open(void)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        return -errno;
    if (ev_add(sfd, EPOLLIN, EV_SIGNAL, 0) < 0) {
        int err = errno;
        close(sfd);
        return -err;
    }
    g_sfd = sfd;
    return 0;
}

int signals_after_fork(void)
{
    /* epoll learns of a signalfd's signals through the wait queue of the process that added
     * it: the one now PID 1 (signalfd(2), "epoll(7) semantics"). Left as it was, this child's
     * exits were noticed only when PID 1 happened to get a signal too, so with a quiet init
     * an exec's result waited as long as the init stayed quiet. */
    int old = g_sfd;
    int rc = signals_open();
    if (rc < 0)
        return rc; /* the old one stays, so the loop is as it was */
    ev_del(old);
    close(old);
    return 0;
}

/* PID 1 starts with the kernel's 1024 open files: too few for what the agent serves (three
 * fds an exec session, one a connection, NET_MAX_CONNS of them). Its children inherit this. */
static void raise_fd_limit(void)
{
    struct rlimit r = { AGENT_MAX_FDS, AGENT_MAX_FDS };
    if (setrlimit(RLIMIT_NOFILE, &r) < 0)
        logmsg("cannot raise the open-file limit to %d: %s", AGENT_MAX_FDS, strerror(errno));
}

int main(void)
{
    g_boot_ns = now_boottime_ns();
    early_mounts();

    if (cmdline_has("msb.probe=1")) {
        static const char ok[] = "MSB_PROBE_OK\n";
        ssize_t w = write(1, ok, sizeof ok - 1);
        (void)w;
        power_off();
    }

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    g_epoll = epoll_create1(EPOLL_CLOEXEC);
    if (g_epoll < 0)
        fatal("init", "cannot create the epoll instance", errno);
    int rc = signals_open();
    if (rc < 0)
        fatal("init", "cannot create the signalfd", -rc);

    rc = load_modules();
    if (rc < 0)
        fatal("modules", "loading kernel modules failed", -rc);
    g_port = open_agent_port();
    if (g_port < 0)
        fatal("port", "virtio-serial port 'agent' not found", -g_port);
    port_reconnect_check();

    /* The boot timeline so far, CLOCK_BOOTTIME: the kernel's start to the agent's start
     * (boot_time_ns), then modules and the port (hello_time_ns). */
    struct utsname uts;
    bool have_uts = uname(&uts) == 0;
    cbor_buf *b = frame_begin(0, 0, "core.hello", 4 + identity_pairs(have_uts));
    cbor_put_text(b, "v");
    cbor_put_uint(b, PROTO_VERSION);
    put_identity(b, have_uts ? &uts : NULL);
    cbor_put_text(b, "boot_time_ns");
    cbor_put_uint(b, g_boot_ns);
    cbor_put_text(b, "modules");
    cbor_put_uint(b, (uint64_t)rc);
    cbor_put_text(b, "hello_time_ns");
    cbor_put_uint(b, now_boottime_ns());
    frame_end();

    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(g_epoll, evs, 64, loop_timeout_ms());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fatal("loop", "epoll_wait failed", errno);
        }
        for (int i = 0; i < n; i++) {
            uint64_t key = evs[i].data.u64;
            int fd = (int)((key >> 2) & 0x3fffffff);
            switch ((enum ev_kind)(key & 3)) {
            case EV_PORT:
                if (!g_port_in_loop)
                    break;
                if (evs[i].events & EPOLLIN)
                    port_readable();
                if (g_port_in_loop && (evs[i].events & EPOLLOUT))
                    port_flush();
                if (g_port_in_loop && (evs[i].events & (EPOLLHUP | EPOLLERR))
                    && !(evs[i].events & EPOLLIN))
                    port_hangup();
                break;
            case EV_SIGNAL:
                drain_signalfd();
                break;
            case EV_SESSION:
                exec_session_event((uint32_t)(key >> 32), fd, evs[i].events);
                break;
            case EV_NET:
                net_event((uint32_t)(key >> 32), fd, evs[i].events);
                break;
            }
        }
        exec_kill_overdue();
        if (!g_port_in_loop)
            port_reconnect_check();
        if (g_quiesced && now_boottime_ns() >= g_quiesce_end_ns) {
            logmsg("the host did not end the checkpoint's quiet spell: the guest's traffic flows again");
            set_quiesced(false);
        }
    }
}

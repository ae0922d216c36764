/* Exec sessions: spawning processes (pipes or a pty), feeding stdin, forwarding output,
 * signals, resize, and the exit report. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define READ_CHUNK 65536
/* fs.data chunks of a file read (fs sessions) */
#define FS_READ_CHUNK (256u * 1024)
/* Pipe capacity asked for an fs session's data pipes */
#define FS_PIPE_SIZE (1024 * 1024)
/* Hard limit of stdin the process has not consumed yet, against a host that ignores the
 * stdin window (STDIN_WINDOW): beyond it the session's stdin is closed. */
#define STDIN_MAX (32u * 1024 * 1024)
/* Consumed stdin is acknowledged (exec.stdin_window) in batches of at least this much, or
 * whenever the buffer drains. */
#define STDIN_ACK_BATCH (64u * 1024)
/* Registration state of an fd with nothing registered in epoll. */
#define EV_NONE UINT32_MAX

typedef struct session {
    struct session *next;
    uint32_t id;
    pid_t pid;
    bool exited;
    int status;
    bool tty;
    int out_fd;        /* stdout pipe or pty master; -1 once at EOF */
    int err_fd;        /* stderr pipe; -1 for tty sessions or once at EOF */
    int in_fd;         /* stdin pipe (pipes mode); -1 when absent or closed */
    uint32_t out_ev, err_ev, in_ev; /* events registered in epoll, EV_NONE: not in epoll */
    bool out_parked, err_parked;    /* hung up with unread output and no credit: left out
                                       of epoll until credit comes (else HUP would spin) */
    uint64_t credit;   /* output bytes (stdout + stderr) the host accepts before exec.window */
    bool stdin_open;   /* accepting exec.stdin data */
    bool stdin_eof;    /* close stdin once the buffer is written */
    uint8_t *inbuf;
    size_t inlen, inoff, incap;
    uint64_t in_unacked;   /* stdin received and not yet returned by exec.stdin_window */
    uint64_t in_consumed;  /* of which written to the process */
    bool fs;               /* an fs session: err_fd carries the result map, not output */
    uint8_t *res;          /* the result map read so far (fs sessions) */
    size_t reslen;
    bool res_over;         /* the child wrote more than FS_RESULT_MAX */
    uint64_t kill_at_ns;   /* a cancelled fs worker's SIGKILL, CLOCK_BOOTTIME; 0: none due */
} session;

/* How long a cancelled fs worker has to put things back (a replacing write removes its
 * temporary, an append cuts the file back) before it is killed: long enough for the fsync
 * of a large file on a slow disk, which the worker's SIGTERM handler waits out. */
#define FS_CANCEL_GRACE_NS (10000ull * 1000000u)
/* Cancelled fs workers still within their grace: the loop only looks for deadlines then. */
static unsigned g_kills_due;

/* The worker ended or was killed: no kill is due for it any more. */
static void kill_done(session *s)
{
    if (s->kill_at_ns) {
        s->kill_at_ns = 0;
        g_kills_due--;
    }
}

/* Ends an fs worker whose transfer is given up: SIGTERM first, so a write leaves the file as
 * it was (fs.c), and SIGKILL once the grace is over (stopped, or stuck in a system call). */
static void stop_fs_worker(session *s)
{
    if (s->exited || s->kill_at_ns)
        return;
    kill(s->pid, SIGTERM);
    kill(s->pid, SIGCONT);
    s->kill_at_ns = now_boottime_ns() + FS_CANCEL_GRACE_NS;
    g_kills_due++;
}

static session *g_sessions;
static void fs_finish(session *s);

/* Failure report written by the child through the CLOEXEC pipe before _exit. */
enum fail_stage { FS_SPAWN, FS_USER, FS_CWD, FS_PTY, FS_EXEC };
typedef struct {
    int stage;
    int err;
} child_fail;

static session *find_session(uint32_t id)
{
    for (session *s = g_sessions; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

bool exec_session_live(uint32_t id)
{
    return id != 0 && find_session(id) != NULL;
}

bool exec_sessions_open(void)
{
    return g_sessions != NULL;
}

void close_agent_fds(void)
{
    if (syscall(SYS_close_range, 3u, ~0u, 0) < 0)
        for (int fd = 3; fd < AGENT_MAX_FDS; fd++)
            close(fd);
    log_console_closed(); /* else a line logged here would go to whatever file reuses its number */
}

static void send_failed(uint32_t id, const char *kind, int err, const char *stage, const char *message)
{
    cbor_buf *b = frame_begin(id, FLAG_TERMINAL, "exec.failed", 4);
    cbor_put_text(b, "kind");
    cbor_put_text(b, kind);
    cbor_put_text(b, "errno");
    cbor_put_int(b, err);
    cbor_put_text(b, "message");
    cbor_put_text(b, message);
    cbor_put_text(b, "stage");
    cbor_put_text(b, stage);
    frame_end();
}

static const char *errno_kind(int stage, int err)
{
    switch (stage) {
    case FS_USER: return "user_setup_failed";
    case FS_CWD: return "bad_cwd";
    case FS_PTY: return "pty_setup_failed";
    default: break;
    }
    switch (err) {
    case ENOENT: case ENOTDIR: case ELOOP: case ENAMETOOLONG: return "not_found";
    case EACCES: case EPERM: return "permission_denied";
    case ENOEXEC: case ELIBBAD: case ETXTBSY: return "not_executable";
    case E2BIG: case EINVAL: return "bad_args";
    case ENOMEM: return "out_of_memory";
    case EAGAIN: case EMFILE: case ENFILE: return "resource_limit";
    default: return "other";
    }
}

static const char *stage_name(int stage)
{
    static const char *const names[] = { "spawn", "user", "cwd", "pty", "exec" };
    return stage >= 0 && stage <= FS_EXEC ? names[stage] : "spawn";
}

/* ---- epoll interest ---- */

/* Output is read while the host grants credit and the port is not throttled. */
static bool can_read(const session *s)
{
    return s->credit > 0 && !port_throttled();
}

static void set_interest(session *s, int fd, uint32_t *reg, uint32_t want)
{
    if (fd < 0 || want == *reg)
        return;
    if (want == EV_NONE) {
        ev_del(fd);
    } else if (*reg == EV_NONE ? ev_add(fd, want, EV_SESSION, s->id) < 0
                               : ev_mod(fd, want, EV_SESSION, s->id) < 0) {
        return;
    }
    *reg = want;
}

/* Registers what each fd waits for. An output fd without credit stays registered with no
 * events, so that a hang-up is still seen (and, with nothing left to read, ends it). */
static void update_events(session *s)
{
    bool reading = can_read(s);
    bool pending_in = s->inoff < s->inlen;
    if (reading)
        s->out_parked = s->err_parked = false;
    uint32_t out = (reading ? EPOLLIN : 0) | (s->tty && pending_in ? EPOLLOUT : 0);
    set_interest(s, s->out_fd, &s->out_ev, out == 0 && s->out_parked ? EV_NONE : out);
    /* an fs session's result pipe is read whatever the credit: it is not output */
    set_interest(s, s->err_fd, &s->err_ev, reading || s->fs ? EPOLLIN : s->err_parked ? EV_NONE : 0);
    set_interest(s, s->in_fd, &s->in_ev, pending_in ? EPOLLOUT : 0);
}

void exec_throttle_changed(void)
{
    for (session *s = g_sessions; s; s = s->next)
        update_events(s);
}

static void close_fd(int *fd, uint32_t *reg)
{
    if (*fd >= 0) {
        if (*reg != EV_NONE)
            ev_del(*fd);
        close(*fd);
        *fd = -1;
    }
    *reg = EV_NONE;
}

static void free_session(session *s)
{
    for (session **pp = &g_sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    close_fd(&s->out_fd, &s->out_ev);
    close_fd(&s->err_fd, &s->err_ev);
    close_fd(&s->in_fd, &s->in_ev);
    kill_done(s);
    free(s->inbuf);
    free(s->res);
    free(s);
}

/* exec.exited goes out once the process is reaped and every output reached EOF. */
static void maybe_finish(session *s)
{
    if (!s->exited || s->out_fd >= 0 || s->err_fd >= 0)
        return;
    if (s->fs) {
        fs_finish(s);
        return;
    }
    bool sig = WIFSIGNALED(s->status);
    debugmsg("session %u: exited (%s %d)", s->id, sig ? "signal" : "code", sig ? WTERMSIG(s->status) : WEXITSTATUS(s->status));
    cbor_buf *b = frame_begin(s->id, FLAG_TERMINAL, "exec.exited", 2);
    cbor_put_text(b, "code");
    cbor_put_int(b, sig ? 128 + WTERMSIG(s->status) : WEXITSTATUS(s->status));
    cbor_put_text(b, "signal");
    if (sig)
        cbor_put_int(b, WTERMSIG(s->status));
    else
        cbor_put_null(b);
    frame_end();
    free_session(s);
}

/* ---- stdin ---- */

static void close_stdin(session *s, bool by_host);

/* The agent stops taking a session's input itself (an overrun, no memory): a write's data is
 * incomplete, so its worker is stopped before it could read the end as the file's. */
static void cut_stdin(session *s)
{
    if (s->fs)
        stop_fs_worker(s);
    close_stdin(s, false);
    update_events(s);
}

/* Returns stdin credit to the host. closed: the agent stopped taking stdin by itself (the
 * process closed it, the terminal hung up, or the host overran STDIN_MAX); every byte
 * still outstanding comes back with it, so a host waiting for window is not stuck. */
static void send_stdin_window(session *s, uint64_t bytes, bool closed)
{
    cbor_buf *b = frame_begin(s->id, 0, s->fs ? "fs.write_window" : "exec.stdin_window", closed ? 2 : 1);
    cbor_put_text(b, "bytes");
    cbor_put_uint(b, bytes);
    if (closed) {
        cbor_put_text(b, "closed");
        cbor_put_bool(b, true);
    }
    frame_end();
    s->in_unacked -= bytes;
    s->in_consumed = 0;
}

/* by_host: the host asked for EOF (empty exec.stdin); otherwise the agent closes it. */
static void close_stdin(session *s, bool by_host)
{
    bool was_open = s->stdin_open;
    s->stdin_open = false;
    s->inlen = s->inoff = 0;
    if (!s->tty)
        close_fd(&s->in_fd, &s->in_ev);
    if (was_open && !by_host)
        send_stdin_window(s, s->in_unacked, true);
    else if (s->in_consumed > 0)
        send_stdin_window(s, s->in_consumed, false);
}

static void flush_stdin(session *s)
{
    int fd = s->tty ? s->out_fd : s->in_fd;
    if (fd < 0) {
        close_stdin(s, false);
        return;
    }
    while (s->inoff < s->inlen) {
        ssize_t n = write(fd, s->inbuf + s->inoff, s->inlen - s->inoff);
        if (n > 0) {
            s->inoff += (size_t)n;
            s->in_consumed += (uint64_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else {
            close_stdin(s, false); /* EPIPE: the process closed its stdin */
            break;
        }
    }
    if (s->inoff == s->inlen) {
        s->inoff = s->inlen = 0;
        if (s->stdin_eof && s->stdin_open)
            close_stdin(s, true);
    }
    if (s->stdin_open && s->in_consumed > 0 && (s->in_consumed >= STDIN_ACK_BATCH || s->inlen == 0))
        send_stdin_window(s, s->in_consumed, false);
    update_events(s);
}

static void stdin_data(session *s, cbor_val p)
{
    cbor_val v;
    const uint8_t *data;
    size_t len;
    if (!s->stdin_open || !cbor_map_get(p, "data", &v) || !cbor_get_bytes(v, &data, &len))
        return;
    if (len == 0 && s->tty) {
        /* a pty has no half-close: the EOF character (VEOF, ^D), which ends the input of a
         * reader in canonical mode at a line start, goes after what is buffered, written
         * like data (a full terminal takes it later instead of losing it) */
        static const uint8_t veof = 4;
        s->stdin_eof = true;
        data = &veof;
        len = 1;
    }
    if (len == 0) {
        s->stdin_eof = true;
    } else {
        s->in_unacked += len;
        if (s->inoff > 0 && s->inoff == s->inlen)
            s->inoff = s->inlen = 0;
        if (s->inlen - s->inoff + len > STDIN_MAX) {
            logmsg("session %u: more than %u bytes of unread stdin (the window is %u); closing its stdin",
                   s->id, STDIN_MAX, STDIN_WINDOW);
            cut_stdin(s);
            return;
        }
        if (s->inoff > 0) {
            memmove(s->inbuf, s->inbuf + s->inoff, s->inlen - s->inoff);
            s->inlen -= s->inoff;
            s->inoff = 0;
        }
        if (s->inlen + len > s->incap) {
            size_t cap = s->incap ? s->incap : 65536;
            while (cap < s->inlen + len)
                cap *= 2;
            uint8_t *nb = realloc(s->inbuf, cap);
            if (!nb) {
                logmsg("session %u: out of memory buffering stdin; closing its stdin", s->id);
                cut_stdin(s);
                return;
            }
            s->inbuf = nb;
            s->incap = cap;
        }
        memcpy(s->inbuf + s->inlen, data, len);
        s->inlen += len;
    }
    flush_stdin(s);
}

/* ---- fs sessions: the result pipe and the final frame ---- */

/* The child's result map; what it writes beyond FS_RESULT_MAX is read and dropped. */
static void result_event(session *s, int *fdp, uint32_t *reg)
{
    uint8_t tmp[65536];
    for (;;) {
        ssize_t n = read(*fdp, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            close_fd(fdp, reg);
            maybe_finish(s);
            return;
        }
        if (s->res_over || s->reslen + (size_t)n > FS_RESULT_MAX) {
            s->res_over = true;
            continue;
        }
        uint8_t *nb = realloc(s->res, s->reslen + (size_t)n);
        if (!nb) {
            s->res_over = true;
            continue;
        }
        s->res = nb;
        memcpy(s->res + s->reslen, tmp, (size_t)n);
        s->reslen += (size_t)n;
    }
}

static void send_fs_error(uint32_t id, const char *kind, int err, const char *message, const char *path)
{
    cbor_buf *b = frame_begin(id, FLAG_TERMINAL, "fs.error", 4);
    cbor_put_text(b, "kind");
    cbor_put_text(b, kind);
    cbor_put_text(b, "errno");
    cbor_put_int(b, err);
    cbor_put_text(b, "message");
    cbor_put_bytes(b, message, strlen(message));
    cbor_put_text(b, "path");
    cbor_put_bytes(b, path ? path : "", path ? strlen(path) : 0);
    frame_end();
}

/* fs.result (exit status 0) or fs.error with the child's map as the payload; a child that
 * died without a well-formed map is reported as an error of kind other. */
static void fs_finish(session *s)
{
    cbor_val v = { s->res, s->res + s->reslen };
    cbor_head h;
    bool ok_map = !s->res_over && s->reslen > 0 && cbor_valid(v) && cbor_head_read(v, &h) && h.type == CBOR_MAP;
    bool clean = WIFEXITED(s->status) && (WEXITSTATUS(s->status) == 0 || WEXITSTATUS(s->status) == 1);
    if (ok_map && clean) {
        const char *type = WEXITSTATUS(s->status) == 0 ? "fs.result" : "fs.error";
        cbor_buf *b = frame_begin(s->id, FLAG_TERMINAL, type, 0);
        /* frame_begin ended with an empty map head (one byte, 0xa0): replace it by the child's map */
        b->len -= 1;
        cbor_put_raw(b, s->res, s->reslen);
        frame_end();
    } else {
        char msg[160];
        if (WIFSIGNALED(s->status))
            snprintf(msg, sizeof msg, "the filesystem operation was ended by signal %d", WTERMSIG(s->status));
        else
            snprintf(msg, sizeof msg, "the filesystem operation failed without a result (status %d)",
                     WIFEXITED(s->status) ? WEXITSTATUS(s->status) : -1);
        send_fs_error(s->id, "other", EIO, msg, NULL);
    }
    free_session(s);
}

/* ---- output ---- */

static void output_eof(session *s, int *fdp, uint32_t *reg)
{
    close_fd(fdp, reg);
    if (s->tty && s->stdin_open)
        close_stdin(s, false);
    maybe_finish(s);
}

/* fd is readable or hung up. Reads at most the credit; without credit, a hang-up with
 * nothing left to read is the EOF, and one with output left parks the fd until credit. */
static void output_event(session *s, int *fdp, uint32_t *reg, bool *parked, bool is_err, uint32_t events)
{
    static uint8_t buf[FS_READ_CHUNK];
    if (s->fs && is_err) {
        result_event(s, fdp, reg);
        return;
    }
    if (!can_read(s)) {
        int avail = 0;
        if (!(events & (EPOLLHUP | EPOLLERR)))
            return; /* stale: interest changed earlier in this batch */
        if (ioctl(*fdp, FIONREAD, &avail) == 0 && avail == 0) {
            output_eof(s, fdp, reg);
        } else {
            *parked = true;
            update_events(s);
        }
        return;
    }
    size_t chunk = s->fs ? FS_READ_CHUNK : READ_CHUNK;
    size_t want = s->credit < chunk ? (size_t)s->credit : chunk;
    ssize_t n = read(*fdp, buf, want);
    if (n > 0) {
        s->credit -= (uint64_t)n;
        cbor_buf *b = frame_begin(s->id, 0, s->fs ? "fs.data" : is_err ? "exec.stderr" : "exec.stdout", 1);
        cbor_put_text(b, "data");
        cbor_put_bytes(b, buf, (size_t)n);
        frame_end();
        if (s->credit == 0)
            update_events(s);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    /* 0: pipe EOF; EIO: pty with no slave left open */
    output_eof(s, fdp, reg);
}

void exec_session_event(uint32_t tag, int fd, uint32_t events)
{
    session *s = find_session(tag);
    if (!s)
        return;
    bool hup = (events & (EPOLLHUP | EPOLLERR)) != 0;
    bool readable = (events & EPOLLIN) || hup;
    if (fd == s->out_fd) {
        if (s->tty && hup && s->stdin_open)
            close_stdin(s, false); /* every slave closed: no reader for stdin is left */
        else if (s->tty && (events & EPOLLOUT))
            flush_stdin(s);
        if (readable && s->out_fd >= 0)
            output_event(s, &s->out_fd, &s->out_ev, &s->out_parked, false, events);
    } else if (fd == s->err_fd) {
        if (readable)
            output_event(s, &s->err_fd, &s->err_ev, &s->err_parked, true, events);
    } else if (fd == s->in_fd) {
        if (events & EPOLLOUT)
            flush_stdin(s);
        else if (hup) {
            close_stdin(s, false);
            update_events(s);
        }
    }
}

int exec_deadline_ms(void)
{
    if (!g_kills_due)
        return -1;
    uint64_t now = now_boottime_ns(), first = UINT64_MAX;
    for (session *s = g_sessions; s; s = s->next)
        if (s->kill_at_ns && s->kill_at_ns < first)
            first = s->kill_at_ns;
    return first == UINT64_MAX ? -1 : now >= first ? 0 : (int)((first - now) / 1000000u) + 1;
}

void exec_kill_overdue(void)
{
    if (!g_kills_due)
        return;
    uint64_t now = now_boottime_ns();
    for (session *s = g_sessions; s; s = s->next)
        if (s->kill_at_ns && now >= s->kill_at_ns) {
            if (kill(-s->pid, SIGKILL) < 0)
                kill(s->pid, SIGKILL);
            kill_done(s);
        }
}

void exec_child_exited(pid_t pid, int status)
{
    for (session *s = g_sessions; s; s = s->next)
        if (s->pid == pid && !s->exited) {
            s->exited = true;
            s->status = status;
            kill_done(s);
            maybe_finish(s);
            return;
        }
    /* an orphan reparented to PID 1, or a child of the agent that is no session (core.reclaim's):
     * nothing to report */
}

/* Makes the session's fds non-blocking and puts it in the event loop. */
static void add_session(session *s)
{
    int fl;
    int *fds[] = { &s->out_fd, &s->err_fd, &s->in_fd };
    for (int i = 0; i < 3; i++)
        if (*fds[i] >= 0 && (fl = fcntl(*fds[i], F_GETFL)) >= 0)
            fcntl(*fds[i], F_SETFL, fl | O_NONBLOCK);
    s->next = g_sessions;
    g_sessions = s;
    update_events(s);
}

/* ---- spawning ---- */

typedef struct {
    char **argv;
    char **envp;
    char cwd[PATH_BUF];
    user_info user;
    bool tty, want_stdin;
    unsigned short rows, cols;
} spawn_req;

static const char *env_get(char **env, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], key, kl) == 0 && env[i][kl] == '=')
            return env[i] + kl + 1;
    return NULL;
}

static bool env_has_key(char **env, size_t n, const char *kv)
{
    size_t kl = strcspn(kv, "=");
    for (size_t i = 0; i < n; i++)
        if (strncmp(env[i], kv, kl) == 0 && env[i][kl] == '=')
            return true;
    return false;
}

/* The request's env (taken over from a) over the configured env, plus PATH/HOME/TERM
 * defaults when missing; NULL when out of memory. */
static char **build_env(exec_args *a, const spawn_req *r)
{
    size_t n = a->nenv, cap = a->nenv + 4;
    for (size_t i = 0; g_config.env && g_config.env[i]; i++)
        cap++;
    char **env = realloc(a->env, cap * sizeof(char *));
    if (!env)
        return NULL;
    a->env = NULL;
    a->nenv = 0;
    memset(env + n, 0, (cap - n) * sizeof(char *));
    for (size_t i = 0; g_config.env && g_config.env[i]; i++)
        if (!env_has_key(env, n, g_config.env[i]) && !(env[n++] = strdup(g_config.env[i])))
            goto oom;
    char *home = malloc(strlen(r->user.home) + 6);
    if (!home)
        goto oom;
    strcpy(home, "HOME=");
    strcat(home, r->user.home);
    if (!env_has_key(env, n, home))
        env[n++] = home;
    else
        free(home);
    const char *defaults[] = { "PATH=" DEFAULT_PATH, r->tty ? "TERM=xterm" : NULL };
    for (size_t i = 0; i < 2; i++)
        if (defaults[i] && !env_has_key(env, n, defaults[i]) && !(env[n++] = strdup(defaults[i])))
            goto oom;
    return env;
oom:
    free_strv(env);
    return NULL;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void __attribute__((noreturn)) child_fail_exit(int fd, int stage, int err)
{
    child_fail f = { stage, err };
    ssize_t w = write(fd, &f, sizeof f);
    (void)w;
    _exit(127);
}

/* Runs in the child after fork. stdio[] are the fds to become 0, 1, 2. */
static void __attribute__((noreturn)) child_main(const spawn_req *r, int stdio[3], int failfd)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);

    if (setsid() < 0)
        child_fail_exit(failfd, FS_SPAWN, errno);
    if (r->tty && ioctl(stdio[0], TIOCSCTTY, 0) < 0)
        child_fail_exit(failfd, FS_PTY, errno);
    for (int i = 0; i < 3; i++)
        if (dup2(stdio[i], i) < 0)
            child_fail_exit(failfd, r->tty ? FS_PTY : FS_SPAWN, errno);

    /* the agent's protection from the OOM killer is not the command's */
    if (init_handed_off())
        set_oom_score_adj(OOM_SCORE_ADJ_DEFAULT);
    /* before the user switch: dropping from the bounding set needs CAP_SETPCAP */
    if (g_config.restricted && drop_privileges_restricted() < 0)
        child_fail_exit(failfd, FS_SPAWN, errno);
    if (setgroups((size_t)r->user.ngroups, r->user.groups) < 0 || setgid(r->user.gid) < 0 ||
        setuid(r->user.uid) < 0)
        child_fail_exit(failfd, FS_USER, errno);
    if (chdir(r->cwd) < 0)
        child_fail_exit(failfd, FS_CWD, errno);

    const char *cmd = r->argv[0];
    int err = ENOENT;
    if (strchr(cmd, '/')) {
        execve(cmd, r->argv, r->envp);
        err = errno;
    } else {
        /* PATH search with the child's own PATH (execvpe would use ours) */
        const char *path = env_get(r->envp, "PATH");
        bool eacces = false, tried = false;
        char buf[PATH_BUF];
        if (!path)
            path = DEFAULT_PATH;
        for (const char *p = path; ; p++) {
            const char *end = strchr(p, ':');
            size_t dl = end ? (size_t)(end - p) : strlen(p);
            /* a directory whose path with cmd does not fit is skipped, as by execvp */
            if (snprintf(buf, sizeof buf, "%.*s%s%s", (int)dl, p, dl ? "/" : "", cmd) < (int)sizeof buf) {
                tried = true;
                execve(buf, r->argv, r->envp);
                if (errno == EACCES)
                    eacces = true;
                else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE) {
                    err = errno;
                    break;
                }
            }
            if (!end) {
                err = eacces ? EACCES : tried ? ENOENT : ENAMETOOLONG;
                break;
            }
            p = end;
        }
    }
    child_fail_exit(failfd, FS_EXEC, err);
}

static int open_pty(session *s, int *slave, unsigned short rows, unsigned short cols)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return -errno;
    struct winsize ws = { .ws_row = rows, .ws_col = cols };
    int sl;
    if (unlockpt(m) < 0 || ioctl(m, TIOCSWINSZ, &ws) < 0 ||
        (sl = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
        int err = errno;
        close(m);
        return -err;
    }
    s->out_fd = m;
    *slave = sl;
    return 0;
}

static void send_refused(uint32_t id, const char *kind, const char *stage, int err, const char *msg)
{
    logmsg("session %u refused (%s, %s): %s", id, kind, stage, msg);
    send_failed(id, kind, err, stage, msg);
}

void exec_request(uint32_t id, cbor_val p)
{
    if (find_session(id)) {
        send_error(id, "protocol", "exec.request for a session id in use", EEXIST);
        return;
    }

    spawn_req r;
    memset(&r, 0, sizeof r);
    exec_args a;
    char msg[512];
    const char *kind, *stage;

    if (exec_args_parse(p, &a, &kind, &stage, msg, sizeof msg) < 0) {
        send_refused(id, kind, stage, strcmp(kind, "bad_args") == 0 ? EINVAL : ENOMEM, msg);
        return;
    }
    r.tty = a.tty;
    r.want_stdin = a.want_stdin;
    r.rows = a.rows;
    r.cols = a.cols;
    uint64_t window = a.window;

    int rc = resolve_user(a.user ? a.user : g_config.user, &r.user, msg, sizeof msg);
    if (rc < 0) {
        /* a spec too long for the agent is a bad argument; an image whose passwd entry
         * does not fit, or a missing user, is a failed user setup */
        send_refused(id, rc == -ENAMETOOLONG && a.user && strlen(a.user) >= USER_SPEC_BUF ? "bad_args" : "user_setup_failed",
                     "user", -rc, msg);
        exec_args_free(&a);
        return;
    }

    const char *dir = a.cwd ? a.cwd : g_config.workdir ? g_config.workdir : is_dir(r.user.home) ? r.user.home : "/";
    if (strlen(dir) >= sizeof r.cwd) {
        /* exec_args_parse, config_parse and resolve_user refuse longer values already */
        snprintf(msg, sizeof msg, "cwd is %zu bytes, the limit is %zu", strlen(dir), sizeof r.cwd - 1);
        send_refused(id, "bad_args", "cwd", ENAMETOOLONG, msg);
        exec_args_free(&a);
        return;
    }
    strcpy(r.cwd, dir);

    r.argv = a.argv;
    a.argv = NULL;
    r.envp = build_env(&a, &r);
    exec_args_free(&a);
    if (!r.envp) {
        free_strv(r.argv);
        send_refused(id, "out_of_memory", "spawn", ENOMEM, "cannot build the environment");
        return;
    }

    session *s = calloc(1, sizeof *s);
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, fail[2] = { -1, -1 };
    int slave = -1, devnull = -1, stdio[3];
    const char *fkind = "other", *fstage = "spawn";
    int ferr = 0;
    if (!s) {
        ferr = ENOMEM;
        goto failed;
    }
    s->id = id;
    s->tty = r.tty;
    s->out_fd = s->err_fd = s->in_fd = -1;
    s->out_ev = s->err_ev = s->in_ev = EV_NONE;
    s->credit = window;

    if (r.tty) {
        if ((rc = open_pty(s, &slave, r.rows, r.cols)) < 0) {
            ferr = -rc;
            fkind = "pty_setup_failed";
            fstage = "pty";
            goto failed;
        }
        stdio[0] = stdio[1] = stdio[2] = slave;
    } else {
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
            (r.want_stdin ? pipe2(in, O_CLOEXEC) : (devnull = open("/dev/null", O_RDONLY | O_CLOEXEC))) < 0) {
            ferr = errno;
            fkind = errno_kind(FS_SPAWN, ferr);
            goto failed;
        }
        stdio[0] = r.want_stdin ? in[0] : devnull;
        stdio[1] = out[1];
        stdio[2] = err[1];
    }
    if (pipe2(fail, O_CLOEXEC) < 0) {
        ferr = errno;
        fkind = errno_kind(FS_SPAWN, ferr);
        goto failed;
    }

    pid_t pid = fork();
    if (pid < 0) {
        ferr = errno;
        fkind = errno_kind(FS_SPAWN, ferr);
        goto failed;
    }
    if (pid == 0)
        child_main(&r, stdio, fail[1]);

    close(fail[1]);
    fail[1] = -1;
    child_fail f;
    ssize_t n;
    do
        n = read(fail[0], &f, sizeof f); /* EOF once execve succeeded (CLOEXEC) */
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof f) {
        /* reap right away so the SIGCHLD path does not see an unknown pid */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        ferr = f.err;
        fkind = errno_kind(f.stage, f.err);
        fstage = stage_name(f.stage);
        goto failed;
    }

    s->pid = pid;
    if (!r.tty) {
        s->out_fd = out[0];
        s->err_fd = err[0];
        s->in_fd = in[1];
        out[0] = err[0] = in[1] = -1;
    }
    s->stdin_open = r.want_stdin;
    add_session(s);
    debugmsg("session %u: started %s (pid %d%s)", id, r.argv[0], (int)pid, r.tty ? ", tty" : "");

    cbor_buf *bb = frame_begin(id, 0, "exec.started", 1);
    cbor_put_text(bb, "pid");
    cbor_put_uint(bb, (uint64_t)pid);
    frame_end();
    goto cleanup;

failed:
    snprintf(msg, sizeof msg, "%s: %s", r.argv[0], strerror(ferr));
    send_failed(id, fkind, ferr, fstage, msg);
    if (s) {
        if (s->out_fd >= 0)
            close(s->out_fd);
        free(s);
    }
    if (out[0] >= 0)
        close(out[0]);
    if (err[0] >= 0)
        close(err[0]);
    if (in[1] >= 0)
        close(in[1]);
cleanup: {
    /* the child's ends and the failure pipe */
    int rest[] = { in[0], out[1], err[1], fail[0], fail[1], slave, devnull };
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++)
        if (rest[i] >= 0)
            close(rest[i]);
}
    free_strv(r.argv);
    free_strv(r.envp);
}

/* The host gave the session up (exec.cancel, fs.cancel): its processes are killed and what
 * they would still write is discarded. Its output fds are closed rather than left parked
 * without credit, so the session ends once its process is reaped, even with output unread
 * or a process that left the group holding the pipe (which gets EPIPE). An fs worker's
 * result pipe stays: its end is reported as usual. May free s. */
static void cancel_session(session *s)
{
    if (s->fs)
        stop_fs_worker(s);
    else if (kill(-s->pid, SIGKILL) < 0 && !s->exited)
        kill(s->pid, SIGKILL);
    s->stdin_open = false;
    s->inlen = s->inoff = 0;
    close_fd(&s->in_fd, &s->in_ev);
    close_fd(&s->out_fd, &s->out_ev);
    if (!s->fs)
        close_fd(&s->err_fd, &s->err_ev);
    maybe_finish(s);
}

void exec_message(uint32_t id, const char *type, size_t tlen, cbor_val p)
{
    session *s = find_session(id);
    cbor_val v;
    int64_t sig;
    uint64_t rows, cols;
    if (!s)
        return; /* unknown or finished session: ignored */
#define IS(name) (tlen == sizeof(name) - 1 && memcmp(type, name, tlen) == 0)
    if (IS("exec.stdin") || (s->fs && IS("fs.data"))) {
        stdin_data(s, p);
    } else if (IS("exec.window") || (s->fs && IS("fs.window"))) {
        uint64_t bytes;
        if (cbor_map_get(p, "bytes", &v) && cbor_get_uint(v, &bytes) && bytes > 0) {
            s->credit = bytes >= MAX_OUTPUT_WINDOW - s->credit ? MAX_OUTPUT_WINDOW : s->credit + bytes;
            update_events(s);
        }
    } else if (IS("exec.cancel") || (s->fs && IS("fs.cancel"))) {
        cancel_session(s);
    } else if (IS("exec.signal")) {
        /* the group (it outlives a reaped leader while members remain, and its id is
         * not reused meanwhile); the process alone if it left its group */
        if (cbor_map_get(p, "signal", &v) && cbor_get_int(v, &sig) && sig > 0 && sig < 65 &&
            kill(-s->pid, (int)sig) < 0 && !s->exited)
            kill(s->pid, (int)sig);
    } else if (IS("exec.resize")) {
        if (s->tty && s->out_fd >= 0 && cbor_map_get(p, "rows", &v) && cbor_get_uint(v, &rows) &&
            cbor_map_get(p, "cols", &v) && cbor_get_uint(v, &cols) && rows < 65536 && cols < 65536) {
            struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
            ioctl(s->out_fd, TIOCSWINSZ, &ws);
        }
    }
#undef IS
}

/* ---- fs sessions ---- */

static void __attribute__((noreturn)) fs_child(const fs_args *a, const user_info *u, const char *cwd, int fds[3])
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    setsid();
    /* fds[] may sit on 0..2 already: move them above first */
    int hi[3];
    for (int i = 0; i < 3; i++)
        hi[i] = fcntl(fds[i], F_DUPFD, 10);
    for (int i = 0; i < 3; i++)
        if (hi[i] < 0 || dup2(hi[i], i) < 0)
            _exit(2);
    /* nothing of the agent's stays open here: another session's pipe held by this child
     * would keep its process from seeing EOF */
    close_agent_fds();
    if (init_handed_off())
        set_oom_score_adj(OOM_SCORE_ADJ_DEFAULT);
    if (setgroups((size_t)u->ngroups, u->groups) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0) {
        int err = errno;
        const char msg[] = "cannot take the user's identity";
        cbor_buf b = { 0 };
        cbor_put_map(&b, 4);
        cbor_put_text(&b, "kind");
        cbor_put_text(&b, "permission_denied");
        cbor_put_text(&b, "errno");
        cbor_put_int(&b, err);
        cbor_put_text(&b, "message");
        cbor_put_bytes(&b, msg, sizeof msg - 1);
        cbor_put_text(&b, "path");
        cbor_put_bytes(&b, a->path, strlen(a->path));
        if (!b.oom && write(2, b.data, b.len) < 0)
            _exit(2);
        _exit(1);
    }
    if (chdir(cwd) < 0 && chdir("/") < 0)
        _exit(2);
    umask(022);
    fs_child_run(a);
}

void fs_request(uint32_t id, cbor_val p)
{
    if (find_session(id)) {
        send_error(id, "protocol", "fs.request for a session id in use", EEXIST);
        return;
    }
    fs_args a;
    char msg[512];
    if (fs_args_parse(p, &a, msg, sizeof msg) < 0) {
        send_fs_error(id, "bad_args", EINVAL, msg, NULL);
        return;
    }
    static user_info u; /* large (groups): not on the stack */
    int rc = resolve_user(a.user ? a.user : g_config.user, &u, msg, sizeof msg);
    if (rc < 0) {
        send_fs_error(id, "user_setup_failed", -rc, msg, a.path);
        fs_args_free(&a);
        return;
    }
    const char *cwd = g_config.workdir ? g_config.workdir : is_dir(u.home) ? u.home : "/";

    session *s = calloc(1, sizeof *s);
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, res[2] = { -1, -1 };
    int err = 0;
    if (!s) {
        err = ENOMEM;
        goto failed;
    }
    bool want_in = fs_op_reads_stdin(&a);
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(res, O_CLOEXEC) < 0 || pipe2(in, O_CLOEXEC) < 0) {
        err = errno;
        goto failed;
    }
    fcntl(out[1], F_SETPIPE_SZ, FS_PIPE_SIZE);
    if (want_in)
        fcntl(in[1], F_SETPIPE_SZ, FS_PIPE_SIZE);
    pid_t pid = fork();
    if (pid < 0) {
        err = errno;
        goto failed;
    }
    if (pid == 0) {
        int fds[3] = { in[0], out[1], res[1] };
        fs_child(&a, &u, cwd, fds);
    }
    close(in[0]);
    close(out[1]);
    close(res[1]);
    s->id = id;
    s->fs = true;
    s->pid = pid;
    s->credit = a.window;
    s->out_fd = out[0];
    s->err_fd = res[0];
    s->in_ev = s->out_ev = s->err_ev = EV_NONE;
    if (want_in) {
        s->in_fd = in[1];
        s->stdin_open = true;
    } else {
        close(in[1]); /* the child reads EOF */
        s->in_fd = -1;
    }
    add_session(s);
    fs_args_free(&a);
    return;

failed:
    snprintf(msg, sizeof msg, "%s %s: %s", a.op, a.path, strerror(err));
    send_fs_error(id, "other", err, msg, a.path);
    int all[] = { in[0], in[1], out[0], out[1], res[0], res[1] };
    for (size_t i = 0; i < 6; i++)
        if (all[i] >= 0)
            close(all[i]);
    free(s);
    fs_args_free(&a);
}

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
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define READ_CHUNK 65536
/* Stdin the process has not consumed yet; beyond this the session's stdin is closed
 * (the protocol has no flow control towards the host). */
#define STDIN_MAX (32u * 1024 * 1024)

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
    bool stdin_open;   /* accepting exec.stdin data */
    bool stdin_eof;    /* close stdin once the buffer is written */
    uint8_t *inbuf;
    size_t inlen, inoff;
} session;

static session *g_sessions;

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

static void update_events(session *s)
{
    bool reading = !port_throttled();
    bool pending_in = s->inoff < s->inlen;
    if (s->out_fd >= 0)
        ev_mod(s->out_fd, (reading ? EPOLLIN : 0) | (s->tty && pending_in ? EPOLLOUT : 0),
               EV_SESSION, s->id);
    if (s->err_fd >= 0)
        ev_mod(s->err_fd, reading ? EPOLLIN : 0, EV_SESSION, s->id);
    if (s->in_fd >= 0)
        ev_mod(s->in_fd, pending_in ? EPOLLOUT : 0, EV_SESSION, s->id);
}

void exec_throttle_changed(void)
{
    for (session *s = g_sessions; s; s = s->next)
        update_events(s);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        ev_del(*fd);
        close(*fd);
        *fd = -1;
    }
}

static void free_session(session *s)
{
    for (session **pp = &g_sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    close_fd(&s->out_fd);
    close_fd(&s->err_fd);
    close_fd(&s->in_fd);
    free(s->inbuf);
    free(s);
}

/* exec.exited goes out once the process is reaped and every output reached EOF. */
static void maybe_finish(session *s)
{
    if (!s->exited || s->out_fd >= 0 || s->err_fd >= 0)
        return;
    bool sig = WIFSIGNALED(s->status);
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

static void close_stdin(session *s)
{
    s->stdin_open = false;
    s->inlen = s->inoff = 0;
    if (!s->tty)
        close_fd(&s->in_fd);
}

static void flush_stdin(session *s)
{
    int fd = s->tty ? s->out_fd : s->in_fd;
    if (fd < 0) {
        close_stdin(s);
        return;
    }
    while (s->inoff < s->inlen) {
        ssize_t n = write(fd, s->inbuf + s->inoff, s->inlen - s->inoff);
        if (n > 0) {
            s->inoff += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else {
            close_stdin(s); /* EPIPE: the process closed its stdin */
            break;
        }
    }
    if (s->inoff == s->inlen) {
        s->inoff = s->inlen = 0;
        if (s->stdin_eof && s->stdin_open) {
            if (s->tty) {
                /* a pty has no half-close: send the EOF character (VEOF, ^D), which
                 * ends the input of a reader in canonical mode at a line start */
                static const char eof = 4;
                ssize_t w = write(fd, &eof, 1);
                (void)w;
            }
            close_stdin(s);
        }
    }
    update_events(s);
}

static void stdin_data(session *s, cbor_val p)
{
    cbor_val v;
    const uint8_t *data;
    size_t len;
    if (!s->stdin_open || !cbor_map_get(p, "data", &v) || !cbor_get_bytes(v, &data, &len))
        return;
    if (len == 0) {
        s->stdin_eof = true;
    } else {
        if (s->inoff > 0 && s->inoff == s->inlen)
            s->inoff = s->inlen = 0;
        if (s->inlen + len > STDIN_MAX) {
            logmsg("session %u: more than %u bytes of unread stdin; closing its stdin", s->id, STDIN_MAX);
            close_stdin(s);
            update_events(s);
            return;
        }
        if (s->inoff > 0) {
            memmove(s->inbuf, s->inbuf + s->inoff, s->inlen - s->inoff);
            s->inlen -= s->inoff;
            s->inoff = 0;
        }
        uint8_t *nb = realloc(s->inbuf, s->inlen + len);
        if (!nb) {
            logmsg("session %u: out of memory buffering stdin", s->id);
            return;
        }
        s->inbuf = nb;
        memcpy(s->inbuf + s->inlen, data, len);
        s->inlen += len;
    }
    flush_stdin(s);
}

/* ---- output ---- */

static void read_output(session *s, int *fdp, bool is_err)
{
    static uint8_t buf[READ_CHUNK];
    ssize_t n = read(*fdp, buf, sizeof buf);
    if (n > 0) {
        cbor_buf *b = frame_begin(s->id, 0, is_err ? "exec.stderr" : "exec.stdout", 1);
        cbor_put_text(b, "data");
        cbor_put_bytes(b, buf, (size_t)n);
        frame_end();
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    /* 0: pipe EOF; EIO: pty with no slave left open */
    close_fd(fdp);
    if (s->tty)
        s->stdin_open = false;
    maybe_finish(s);
}

void exec_session_event(uint32_t tag, int fd, uint32_t events)
{
    session *s = find_session(tag);
    if (!s)
        return;
    bool readable = (events & EPOLLIN) || (events & (EPOLLHUP | EPOLLERR));
    if (fd == s->out_fd) {
        if (s->tty && (events & EPOLLOUT))
            flush_stdin(s);
        if (readable && s->out_fd >= 0)
            read_output(s, &s->out_fd, false);
    } else if (fd == s->err_fd) {
        if (readable)
            read_output(s, &s->err_fd, true);
    } else if (fd == s->in_fd) {
        if (events & EPOLLOUT)
            flush_stdin(s);
        else if (events & (EPOLLERR | EPOLLHUP)) {
            close_stdin(s);
            update_events(s);
        }
    }
}

void exec_child_exited(pid_t pid, int status)
{
    for (session *s = g_sessions; s; s = s->next)
        if (s->pid == pid && !s->exited) {
            s->exited = true;
            s->status = status;
            maybe_finish(s);
            return;
        }
    /* an orphan reparented to PID 1: nothing to report */
}

/* ---- spawning ---- */

typedef struct {
    char **argv;
    char **envp;
    char cwd[4096];
    user_info user;
    bool tty, want_stdin;
    unsigned short rows, cols;
} spawn_req;

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

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

/* Request env over the configured env, plus PATH/HOME/TERM defaults when missing. */
static char **build_env(cbor_val p, const spawn_req *r)
{
    cbor_val map;
    cbor_iter it;
    size_t cap = 4, n = 0;
    bool have_map = cbor_map_get(p, "env", &map) && cbor_iter_init(map, &it) && it.is_map;
    if (have_map)
        cap += it.left;
    for (size_t i = 0; g_config.env && g_config.env[i]; i++)
        cap++;
    char **env = calloc(cap, sizeof(char *));
    if (!env)
        return NULL;
    cbor_val k, v;
    while (have_map && cbor_iter_next(&it, &k, &v)) {
        int rc = env_entry(k, v, &env[n]);
        if (rc < 0)
            goto oom;
        n += (size_t) rc;
    }
    for (size_t i = 0; g_config.env && g_config.env[i]; i++)
        if (!env_has_key(env, n, g_config.env[i]) && !(env[n++] = strdup(g_config.env[i])))
            goto oom;
    char home[300];
    snprintf(home, sizeof home, "HOME=%s", r->user.home);
    const char *defaults[] = { "PATH=" DEFAULT_PATH, home, r->tty ? "TERM=xterm" : NULL };
    for (size_t i = 0; i < 3; i++)
        if (defaults[i] && !env_has_key(env, n, defaults[i]) && !(env[n++] = strdup(defaults[i])))
            goto oom;
    return env;
oom:
    free_strv(env);
    return NULL;
}

/* argv[0] = cmd, then args; false if something is not text. */
static char **build_argv(const char *cmd, cbor_val p)
{
    cbor_val args, v;
    cbor_iter it;
    size_t n = 0, cap = 2;
    bool have = cbor_map_get(p, "args", &args) && !cbor_is_null(args);
    if (have) {
        if (!cbor_iter_init(args, &it) || it.is_map)
            return NULL;
        cap += it.left;
    }
    char **argv = calloc(cap, sizeof(char *));
    if (!argv || !(argv[n++] = strdup(cmd)))
        goto bad;
    while (have && cbor_iter_next(&it, &v, &v))
        if (!(argv[n++] = cbor_dup_text(v)))
            goto bad;
    return argv;
bad:
    free_strv(argv);
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
        bool eacces = false;
        char buf[4096];
        if (!path)
            path = DEFAULT_PATH;
        for (const char *p = path; ; p++) {
            const char *end = strchr(p, ':');
            size_t dl = end ? (size_t)(end - p) : strlen(p);
            if (snprintf(buf, sizeof buf, "%.*s%s%s", (int)dl, p, dl ? "/" : "", cmd) < (int)sizeof buf) {
                execve(buf, r->argv, r->envp);
                if (errno == EACCES)
                    eacces = true;
                else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE) {
                    err = errno;
                    break;
                }
            }
            if (!end) {
                err = eacces ? EACCES : ENOENT;
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

void exec_request(uint32_t id, cbor_val p)
{
    if (find_session(id)) {
        send_error(id, "protocol", "exec.request for a session id in use", EEXIST);
        return;
    }

    spawn_req r;
    memset(&r, 0, sizeof r);
    cbor_val v;
    uint64_t u;
    char msg[512];
    bool b;

    char *cmd = cbor_map_get(p, "cmd", &v) ? cbor_dup_text(v) : NULL;
    if (!cmd || !*cmd) {
        free(cmd);
        send_failed(id, "bad_args", EINVAL, "spawn", "cmd missing or not text");
        return;
    }
    r.tty = cbor_map_get(p, "tty", &v) && cbor_get_bool(v, &b) && b;
    r.want_stdin = cbor_map_get(p, "stdin", &v) && cbor_get_bool(v, &b) && b;
    r.rows = cbor_map_get(p, "rows", &v) && cbor_get_uint(v, &u) && u > 0 && u < 65536 ? (unsigned short)u : 24;
    r.cols = cbor_map_get(p, "cols", &v) && cbor_get_uint(v, &u) && u > 0 && u < 65536 ? (unsigned short)u : 80;

    char *user = cbor_map_get(p, "user", &v) && !cbor_is_null(v) ? cbor_dup_text(v) : NULL;
    int rc = resolve_user(user ? user : g_config.user, &r.user, msg, sizeof msg);
    free(user);
    if (rc < 0) {
        free(cmd);
        send_failed(id, "user_setup_failed", -rc, "user", msg);
        return;
    }

    char *cwd = cbor_map_get(p, "cwd", &v) && !cbor_is_null(v) ? cbor_dup_text(v) : NULL;
    const char *dir = cwd ? cwd : g_config.workdir ? g_config.workdir : is_dir(r.user.home) ? r.user.home : "/";
    snprintf(r.cwd, sizeof r.cwd, "%s", dir);
    free(cwd);

    r.argv = build_argv(cmd, p);
    free(cmd);
    if (!r.argv) {
        send_failed(id, "bad_args", EINVAL, "spawn", "args must be an array of text");
        return;
    }
    r.envp = build_env(p, &r);
    if (!r.envp) {
        free_strv(r.argv);
        send_failed(id, "out_of_memory", ENOMEM, "spawn", "cannot build the environment");
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
    int fl;
    int *fds[] = { &s->out_fd, &s->err_fd, &s->in_fd };
    for (int i = 0; i < 3; i++)
        if (*fds[i] >= 0 && (fl = fcntl(*fds[i], F_GETFL)) >= 0) {
            fcntl(*fds[i], F_SETFL, fl | O_NONBLOCK);
            ev_add(*fds[i], 0, EV_SESSION, id);
        }
    s->next = g_sessions;
    g_sessions = s;
    update_events(s);

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

void exec_message(uint32_t id, const char *type, size_t tlen, cbor_val p)
{
    session *s = find_session(id);
    cbor_val v;
    int64_t sig;
    uint64_t rows, cols;
    if (!s)
        return; /* unknown or finished session: ignored */
#define IS(name) (tlen == sizeof(name) - 1 && memcmp(type, name, tlen) == 0)
    if (IS("exec.stdin")) {
        stdin_data(s, p);
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

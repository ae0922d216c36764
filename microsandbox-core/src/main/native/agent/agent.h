/* msb-agent: the guest agent, PID 1 of every sandbox (see docs/protocol.md). */
#ifndef MSB_AGENT_H
#define MSB_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cbor.h"

#define AGENT_VERSION "0.1.0"
#define PROTO_VERSION 2
#define MAX_FRAME (4u * 1024 * 1024) /* largest allowed value of the len field */

#define FLAG_TERMINAL 0x01
#define FLAG_SESSION_START 0x02
#define FLAG_SHUTDOWN 0x04

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Flow control (docs/protocol.md, "Flow control"). */
#define DEFAULT_OUTPUT_WINDOW 262144u            /* exec.request without window */
#define AGENT_MAX_FDS 65536 /* open files of the agent and, inherited, of what it runs */
#define MAX_OUTPUT_WINDOW (1024u * 1024 * 1024) /* credit saturates here */
#define STDIN_WINDOW (1024u * 1024)             /* unacknowledged stdin the host may send */

/* Fixed buffers for host- or image-provided strings: longer values are refused, never
 * truncated. A limit counts bytes without the terminating NUL. */
#define PATH_BUF 4096      /* cwd, workdir, home, command name */
#define USER_SPEC_BUF 256  /* "name", "uid", "name:group", "uid:gid" */
#define USER_NAME_BUF 256  /* a user name from /etc/passwd */
#define HOSTNAME_MAX 64
#define MAX_GROUPS 1024    /* supplementary groups of one user */
/* Entries of exec.request's args and of an env map. Each costs a few bytes of CBOR but a
 * malloc'd string (32+ bytes) in the agent: without a bound a 4 MiB frame of empty strings
 * would take ~160 MiB of guest memory. execve refuses far fewer anyway (E2BIG: argv and
 * envp share a quarter of the stack limit). */
#define MAX_ARGS 131072
#define MAX_ENV 131072

/* ---- main.c: logging, frames, event loop ---- */

/* Diagnostic levels of the agent's console output, from core.configure's log_level
 * (SandboxConfig.logLevel / quietLogs); LOG_OFF prints nothing. Before core.configure
 * the level is LOG_INFO. */
enum log_level { LOG_TRACE, LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };
extern int g_log_level;
/* Writes "msb-agent: <msg>\n" to /dev/console at warning level (every logmsg reports a
 * problem); the host keeps the console tail. */
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same at error level: the agent cannot go on (a fatal boot error). */
void errormsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same at debug level: what the agent does, not only what goes wrong. */
void debugmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Forgets the log's console fd once close_agent_fds closed it: the next line opens it again. */
void log_console_closed(void);
uint64_t now_boottime_ns(void);

/* Frame output. A frame is started with frame_begin (writes the header placeholder and
 * the {v, t, p: map(npairs)} prefix), the caller adds npairs key/value pairs to the
 * returned buffer, and frame_end queues it on the port. */
cbor_buf *frame_begin(uint32_t id, uint8_t flags, const char *type, size_t npairs);
/* The agent's version and the guest kernel's release (uts may be NULL: left out), as map
 * pairs of core.hello and core.restored; identity_pairs says how many it writes. */
struct utsname;
size_t identity_pairs(bool have_uts);
void put_identity(cbor_buf *b, const struct utsname *uts);
void frame_end(void);
/* core.error; it carries TERMINAL when it answers a frame on a non-zero id that is not a
 * running session (reply_flags). */
void send_error(uint32_t id, const char *stage, const char *message, int err);
/* Flags of a reply that ends the request on id: TERMINAL unless id is 0 or a running
 * exec session (whose own exec.exited/exec.failed ends it). */
uint8_t reply_flags(uint32_t id);

/* Registers fd in the event loop; events come back through the callback given for the
 * kind (see main.c). tag is opaque to the loop (sessions use it for their id). */
enum ev_kind { EV_PORT, EV_SIGNAL, EV_SESSION, EV_NET };
int ev_add(int fd, uint32_t events, enum ev_kind kind, uint32_t tag);
int ev_mod(int fd, uint32_t events, enum ev_kind kind, uint32_t tag);
void ev_del(int fd);
/* In the process that goes on as the agent after a fork: a signalfd of its own in the loop
 * (the inherited one wakes epoll only for signals to the other process). */
int signals_after_fork(void);
/* True while the port's output queue is above its high-water mark, or a checkpoint asked for
 * quiet: sessions stop reading process output and the network stops taking new connections
 * and datagrams until it ends (backpressure towards the processes). */
bool port_throttled(void);

/* ---- boot.c: early setup, root filesystem, power ---- */

/* Guest-side options (guestcfg.c): mounts made at boot, named scripts, security profile. */
#define MAX_MOUNTS 16
#define MOUNT_PATH_MAX 511 /* mkdir_p's buffer */
#define MAX_SCRIPTS 64
#define SCRIPT_NAME_MAX 64
#define SCRIPTS_TOTAL_MAX (1024u * 1024)
#define SCRIPTS_DIR "/.msb/scripts"

enum mount_kind { MOUNT_9P, MOUNT_TMPFS, MOUNT_EXT4 };
typedef struct {
    enum mount_kind kind;
    char *path;        /* absolute guest path, no . or .. components */
    char *source;      /* 9p mount tag or virtio-blk serial; NULL for tmpfs */
    bool readonly, noexec, nosuid, nodev;
    uint32_t size_mib; /* tmpfs size limit; 0: the kernel's default */
} mount_spec;

typedef struct {
    char *name;        /* one path component */
    uint8_t *content;
    size_t len;
} script_spec;

typedef struct {
    char *hostname;
    char **env;        /* "K=V" strings, NULL-terminated */
    char *workdir;     /* NULL: none configured */
    char *user;        /* NULL: root */
    int log_level;     /* enum log_level */
    mount_spec *mounts;
    size_t nmounts;
    script_spec *scripts;
    size_t nscripts;
    bool restricted;   /* security profile "restricted" */
    char *init_cmd;    /* NULL: the agent stays PID 1; "auto" or an absolute path */
    char **init_args;  /* argv after argv[0], NULL-terminated (NULL: none) */
    char **init_env;   /* "K=V" added to PID 1's environment (NULL: none) */
} agent_config;

extern agent_config g_config;

void early_mounts(void);
bool cmdline_has(const char *param);
int load_modules(void);
int open_agent_port(void);
/* Sets up the overlay root and switches into it; on failure fills stage and returns
 * -errno. */
int setup_root(const char **stage, char *msg, size_t msglen);
/* Applies core.configure's payload (hostname etc.). */
int apply_config(cbor_val payload, const char **stage, char *msg, size_t msglen);
/* core.restore (restore.c): reseed the entropy pool, set the clock and maybe the hostname of a
 * guest resumed from a memory checkpoint; answers core.restored or core.error. */
void do_restore(cbor_val payload);
void kill_all_and_sync(void);
void power_off(void) __attribute__((noreturn));
int mkdir_p(const char *path, mode_t mode);
/* Finds /dev/vdX whose virtio-blk serial matches, waiting briefly for it; 0 or -errno. */
int find_disk(const char *serial, char *dev, size_t devlen);

/* ---- mounts.c: the configured mounts and scripts, the restricted profile ---- */

/* Mounts the configured volumes and installs the scripts in the new root; on failure fills
 * stage and msg and returns -errno. */
int apply_guest_options(const agent_config *c, const char **stage, char *msg, size_t msglen);
/* Unmounts the shares and disks once every process is gone, so disks stop clean. */
void unmount_guest_options(const agent_config *c);
/* ---- init.c: handing PID 1 to a custom init ---- */

/* In PID 1 once configured: resolves the init (probing for "auto"), forks, and execs it in
 * PID 1 while the child returns to serve as the agent. 0 in the agent child; -errno (stage
 * and msg filled) when there is no init to run, before anything was forked, or, after the
 * fork, when the agent child cannot open its own signalfd. */
int init_handoff(const agent_config *c, const char **stage, char *msg, size_t msglen);
bool init_handed_off(void);
#define OOM_SCORE_ADJ_NEVER "-1000"
#define OOM_SCORE_ADJ_DEFAULT "0"
/* Writes /proc/self/oom_score_adj; best effort. */
void set_oom_score_adj(const char *value);
/* Asks the init to power off and waits a few seconds for it; returns if it has not. */
void init_request_poweroff(void);

/* In an exec child under the restricted profile: no_new_privs and no CAP_SYS_ADMIN
 * (bounding, ambient, effective, permitted, inheritable). 0 or -1 with errno. */
int drop_privileges_restricted(void);

/* ---- proto.c: pure parsing of frames and payloads (no system calls; fuzzed) ---- */

/* Splits the next frame off a receive buffer. FRAME_BAD_LENGTH: the len field is out of
 * range, the stream cannot be resynchronised. */
enum { FRAME_NEED_MORE, FRAME_OK, FRAME_BAD_LENGTH };
typedef struct {
    uint32_t len;          /* the len field */
    uint32_t id;
    uint8_t flags;
    const uint8_t *body;   /* CBOR body */
    size_t blen;
    size_t total;          /* bytes of the whole frame, 4 + len */
} frame_ref;
int frame_split(const uint8_t *buf, size_t avail, frame_ref *f);

/* Decodes a frame body {v, t, p}. A missing or null p reads as an empty map. */
enum { MSG_OK, MSG_MALFORMED, MSG_BAD_VERSION };
typedef struct {
    const char *type;
    size_t tlen;
    uint64_t version;
    cbor_val payload;
} msg_ref;
int msg_parse(const uint8_t *body, size_t blen, msg_ref *m);
bool msg_type_is(const msg_ref *m, const char *want);

/* One env map entry as a malloc'd "K=V". 1: done; -1: out of memory; -2: not a valid
 * variable (msg says why: a name that is empty or holds '=' or NUL, a value that is not
 * text or holds NUL). */
int env_entry(cbor_val k, cbor_val v, char **out, char *msg, size_t msglen);
/* An env map {k: v} (absent or null: empty) as a NULL-terminated "K=V" array; 0, or -1
 * (out of memory) / -2 (invalid, msg) with *out NULL. */
int env_parse(cbor_val map, bool present, char ***out, size_t *n, char *msg, size_t msglen);
void free_strv(char **v);

/* A text field that is absent or null (*out NULL), or text without NUL shorter than buf
 * bytes (0: any length). 0, or -1 with msg naming the field. */
int opt_text(cbor_val p, const char *key, size_t buf, char **out, char *msg, size_t msglen);
/* A request's "window" (initial credit) when present, capped at MAX_OUTPUT_WINDOW; *window
 * is left as it is when absent or null. 0, or -1 with msg. */
int opt_window(cbor_val p, uint64_t *window, char *msg, size_t msglen);

/* core.configure's payload; 0, or -1 with msg (a value of the wrong type or too long). */
int config_parse(cbor_val p, agent_config *c, char *msg, size_t msglen);
void config_free(agent_config *c);
/* guestcfg.c: core.configure's mounts, scripts and security into c; 0, or -1 with msg
 * (config_free releases what was parsed). */
int guest_options_parse(cbor_val p, agent_config *c, char *msg, size_t msglen);
void guest_options_free(agent_config *c);

typedef struct {
    char **argv;           /* argv[0] is cmd; NULL-terminated */
    char **env;            /* the request's env as "K=V", NULL-terminated */
    size_t nenv;
    char *cwd;             /* NULL: the default directory */
    char *user;            /* NULL: the configured user */
    bool tty, want_stdin;
    unsigned short rows, cols;
    uint64_t window;       /* initial output credit */
} exec_args;
/* exec.request's payload. 0, or -1 with kind ("bad_args" or "out_of_memory"), stage
 * ("spawn", "cwd", "user") and msg filled; a refused request owns nothing. */
int exec_args_parse(cbor_val p, exec_args *a, const char **kind, const char **stage, char *msg, size_t msglen);
void exec_args_free(exec_args *a);

/* ---- exec.c: exec sessions ---- */

void exec_request(uint32_t id, cbor_val payload);
void exec_message(uint32_t id, const char *type, size_t tlen, cbor_val payload);
void exec_session_event(uint32_t tag, int fd, uint32_t events);
void exec_child_exited(pid_t pid, int status);
void exec_throttle_changed(void);
/* Milliseconds until a cancelled fs worker is due to be killed, -1: none due. */
int exec_deadline_ms(void);
/* Kills the cancelled fs workers whose grace is over. */
void exec_kill_overdue(void);
bool exec_session_live(uint32_t id);
/* Whether any exec or file session is open. */
bool exec_sessions_open(void);
/* Closes every fd from 3 up, in a child that does not exec (O_CLOEXEC does nothing there) or
 * before an exec that must inherit none of the agent's. */
void close_agent_fds(void);

/* ---- fs.c: filesystem operations, run in a child as the requested user ---- */

/* Largest result map (fs.result) a child may produce: a list of a bigger directory fails
 * with E2BIG rather than build a frame over the limit. */
#define FS_RESULT_MAX (3u * 1024 * 1024)

typedef struct {
    char op[16];           /* read, write, list, stat, mkdir, remove, rmdir, rename, copy, symlink */
    char *path;            /* guest path; relative ones are taken from the working directory */
    char *to;              /* rename, copy */
    char *target;          /* symlink */
    char *user;            /* NULL: the configured user */
    bool parents, recursive, append, follow, has_mode, exclusive;
    uint32_t mode;
    uint64_t window;       /* initial read credit */
} fs_args;
int fs_args_parse(cbor_val p, fs_args *a, char *msg, size_t msglen);
void fs_args_free(fs_args *a);
bool fs_op_reads_stdin(const fs_args *a);
/* In the child: fd 0 data in, fd 1 data out, fd 2 the result map. Never returns. */
void fs_child_run(const fs_args *a) __attribute__((noreturn));

/* ---- exec.c: fs sessions (exec sessions whose child runs fs_child_run) ---- */
void fs_request(uint32_t id, cbor_val payload);

/* ---- net.c: the sandbox network (docs/network.md) ---- */

/* Makes every IPv4 address local and steers TCP and UDP to the agent (core.configure's
 * "network": true); a failure leaves the sandbox without network. */
void net_setup(void);
/* Adds core.configure's "tls_ca" (PEM) to the guest's trust stores. */
void net_install_ca(const char *pem, size_t len);
/* A net.* frame from the host (frames of ended sessions are ignored). */
void net_message(uint32_t id, const char *type, size_t tlen, cbor_val payload);
void net_event(uint32_t tag, int fd, uint32_t events);
void net_throttle_changed(void);

/* ---- user.c: passwd/group lookup in the current root ---- */

typedef struct {
    uid_t uid;
    gid_t gid;
    char home[PATH_BUF];
    char name[USER_NAME_BUF]; /* empty when the uid has no passwd entry */
    gid_t groups[MAX_GROUPS];
    int ngroups;
} user_info;

/* Resolves "name", "uid", "uid:gid" or "name:group"; NULL spec means root. Fails with
 * -ENAMETOOLONG for a spec, or a passwd home or name, that does not fit its buffer, and
 * -E2BIG for a user in more than MAX_GROUPS groups. */
int resolve_user(const char *spec, user_info *out, char *msg, size_t msglen);


/* Set-up steps report failures as (stage, message, -errno): FAIL records the stage, formats
 * the message into msg/msglen and returns the errno of the call that failed (EIO if none);
 * the function needs `const char **stage`, `char *msg` and `size_t msglen` in scope. */
#define FAIL(st, ...)                                \
    do {                                             \
        int err_ = errno;                            \
        *stage = (st);                               \
        snprintf(msg, msglen, __VA_ARGS__);          \
        return -(err_ ? err_ : EIO);                 \
    } while (0)

#endif

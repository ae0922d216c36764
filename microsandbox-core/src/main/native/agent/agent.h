/* msb-agent: the guest agent, PID 1 of every sandbox (see docs/protocol.md). */
#ifndef MSB_AGENT_H
#define MSB_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cbor.h"

#define AGENT_VERSION "0.1.0"
#define PROTO_VERSION 1
#define MAX_FRAME (4u * 1024 * 1024) /* largest allowed value of the len field */

#define FLAG_TERMINAL 0x01
#define FLAG_SESSION_START 0x02
#define FLAG_SHUTDOWN 0x04

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* ---- main.c: logging, frames, event loop ---- */

/* Writes "msb-agent: <msg>\n" to /dev/console; the host keeps the console tail. */
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t now_boottime_ns(void);

/* Frame output. A frame is started with frame_begin (writes the header placeholder and
 * the {v, t, p: map(npairs)} prefix), the caller adds npairs key/value pairs to the
 * returned buffer, and frame_end queues it on the port. */
cbor_buf *frame_begin(uint32_t id, uint8_t flags, const char *type, size_t npairs);
void frame_end(void);
void send_error(uint32_t id, const char *stage, const char *message, int err);

/* Registers fd in the event loop; events come back through the callback given for the
 * kind (see main.c). tag is opaque to the loop (sessions use it for their id). */
enum ev_kind { EV_PORT, EV_SIGNAL, EV_SESSION };
int ev_add(int fd, uint32_t events, enum ev_kind kind, uint32_t tag);
int ev_mod(int fd, uint32_t events, enum ev_kind kind, uint32_t tag);
void ev_del(int fd);
/* True while the port's output queue is above its high-water mark: sessions stop
 * reading process output until it drains (backpressure towards the processes). */
bool port_throttled(void);

/* ---- boot.c: early setup, root filesystem, power ---- */

typedef struct {
    char *hostname;
    char **env;        /* "K=V" strings, NULL-terminated */
    char *workdir;     /* NULL: none configured */
    char *user;        /* NULL: root */
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
int env_entry(cbor_val k, cbor_val v, char **out);
void kill_all_and_sync(void);
void power_off(void) __attribute__((noreturn));

/* ---- exec.c: exec sessions ---- */

void exec_request(uint32_t id, cbor_val payload);
void exec_message(uint32_t id, const char *type, size_t tlen, cbor_val payload);
void exec_session_event(uint32_t tag, int fd, uint32_t events);
void exec_child_exited(pid_t pid, int status);
void exec_throttle_changed(void);

/* ---- user.c: passwd/group lookup in the current root ---- */

typedef struct {
    uid_t uid;
    gid_t gid;
    char home[256];
    char name[64];   /* empty when the uid has no passwd entry */
    gid_t groups[64];
    int ngroups;
} user_info;

/* Resolves "name", "uid", "uid:gid" or "name:group"; NULL spec means root. */
int resolve_user(const char *spec, user_info *out, char *msg, size_t msglen);

#endif

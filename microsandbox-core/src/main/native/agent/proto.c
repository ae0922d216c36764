/* Pure protocol parsing: frames out of the receive buffer, message bodies, and the
 * payloads of core.configure and exec.request. No system calls and no globals, so the
 * fuzzer (src/main/native/fuzz) runs exactly the code the agent runs on host input. */
#include "agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int frame_split(const uint8_t *buf, size_t avail, frame_ref *f)
{
    if (avail < 4)
        return FRAME_NEED_MORE;
    uint32_t len = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
    if (len < 5 || len > MAX_FRAME)
        return FRAME_BAD_LENGTH;
    if (avail - 4 < (size_t)len)
        return FRAME_NEED_MORE;
    f->len = len;
    f->id = (uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 | (uint32_t)buf[6] << 8 | buf[7];
    f->flags = buf[8];
    f->body = buf + 9;
    f->blen = (size_t)len - 5;
    f->total = 4 + (size_t)len;
    return FRAME_OK;
}

int msg_parse(const uint8_t *body, size_t blen, msg_ref *m)
{
    static const uint8_t empty_map[] = { 0xa0 };
    cbor_val root = { body, body + blen }, v, t, p;
    cbor_head h;

    if (!cbor_valid(root) || !cbor_map_get(root, "t", &t) || !cbor_get_text(t, &m->type, &m->tlen))
        return MSG_MALFORMED;
    if (!cbor_map_get(root, "p", &p) || cbor_is_null(p)) {
        p.p = empty_map;
        p.end = empty_map + 1;
    } else if (!cbor_head_read(p, &h) || h.type != CBOR_MAP) {
        return MSG_MALFORMED;
    }
    m->payload = p;
    if (!cbor_map_get(root, "v", &v) || !cbor_get_uint(v, &m->version) || m->version != PROTO_VERSION)
        return MSG_BAD_VERSION;
    return MSG_OK;
}

bool msg_type_is(const msg_ref *m, const char *want)
{
    return strlen(want) == m->tlen && memcmp(m->type, want, m->tlen) == 0;
}

void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* Up to 40 bytes of a host string for a message, with anything unprintable as '?'. */
static void excerpt(char *out, size_t outlen, const char *s, size_t n)
{
    size_t i = 0;
    for (; i < n && i < 40 && i + 4 < outlen; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    if (i < n && i + 4 < outlen) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    if (outlen)
        out[i < outlen ? i : outlen - 1] = 0;
}

int env_entry(cbor_val k, cbor_val v, char **out, char *msg, size_t msglen)
{
    const char *ks, *vs;
    size_t kl, vl;
    char name[48];
    if (!cbor_get_text(k, &ks, &kl)) {
        snprintf(msg, msglen, "env: a variable name is not text");
        return -2;
    }
    excerpt(name, sizeof name, ks, kl);
    if (kl == 0 || memchr(ks, '=', kl) || memchr(ks, 0, kl)) {
        snprintf(msg, msglen, "env: invalid variable name '%s' (%zu bytes): empty, or holds '=' or NUL", name, kl);
        return -2;
    }
    if (!cbor_get_text(v, &vs, &vl) || memchr(vs, 0, vl)) {
        snprintf(msg, msglen, "env: the value of %s is not text, or holds NUL", name);
        return -2;
    }
    char *s = malloc(kl + vl + 2);
    if (!s)
        return -1;
    memcpy(s, ks, kl);
    s[kl] = '=';
    memcpy(s + kl + 1, vs, vl);
    s[kl + vl + 1] = 0;
    *out = s;
    return 1;
}

int env_parse(cbor_val map, bool present, char ***out, size_t *n, char *msg, size_t msglen)
{
    cbor_iter it;
    cbor_val k, v;
    *out = NULL;
    *n = 0;
    if (present && !cbor_is_null(map) && (!cbor_iter_init(map, &it) || !it.is_map)) {
        snprintf(msg, msglen, "env is not a map");
        return -2;
    }
    if (!present || cbor_is_null(map))
        it.left = 0;
    if (it.left > MAX_ENV) {
        snprintf(msg, msglen, "env has %llu entries, the limit is %u", (unsigned long long)it.left, MAX_ENV);
        return -2;
    }
    char **env = calloc(it.left + 1, sizeof(char *));
    if (!env)
        return -1;
    size_t count = 0;
    uint64_t left = it.left;
    while (left-- > 0) {
        if (!cbor_iter_next(&it, &k, &v)) {
            snprintf(msg, msglen, "env: malformed map");
            free_strv(env);
            return -2;
        }
        int rc = env_entry(k, v, &env[count], msg, msglen);
        if (rc < 0) {
            free_strv(env);
            return rc;
        }
        count++;
    }
    *out = env;
    *n = count;
    return 0;
}

int opt_text(cbor_val p, const char *key, size_t buf, char **out, char *msg, size_t msglen)
{
    cbor_val v;
    const char *s;
    size_t n;
    *out = NULL;
    if (!cbor_map_get(p, key, &v) || cbor_is_null(v))
        return 0;
    if (!cbor_get_text(v, &s, &n) || memchr(s, 0, n)) {
        snprintf(msg, msglen, "%s is not text (or holds NUL)", key);
        return -1;
    }
    if (buf && n >= buf) {
        snprintf(msg, msglen, "%s is %zu bytes, the limit is %zu", key, n, buf - 1);
        return -1;
    }
    if (!(*out = strndup(s, n))) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    return 0;
}

int opt_window(cbor_val p, uint64_t *window, char *msg, size_t msglen)
{
    cbor_val v;
    uint64_t u;
    if (!cbor_map_get(p, "window", &v) || cbor_is_null(v))
        return 0;
    if (!cbor_get_uint(v, &u)) {
        snprintf(msg, msglen, "window is not an unsigned integer");
        return -1;
    }
    *window = u > MAX_OUTPUT_WINDOW ? MAX_OUTPUT_WINDOW : u;
    return 0;
}

void config_free(agent_config *c)
{
    free(c->hostname);
    free_strv(c->env);
    free(c->workdir);
    free(c->user);
    guest_options_free(c);
    memset(c, 0, sizeof *c);
}

int config_parse(cbor_val p, agent_config *c, char *msg, size_t msglen)
{
    cbor_val v;
    size_t n;
    memset(c, 0, sizeof *c);
    if (opt_text(p, "hostname", HOSTNAME_MAX + 1, &c->hostname, msg, msglen) < 0 ||
        opt_text(p, "workdir", PATH_BUF, &c->workdir, msg, msglen) < 0 ||
        opt_text(p, "user", USER_SPEC_BUF, &c->user, msg, msglen) < 0)
        goto bad;
    c->log_level = LOG_INFO;
    if (cbor_map_get(p, "log_level", &v) && !cbor_is_null(v)) {
        static const char *const names[] = { "trace", "debug", "info", "warn", "error", "off" };
        const char *s;
        size_t len;
        int level = -1;
        if (cbor_get_text(v, &s, &len))
            for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
                if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
                    level = i;
        if (level < 0) {
            snprintf(msg, msglen, "log_level is not one of trace, debug, info, warn, error, off");
            goto bad;
        }
        c->log_level = level;
    }
    bool has_env = cbor_map_get(p, "env", &v);
    int rc = env_parse(v, has_env, &c->env, &n, msg, msglen);
    if (rc == -1)
        snprintf(msg, msglen, "out of memory");
    if (rc < 0 || guest_options_parse(p, c, msg, msglen) < 0)
        goto bad;
    return 0;
bad:
    config_free(c);
    return -1;
}

void exec_args_free(exec_args *a)
{
    free_strv(a->argv);
    free_strv(a->env);
    free(a->cwd);
    free(a->user);
    memset(a, 0, sizeof *a);
}

int exec_args_parse(cbor_val p, exec_args *a, const char **kind, const char **stage, char *msg, size_t msglen)
{
    cbor_val v, args;
    cbor_iter it;
    uint64_t u;
    bool b;
    const char *s;
    size_t n;

    memset(a, 0, sizeof *a);
    *kind = "bad_args";
    *stage = "spawn";

    if (!cbor_map_get(p, "cmd", &v) || !cbor_get_text(v, &s, &n) || n == 0 || memchr(s, 0, n)) {
        snprintf(msg, msglen, "cmd missing or not text");
        return -1;
    }
    if (n >= PATH_BUF) {
        snprintf(msg, msglen, "cmd is %zu bytes, the limit is %u", n, PATH_BUF - 1);
        return -1;
    }

    /* argv: cmd, then args */
    bool have_args = cbor_map_get(p, "args", &args) && !cbor_is_null(args);
    uint64_t nargs = 0;
    if (have_args) {
        if (!cbor_iter_init(args, &it) || it.is_map) {
            snprintf(msg, msglen, "args must be an array of text");
            return -1;
        }
        nargs = it.left;
        if (nargs > MAX_ARGS) {
            snprintf(msg, msglen, "args has %llu entries, the limit is %u", (unsigned long long)nargs, MAX_ARGS);
            return -1;
        }
    }
    if (!(a->argv = calloc(nargs + 2, sizeof(char *))) || !(a->argv[0] = strndup(s, n)))
        goto oom;
    for (uint64_t i = 0; i < nargs; i++) {
        if (!cbor_iter_next(&it, &v, &v) || !cbor_get_text(v, &s, &n) || memchr(s, 0, n)) {
            snprintf(msg, msglen, "args[%llu] is not text (or holds NUL)", (unsigned long long)i);
            goto bad;
        }
        if (!(a->argv[i + 1] = strndup(s, n)))
            goto oom;
    }

    bool has_env = cbor_map_get(p, "env", &v);
    int rc = env_parse(v, has_env, &a->env, &a->nenv, msg, msglen);
    if (rc == -1)
        goto oom;
    if (rc < 0)
        goto bad;

    *stage = "cwd";
    if (opt_text(p, "cwd", PATH_BUF, &a->cwd, msg, msglen) < 0)
        goto bad;
    *stage = "user";
    if (opt_text(p, "user", USER_SPEC_BUF, &a->user, msg, msglen) < 0)
        goto bad;
    *stage = "spawn";

    a->tty = cbor_map_get(p, "tty", &v) && cbor_get_bool(v, &b) && b;
    a->want_stdin = cbor_map_get(p, "stdin", &v) && cbor_get_bool(v, &b) && b;
    a->rows = cbor_map_get(p, "rows", &v) && cbor_get_uint(v, &u) && u > 0 && u < 65536 ? (unsigned short)u : 24;
    a->cols = cbor_map_get(p, "cols", &v) && cbor_get_uint(v, &u) && u > 0 && u < 65536 ? (unsigned short)u : 80;
    a->window = DEFAULT_OUTPUT_WINDOW;
    if (opt_window(p, &a->window, msg, msglen) < 0)
        goto bad;
    return 0;

oom:
    *kind = "out_of_memory";
    snprintf(msg, msglen, "out of memory parsing the request");
bad:
    exec_args_free(a);
    return -1;
}

/* Pure parsing of core.configure's guest-side options beyond the basics: the mount table,
 * named scripts and the security profile (docs/protocol.md, "core.configure"). No system
 * calls and no globals, so the fuzzer runs it on host input like proto.c. */
#include "agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An absolute guest path other than "/", without "." or ".." components or empty ones. */
static bool clean_guest_path(const char *s)
{
    if (s[0] != '/' || s[1] == 0)
        return false;
    for (const char *p = s + 1;;) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (!end)
            return true;
        p = end + 1;
    }
}

/* A script name is one path component: letters, digits, '.', '_', '-', not "." or "..". */
static bool valid_script_name(const char *s, size_t n)
{
    if (n == 0 || n > SCRIPT_NAME_MAX || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int opt_bool(cbor_val m, const char *key, bool *out, char *msg, size_t msglen)
{
    cbor_val v;
    *out = false;
    if (!cbor_map_get(m, key, &v) || cbor_is_null(v))
        return 0;
    if (!cbor_get_bool(v, out)) {
        snprintf(msg, msglen, "mounts: %s is not a boolean", key);
        return -1;
    }
    return 0;
}

static int parse_mount(cbor_val m, mount_spec *out, char *msg, size_t msglen)
{
    char *type = NULL;
    cbor_val v;
    uint64_t u;
    if (opt_text(m, "path", MOUNT_PATH_MAX + 1, &out->path, msg, msglen) < 0 ||
        opt_text(m, "type", 16, &type, msg, msglen) < 0 ||
        opt_text(m, "source", 64, &out->source, msg, msglen) < 0)
        goto bad;
    if (!out->path || !clean_guest_path(out->path)) {
        snprintf(msg, msglen, "mounts: a path is missing, not absolute, \"/\", or holds . or .. components");
        goto bad;
    }
    if (!type) {
        snprintf(msg, msglen, "mounts: %s has no type", out->path);
        goto bad;
    }
    if (strcmp(type, "9p") == 0)
        out->kind = MOUNT_9P;
    else if (strcmp(type, "tmpfs") == 0)
        out->kind = MOUNT_TMPFS;
    else if (strcmp(type, "ext4") == 0)
        out->kind = MOUNT_EXT4;
    else {
        snprintf(msg, msglen, "mounts: %s has an unknown type", out->path);
        goto bad;
    }
    if (out->kind != MOUNT_TMPFS && (!out->source || !out->source[0])) {
        snprintf(msg, msglen, "mounts: %s has no source", out->path);
        goto bad;
    }
    if (opt_bool(m, "readonly", &out->readonly, msg, msglen) < 0 ||
        opt_bool(m, "noexec", &out->noexec, msg, msglen) < 0 ||
        opt_bool(m, "nosuid", &out->nosuid, msg, msglen) < 0 ||
        opt_bool(m, "nodev", &out->nodev, msg, msglen) < 0)
        goto bad;
    if (cbor_map_get(m, "size_mib", &v) && !cbor_is_null(v)) {
        if (!cbor_get_uint(v, &u) || u > UINT32_MAX) {
            snprintf(msg, msglen, "mounts: size_mib of %s is not a 32-bit unsigned integer", out->path);
            goto bad;
        }
        out->size_mib = (uint32_t)u;
    }
    free(type);
    return 0;
bad:
    free(type);
    return -1;
}

static int parse_mounts(cbor_val p, agent_config *c, char *msg, size_t msglen)
{
    cbor_val list, m, unused;
    cbor_iter it;
    if (!cbor_map_get(p, "mounts", &list) || cbor_is_null(list))
        return 0;
    if (!cbor_iter_init(list, &it) || it.is_map) {
        snprintf(msg, msglen, "mounts is not an array");
        return -1;
    }
    if (it.left > MAX_MOUNTS) {
        snprintf(msg, msglen, "mounts has %llu entries, the limit is %u", (unsigned long long)it.left, MAX_MOUNTS);
        return -1;
    }
    if (it.left == 0)
        return 0;
    if (!(c->mounts = calloc(it.left, sizeof *c->mounts))) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    for (uint64_t left = it.left; left > 0; left--) {
        if (!cbor_iter_next(&it, &m, &unused)) {
            snprintf(msg, msglen, "mounts: malformed array");
            return -1;
        }
        /* counted before parsing, so config_free releases a half-parsed entry too */
        if (parse_mount(m, &c->mounts[c->nmounts++], msg, msglen) < 0)
            return -1;
    }
    return 0;
}

static int parse_scripts(cbor_val p, agent_config *c, char *msg, size_t msglen)
{
    cbor_val map, k, v;
    cbor_iter it;
    const char *s;
    size_t n, total = 0;
    if (!cbor_map_get(p, "scripts", &map) || cbor_is_null(map))
        return 0;
    if (!cbor_iter_init(map, &it) || !it.is_map) {
        snprintf(msg, msglen, "scripts is not a map");
        return -1;
    }
    if (it.left > MAX_SCRIPTS) {
        snprintf(msg, msglen, "scripts has %llu entries, the limit is %u", (unsigned long long)it.left, MAX_SCRIPTS);
        return -1;
    }
    if (it.left == 0)
        return 0;
    if (!(c->scripts = calloc(it.left, sizeof *c->scripts))) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    for (uint64_t left = it.left; left > 0; left--) {
        if (!cbor_iter_next(&it, &k, &v)) {
            snprintf(msg, msglen, "scripts: malformed map");
            return -1;
        }
        if (!cbor_get_text(k, &s, &n) || !valid_script_name(s, n)) {
            snprintf(msg, msglen, "scripts: a name is not text of 1 to %u letters, digits, '.', '_' or '-' (or is . or ..)",
                     SCRIPT_NAME_MAX);
            return -1;
        }
        script_spec *sc = &c->scripts[c->nscripts++];
        if (!(sc->name = strndup(s, n))) {
            snprintf(msg, msglen, "out of memory");
            return -1;
        }
        if (!cbor_get_text(v, &s, &n)) {
            snprintf(msg, msglen, "scripts: the content of %s is not text", sc->name);
            return -1;
        }
        if ((total += n) > SCRIPTS_TOTAL_MAX) {
            snprintf(msg, msglen, "scripts: more than %u bytes in all", SCRIPTS_TOTAL_MAX);
            return -1;
        }
        if (!(sc->content = malloc(n ? n : 1))) {
            snprintf(msg, msglen, "out of memory");
            return -1;
        }
        memcpy(sc->content, s, n);
        sc->len = n;
    }
    return 0;
}

/* init: {cmd, args, env}; cmd "auto" or an absolute path. */
static int parse_init(cbor_val p, agent_config *c, char *msg, size_t msglen)
{
    cbor_val init, args, v, unused, env;
    cbor_iter it;
    size_t n;
    if (!cbor_map_get(p, "init", &init) || cbor_is_null(init))
        return 0;
    if (opt_text(init, "cmd", PATH_BUF, &c->init_cmd, msg, msglen) < 0)
        return -1;
    if (!c->init_cmd || (strcmp(c->init_cmd, "auto") != 0 && c->init_cmd[0] != '/')) {
        snprintf(msg, msglen, "init: cmd must be \"auto\" or an absolute path");
        return -1;
    }
    if (cbor_map_get(init, "args", &args) && !cbor_is_null(args)) {
        if (!cbor_iter_init(args, &it) || it.is_map || it.left > MAX_ARGS) {
            snprintf(msg, msglen, "init: args must be an array of at most %u texts", MAX_ARGS);
            return -1;
        }
        if (!(c->init_args = calloc(it.left + 1, sizeof(char *)))) {
            snprintf(msg, msglen, "out of memory");
            return -1;
        }
        for (uint64_t i = 0, left = it.left; i < left; i++) {
            if (!cbor_iter_next(&it, &v, &unused) || !(c->init_args[i] = cbor_dup_text(v))) {
                snprintf(msg, msglen, "init: an argument is not text (or holds NUL)");
                return -1;
            }
        }
    }
    bool has_env = cbor_map_get(init, "env", &env);
    int rc = env_parse(env, has_env, &c->init_env, &n, msg, msglen);
    if (rc == -1)
        snprintf(msg, msglen, "out of memory");
    return rc < 0 ? -1 : 0;
}

int guest_options_parse(cbor_val p, agent_config *c, char *msg, size_t msglen)
{
    char *security = NULL;
    if (parse_mounts(p, c, msg, msglen) < 0 || parse_scripts(p, c, msg, msglen) < 0 ||
        parse_init(p, c, msg, msglen) < 0 || opt_text(p, "security", 16, &security, msg, msglen) < 0)
        return -1;
    if (security && strcmp(security, "restricted") == 0) {
        c->restricted = true;
    } else if (security && strcmp(security, "default") != 0) {
        snprintf(msg, msglen, "security must be \"default\" or \"restricted\"");
        free(security);
        return -1;
    }
    free(security);
    return 0;
}

void guest_options_free(agent_config *c)
{
    for (size_t i = 0; i < c->nmounts; i++) {
        free(c->mounts[i].path);
        free(c->mounts[i].source);
    }
    free(c->mounts);
    for (size_t i = 0; i < c->nscripts; i++) {
        free(c->scripts[i].name);
        free(c->scripts[i].content);
    }
    free(c->scripts);
    free(c->init_cmd);
    free_strv(c->init_args);
    free_strv(c->init_env);
}

/* Fuzzer of the agent's decoder: cbor.c and proto.c, the code the agent runs on every byte
 * the host sends (not part of the agent binary; built by `make fuzz` with ASan + UBSan).
 *
 *   cbor_fuzz ITERATIONS [SEED [LARGE]]
 *
 * LARGE caps the number of large inputs (up to 4 MiB, run first; default all 10).
 *
 * Each input goes through the agent's path: the receive buffer fed in random pieces and
 * split into frames (frame_split, as port_readable does), each body decoded (msg_parse:
 * cbor_valid, cbor_map_get of v/t/p), then the payload parsed as the message type says
 * (exec_args_parse, config_parse, the exec.stdin/window/signal/resize accessors) and also
 * walked completely with every accessor. Inputs come from a built-in deterministic mutator
 * over a corpus of valid frames, random bytes, and generated CBOR trees.
 *
 * A finding is a sanitizer report (the process aborts) or a broken invariant (checked
 * here: a differential reference validator, bounds of every value handed out, properties
 * of parsed requests); both exit non-zero with the input in hex. */
#include "agent.h"

#include <inttypes.h>
#include <signal.h>
#include <sanitizer/common_interface_defs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- deterministic PRNG (splitmix64) ---- */

static uint64_t g_rng;

static uint64_t rnd(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }
static bool chance(unsigned pct) { return below(100) < pct; }

/* ---- the current input, for reports ---- */

static const uint8_t *g_in;
static size_t g_in_len;
static uint64_t g_iter;

static void dump_input(void)
{
    static bool dumped;
    if (dumped)
        return;
    dumped = true;
    fprintf(stderr, "FINDING (seed and index reproduce it):\n");
    fprintf(stderr, "input #%" PRIu64 ", %zu bytes:", g_iter, g_in_len);
    for (size_t i = 0; i < g_in_len && i < 512; i++)
        fprintf(stderr, "%s%02x", i % 32 ? "" : "\n  ", g_in[i]);
    fprintf(stderr, "%s\n", g_in_len > 512 ? "\n  ..." : "");
}

static void on_abort(int sig)
{
    dump_input();
    signal(sig, SIG_DFL);
    raise(sig);
}

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "FINDING: invariant broken at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            dump_input();                                                            \
            abort();                                                                 \
        }                                                                            \
    } while (0)

/* ---- reference validator (an independent reading of cbor.h's rules) ---- */

/* Returns the end of the item at p, or NULL if it is not well formed under the agent's
 * subset: definite lengths, majors 0-5, and 7 with false/true/null; depth at most 16. */
static const uint8_t *ref_item(const uint8_t *p, const uint8_t *end, int depth)
{
    if (depth > 16 || p >= end)
        return NULL;
    unsigned major = *p >> 5, info = *p & 31;
    p++;
    uint64_t arg;
    if (info < 24) {
        arg = info;
    } else if (info < 28) {
        unsigned n = 1u << (info - 24);
        if ((size_t)(end - p) < n)
            return NULL;
        arg = 0;
        while (n--)
            arg = arg << 8 | *p++;
    } else {
        return NULL;
    }
    switch (major) {
    case 0: case 1:
        return p;
    case 2: case 3:
        return arg <= (uint64_t)(end - p) ? p + arg : NULL;
    case 4: case 5: {
        if (major == 5 && arg > UINT64_MAX / 2)
            return NULL;
        /* every item takes a byte at least: running out of input ends a huge count */
        uint64_t items = major == 5 ? arg * 2 : arg;
        for (uint64_t i = 0; i < items; i++)
            if (!(p = ref_item(p, end, depth + 1)))
                return NULL;
        return p;
    }
    case 7:
        return info >= 20 && info <= 22 ? p : NULL;
    default:
        return NULL;
    }
}

/* ---- checks on what the decoder hands out ---- */

static const uint8_t *g_lo, *g_hi; /* the body being decoded */

static void check_range(const void *p, size_t n)
{
    const uint8_t *b = p;
    CHECK(b >= g_lo && b <= g_hi && n <= (size_t)(g_hi - b));
}

static volatile uint64_t g_sink; /* keeps the reads */

/* Every accessor on one value, then its children. Only called on values inside a body
 * that passed cbor_valid, so nesting is bounded. */
static void walk(cbor_val v, int depth)
{
    CHECK(depth <= 17);
    cbor_head h;
    const char *s;
    const uint8_t *b;
    size_t n;
    uint64_t u;
    int64_t i;
    bool bl;
    CHECK(cbor_head_read(v, &h));
    cbor_val after;
    CHECK(cbor_skip(v, &after));
    check_range(v.p, (size_t)(after.p - v.p));
    CHECK(after.p > v.p);
    if (cbor_get_text(v, &s, &n)) {
        check_range(s, n);
        g_sink += n ? (uint8_t)s[n - 1] : 0;
        char *d = cbor_dup_text(v);
        CHECK(!d == !!memchr(s, 0, n));
        if (d) {
            CHECK(strlen(d) == n && memcmp(d, s, n) == 0);
            free(d);
        }
    }
    if (cbor_get_bytes(v, &b, &n)) {
        check_range(b, n);
        g_sink += n ? b[n - 1] : 0;
    }
    if (cbor_get_uint(v, &u))
        g_sink += u;
    if (cbor_get_int(v, &i))
        g_sink += (uint64_t)i;
    if (cbor_get_bool(v, &bl))
        g_sink += bl;
    g_sink += cbor_is_null(v);

    cbor_iter it;
    cbor_val k, val;
    if (cbor_iter_init(v, &it)) {
        uint64_t count = it.left, seen = 0;
        while (cbor_iter_next(&it, &k, &val)) {
            seen++;
            walk(k, depth + 1);
            if (it.is_map)
                walk(val, depth + 1);
        }
        CHECK(seen == count); /* a valid container yields exactly its count */
        cbor_val found;
        if (it.is_map && cbor_map_get(v, "data", &found))
            walk(found, depth + 1);
    }
}

/* ---- one frame body, as handle_frame and the handlers see it ---- */

static struct {
    uint64_t inputs, bytes, frames, bad_length, body_ok, bad_version, malformed;
    uint64_t exec_ok, exec_refused, config_ok, config_refused, valid_raw;
} st;

static void check_exec_args(const exec_args *a)
{
    CHECK(a->argv && a->argv[0] && a->argv[0][0] && strlen(a->argv[0]) < PATH_BUF);
    CHECK(a->env);
    size_t n = 0;
    for (; a->env[n]; n++) {
        const char *eq = strchr(a->env[n], '=');
        CHECK(eq && eq != a->env[n]);
    }
    CHECK(n == a->nenv);
    CHECK(!a->cwd || strlen(a->cwd) < PATH_BUF);
    CHECK(!a->user || strlen(a->user) < USER_SPEC_BUF);
    CHECK(a->window <= MAX_OUTPUT_WINDOW);
    CHECK(a->rows > 0 && a->cols > 0);
}

static void body(const uint8_t *b, size_t blen)
{
    g_lo = b;
    g_hi = b + blen;
    cbor_val root = { b, b + blen };
    bool valid = cbor_valid(root);
    CHECK(valid == (ref_item(b, b + blen, 0) == b + blen));

    msg_ref m;
    int rc = msg_parse(b, blen, &m);
    if (rc == MSG_MALFORMED) {
        st.malformed++;
        if (valid)
            walk(root, 0);
        return;
    }
    CHECK(valid);
    check_range(m.type, m.tlen);
    /* the payload is inside the body, or the agent's own empty map for an absent/null p */
    CHECK((m.payload.p >= g_lo && m.payload.p < g_hi && m.payload.end == g_hi) ||
          (m.payload.end - m.payload.p == 1 && *m.payload.p == 0xa0));
    walk(root, 0);
    if (rc == MSG_BAD_VERSION) {
        st.bad_version++;
        return;
    }
    st.body_ok++;

    cbor_val p = m.payload, v;
    char msg[512];
    const char *kind, *stage;
    if (msg_type_is(&m, "exec.request")) {
        exec_args a;
        memset(msg, 0, sizeof msg);
        if (exec_args_parse(p, &a, &kind, &stage, msg, sizeof msg) == 0) {
            st.exec_ok++;
            check_exec_args(&a);
            exec_args_free(&a);
        } else {
            st.exec_refused++;
            CHECK(msg[0] && strlen(msg) < sizeof msg);
            CHECK(!strcmp(kind, "bad_args") || !strcmp(kind, "out_of_memory"));
            CHECK(!a.argv && !a.env && !a.cwd && !a.user);
        }
    } else if (msg_type_is(&m, "core.configure")) {
        agent_config c;
        if (config_parse(p, &c, msg, sizeof msg) == 0) {
            st.config_ok++;
            CHECK(c.env);
            CHECK(!c.hostname || strlen(c.hostname) <= HOSTNAME_MAX);
            CHECK(!c.workdir || strlen(c.workdir) < PATH_BUF);
            CHECK(c.nmounts <= MAX_MOUNTS && c.nscripts <= MAX_SCRIPTS);
            config_free(&c);
        } else {
            st.config_refused++;
            CHECK(!c.env && !c.hostname && !c.mounts && !c.scripts);
        }
    } else if (msg_type_is(&m, "exec.stdin")) {
        const uint8_t *d;
        size_t n;
        if (cbor_map_get(p, "data", &v) && cbor_get_bytes(v, &d, &n)) {
            check_range(d, n);
            uint64_t sum = 0;
            for (size_t i = 0; i < n; i += 4096)
                sum += d[i];
            g_sink += sum;
        }
    } else {
        uint64_t u;
        int64_t i;
        static const char *const keys[] = { "bytes", "signal", "rows", "cols" };
        for (size_t k = 0; k < 4; k++)
            if (cbor_map_get(p, keys[k], &v))
                g_sink += cbor_get_uint(v, &u) ? u : cbor_get_int(v, &i) ? (uint64_t)i : 0;
    }
}

/* The receive side of main.c: bytes arrive in pieces of any size; complete frames are
 * split off and the rest moved to the front. Frames are decoded from a copy of exactly
 * their size, so any read past a frame is caught by ASan. */
static void stream(const uint8_t *in, size_t len)
{
    size_t cap = len + 1, rx_len = 0, pos = 0;
    uint8_t *rx = malloc(cap);
    CHECK(rx);
    while (pos < len) {
        size_t piece = chance(50) ? len - pos : 1 + below(len - pos);
        memcpy(rx + rx_len, in + pos, piece);
        rx_len += piece;
        pos += piece;
        size_t off = 0;
        frame_ref f;
        int rc;
        while ((rc = frame_split(rx + off, rx_len - off, &f)) == FRAME_OK) {
            CHECK(f.total == 4 + (size_t)f.len && f.len >= 5 && f.len <= MAX_FRAME);
            CHECK(off + f.total <= rx_len);
            CHECK(f.body == rx + off + 9 && f.blen == f.len - 5);
            st.frames++;
            uint8_t *copy = malloc(f.blen ? f.blen : 1);
            CHECK(copy);
            memcpy(copy, f.body, f.blen);
            body(copy, f.blen);
            free(copy);
            off += f.total;
        }
        if (rc == FRAME_BAD_LENGTH) {
            st.bad_length++;
            rx_len = 0; /* the agent drops what it buffered */
            break;
        }
        CHECK(rx_len - off < 4 || rx_len - off < 4 + (size_t)((uint32_t)rx[off] << 24 | (uint32_t)rx[off + 1] << 16 |
                                                               (uint32_t)rx[off + 2] << 8 | rx[off + 3]));
        memmove(rx, rx + off, rx_len - off);
        rx_len -= off;
    }
    free(rx);
}

/* ---- input construction ---- */

typedef struct {
    uint8_t *d;
    size_t len, cap;
} bytes;

static void bput(bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->d = realloc(b->d, cap);
        CHECK(b->d);
        b->cap = cap;
    }
    memcpy(b->d + b->len, p, n);
    b->len += n;
}

static void bput8(bytes *b, uint8_t c) { bput(b, &c, 1); }

/* A frame around a CBOR body. */
static void frame_wrap(bytes *out, uint32_t id, uint8_t flags, const uint8_t *body_, size_t blen)
{
    uint32_t len = (uint32_t)(blen + 5);
    uint8_t h[9] = { len >> 24, len >> 16, len >> 8, len, id >> 24, id >> 16, id >> 8, id, flags };
    bput(out, h, 9);
    bput(out, body_, blen);
}

static void msg_head(cbor_buf *c, const char *type, size_t npairs)
{
    cbor_put_map(c, 3);
    cbor_put_text(c, "v");
    cbor_put_uint(c, PROTO_VERSION);
    cbor_put_text(c, "t");
    cbor_put_text(c, type);
    cbor_put_text(c, "p");
    cbor_put_map(c, npairs);
}

#define NCORPUS 16
static bytes g_corpus[NCORPUS];
static size_t g_ncorpus;

static void corpus_add(cbor_buf *c, uint32_t id, uint8_t flags)
{
    CHECK(!c->oom && g_ncorpus < NCORPUS);
    bytes *b = &g_corpus[g_ncorpus++];
    memset(b, 0, sizeof *b);
    frame_wrap(b, id, flags, c->data, c->len);
    cbor_buf_free(c);
}

static void build_corpus(void)
{
    cbor_buf c = { 0 };
    msg_head(&c, "exec.request", 10);
    cbor_put_text(&c, "cmd"); cbor_put_text(&c, "sh");
    cbor_put_text(&c, "args"); cbor_put_array(&c, 3);
    cbor_put_text(&c, "-c"); cbor_put_text(&c, "echo $A; cat"); cbor_put_text(&c, "x");
    cbor_put_text(&c, "env"); cbor_put_map(&c, 2);
    cbor_put_text(&c, "A"); cbor_put_text(&c, "1"); cbor_put_text(&c, "PATH"); cbor_put_text(&c, "/bin");
    cbor_put_text(&c, "cwd"); cbor_put_text(&c, "/tmp");
    cbor_put_text(&c, "user"); cbor_put_text(&c, "sandbox:users");
    cbor_put_text(&c, "tty"); cbor_put_bool(&c, false);
    cbor_put_text(&c, "rows"); cbor_put_uint(&c, 24);
    cbor_put_text(&c, "cols"); cbor_put_uint(&c, 80);
    cbor_put_text(&c, "stdin"); cbor_put_bool(&c, true);
    cbor_put_text(&c, "window"); cbor_put_uint(&c, 65536);
    corpus_add(&c, 0x10001, FLAG_SESSION_START);

    msg_head(&c, "exec.request", 4);
    cbor_put_text(&c, "cmd"); cbor_put_text(&c, "true");
    cbor_put_text(&c, "args"); cbor_put_null(&c);
    cbor_put_text(&c, "cwd"); cbor_put_null(&c);
    cbor_put_text(&c, "user"); cbor_put_text(&c, "1000:1000");
    corpus_add(&c, 7, FLAG_SESSION_START);

    msg_head(&c, "core.configure", 4);
    cbor_put_text(&c, "hostname"); cbor_put_text(&c, "sb");
    cbor_put_text(&c, "env"); cbor_put_map(&c, 1); cbor_put_text(&c, "K"); cbor_put_text(&c, "V");
    cbor_put_text(&c, "workdir"); cbor_put_text(&c, "/work");
    cbor_put_text(&c, "user"); cbor_put_null(&c);
    corpus_add(&c, 0, 0);

    static const uint8_t data[] = { 0, 1, 2, 0xff, 'h', 'i', '\n' };
    msg_head(&c, "exec.stdin", 1);
    cbor_put_text(&c, "data"); cbor_put_bytes(&c, data, sizeof data);
    corpus_add(&c, 0x10001, 0);

    msg_head(&c, "exec.window", 1);
    cbor_put_text(&c, "bytes"); cbor_put_uint(&c, 1u << 20);
    corpus_add(&c, 0x10001, 0);

    msg_head(&c, "exec.signal", 1);
    cbor_put_text(&c, "signal"); cbor_put_int(&c, -9);
    corpus_add(&c, 0x10001, 0);

    msg_head(&c, "exec.resize", 2);
    cbor_put_text(&c, "rows"); cbor_put_uint(&c, 40);
    cbor_put_text(&c, "cols"); cbor_put_uint(&c, 0xffffffffffull);
    corpus_add(&c, 0x10001, 0);

    msg_head(&c, "core.ping", 0);
    corpus_add(&c, 3, 0);
    msg_head(&c, "core.shutdown", 0);
    corpus_add(&c, 0, FLAG_SHUTDOWN);
    msg_head(&c, "core.stats", 0);
    corpus_add(&c, 9, 0);

    /* the agent's own messages, as a hostile echo */
    msg_head(&c, "exec.stdin_window", 2);
    cbor_put_text(&c, "bytes"); cbor_put_uint(&c, 65536);
    cbor_put_text(&c, "closed"); cbor_put_bool(&c, true);
    corpus_add(&c, 0x10001, 0);
}

/* A random CBOR item, mostly well formed, sometimes not. */
static void gen_item(cbor_buf *c, int depth)
{
    static const char *const words[] = { "cmd", "args", "env", "cwd", "user", "tty", "rows", "cols",
                                         "stdin", "window", "data", "bytes", "v", "t", "p", "PATH" };
    switch (below(depth > 6 ? 7 : 10)) {
    case 0: cbor_put_uint(c, chance(50) ? below(30) : rnd()); break;
    case 1: cbor_put_int(c, -(int64_t)below(1000) - 1); break;
    case 2: cbor_put_text(c, words[below(16)]); break;
    case 3: {
        size_t n = chance(90) ? below(40) : below(6000);
        char *s = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            s[i] = chance(95) ? (char)('a' + below(26)) : (char)below(256);
        cbor_put_textn(c, s, n);
        free(s);
        break;
    }
    case 4: {
        uint8_t buf[64];
        size_t n = below(64);
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rnd();
        cbor_put_bytes(c, buf, n);
        break;
    }
    case 5: cbor_put_bool(c, chance(50)); break;
    case 6: {
        static const uint8_t odd[] = { 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xff, 0xc0, 0xc2, 0xd8, 0x1c, 0x5f, 0x7f, 0x9f, 0xbf };
        if (chance(80))
            cbor_put_null(c);
        else
            cbor_put_raw(c, &odd[below(sizeof odd)], 1);
        break;
    }
    case 7: case 8: {
        size_t n = below(5);
        cbor_put_array(c, n);
        for (size_t i = 0; i < n; i++)
            gen_item(c, depth + 1);
        break;
    }
    default: {
        size_t n = below(5);
        cbor_put_map(c, n);
        for (size_t i = 0; i < n; i++) {
            if (chance(85))
                cbor_put_text(c, words[below(16)]);
            else
                gen_item(c, depth + 1);
            gen_item(c, depth + 1);
        }
        break;
    }
    }
}

/* A message of a known type whose payload keys get random values. */
static void gen_message(bytes *out)
{
    static const char *const types[] = { "exec.request", "core.configure", "exec.stdin", "exec.window",
                                         "exec.signal", "exec.resize", "core.ping", "x" };
    static const char *const keys[] = { "cmd", "args", "env", "cwd", "user", "tty", "rows", "cols",
                                        "stdin", "window", "hostname", "workdir", "data", "bytes", "signal",
                                        "mounts", "scripts", "security" };
    cbor_buf c = { 0 };
    size_t n = 1 + below(8);
    msg_head(&c, types[below(8)], n + (chance(70) ? 1 : 0));
    cbor_put_text(&c, "cmd");
    if (chance(70))
        cbor_put_text(&c, "sh");
    else
        gen_item(&c, 1);
    for (size_t i = 0; i < n; i++) {
        cbor_put_text(&c, keys[below(sizeof keys / sizeof *keys)]);
        gen_item(&c, 2);
    }
    /* 30%: the map declares one pair less than it holds: trailing bytes */
    CHECK(!c.oom);
    frame_wrap(out, (uint32_t)rnd(), (uint8_t)rnd(), c.data, c.len);
    cbor_buf_free(&c);
}

static const uint8_t g_heads[] = {
    0x1b, 0x3b, 0x5b, 0x7b, 0x9b, 0xbb, /* 8-byte arguments: huge lengths */
    0x5a, 0x7a, 0x9a, 0xba, 0x59, 0x79, 0x99, 0xb9, 0x58, 0x78, 0x98, 0xb8,
    0x5f, 0x7f, 0x9f, 0xbf, 0xff,       /* indefinite lengths, break */
    0x1c, 0x1d, 0x1e, 0x1f,             /* reserved */
    0xc0, 0xc1, 0xc2, 0xc3, 0xd8, 0xdb, /* tags */
    0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xe0, /* simple, floats */
    0x80, 0xa0, 0x40, 0x60, 0x00, 0x20,
};

static void mutate(bytes *b)
{
    size_t rounds = 1 + below(chance(20) ? 8 : 2);
    for (size_t r = 0; r < rounds && b->len; r++) {
        size_t pos = below(b->len);
        switch (below(12)) {
        case 0: b->d[pos] ^= (uint8_t)(1u << below(8)); break;
        case 1: b->d[pos] = (uint8_t)rnd(); break;
        case 2: b->d[pos] = g_heads[below(sizeof g_heads)]; break;
        case 3: /* a head with a large argument */
            if (pos + 9 <= b->len) {
                b->d[pos] = g_heads[below(6)];
                for (int i = 1; i < 9; i++)
                    b->d[pos + i] = chance(50) ? 0xff : (uint8_t)rnd();
            }
            break;
        case 4: b->len = pos; break; /* truncate */
        case 5: { /* insert bytes */
            size_t n = 1 + below(8);
            uint8_t ins[8];
            for (size_t i = 0; i < n; i++)
                ins[i] = chance(50) ? g_heads[below(sizeof g_heads)] : (uint8_t)rnd();
            bput(b, ins, n); /* grow, then shift */
            memmove(b->d + pos + n, b->d + pos, b->len - n - pos);
            memcpy(b->d + pos, ins, n);
            break;
        }
        case 6: { /* delete */
            size_t n = 1 + below(8);
            if (pos + n > b->len)
                n = b->len - pos;
            memmove(b->d + pos, b->d + pos + n, b->len - pos - n);
            b->len -= n;
            break;
        }
        case 7: { /* duplicate a region */
            size_t n = 1 + below(32);
            if (pos + n > b->len)
                n = b->len - pos;
            uint8_t *tmp = malloc(n);
            memcpy(tmp, b->d + pos, n);
            bput(b, tmp, n);
            free(tmp);
            break;
        }
        case 8: /* small integer/length edits of a head byte */
            b->d[pos] = (uint8_t)((b->d[pos] & 0xe0) | below(28));
            break;
        case 9: { /* splice another corpus frame at the end */
            const bytes *o = &g_corpus[below(g_ncorpus)];
            bput(b, o->d, o->len);
            break;
        }
        case 10: /* the length field */
            if (b->len >= 4) {
                static const uint32_t lens[] = { 0, 1, 4, 5, 6, MAX_FRAME, MAX_FRAME + 1, 0xffffffffu, 0x80000000u };
                uint32_t l = chance(50) ? lens[below(9)] : (uint32_t)(b->len - 4 + below(5) - 2);
                b->d[0] = l >> 24; b->d[1] = l >> 16; b->d[2] = l >> 8; b->d[3] = (uint8_t)l;
            }
            break;
        default: /* type confusion: swap a major type */
            b->d[pos] = (uint8_t)((b->d[pos] & 0x1f) | (below(8) << 5));
            break;
        }
    }
    if (b->len >= 9 && chance(60)) {
        /* keep the length field consistent, so that the body gets decoded */
        uint32_t l = (uint32_t)(b->len - 4);
        b->d[0] = l >> 24; b->d[1] = l >> 16; b->d[2] = l >> 8; b->d[3] = (uint8_t)l;
    }
}

static void make_input(bytes *b)
{
    b->len = 0;
    unsigned kind = (unsigned)below(100);
    if (kind < 10) { /* random bytes, sometimes behind a valid header */
        size_t n = below(chance(90) ? 64 : 2048);
        if (chance(50)) {
            uint8_t *tmp = malloc(n + 1);
            for (size_t i = 0; i < n; i++)
                tmp[i] = (uint8_t)rnd();
            frame_wrap(b, (uint32_t)rnd(), 0, tmp, n);
            free(tmp);
        } else {
            for (size_t i = 0; i < n; i++)
                bput8(b, (uint8_t)rnd());
        }
    } else if (kind < 20) { /* deep nesting */
        cbor_buf c = { 0 };
        msg_head(&c, "exec.request", 1);
        cbor_put_text(&c, "args");
        size_t depth = below(30);
        uint8_t open = chance(50) ? 0x81 : 0xa1;
        for (size_t i = 0; i < depth; i++) {
            cbor_put_raw(&c, &open, 1);
            if (open == 0xa1)
                cbor_put_text(&c, "k");
        }
        cbor_put_text(&c, "leaf");
        frame_wrap(b, 5, 0, c.data, c.len);
        cbor_buf_free(&c);
        if (chance(30))
            mutate(b);
    } else if (kind < 45) { /* generated payloads */
        gen_message(b);
        if (chance(30))
            mutate(b);
    } else { /* mutated corpus frames, sometimes several in one stream */
        size_t frames = chance(80) ? 1 : 2 + below(3);
        for (size_t i = 0; i < frames; i++) {
            const bytes *o = &g_corpus[below(g_ncorpus)];
            bytes one = { 0 };
            bput(&one, o->d, o->len);
            if (chance(90))
                mutate(&one);
            bput(b, one.d, one.len);
            free(one.d);
        }
    }
}

/* Big inputs up to the frame limit, run once each, the cheap ones first: a huge declared
 * count, an oversized length field, one 4 MiB byte string, one 4 MiB text, then frames made
 * of millions of tiny items. */
static const size_t g_big_order[] = { 7, 8, 5, 6, 0, 4, 9, 1, 2, 3 };

static size_t big_input(size_t nth, bytes *b)
{
    if (nth >= sizeof g_big_order / sizeof g_big_order[0])
        return 0;
    size_t which = g_big_order[nth];
    cbor_buf c = { 0 };
    size_t limit = MAX_FRAME - 5;
    b->len = 0;
    switch (which) {
    case 0: case 1: case 2: case 3: { /* p.args: an array of tiny items filling the frame */
        static const uint8_t items[] = { 0xa0, 0xf6, 0x01, 0x60 };
        msg_head(&c, "exec.request", 2);
        cbor_put_text(&c, "cmd");
        cbor_put_text(&c, "x");
        cbor_put_text(&c, "args");
        size_t n = limit - c.len - 5;
        cbor_put_array(&c, n);
        for (size_t i = 0; i < n; i++)
            cbor_put_raw(&c, &items[which], 1);
        break;
    }
    case 4: { /* env with many pairs */
        msg_head(&c, "exec.request", 2);
        cbor_put_text(&c, "cmd");
        cbor_put_text(&c, "x");
        cbor_put_text(&c, "env");
        size_t n = (limit - c.len - 5) / 4;
        cbor_put_map(&c, n);
        for (size_t i = 0; i < n; i++) {
            char k[2] = { (char)('A' + i % 26), 0 };
            cbor_put_text(&c, k);
            cbor_put_text(&c, "");
        }
        break;
    }
    case 5: { /* one huge byte string */
        msg_head(&c, "exec.stdin", 1);
        cbor_put_text(&c, "data");
        size_t n = limit - c.len - 5;
        uint8_t *z = calloc(1, n);
        cbor_put_bytes(&c, z, n);
        free(z);
        break;
    }
    case 6: { /* a huge text as cwd */
        msg_head(&c, "exec.request", 2);
        cbor_put_text(&c, "cmd");
        cbor_put_text(&c, "x");
        cbor_put_text(&c, "cwd");
        size_t n = limit - c.len - 5;
        char *z = malloc(n);
        memset(z, 'a', n);
        cbor_put_textn(&c, z, n);
        free(z);
        break;
    }
    case 7: { /* a declared count of 2^64-1 with little behind it */
        msg_head(&c, "exec.request", 1);
        cbor_put_text(&c, "args");
        static const uint8_t huge[] = { 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        cbor_put_raw(&c, huge, sizeof huge);
        for (size_t i = 0; i < 1000; i++)
            cbor_put_null(&c);
        break;
    }
    case 8: { /* a length field one over the limit */
        static const uint8_t over[] = { 0x00, 0x40, 0x00, 0x01, 0, 0, 0, 1, 0 };
        bput(b, over, sizeof over);
        return 1;
    }
    case 9: { /* nesting at the limit, many times over: [[[...]]] x n */
        msg_head(&c, "exec.request", 1);
        cbor_put_text(&c, "args");
        size_t n = (limit - c.len - 5) / 20;
        cbor_put_array(&c, n);
        for (size_t i = 0; i < n; i++) {
            static const uint8_t nest[14] = { 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x80 };
            cbor_put_raw(&c, nest, sizeof nest);
        }
        break;
    }
    default:
        return 0;
    }
    CHECK(!c.oom);
    frame_wrap(b, 0x10001, FLAG_SESSION_START, c.data, c.len);
    cbor_buf_free(&c);
    return 1;
}

static void run_one(const bytes *b)
{
    uint8_t *copy = malloc(b->len ? b->len : 1);
    CHECK(copy);
    memcpy(copy, b->d, b->len);
    g_in = copy;
    g_in_len = b->len;
    st.inputs++;
    st.bytes += b->len;
    stream(copy, b->len);
    /* the raw input also as a lone CBOR item (the decoder must not care where it came from) */
    g_lo = copy;
    g_hi = copy + b->len;
    cbor_val raw = { copy, copy + b->len };
    bool valid = cbor_valid(raw);
    CHECK(valid == (ref_item(copy, copy + b->len, 0) == copy + b->len));
    if (valid) {
        st.valid_raw++;
        walk(raw, 0);
    }
    free(copy);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    size_t max_big = argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : SIZE_MAX;
    g_rng = seed;
    /* a sanitizer report shows the input too: through its death callback, or the abort
     * that abort_on_error=1 makes of it */
    __sanitizer_set_death_callback(dump_input);
    signal(SIGABRT, on_abort);
    build_corpus();

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bytes b = { 0 };
    size_t bigs = 0;
    for (size_t i = 0; i < max_big && big_input(i, &b) && st.inputs < n; i++, bigs++) {
        g_iter = st.inputs;
        run_one(&b);
    }
    struct timespec tb;
    clock_gettime(CLOCK_MONOTONIC, &tb);
    double big_secs = (double)(tb.tv_sec - t0.tv_sec) + (double)(tb.tv_nsec - t0.tv_nsec) / 1e9;
    while (st.inputs < n) {
        g_iter = st.inputs;
        make_input(&b);
        run_one(&b);
        if (st.inputs % 1000000 == 0) {
            fprintf(stderr, "  %" PRIu64 " inputs\n", st.inputs);
        }
    }
    free(b.d);
    for (size_t i = 0; i < g_ncorpus; i++)
        free(g_corpus[i].d);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

    printf("cbor_fuzz: %" PRIu64 " inputs, %.1f MiB, seed %" PRIu64 ", %.1f s, %.0f inputs/s"
           " (of which %zu large inputs of up to 4 MiB: %.1f s)\n",
           st.inputs, (double)st.bytes / (1 << 20), seed, secs, (double)st.inputs / secs, bigs, big_secs);
    printf("  frames %" PRIu64 ", bad length %" PRIu64 ", bodies ok %" PRIu64 ", bad version %" PRIu64
           ", malformed %" PRIu64 "\n", st.frames, st.bad_length, st.body_ok, st.bad_version, st.malformed);
    printf("  exec.request parsed %" PRIu64 " / refused %" PRIu64 ", core.configure parsed %" PRIu64
           " / refused %" PRIu64 ", raw inputs that are valid CBOR %" PRIu64 "\n",
           st.exec_ok, st.exec_refused, st.config_ok, st.config_refused, st.valid_raw);
    printf("  findings: 0 (sanitizers and invariants)\n");
    return 0;
}

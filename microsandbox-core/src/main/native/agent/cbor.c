#include "cbor.h"

#include <stdlib.h>
#include <string.h>

/* Nesting limit for cbor_skip; protocol messages are at most a few levels deep. */
#define CBOR_MAX_DEPTH 16

void cbor_buf_free(cbor_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void cbor_put_raw(cbor_buf *b, const void *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            b->oom = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_head(cbor_buf *b, uint8_t major, uint64_t v)
{
    uint8_t h[9];
    size_t n;
    major <<= 5;
    if (v < 24) {
        h[0] = major | (uint8_t)v;
        n = 1;
    } else if (v <= 0xff) {
        h[0] = major | 24;
        h[1] = (uint8_t)v;
        n = 2;
    } else if (v <= 0xffff) {
        h[0] = major | 25;
        h[1] = (uint8_t)(v >> 8);
        h[2] = (uint8_t)v;
        n = 3;
    } else if (v <= 0xffffffffu) {
        h[0] = major | 26;
        for (int i = 0; i < 4; i++)
            h[1 + i] = (uint8_t)(v >> (24 - 8 * i));
        n = 5;
    } else {
        h[0] = major | 27;
        for (int i = 0; i < 8; i++)
            h[1 + i] = (uint8_t)(v >> (56 - 8 * i));
        n = 9;
    }
    cbor_put_raw(b, h, n);
}

void cbor_put_map(cbor_buf *b, size_t pairs) { put_head(b, 5, pairs); }
void cbor_put_array(cbor_buf *b, size_t items) { put_head(b, 4, items); }
void cbor_put_uint(cbor_buf *b, uint64_t v) { put_head(b, 0, v); }

void cbor_put_int(cbor_buf *b, int64_t v)
{
    if (v >= 0)
        put_head(b, 0, (uint64_t)v);
    else
        put_head(b, 1, (uint64_t)(-(v + 1)));
}

/* The length of the well-formed UTF-8 sequence at p (at most n bytes), or 0: no overlong
 * forms, surrogates or code points past U+10FFFF (RFC 3629), as the host's decoder requires. */
static size_t utf8_sequence(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : len;
}

/* A text string; a byte that is not part of well-formed UTF-8 (a message cut mid-character,
 * a name from the guest's files) goes as '?': the host ends a sandbox whose agent sends text
 * that is not UTF-8. The length stays n. */
void cbor_put_textn(cbor_buf *b, const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    put_head(b, 3, n);
    size_t i = 0;
    while (i < n) {
        size_t valid = i, k;
        while (valid < n && (k = utf8_sequence(p + valid, n - valid)) > 0)
            valid += k;
        cbor_put_raw(b, p + i, valid - i);
        if (valid < n) {
            cbor_put_raw(b, "?", 1);
            valid++;
        }
        i = valid;
    }
}

void cbor_put_text(cbor_buf *b, const char *s) { cbor_put_textn(b, s, strlen(s)); }

void cbor_put_bytes(cbor_buf *b, const void *p, size_t n)
{
    put_head(b, 2, n);
    cbor_put_raw(b, p, n);
}

void cbor_put_bool(cbor_buf *b, bool v)
{
    uint8_t c = v ? 0xf5 : 0xf4;
    cbor_put_raw(b, &c, 1);
}

void cbor_put_null(cbor_buf *b)
{
    uint8_t c = 0xf6;
    cbor_put_raw(b, &c, 1);
}

bool cbor_head_read(cbor_val v, cbor_head *h)
{
    const uint8_t *p = v.p;
    if (!p || p >= v.end)
        return false;
    uint8_t major = *p >> 5, info = *p & 0x1f;
    p++;
    uint64_t n;
    if (info < 24) {
        n = info;
    } else if (info <= 27) {
        size_t len = (size_t)1 << (info - 24);
        if ((size_t)(v.end - p) < len)
            return false;
        n = 0;
        for (size_t i = 0; i < len; i++)
            n = (n << 8) | p[i];
        p += len;
    } else {
        return false; /* reserved or indefinite length */
    }
    h->n = n;
    h->str = NULL;
    switch (major) {
    case 0: h->type = CBOR_UINT; break;
    case 1: h->type = CBOR_NINT; break;
    case 2:
    case 3:
        h->type = major == 2 ? CBOR_BYTES : CBOR_TEXT;
        if (n > (uint64_t)(v.end - p))
            return false;
        h->str = p;
        p += n;
        break;
    case 4: h->type = CBOR_ARRAY; break;
    case 5: h->type = CBOR_MAP; break;
    case 7:
        if (info == 20 || info == 21) {
            h->type = CBOR_BOOL;
            h->n = info == 21;
        } else if (info == 22) {
            h->type = CBOR_NULL;
        } else {
            return false; /* undefined, floats, simple values */
        }
        break;
    default:
        return false; /* tags */
    }
    h->next = p;
    return true;
}

static bool skip_depth(cbor_val v, cbor_val *after, int depth)
{
    cbor_head h;
    if (depth > CBOR_MAX_DEPTH || !cbor_head_read(v, &h))
        return false;
    cbor_val cur = { h.next, v.end };
    if (h.type == CBOR_ARRAY || h.type == CBOR_MAP) {
        uint64_t items = h.n;
        if (h.type == CBOR_MAP) {
            if (items > UINT64_MAX / 2)
                return false;
            items *= 2;
        }
        /* every item takes at least one byte, which bounds the loop by the input size */
        if (items > (uint64_t)(v.end - cur.p))
            return false;
        for (uint64_t i = 0; i < items; i++)
            if (!skip_depth(cur, &cur, depth + 1))
                return false;
    }
    *after = cur;
    return true;
}

bool cbor_skip(cbor_val v, cbor_val *after) { return skip_depth(v, after, 0); }

bool cbor_valid(cbor_val v)
{
    cbor_val after;
    return cbor_skip(v, &after) && after.p == v.end;
}

bool cbor_iter_init(cbor_val v, cbor_iter *it)
{
    cbor_head h;
    if (!cbor_head_read(v, &h) || (h.type != CBOR_ARRAY && h.type != CBOR_MAP))
        return false;
    it->cur.p = h.next;
    it->cur.end = v.end;
    it->left = h.n;
    it->is_map = h.type == CBOR_MAP;
    return true;
}

bool cbor_iter_next(cbor_iter *it, cbor_val *key_or_elem, cbor_val *val)
{
    if (it->left == 0)
        return false;
    *key_or_elem = it->cur;
    if (!cbor_skip(it->cur, &it->cur))
        goto bad;
    if (it->is_map) {
        *val = it->cur;
        if (!cbor_skip(it->cur, &it->cur))
            goto bad;
    }
    it->left--;
    return true;
bad:
    it->left = 0;
    return false;
}

bool cbor_map_get(cbor_val map, const char *key, cbor_val *out)
{
    cbor_iter it;
    cbor_val k, v;
    size_t klen = strlen(key);
    if (!cbor_iter_init(map, &it) || !it.is_map)
        return false;
    while (cbor_iter_next(&it, &k, &v)) {
        const char *s;
        size_t n;
        if (cbor_get_text(k, &s, &n) && n == klen && memcmp(s, key, n) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

bool cbor_get_text(cbor_val v, const char **s, size_t *len)
{
    cbor_head h;
    if (!cbor_head_read(v, &h) || h.type != CBOR_TEXT)
        return false;
    *s = (const char *)h.str;
    *len = h.n;
    return true;
}

char *cbor_dup_text(cbor_val v)
{
    const char *s;
    size_t n;
    if (!cbor_get_text(v, &s, &n) || memchr(s, 0, n))
        return NULL;
    return strndup(s, n);
}

bool cbor_get_bytes(cbor_val v, const uint8_t **p, size_t *len)
{
    cbor_head h;
    if (!cbor_head_read(v, &h) || h.type != CBOR_BYTES)
        return false;
    *p = h.str;
    *len = h.n;
    return true;
}

bool cbor_get_uint(cbor_val v, uint64_t *out)
{
    cbor_head h;
    if (!cbor_head_read(v, &h) || h.type != CBOR_UINT)
        return false;
    *out = h.n;
    return true;
}

bool cbor_get_int(cbor_val v, int64_t *out)
{
    cbor_head h;
    if (!cbor_head_read(v, &h) || h.n > (uint64_t)INT64_MAX)
        return false;
    if (h.type == CBOR_UINT)
        *out = (int64_t)h.n;
    else if (h.type == CBOR_NINT)
        *out = -1 - (int64_t)h.n;
    else
        return false;
    return true;
}

bool cbor_get_bool(cbor_val v, bool *out)
{
    cbor_head h;
    if (!cbor_head_read(v, &h) || h.type != CBOR_BOOL)
        return false;
    *out = h.n != 0;
    return true;
}

bool cbor_is_null(cbor_val v)
{
    cbor_head h;
    return cbor_head_read(v, &h) && h.type == CBOR_NULL;
}

/* Minimal CBOR (RFC 8949) for the agent protocol: definite-length maps, arrays, text,
 * bytes, unsigned/negative integers, bool and null. Indefinite lengths, tags and floats
 * are rejected by the decoder (the host never sends them). */
#ifndef MSB_CBOR_H
#define MSB_CBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- encoder: appends to a growable buffer; any allocation failure sets oom ---- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
    bool oom;
} cbor_buf;

void cbor_buf_free(cbor_buf *b);
void cbor_put_raw(cbor_buf *b, const void *p, size_t n);
void cbor_put_map(cbor_buf *b, size_t pairs);
void cbor_put_array(cbor_buf *b, size_t items);
void cbor_put_uint(cbor_buf *b, uint64_t v);
void cbor_put_int(cbor_buf *b, int64_t v);
void cbor_put_text(cbor_buf *b, const char *s);
void cbor_put_textn(cbor_buf *b, const char *s, size_t n);
void cbor_put_bytes(cbor_buf *b, const void *p, size_t n);
void cbor_put_bool(cbor_buf *b, bool v);
void cbor_put_null(cbor_buf *b);

/* ---- decoder: a value is a bounded byte range starting at one encoded item ---- */

typedef enum {
    CBOR_UINT, CBOR_NINT, CBOR_BYTES, CBOR_TEXT, CBOR_ARRAY, CBOR_MAP,
    CBOR_BOOL, CBOR_NULL
} cbor_type;

typedef struct {
    const uint8_t *p, *end; /* p: start of the item; end: end of the enclosing buffer */
} cbor_val;

typedef struct {
    cbor_type type;
    uint64_t n;             /* integer value, string length, or element/pair count */
    const uint8_t *str;     /* string contents (BYTES/TEXT) */
    const uint8_t *next;    /* first byte after the head (and string contents) */
} cbor_head;

/* Decodes the head of the item at v. Returns false on malformed/unsupported input. */
bool cbor_head_read(cbor_val v, cbor_head *h);
/* Returns the value following the complete item at v (nested items included). */
bool cbor_skip(cbor_val v, cbor_val *after);
/* Checks that v holds exactly one well-formed item spanning the whole buffer. */
bool cbor_valid(cbor_val v);

/* Map lookup by text key; false if v is not a map or has no such key. */
bool cbor_map_get(cbor_val map, const char *key, cbor_val *out);
/* Iteration over maps/arrays: it starts after the head; each call yields the next
 * element (arrays) or key and value (maps). */
typedef struct {
    cbor_val cur;
    uint64_t left;
    bool is_map;
} cbor_iter;
bool cbor_iter_init(cbor_val v, cbor_iter *it);
bool cbor_iter_next(cbor_iter *it, cbor_val *key_or_elem, cbor_val *val);

/* Typed accessors: false if the value has another type (or is out of range). */
bool cbor_get_text(cbor_val v, const char **s, size_t *len);
/* Copies text into a fresh NUL-terminated string; NULL on type error, embedded NUL or OOM. */
char *cbor_dup_text(cbor_val v);
bool cbor_get_bytes(cbor_val v, const uint8_t **p, size_t *len);
bool cbor_get_uint(cbor_val v, uint64_t *out);
bool cbor_get_int(cbor_val v, int64_t *out);
bool cbor_get_bool(cbor_val v, bool *out);
bool cbor_is_null(cbor_val v);

#endif

/* core.restore: what a guest resumed from a memory checkpoint must redo, because it now runs
 * beside its siblings and later than it believes (docs/protocol.md, "Restore"). */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define RESTORE_ENTROPY_MAX 512

/* Mixes the host's bytes into the input pool and forces the CRNG to reseed from it now: a
 * plain write only mixes, and the kernel would keep serving the checkpoint's key (shared with
 * every sibling restored from it) until its next scheduled reseed, up to a minute later. */
static int reseed(const uint8_t *bytes, size_t len, char *msg, size_t msglen)
{
    struct {
        struct rand_pool_info info;
        uint8_t buf[RESTORE_ENTROPY_MAX];
    } req;
    req.info.entropy_count = (int)(len * 8);
    req.info.buf_size = (int)len;
    memcpy(req.buf, bytes, len);
    int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(msg, msglen, "open /dev/urandom: %s", strerror(errno));
        return -errno;
    }
    int rc = 0;
    if (ioctl(fd, RNDADDENTROPY, &req.info) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0) {
        rc = -errno;
        snprintf(msg, msglen, "reseeding the entropy pool: %s", strerror(errno));
    }
    explicit_bzero(&req, sizeof req);
    close(fd);
    return rc;
}

void do_restore(cbor_val p)
{
    char msg[256] = "";
    const char *stage = "restore";
    cbor_val v;
    const uint8_t *entropy;
    size_t elen;
    uint64_t realtime_ns;
    int rc = 0;
    if (!cbor_map_get(p, "entropy", &v) || !cbor_get_bytes(v, &entropy, &elen) || elen < 32 || elen > RESTORE_ENTROPY_MAX) {
        snprintf(msg, sizeof msg, "entropy must be 32 to %d bytes", RESTORE_ENTROPY_MAX);
        rc = -EINVAL;
    } else if (!cbor_map_get(p, "realtime_ns", &v) || !cbor_get_uint(v, &realtime_ns)) {
        snprintf(msg, sizeof msg, "realtime_ns must be an unsigned integer");
        rc = -EINVAL;
    }
    if (rc == 0)
        rc = reseed(entropy, elen, msg, sizeof msg);
    if (rc == 0) {
        struct timespec ts = { .tv_sec = (time_t)(realtime_ns / 1000000000u), .tv_nsec = (long)(realtime_ns % 1000000000u) };
        if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
            rc = -errno;
            snprintf(msg, sizeof msg, "clock_settime: %s", strerror(errno));
        }
    }
    char *hostname = NULL;
    if (rc == 0 && opt_text(p, "hostname", HOSTNAME_MAX + 1, &hostname, msg, sizeof msg) < 0)
        rc = -EINVAL;
    if (rc == 0 && hostname) {
        if (sethostname(hostname, strlen(hostname)) < 0) {
            rc = -errno;
            snprintf(msg, sizeof msg, "sethostname: %s", strerror(errno));
        }
    }
    free(hostname);
    if (rc < 0) {
        logmsg("restore failed: %s", msg);
        send_error(0, stage, msg, -rc);
        return;
    }
    /* the same identity as the hello, which a restored guest never sends again */
    struct utsname uts;
    bool have_uts = uname(&uts) == 0;
    cbor_buf *b = frame_begin(0, 0, "core.restored", 1 + identity_pairs(have_uts));
    put_identity(b, have_uts ? &uts : NULL);
    cbor_put_text(b, "restored_time_ns");
    cbor_put_uint(b, now_boottime_ns());
    frame_end();
}

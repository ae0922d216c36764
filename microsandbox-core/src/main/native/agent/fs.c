/* Filesystem operations (fs.request, docs/protocol.md "Filesystem session").
 *
 * Every operation runs in a child of the agent, forked by exec.c like a command, that has
 * taken the requested user's identity: a file written as a user belongs to that user, and
 * what the user may not touch fails with EACCES. The child's fd 0 is the data the host
 * sends (fs.write), fd 1 the data it reads (fs.read), both through the session's windows,
 * and fd 2 the result: one CBOR map, written before it exits (status 0: fs.result, else
 * fs.error). A slow transfer or a huge tree never blocks the agent's event loop.
 */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define IO_CHUNK (256u * 1024)

/* ---- parsing (no system calls) ---- */

static bool fs_flag(cbor_val p, const char *key)
{
    cbor_val v;
    bool b;
    return cbor_map_get(p, key, &v) && cbor_get_bool(v, &b) && b;
}

static const char *const OPS[] = { "read", "write", "list", "stat", "mkdir", "remove", "rmdir",
                                   "rename", "copy", "symlink", NULL };

int fs_args_parse(cbor_val p, fs_args *a, char *msg, size_t msglen)
{
    cbor_val v;
    const char *s;
    size_t n;
    uint64_t u;
    memset(a, 0, sizeof *a);
    a->window = DEFAULT_OUTPUT_WINDOW;
    a->follow = true;
    if (!cbor_map_get(p, "op", &v) || !cbor_get_text(v, &s, &n) || n >= sizeof a->op) {
        snprintf(msg, msglen, "op missing or not text");
        return -1;
    }
    memcpy(a->op, s, n);
    a->op[n] = 0;
    bool known = false;
    for (int i = 0; OPS[i]; i++)
        known |= strcmp(OPS[i], a->op) == 0;
    if (!known) {
        snprintf(msg, msglen, "unknown op %s", a->op);
        return -1;
    }
    if (opt_text(p, "path", PATH_BUF, &a->path, msg, msglen) < 0 ||
        opt_text(p, "to", PATH_BUF, &a->to, msg, msglen) < 0 ||
        opt_text(p, "target", PATH_BUF, &a->target, msg, msglen) < 0 ||
        opt_text(p, "user", USER_SPEC_BUF, &a->user, msg, msglen) < 0)
        goto bad;
    if (!a->path || !a->path[0]) {
        snprintf(msg, msglen, "path missing or empty");
        goto bad;
    }
    if ((strcmp(a->op, "rename") == 0 || strcmp(a->op, "copy") == 0) && (!a->to || !a->to[0])) {
        snprintf(msg, msglen, "%s needs to", a->op);
        goto bad;
    }
    if (strcmp(a->op, "symlink") == 0 && !a->target) {
        snprintf(msg, msglen, "symlink needs target");
        goto bad;
    }
    if (cbor_map_get(p, "mode", &v) && !cbor_is_null(v)) {
        if (!cbor_get_uint(v, &u) || u > 07777) {
            snprintf(msg, msglen, "mode must be an unsigned integer up to 07777");
            goto bad;
        }
        a->has_mode = true;
        a->mode = (uint32_t)u;
    }
    if (opt_window(p, &a->window, msg, msglen) < 0)
        goto bad;
    a->parents = fs_flag(p, "parents");
    a->recursive = fs_flag(p, "recursive");
    a->append = fs_flag(p, "append");
    a->exclusive = fs_flag(p, "exclusive");
    if (cbor_map_get(p, "follow", &v) && cbor_get_bool(v, &a->follow) == false)
        a->follow = true;
    return 0;
bad:
    fs_args_free(a);
    return -1;
}

void fs_args_free(fs_args *a)
{
    free(a->path);
    free(a->to);
    free(a->target);
    free(a->user);
    a->path = a->to = a->target = a->user = NULL;
}

bool fs_op_reads_stdin(const fs_args *a)
{
    return strcmp(a->op, "write") == 0;
}

/* ---- the child ---- */

static cbor_buf g_res;

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(3); /* the agent is gone or killed the session */
        p += w;
        n -= (size_t)w;
    }
}

static const char *err_kind(int err)
{
    switch (err) {
    case ENOENT: return "not_found";
    case EACCES: case EPERM: return "permission_denied";
    case EROFS: return "read_only";
    case EEXIST: return "exists";
    case EISDIR: return "is_directory";
    case ENOTDIR: return "not_directory";
    case ENOTEMPTY: return "not_empty";
    case ENOSPC: case EDQUOT: return "no_space";
    default: return "other";
    }
}

/* What a write cut short puts back, on a failure or a cancel (exec.c sends SIGTERM before
 * it kills): a replacing write's temporary is removed, an append cuts the file back to its
 * size before. */
static char g_tmp_path[PATH_BUF + 32];
static volatile sig_atomic_t g_tmp_live;
static volatile int g_append_fd = -1;
/* The file an exclusive write in place made (at g_tmp_path), removed should the write fail. */
static volatile sig_atomic_t g_created;
static dev_t g_created_dev;
static ino_t g_created_ino;
static volatile off_t g_append_size;
/* Bytes pump() wrote so far. */
static volatile uint64_t g_pumped;

static void put_back(void)
{
    struct stat st;
    if (g_created) {
        /* only while the name still leads to the file made: the guest may have put another there */
        if (lstat(g_tmp_path, &st) == 0 && st.st_dev == g_created_dev && st.st_ino == g_created_ino)
            unlink(g_tmp_path);
        g_created = 0;
    } else if (g_tmp_live) {
        unlink(g_tmp_path);
        g_tmp_live = 0;
    } else if (g_append_fd >= 0) {
        /* cut back only when the file holds nothing but this append after its old end: a
         * process of the guest appending meanwhile keeps its lines (and this append stays) */
        if (fstat(g_append_fd, &st) == 0 && (uint64_t)st.st_size == (uint64_t)g_append_size + g_pumped) {
            int cut = ftruncate(g_append_fd, g_append_size); /* failing, nothing more can be put back */
            (void)cut;
        }
        g_append_fd = -1;
    }
}

static void __attribute__((noreturn)) abandon_write(int sig)
{
    (void)sig;
    put_back();
    _exit(3);
}

static void block_term(bool block)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

static void __attribute__((noreturn)) fail(const char *op, const char *path, int err)
{
    put_back();
    char msg[PATH_BUF + 256];
    snprintf(msg, sizeof msg, "%s %s: %s", op, path, strerror(err));
    g_res.len = 0;
    g_res.oom = false;
    cbor_put_map(&g_res, 4);
    cbor_put_text(&g_res, "kind");
    cbor_put_text(&g_res, err_kind(err));
    cbor_put_text(&g_res, "errno");
    cbor_put_int(&g_res, err);
    cbor_put_text(&g_res, "message");
    cbor_put_bytes(&g_res, msg, strlen(msg)); /* paths need not be UTF-8 */
    cbor_put_text(&g_res, "path");
    cbor_put_bytes(&g_res, path, strlen(path));
    if (!g_res.oom)
        write_all(2, g_res.data, g_res.len);
    _exit(1);
}

static void __attribute__((noreturn)) done(void)
{
    if (g_res.oom)
        fail("result", "", ENOMEM);
    write_all(2, g_res.data, g_res.len);
    _exit(0);
}

static const char *kind_of(mode_t m)
{
    return S_ISREG(m) ? "file" : S_ISDIR(m) ? "directory" : S_ISLNK(m) ? "symlink" : "other";
}

/* Puts the pairs describing st (5, or 6 with a symlink target). */
static size_t stat_pairs(const struct stat *st, const char *linkpath, int dirfd, char *target, size_t tcap)
{
    ssize_t tl = -1;
    if (S_ISLNK(st->st_mode))
        tl = readlinkat(dirfd, linkpath, target, tcap - 1);
    cbor_put_text(&g_res, "kind");
    cbor_put_text(&g_res, kind_of(st->st_mode));
    cbor_put_text(&g_res, "size");
    cbor_put_uint(&g_res, (uint64_t)st->st_size);
    cbor_put_text(&g_res, "mode");
    cbor_put_uint(&g_res, st->st_mode & 07777);
    cbor_put_text(&g_res, "mtime_ms");
    cbor_put_int(&g_res, (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000);
    cbor_put_text(&g_res, "uid");
    cbor_put_uint(&g_res, st->st_uid);
    cbor_put_text(&g_res, "gid");
    cbor_put_uint(&g_res, st->st_gid);
    if (tl >= 0) {
        cbor_put_text(&g_res, "target");
        cbor_put_bytes(&g_res, target, (size_t)tl);
        return 7;
    }
    return 6;
}

/* Cuts path (in place) to the directory that holds it; false when it names none ("/", or a
 * name without a slash, which lies in the working directory), leaving it as it is. */
static bool cut_to_parent(char *path)
{
    char *slash = strrchr(path, '/');
    if (!slash || (slash == path && path[1] == 0))
        return false;
    if (slash == path)
        path[1] = 0;
    else
        *slash = 0;
    return true;
}

/* syncfs through the directory that holds path: the change is on disk when we answer. */
static void sync_parent(const char *path)
{
    char dir[PATH_BUF];
    snprintf(dir, sizeof dir, "%s", path);
    if (!cut_to_parent(dir) && dir[0] != '/')
        strcpy(dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        syncfs(fd);
        close(fd);
    }
}

static void op_read(const fs_args *a)
{
    int fd = open(a->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        fail("read", a->path, errno);
    struct stat st;
    if (fstat(fd, &st) < 0)
        fail("read", a->path, errno);
    if (S_ISDIR(st.st_mode))
        fail("read", a->path, EISDIR);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    uint8_t *buf = malloc(IO_CHUNK);
    if (!buf)
        fail("read", a->path, ENOMEM);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, IO_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail("read", a->path, errno);
        if (n == 0)
            break;
        write_all(1, buf, (size_t)n);
        total += (uint64_t)n;
    }
    close(1); /* EOF of the data before the result */
    cbor_put_map(&g_res, 1);
    cbor_put_text(&g_res, "size");
    cbor_put_uint(&g_res, total);
    done();
}

/* Copies from into to until from's end, failing as op on path; returns the byte count. */
static uint64_t pump(int from, int to, const char *op, const char *path)
{
    static uint8_t buf[IO_CHUNK];
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(from, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail(op, path, errno);
        if (n == 0)
            return total;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(to, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                fail(op, path, errno);
            off += w;
            g_pumped += (uint64_t)w;
        }
        total += (uint64_t)n;
    }
}

static void __attribute__((noreturn)) written(int fd, const char *path, uint64_t total)
{
    /* a cancel from here on comes too late: the data is the file's, and reported so */
    block_term(true);
    if (fd >= 0 && (fsync(fd) < 0 || close(fd) < 0))
        fail("write", path, errno);
    g_append_fd = -1;
    g_created = 0; /* an exclusive write in place: the file it made stays */
    sync_parent(path);
    cbor_put_map(&g_res, 1);
    cbor_put_text(&g_res, "size");
    cbor_put_uint(&g_res, total);
    done();
}

/* Writes into the file itself: appends, and replacements a temporary cannot make (see op_write).
 * An exclusive one creates the file, and removes it again should the write fail. */
static void __attribute__((noreturn)) write_in_place(const fs_args *a)
{
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | (a->exclusive ? O_EXCL : a->append ? O_APPEND : O_TRUNC);
    /* a cancel between the exclusive open and the note of what it made would leave the file
     * (an ordinary open may wait for a fifo's reader: a cancel must end that wait) */
    if (a->exclusive)
        block_term(true);
    int fd = open(a->path, flags, a->has_mode ? a->mode : 0644);
    struct stat made;
    if (fd >= 0 && a->exclusive && fstat(fd, &made) == 0) {
        snprintf(g_tmp_path, sizeof g_tmp_path, "%s", a->path);
        g_created_dev = made.st_dev;
        g_created_ino = made.st_ino;
        g_created = 1;
    }
    if (a->exclusive)
        block_term(false);
    if (fd < 0)
        fail("write", a->path, errno);
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode))
        fail("write", a->path, S_ISDIR(st.st_mode) ? EISDIR : EINVAL);
    if (a->has_mode && fchmod(fd, a->mode) < 0)
        fail("write", a->path, errno);
    if (a->append && !a->exclusive) {
        g_append_size = st.st_size;
        g_append_fd = fd;
    }
    uint64_t total = pump(0, fd, "write", a->path);
    written(fd, a->path, total);
}

/* The temporary for target (a name of this worker's beside it; another when a worker killed
 * before it could clean up, or the guest, left that one), with the owner and group target has
 * (when it exists); -1 with errno when it cannot be made so (EPERM: not with that owner). */
static int open_temporary(const char *target, const struct stat *existing)
{
    const char *slash = strrchr(target, '/');
    int dirlen = slash ? (int)(slash - target) + 1 : 0;
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < 16; attempt++) {
        snprintf(g_tmp_path, sizeof g_tmp_path, "%.*s.msb-write-%ld-%d", dirlen, target, (long)getpid(), attempt);
        block_term(true);
        fd = open(g_tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
        g_tmp_live = fd >= 0;
        block_term(false);
        if (fd < 0 && errno != EEXIST)
            return -1;
    }
    struct stat made;
    if (fd >= 0 && existing && fstat(fd, &made) == 0 &&
        (made.st_uid != existing->st_uid || made.st_gid != existing->st_gid) &&
        fchown(fd, existing->st_uid, existing->st_gid) < 0) {
        close(fd);
        put_back();
        errno = EPERM;
        return -1;
    }
    return fd;
}

/* rename(from, to) failing with EEXIST where to exists; through a second link where the
 * filesystem has no RENAME_NOREPLACE (9p), else (no hard links either) a look, then a rename. */
static int rename_no_replace(const char *from, const char *to)
{
    if (syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, 1 /* RENAME_NOREPLACE */) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    if (link(from, to) == 0) {
        unlink(from);
        return 0;
    }
    if (errno != EPERM && errno != EOPNOTSUPP)
        return -1;
    struct stat st;
    if (lstat(to, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(from, to);
}

/*
 * A replacing write is whole or nothing: the data goes to a temporary beside the file,
 * renamed over it once complete, so a transfer cut short (a failure, the host's cancel, a
 * client gone) leaves the file as it was. The replacement keeps the file's owner, group and
 * mode (unless a mode is given); a link is followed to the file it leads to. Written in
 * place instead: an append, a file with a second name (which must keep seeing the data), a
 * dangling link, a file whose owner or group the temporary cannot be given, a directory this
 * user may not add to. A fifo or device is refused (EINVAL; opening a fifo waits for its reader).
 */
static void op_write(const fs_args *a)
{
    struct sigaction sa = { .sa_handler = abandon_write };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    if (a->append)
        write_in_place(a);
    char target[PATH_BUF];
    struct stat st;
    bool exists = lstat(a->path, &st) == 0;
    if (exists && a->exclusive)
        fail("write", a->path, EEXIST); /* a link too, dangling or not: open(O_EXCL) would refuse it */
    if (exists && S_ISLNK(st.st_mode)) {
        if (!realpath(a->path, target) || stat(target, &st) < 0)
            write_in_place(a); /* a dangling link: creating its file goes through it */
    } else {
        snprintf(target, sizeof target, "%s", a->path);
    }
    if (exists && (!S_ISREG(st.st_mode) || st.st_nlink > 1))
        write_in_place(a);
    if (exists && faccessat(AT_FDCWD, target, W_OK, AT_EACCESS) < 0)
        fail("write", a->path, errno);
    int fd = open_temporary(target, exists ? &st : NULL);
    if (fd < 0 && (errno == EACCES || errno == EPERM || errno == EROFS || errno == ENAMETOOLONG))
        write_in_place(a); /* a directory the user may not add to (or read-only, a file mounted writable in it); another user's file or group */
    if (fd < 0)
        fail("write", a->path, errno); /* a full disk or inode table: not a reason to truncate the file */
    uint64_t total = pump(0, fd, "write", a->path);
    if (fchmod(fd, a->has_mode ? a->mode : exists ? st.st_mode & 07777 : 0644) < 0 || fsync(fd) < 0 || close(fd) < 0)
        fail("write", a->path, errno);
    block_term(true);
    if (a->exclusive) {
        /* never over a file made meanwhile (by the guest, or another write) */
        if (rename_no_replace(g_tmp_path, target) < 0)
            fail("write", a->path, errno);
    } else if (rename(g_tmp_path, target) < 0) {
        if (errno != EBUSY)
            fail("write", a->path, errno);
        /* a file mounted over its name (a bind mount) cannot be renamed over: copied into, in
         * place (not whole or nothing); should that fail, the temporary keeps the whole data */
        g_tmp_live = 0;
        int in = open(g_tmp_path, O_RDONLY | O_CLOEXEC);
        int out = in < 0 ? -1 : open(target, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY);
        if (out < 0)
            fail("write", a->path, errno);
        pump(in, out, "write", a->path);
        unlink(g_tmp_path);
        written(out, target, total);
    }
    g_tmp_live = 0;
    written(-1, target, total);
}

static void op_list(const fs_args *a)
{
    int dfd = open(a->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        fail("list", a->path, errno);
    DIR *d = fdopendir(dfd);
    if (!d)
        fail("list", a->path, errno);
    /* count first: a CBOR array needs its length up front */
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            count++;
    rewinddir(d);
    cbor_put_map(&g_res, 1);
    cbor_put_text(&g_res, "entries");
    cbor_put_array(&g_res, count);
    size_t put = 0;
    static char target[PATH_BUF];
    while (put < count && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        struct stat st;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            memset(&st, 0, sizeof st); /* removed meanwhile: reported as "other" of size 0 */
        cbor_put_map(&g_res, (S_ISLNK(st.st_mode) ? 8 : 7));
        cbor_put_text(&g_res, "name");
        cbor_put_bytes(&g_res, e->d_name, strlen(e->d_name));
        size_t pairs = stat_pairs(&st, e->d_name, dfd, target, sizeof target);
        if (S_ISLNK(st.st_mode) && pairs == 6) {
            /* unreadable link: keep the map's announced size */
            cbor_put_text(&g_res, "target");
            cbor_put_bytes(&g_res, "", 0);
        }
        put++;
        if (g_res.len > FS_RESULT_MAX - 65536)
            fail("list", a->path, E2BIG);
    }
    /* entries removed between the two passes: pad so the array keeps its length */
    for (; put < count; put++) {
        cbor_put_map(&g_res, 1);
        cbor_put_text(&g_res, "name");
        cbor_put_bytes(&g_res, "", 0);
    }
    done();
}

static void op_stat(const fs_args *a)
{
    struct stat st;
    if ((a->follow ? stat(a->path, &st) : lstat(a->path, &st)) < 0)
        fail("stat", a->path, errno);
    static char target[PATH_BUF];
    bool link = S_ISLNK(st.st_mode);
    cbor_put_map(&g_res, link ? 7 : 6);
    size_t pairs = stat_pairs(&st, a->path, AT_FDCWD, target, sizeof target);
    if (link && pairs == 6) {
        cbor_put_text(&g_res, "target");
        cbor_put_bytes(&g_res, "", 0);
    }
    done();
}

static void op_mkdir(const fs_args *a)
{
    mode_t mode = a->has_mode ? a->mode : 0755;
    if (a->parents) {
        char p[PATH_BUF];
        snprintf(p, sizeof p, "%s", a->path);
        for (char *s = p + 1; *s; s++) {
            if (*s != '/')
                continue;
            *s = 0;
            if (mkdir(p, 0755) < 0 && errno != EEXIST)
                fail("mkdir", p, errno);
            *s = '/';
        }
        if (mkdir(p, mode) < 0) {
            struct stat st;
            if (errno != EEXIST || stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
                fail("mkdir", a->path, errno == EEXIST ? EEXIST : errno);
        }
    } else if (mkdir(a->path, mode) < 0) {
        fail("mkdir", a->path, errno);
    }
    if (a->has_mode && chmod(a->path, a->mode) < 0)
        fail("mkdir", a->path, errno);
    sync_parent(a->path);
    cbor_put_map(&g_res, 0);
    done();
}

/* The mount points below a tree being walked (canonical paths, from /proc/self/mountinfo), so
 * that a recursive removal or copy stays on the tree's own filesystems. Device numbers cannot
 * tell: on the overlay root a file's st_dev is its layer's, not the directory's. */
#define MAX_MOUNTS_BELOW 256
static char g_walk_root[PATH_BUF];
static char *g_mounts_below[MAX_MOUNTS_BELOW];
static size_t g_mounts_below_n;

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape_mountinfo(char *s)
{
    char *out = s;
    for (char *in = s; *in; out++) {
        if (in[0] == '\\' && in[1] >= '0' && in[1] <= '3' && in[2] >= '0' && in[2] <= '7' && in[3] >= '0' && in[3] <= '7') {
            *out = (char)((in[1] - '0') << 6 | (in[2] - '0') << 3 | (in[3] - '0'));
            in += 4;
        } else {
            *out = *in++;
        }
    }
    *out = 0;
}

/* Sets g_walk_root to path, canonical, and finds the mount points strictly below it. */
static void find_mounts_below(const char *path)
{
    if (!realpath(path, g_walk_root))
        snprintf(g_walk_root, sizeof g_walk_root, "%s", path);
    size_t rootlen = strlen(g_walk_root);
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) >= 0 && g_mounts_below_n < MAX_MOUNTS_BELOW) {
        char *save = NULL, *field = strtok_r(line, " ", &save);
        for (int i = 1; field && i < 5; i++)
            field = strtok_r(NULL, " ", &save); /* the fifth field: the mount point */
        if (!field)
            continue;
        unescape_mountinfo(field);
        bool below = rootlen == 1 ? field[1] != 0
                                  : strncmp(field, g_walk_root, rootlen) == 0 && field[rootlen] == '/';
        if (below && (g_mounts_below[g_mounts_below_n] = strdup(field)))
            g_mounts_below_n++;
    }
    free(line);
    if (f)
        fclose(f);
}

/* Whether p (a path of the walk from g_walk_root) is a mount point found below it, or lies in one. */
static bool beyond_a_mount(const char *p)
{
    for (size_t i = 0; i < g_mounts_below_n; i++) {
        size_t n = strlen(g_mounts_below[i]);
        if (strncmp(p, g_mounts_below[i], n) == 0 && (p[n] == 0 || p[n] == '/'))
            return true;
    }
    return false;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (beyond_a_mount(p))
        return 0;
    if ((flag == FTW_DP ? rmdir(p) : unlink(p)) < 0)
        fail("remove", p, errno);
    return 0;
}

static void op_remove(const fs_args *a, bool dir)
{
    struct stat st;
    if (lstat(a->path, &st) < 0)
        fail(dir ? "rmdir" : "remove", a->path, errno);
    if (!dir) {
        if (S_ISDIR(st.st_mode))
            fail("remove", a->path, EISDIR);
        if (unlink(a->path) < 0)
            fail("remove", a->path, errno);
    } else if (!S_ISDIR(st.st_mode)) {
        fail("rmdir", a->path, ENOTDIR);
    } else if (a->recursive) {
        /* not into what is mounted below (a volume's host files): its mount point stays, and the
         * directory above it with it (not_empty) */
        find_mounts_below(a->path);
        if (nftw(g_walk_root, rm_entry, 32, FTW_DEPTH | FTW_PHYS) < 0)
            fail("rmdir", a->path, errno);
    } else if (rmdir(a->path) < 0) {
        fail("rmdir", a->path, errno);
    }
    sync_parent(a->path);
    cbor_put_map(&g_res, 0);
    done();
}

static void copy_file(const char *from, const char *to, const struct stat *st)
{
    int in = open(from, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (in < 0)
        fail("copy", from, errno);
    /* truncated only once it is known not to be the source (the same path spelt otherwise, a
     * hard link, a symlink to it): that would empty the file and report a copy */
    int out = open(to, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, st->st_mode & 07777);
    if (out < 0)
        fail("copy", to, errno);
    struct stat in_st, out_st;
    if (fstat(in, &in_st) < 0 || fstat(out, &out_st) < 0)
        fail("copy", to, errno);
    if (in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino)
        fail("copy onto its own source", to, EINVAL);
    if (ftruncate(out, 0) < 0)
        fail("copy", to, errno);
    pump(in, out, "copy", to);
    if (fchmod(out, st->st_mode & 07777) < 0 || fsync(out) < 0)
        fail("copy", to, errno);
    close(in);
    close(out);
}

static const char *g_copy_from, *g_copy_to;

static int copy_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (beyond_a_mount(p))
        return 0;
    char dst[PATH_BUF];
    if (snprintf(dst, sizeof dst, "%s%s", g_copy_to, p + strlen(g_copy_from)) >= (int)sizeof dst)
        fail("copy", p, ENAMETOOLONG);
    if (flag == FTW_D) {
        /* owner-writable while its entries are copied in: its own mode comes after them */
        if (mkdir(dst, 0700) < 0 && errno != EEXIST)
            fail("copy", dst, errno);
    } else if (flag == FTW_SL || flag == FTW_SLN) {
        static char target[PATH_BUF];
        ssize_t n = readlink(p, target, sizeof target - 1);
        if (n < 0)
            fail("copy", p, errno);
        target[n] = 0;
        if (symlink(target, dst) < 0)
            fail("copy", dst, errno);
    } else if (flag == FTW_F) {
        if (S_ISREG(st->st_mode))
            copy_file(p, dst, st);
    } else {
        fail("copy", p, errno ? errno : EACCES);
    }
    return 0;
}

/* The second walk of a directory's copy, contents first: each copied directory gets its mode. */
static int copy_dir_mode(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag != FTW_DP || beyond_a_mount(p))
        return 0;
    char dst[PATH_BUF];
    if (snprintf(dst, sizeof dst, "%s%s", g_copy_to, p + strlen(g_copy_from)) >= (int)sizeof dst)
        fail("copy", p, ENAMETOOLONG);
    /* a directory made in the source after the first walk has no copy: nothing to set */
    if (chmod(dst, st->st_mode & 07777) < 0 && errno != ENOENT)
        fail("copy", dst, errno);
    return 0;
}

/* path without trailing slashes ("/" stays): the walk names entries "path/name", and the
 * copy's names are the source's with to in place of path. */
static void without_trailing_slashes(char *out, const char *path)
{
    snprintf(out, PATH_BUF, "%s", path);
    for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--)
        out[n - 1] = 0;
}

/* Whether the copy's name to lies in the directory from (compared by device and inode up
 * to's existing parents, however either is spelt). */
static bool inside(const char *from, const char *to)
{
    struct stat src, up;
    char dir[PATH_BUF];
    if (stat(from, &src) < 0)
        return false;
    snprintf(dir, sizeof dir, "%s", to);
    do {
        if (stat(dir, &up) == 0 && up.st_dev == src.st_dev && up.st_ino == src.st_ino)
            return true;
    } while (cut_to_parent(dir));
    return false;
}

static void op_copy(const fs_args *a)
{
    static char from[PATH_BUF], to[PATH_BUF];
    without_trailing_slashes(from, a->path);
    without_trailing_slashes(to, a->to);
    struct stat st;
    if (lstat(from, &st) < 0)
        fail("copy", a->path, errno);
    size_t given = strlen(a->path);
    if (S_ISLNK(st.st_mode) && given > 1 && a->path[given - 1] == '/') {
        /* "link/" names the directory the link leads to, as the system calls read it */
        static char resolved[PATH_BUF];
        if (!realpath(from, resolved) || lstat(resolved, &st) < 0)
            fail("copy", a->path, errno);
        memcpy(from, resolved, sizeof from);
    }
    if (S_ISDIR(st.st_mode)) {
        if (inside(from, to))
            fail("copy", a->to, EINVAL); /* into itself */
        /* not into what is mounted below (a volume): the copy holds the directory's own tree */
        find_mounts_below(from);
        g_copy_from = g_walk_root;
        g_copy_to = to;
        if (nftw(g_walk_root, copy_entry, 32, FTW_PHYS) < 0 || nftw(g_walk_root, copy_dir_mode, 32, FTW_PHYS | FTW_DEPTH) < 0)
            fail("copy", a->path, errno);
    } else if (S_ISLNK(st.st_mode)) {
        g_copy_from = from;
        g_copy_to = to;
        copy_entry(from, &st, FTW_SL, NULL);
    } else if (S_ISREG(st.st_mode)) {
        copy_file(from, to, &st);
    } else {
        fail("copy", a->path, EINVAL);
    }
    sync_parent(to);
    cbor_put_map(&g_res, 0);
    done();
}

void __attribute__((noreturn)) fs_child_run(const fs_args *a)
{
    const char *op = a->op;
    if (!strcmp(op, "read"))
        op_read(a);
    else if (!strcmp(op, "write"))
        op_write(a);
    else if (!strcmp(op, "list"))
        op_list(a);
    else if (!strcmp(op, "stat"))
        op_stat(a);
    else if (!strcmp(op, "mkdir"))
        op_mkdir(a);
    else if (!strcmp(op, "remove"))
        op_remove(a, false);
    else if (!strcmp(op, "rmdir"))
        op_remove(a, true);
    else if (!strcmp(op, "rename")) {
        if (rename(a->path, a->to) < 0)
            fail("rename", a->path, errno);
        sync_parent(a->to);
        cbor_put_map(&g_res, 0);
        done();
    } else if (!strcmp(op, "copy"))
        op_copy(a);
    else if (!strcmp(op, "symlink")) {
        if (symlink(a->target, a->path) < 0)
            fail("symlink", a->path, errno);
        sync_parent(a->path);
        cbor_put_map(&g_res, 0);
        done();
    }
    fail(op, a->path, ENOSYS);
}

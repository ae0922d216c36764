/* Boot-time guest options: the configured mounts (9p shares, tmpfs, ext4 disks), the named
 * scripts under /.msb/scripts, and the privileges the restricted profile drops. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* 9p: the Linux protocol variant over virtio. QEMU's virtio transport carries at most
 * 512000-byte messages; 256 KiB keeps large reads and writes to a few round trips each. */
#define NINEP_OPTIONS "trans=virtio,version=9p2000.L,msize=262144,access=user"

static const char *kind_name(enum mount_kind k)
{
    return k == MOUNT_9P ? "9p" : k == MOUNT_TMPFS ? "tmpfs" : "ext4";
}

static int mount_one(const mount_spec *m, bool restricted, const user_info *owner,
                     const char **stage, char *msg, size_t msglen)
{
    unsigned long flags = (m->readonly ? MS_RDONLY : 0) | (m->noexec ? MS_NOEXEC : 0) |
                          (m->nosuid ? MS_NOSUID : 0) | (m->nodev ? MS_NODEV : 0);
    if (restricted)
        flags |= MS_NOSUID | MS_NODEV;
    char data[64], dev[64];
    const char *src = m->source, *type = kind_name(m->kind), *opts = NULL;
    int rc;
    errno = 0;
    switch (m->kind) {
    case MOUNT_9P:
        opts = NINEP_OPTIONS;
        break;
    case MOUNT_TMPFS:
        /* like /tmp: every guest user may create files, only owners remove them */
        if (m->size_mib)
            snprintf(data, sizeof data, "mode=1777,size=%um", m->size_mib);
        else
            snprintf(data, sizeof data, "mode=1777");
        src = "tmpfs";
        opts = data;
        break;
    case MOUNT_EXT4:
        if ((rc = find_disk(m->source, dev, sizeof dev)) < 0) {
            errno = -rc;
            FAIL("mount", "mount %s: no virtio-blk disk with serial %s", m->path, m->source);
        }
        src = dev;
        break;
    }
    if ((rc = mkdir_p(m->path, 0755)) < 0) {
        errno = -rc;
        FAIL("mount", "mount %s: cannot create the mount point: %s", m->path, strerror(errno));
    }
    if (mount(src, m->path, type, flags, opts) < 0) {
        /* A read-only disk whose journal needs recovery (the last run did not stop cleanly)
         * cannot replay it: mount it as of its last checkpoint instead. */
        if (!(m->kind == MOUNT_EXT4 && m->readonly && errno == EROFS && mount(src, m->path, type, flags, "noload") == 0))
            FAIL("mount", "mount %s (%s from %s): %s", m->path, type, src, strerror(errno));
        logmsg("mount %s: read-only without journal recovery (the disk was not unmounted cleanly)", m->path);
    }
    /* A non-root default user owns the root of a writable share or disk, so it can write
     * there; with 9p's mapped-xattr model this sets an xattr on the host directory, never
     * its real owner. */
    if (owner && !m->readonly && m->kind != MOUNT_TMPFS && chown(m->path, owner->uid, owner->gid) < 0)
        logmsg("mount %s: chown to %u:%u: %s", m->path, owner->uid, owner->gid, strerror(errno));
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The scripts go on their own tmpfs, made read-only once written: the image's own
 * /.msb (if any) is hidden, and a command cannot change what a later one runs. */
static int install_scripts(const agent_config *c, const char **stage, char *msg, size_t msglen)
{
    int rc;
    char path[PATH_BUF];
    errno = 0;
    if ((rc = mkdir_p(SCRIPTS_DIR, 0755)) < 0) {
        errno = -rc;
        FAIL("scripts", "cannot create " SCRIPTS_DIR ": %s", strerror(errno));
    }
    if (mount("tmpfs", SCRIPTS_DIR, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=2m") < 0)
        FAIL("scripts", "mount tmpfs on " SCRIPTS_DIR ": %s", strerror(errno));
    for (size_t i = 0; i < c->nscripts; i++) {
        const script_spec *s = &c->scripts[i];
        snprintf(path, sizeof path, SCRIPTS_DIR "/%s", s->name);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0755);
        if (fd < 0)
            FAIL("scripts", "create %s: %s", path, strerror(errno));
        if (write_all(fd, s->content, s->len) < 0 || fchmod(fd, 0755) < 0) {
            int err = errno;
            close(fd);
            errno = err;
            FAIL("scripts", "write %s: %s", path, strerror(errno));
        }
        close(fd);
    }
    if (mount(NULL, SCRIPTS_DIR, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        FAIL("scripts", "remount " SCRIPTS_DIR " read-only: %s", strerror(errno));
    return 0;
}

int apply_guest_options(const agent_config *c, const char **stage, char *msg, size_t msglen)
{
    static user_info owner;
    bool chown_roots = false;
    if (c->nmounts > 0 && c->user) {
        char why[256];
        /* an unknown user fails every exec later with a clear message; mounts stay root's */
        chown_roots = resolve_user(c->user, &owner, why, sizeof why) == 0 && owner.uid != 0;
    }
    for (size_t i = 0; i < c->nmounts; i++) {
        int rc = mount_one(&c->mounts[i], c->restricted, chown_roots ? &owner : NULL, stage, msg, msglen);
        if (rc < 0)
            return rc;
    }
    return c->nscripts > 0 ? install_scripts(c, stage, msg, msglen) : 0;
}

void unmount_guest_options(const agent_config *c)
{
    /* in reverse, so that nested mounts go first */
    for (size_t i = c->nmounts; i-- > 0;)
        if (c->mounts[i].kind != MOUNT_TMPFS && umount(c->mounts[i].path) < 0)
            logmsg("unmount %s: %s", c->mounts[i].path, strerror(errno));
}

int drop_privileges_restricted(void)
{
    struct __user_cap_header_struct head = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    /* CAP_SYS_PTRACE too: with it, root could ptrace (or write /proc/PID/mem of) the agent,
     * which keeps every capability, and run mount there */
    static const int DROPPED[] = { CAP_SYS_ADMIN, CAP_SYS_PTRACE };
    if (syscall(SYS_capget, &head, data) < 0)
        return -1;
    for (size_t i = 0; i < sizeof DROPPED / sizeof DROPPED[0]; i++) {
        const unsigned idx = CAP_TO_INDEX(DROPPED[i]);
        const uint32_t bit = CAP_TO_MASK(DROPPED[i]);
        if (prctl(PR_CAPBSET_DROP, DROPPED[i], 0, 0, 0) < 0)
            return -1;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, DROPPED[i], 0, 0) < 0 && errno != EINVAL)
            return -1;
        data[idx].effective &= ~bit;
        data[idx].permitted &= ~bit;
        data[idx].inheritable &= ~bit;
    }
    if (syscall(SYS_capset, &head, data) < 0)
        return -1;
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

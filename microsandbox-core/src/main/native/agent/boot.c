/* Early boot: pseudo filesystems, kernel modules, the agent port, the overlay root,
 * and powering off. */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MODULES_DIR "/lib/modules"
#define MODULES_ORDER "/modules.order"
/* Virtio-serial ports appear after a round trip with QEMU once the driver loads; TCG is
 * slow, so allow generous time. Disks are probed while their module loads, so a short
 * wait covers them. */
#define PORT_WAIT_MS 10000
#define DISK_WAIT_MS 2000
#define POLL_STEP_MS 5

agent_config g_config;

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, size - 1);
    int err = errno;
    close(fd);
    if (n < 0)
        return -err;
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    return (int)n;
}

int mkdir_p(const char *path, mode_t mode)
{
    char tmp[MOUNT_PATH_MAX + 1];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

void early_mounts(void)
{
    mkdir("/proc", 0555);
    mkdir("/sys", 0555);
    mkdir("/dev", 0755);
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");

    /* The kernel gives init fds 0-2 on /dev/console only if the initramfs has that node;
     * make sure they exist so later opens never land on 0-2 and logs reach the console. */
    int fd = open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd < 0)
        fd = open("/dev/null", O_RDWR);
    for (int i = 0; i < 3 && fd >= 0; i++)
        if (fcntl(i, F_GETFD) < 0)
            dup2(fd, i);
    if (fd > 2)
        close(fd);
}

bool cmdline_has(const char *param)
{
    char buf[4096];
    if (read_file("/proc/cmdline", buf, sizeof buf) < 0)
        return false;
    size_t n = strlen(param);
    for (char *p = buf; (p = strstr(p, param)); p += n)
        if ((p == buf || p[-1] == ' ') && (p[n] == 0 || p[n] == ' '))
            return true;
    return false;
}

/* Loads the modules the initramfs carries, in modules.order's order; returns how many
 * (0 without a modules.order: a kernel with everything built in, such as ours) or -errno. */
int load_modules(void)
{
    FILE *f = fopen(MODULES_ORDER, "re");
    if (!f)
        return errno == ENOENT ? 0 : -errno; /* a kernel with everything built in */
    char line[256], path[512];
    int rc = 0, loaded = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0])
            continue;
        snprintf(path, sizeof path, "%s/%s", MODULES_DIR, line);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = -errno;
            logmsg("module %s: open: %s", line, strerror(errno));
            break;
        }
        if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST) {
            rc = -errno;
            logmsg("module %s: finit_module: %s", line, strerror(errno));
            close(fd);
            break;
        }
        close(fd);
        unlink(path); /* the initramfs lives in RAM; loaded modules are dead weight */
        loaded++;
    }
    fclose(f);
    return rc < 0 ? rc : loaded;
}

/* Creates /dev/<name> from sysfs's major:minor unless devtmpfs already has it (its
 * node creation runs asynchronously to the driver's probe). */
static int ensure_devnode(const char *sysdir, const char *name, mode_t type)
{
    char path[600], buf[32];
    unsigned maj, min;
    snprintf(path, sizeof path, "/dev/%s", name);
    if (access(path, F_OK) == 0)
        return 0;
    snprintf(path, sizeof path, "%s/%s/dev", sysdir, name);
    if (read_file(path, buf, sizeof buf) < 0 || sscanf(buf, "%u:%u", &maj, &min) != 2)
        return -ENODEV;
    snprintf(path, sizeof path, "/dev/%s", name);
    if (mknod(path, type | 0600, makedev(maj, min)) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Finds /dev/vportNpM whose sysfs name is "agent", waiting for it to appear. */
int open_agent_port(void)
{
    for (int waited = 0; waited < PORT_WAIT_MS; waited += POLL_STEP_MS) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char path[512], name[64];
            snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
            if (read_file(path, name, sizeof name) < 0 || strcmp(name, "agent") != 0)
                continue;
            snprintf(path, sizeof path, "/dev/%s", e->d_name);
            int fd = ensure_devnode("/sys/class/virtio-ports", e->d_name, S_IFCHR) < 0 ? -1 :
                     open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
            if (fd >= 0) {
                closedir(d);
                return fd;
            }
        }
        if (d)
            closedir(d);
        sleep_ms(POLL_STEP_MS);
    }
    return -ENODEV;
}

int find_disk(const char *serial, char *dev, size_t devlen)
{
    for (int waited = 0; waited < DISK_WAIT_MS; waited += POLL_STEP_MS) {
        DIR *d = opendir("/sys/block");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (strncmp(e->d_name, "vd", 2) != 0)
                continue;
            char path[512], s[64];
            snprintf(path, sizeof path, "/sys/block/%s/serial", e->d_name);
            if (read_file(path, s, sizeof s) < 0 || strcmp(s, serial) != 0)
                continue;
            if (snprintf(dev, devlen, "/dev/%s", e->d_name) < (int)devlen &&
                ensure_devnode("/sys/block", e->d_name, S_IFBLK) == 0) {
                closedir(d);
                return 0;
            }
        }
        if (d)
            closedir(d);
        sleep_ms(POLL_STEP_MS);
    }
    return -ENODEV;
}

static int do_mount(const char *src, const char *dst, const char *type, unsigned long flags,
                    const char *data, const char **stage, char *msg, size_t msglen)
{
    if (mkdir_p(dst, 0755) < 0 || mount(src, dst, type, flags, data) < 0)
        FAIL("mount", "mount %s on %s (%s): %s", src, dst, type ? type : "move", strerror(errno));
    return 0;
}

int setup_root(const char **stage, char *msg, size_t msglen)
{
    char lower[64], upper[64];
    int rc;
    if ((rc = find_disk("msb-lower", lower, sizeof lower)) < 0) {
        errno = -rc;
        FAIL("disk", "no virtio-blk disk with serial msb-lower");
    }
    if ((rc = find_disk("msb-upper", upper, sizeof upper)) < 0) {
        errno = -rc;
        FAIL("disk", "no virtio-blk disk with serial msb-upper");
    }
    if ((rc = do_mount(lower, "/mnt/lower", "ext4", MS_RDONLY, NULL, stage, msg, msglen)) < 0 ||
        (rc = do_mount(upper, "/mnt/upper", "ext4", MS_NOATIME, NULL, stage, msg, msglen)) < 0)
        return rc;
    if (mkdir_p("/mnt/upper/root", 0755) < 0 || mkdir_p("/mnt/upper/work", 0755) < 0)
        FAIL("mount", "cannot create overlay dirs on the upper disk: %s", strerror(errno));
    if ((rc = do_mount("overlay", "/newroot", "overlay", 0,
                       "lowerdir=/mnt/lower,upperdir=/mnt/upper/root,workdir=/mnt/upper/work",
                       stage, msg, msglen)) < 0)
        return rc;

    /* /proc, /sys and /dev move along. /dev/pts gets a new devpts instance; the kernel
     * resolves /dev/ptmx to the devpts mounted at the sibling "pts", so ptmx works. */
    if ((rc = do_mount("/dev", "/newroot/dev", NULL, MS_MOVE, NULL, stage, msg, msglen)) < 0 ||
        (rc = do_mount("/proc", "/newroot/proc", NULL, MS_MOVE, NULL, stage, msg, msglen)) < 0 ||
        (rc = do_mount("/sys", "/newroot/sys", NULL, MS_MOVE, NULL, stage, msg, msglen)) < 0 ||
        (rc = do_mount("devpts", "/newroot/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                       "newinstance,ptmxmode=0666,mode=0620", stage, msg, msglen)) < 0 ||
        (rc = do_mount("tmpfs", "/newroot/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
                       "mode=1777", stage, msg, msglen)) < 0 ||
        (rc = do_mount("tmpfs", "/newroot/run", "tmpfs", MS_NOSUID | MS_NODEV,
                       "mode=0755", stage, msg, msglen)) < 0)
        return rc;
    /* Keep the disks reachable (later features read the upper directly). */
    if ((rc = do_mount("/mnt/lower", "/newroot/run/msb/lower", NULL, MS_MOVE, NULL, stage, msg, msglen)) < 0 ||
        (rc = do_mount("/mnt/upper", "/newroot/run/msb/upper", NULL, MS_MOVE, NULL, stage, msg, msglen)) < 0)
        return rc;

    /* switch_root: the initramfs stays underneath (its files are tiny once the modules
     * are unlinked) */
    if (chdir("/newroot") < 0)
        FAIL("switch_root", "chdir /newroot: %s", strerror(errno));
    if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
        FAIL("switch_root", "move /newroot to /: %s", strerror(errno));
    if (chroot(".") < 0 || chdir("/") < 0)
        FAIL("switch_root", "chroot: %s", strerror(errno));
    return 0;
}

int apply_config(cbor_val p, const char **stage, char *msg, size_t msglen)
{
    char why[256] = "";
    if (config_parse(p, &g_config, why, sizeof why) < 0) {
        errno = EINVAL;
        FAIL("config", "core.configure: %s", why);
    }
    g_log_level = g_config.log_level;
    if (g_config.hostname && sethostname(g_config.hostname, strlen(g_config.hostname)) < 0)
        FAIL("config", "sethostname: %s", strerror(errno));
    return apply_guest_options(&g_config, stage, msg, msglen);
}

/* Reaps children for at most ms; true once none is left. */
static bool reap_for(int ms)
{
    for (int waited = 0; waited < ms; waited += 10) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)
            return true;
        sleep_ms(10);
    }
    return false;
}

/* sync(2) in a child, waited for at most ms: a filesystem that hangs (a 9p share whose
 * server is gone) must not keep the guest from powering off. */
static void sync_for(int ms)
{
    static bool hung; /* a sync that did not end: a second would wait as long for nothing */
    if (hung)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        sync();
        _exit(0);
    }
    for (int waited = 0; pid > 0 && waited < ms; waited += 10) {
        if (waitpid(pid, NULL, WNOHANG) != 0)
            return;
        sleep_ms(10);
    }
    if (pid < 0)
        sync();
    else
        hung = true;
}

/* SIGTERM everything, give it up to 2 s, SIGKILL the rest, reap (2 s at most: a process
 * stuck in the kernel is left), sync (5 s at most). */
void kill_all_and_sync(void)
{
    kill(-1, SIGTERM);
    reap_for(2000);
    kill(-1, SIGKILL);
    if (!reap_for(2000))
        logmsg("shutdown: processes still there 2 s after SIGKILL (stuck in the kernel); going on");
    unmount_guest_options(&g_config);
    sync_for(5000);
}

/* RB_POWER_OFF goes through ACPI (microvm's GED sleep register); should that be missing,
 * RB_AUTOBOOT makes QEMU exit because the VMM runs with -no-reboot. PID 1 must not
 * return or exit (the kernel would panic), hence the final pause loop. */
void power_off(void)
{
    sync_for(5000);
    reboot(RB_POWER_OFF);
    reboot(RB_AUTOBOOT);
    for (;;)
        pause();
}

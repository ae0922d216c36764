/*
 * libmsbjni: the POSIX calls the JDK does not offer, for io.microsandbox.runtime.Posix.
 *
 *   spawn        clone(CLONE_VM|CLONE_VFORK) + execvpe with session, parent-death signal,
 *                output redirection, closed fds and default signal state; exec failures
 *                come back through a close-on-exec pipe as IOExceptions
 *   waitpid, kill, setsid, prctl(PR_SET_PDEATHSIG), pidfd_open/poll, close
 *   isatty, termios raw mode save/restore, window size
 *   statTree     lstat of every entry under a directory, in one call, for image fingerprints
 *   OFD locks    exclusive advisory locks owned by an open file, not by the process, and
 *                tested without being taken
 *   renameat2    a rename that never replaces what is there (RENAME_NOREPLACE)
 *
 * Every failure throws java.io.IOException "<what was attempted>: <strerror>".
 * The Java side hands strings over as NUL-terminated UTF-8 byte arrays.
 */
#include <jni.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

extern char **environ;

/* ------------------------------------------------------------------------------------ */
/* exceptions                                                                             */

static void throw_class(JNIEnv *env, const char *cls, const char *msg) {
    if ((*env)->ExceptionCheck(env)) {
        return; /* keep the first exception */
    }
    jclass c = (*env)->FindClass(env, cls);
    if (c == NULL) {
        return; /* NoClassDefFoundError pending */
    }
    (*env)->ThrowNew(env, c, msg);
    (*env)->DeleteLocalRef(env, c);
}

/* IOException "<what>: <strerror(err)>" */
static void throw_io(JNIEnv *env, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void throw_io(JNIEnv *env, int err, const char *fmt, ...) {
    char what[1024];
    char buf[1280];
    char ebuf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *es = strerror_r(err, ebuf, sizeof ebuf); /* GNU variant */
    snprintf(buf, sizeof buf, "%s: %s", what, es);
    throw_class(env, "java/io/IOException", buf);
}

static void throw_oom(JNIEnv *env) {
    throw_class(env, "java/lang/OutOfMemoryError", "libmsbjni: out of native memory");
}

/* ------------------------------------------------------------------------------------ */
/* Java byte[] (NUL-terminated UTF-8) -> C strings                                        */

/* malloc'd copy of a NUL-terminated byte[]; NULL with an exception pending on failure */
static char *copy_bytes(JNIEnv *env, jbyteArray arr) {
    jsize len = (*env)->GetArrayLength(env, arr);
    char *s = malloc((size_t)len + 1);
    if (s == NULL) {
        throw_oom(env);
        return NULL;
    }
    (*env)->GetByteArrayRegion(env, arr, 0, len, (jbyte *)s);
    if ((*env)->ExceptionCheck(env)) {
        free(s);
        return NULL;
    }
    s[len] = '\0'; /* the Java side already terminates; this keeps us safe regardless */
    return s;
}

static void free_vec(char **v) {
    if (v == NULL) {
        return;
    }
    for (char **p = v; *p != NULL; p++) {
        free(*p);
    }
    free(v);
}

/* NULL-terminated vector from an Object[] of byte[]; NULL with an exception pending on failure */
static char **copy_vec(JNIEnv *env, jobjectArray arr) {
    jsize n = (*env)->GetArrayLength(env, arr);
    char **v = calloc((size_t)n + 1, sizeof(char *));
    if (v == NULL) {
        throw_oom(env);
        return NULL;
    }
    for (jsize i = 0; i < n; i++) {
        jbyteArray e = (jbyteArray)(*env)->GetObjectArrayElement(env, arr, i);
        if ((*env)->ExceptionCheck(env)) {
            free_vec(v);
            return NULL;
        }
        if (e == NULL) {
            throw_class(env, "java/lang/NullPointerException", "null element in argument vector");
            free_vec(v);
            return NULL;
        }
        v[i] = copy_bytes(env, e);
        (*env)->DeleteLocalRef(env, e);
        if (v[i] == NULL) {
            free_vec(v);
            return NULL;
        }
    }
    return v;
}

/* ------------------------------------------------------------------------------------ */
/* spawn                                                                                  */

enum stage { STAGE_SETUP = 1, STAGE_CHDIR = 2, STAGE_EXEC = 3 };

/* where a child finds the one descriptor its parent may pass it */
#define PASSED_FD 3

struct child_args {
    char **argv;
    char **envp;
    const char *workdir;
    int stdin_fd;   /* /dev/null, close-on-exec */
    int out_fd;     /* output file or /dev/null, close-on-exec */
    int report_fd;  /* write end of the close-on-exec error pipe */
    int passed_fd;  /* becomes the child's fd 3 (PASSED_FD), or -1 */
    int pdeathsig;
    int new_session;
    pid_t parent_pid;
};

/* Everything below runs in the child, which shares the parent's memory until it execs:
 * only async-signal-safe calls, no malloc, no writes to shared data. */

static void child_fail(const struct child_args *a, int stage, int err) {
    int msg[2] = {stage, err};
    ssize_t r;
    do {
        r = write(a->report_fd, msg, sizeof msg);
    } while (r < 0 && errno == EINTR);
    _exit(127);
}

/* make fd become target (clears close-on-exec on target) */
static int move_fd(int fd, int target) {
    if (fd == target) {
        int fl = fcntl(fd, F_GETFD);
        return fl < 0 ? -1 : fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
    }
    int r;
    do {
        r = dup2(fd, target);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -1 : 0;
}

/* close every fd >= first except keep; close_range where the kernel has it (5.9+),
 * else /proc/self/fd via raw getdents64, else a loop up to RLIMIT_NOFILE */
static void close_fds_from(int first, int keep) {
    int ok = 1;
    if (keep > first && syscall(SYS_close_range, (unsigned)first, (unsigned)keep - 1, 0u) != 0) {
        ok = 0;
    }
    if (ok && syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u) == 0) {
        return;
    }
    int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        char buf[4096] __attribute__((aligned(8)));
        for (;;) {
            long n = syscall(SYS_getdents64, dfd, buf, sizeof buf);
            if (n <= 0) {
                break;
            }
            for (long off = 0; off < n;) {
                struct dirent64 *d = (struct dirent64 *)(buf + off);
                off += d->d_reclen;
                int fd = 0;
                const char *p = d->d_name;
                if (*p < '0' || *p > '9') {
                    continue;
                }
                for (; *p >= '0' && *p <= '9'; p++) {
                    fd = fd * 10 + (*p - '0');
                }
                if (fd >= first && fd != keep && fd != dfd) {
                    close(fd);
                }
            }
        }
        close(dfd);
        return;
    }
    struct rlimit rl;
    long max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        max = (long)rl.rlim_cur;
    }
    for (long fd = first; fd < max; fd++) {
        if (fd != keep) {
            close((int)fd);
        }
    }
}

/* the kernel's struct sigaction for rt_sigaction (x86_64 layout) */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

static int child_main(void *arg) {
    const struct child_args *a = arg;

    /* default dispositions (SIG_IGN would survive exec), then an empty mask; the raw
     * syscall, because glibc's sigaction refuses its internal signals 32 and 33, which the
     * JVM may leave ignored */
    struct kernel_sigaction ksa = {.handler = SIG_DFL, .flags = 0, .restorer = NULL, .mask = 0};
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            syscall(SYS_rt_sigaction, sig, &ksa, NULL, sizeof ksa.mask);
        }
    }

    if (a->new_session && setsid() < 0) {
        child_fail(a, STAGE_SETUP, errno);
    }
    if (a->pdeathsig > 0) {
        if (prctl(PR_SET_PDEATHSIG, (unsigned long)a->pdeathsig, 0, 0, 0) != 0) {
            child_fail(a, STAGE_SETUP, errno);
        }
        /* the parent may have died before prctl took effect */
        if (getppid() != a->parent_pid) {
            _exit(128 + a->pdeathsig);
        }
    }

    /* the report pipe must not land on 0..2 */
    int report = a->report_fd;
    if (move_fd(a->stdin_fd, 0) < 0 || move_fd(a->out_fd, 1) < 0 || move_fd(a->out_fd, 2) < 0) {
        child_fail(a, STAGE_SETUP, errno);
    }
    if (a->passed_fd >= 0 && move_fd(a->passed_fd, PASSED_FD) < 0) {
        child_fail(a, STAGE_SETUP, errno);
    }
    close_fds_from(a->passed_fd >= 0 ? PASSED_FD + 1 : PASSED_FD, report);

    if (a->workdir != NULL && chdir(a->workdir) != 0) {
        child_fail(a, STAGE_CHDIR, errno);
    }

    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);

    execvpe(a->argv[0], a->argv, a->envp);
    child_fail(a, STAGE_EXEC, errno);
    return 127;
}

static int open_cloexec(const char *path, int flags, mode_t mode) {
    int fd;
    do {
        fd = open(path, flags | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

static void close_quietly(int fd) {
    if (fd >= 0) {
        close(fd);
    }
}

/* the fds the parent opens for the child must not collide with the ones the child gets
 * (0..2 and PASSED_FD) while it dup2s them into place: keep them above PASSED_FD (below it
 * only when the JVM has 0..2 closed, or its fd 3 is free) */
static int above_stdio(int fd) {
    if (fd < 0 || fd > PASSED_FD) {
        return fd;
    }
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, PASSED_FD + 1);
    int err = errno;
    close(fd);
    errno = err;
    return nfd;
}

JNIEXPORT jint JNICALL Java_io_microsandbox_runtime_Posix_spawn0(
        JNIEnv *env, jclass cls, jobjectArray jargv, jobjectArray jenv, jbyteArray jworkdir,
        jbyteArray joutput, jint pdeathsig, jboolean new_session, jint pass_fd) {
    (void)cls;
    char **argv = NULL, **envp = NULL;
    char *workdir = NULL, *output = NULL;
    int in_fd = -1, out_fd = -1, passed_fd = -1, pipefd[2] = {-1, -1};
    void *stack = MAP_FAILED;
    size_t stack_size = 0;
    jint result = -1;

    argv = copy_vec(env, jargv);
    if (argv == NULL) {
        goto out;
    }
    if (argv[0] == NULL || argv[0][0] == '\0') {
        throw_class(env, "java/lang/IllegalArgumentException", "empty argument vector");
        goto out;
    }
    if (jenv != NULL && (envp = copy_vec(env, jenv)) == NULL) {
        goto out;
    }
    if (jworkdir != NULL && (workdir = copy_bytes(env, jworkdir)) == NULL) {
        goto out;
    }
    if (joutput != NULL && (output = copy_bytes(env, joutput)) == NULL) {
        goto out;
    }

    in_fd = above_stdio(open_cloexec("/dev/null", O_RDONLY, 0));
    if (in_fd < 0) {
        throw_io(env, errno, "cannot run %s: cannot open /dev/null", argv[0]);
        goto out;
    }
    if (output != NULL) {
        out_fd = above_stdio(open_cloexec(output, O_WRONLY | O_CREAT | O_APPEND, 0600));
        if (out_fd < 0) {
            throw_io(env, errno, "cannot run %s: cannot open output file %s", argv[0], output);
            goto out;
        }
    } else {
        out_fd = above_stdio(open_cloexec("/dev/null", O_WRONLY, 0));
        if (out_fd < 0) {
            throw_io(env, errno, "cannot run %s: cannot open /dev/null", argv[0]);
            goto out;
        }
    }
    /* a private copy above the child's fds, whatever number the caller's has */
    if (pass_fd >= 0 && (passed_fd = fcntl(pass_fd, F_DUPFD_CLOEXEC, PASSED_FD + 1)) < 0) {
        throw_io(env, errno, "cannot run %s: cannot pass descriptor %d", argv[0], (int)pass_fd);
        goto out;
    }
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        throw_io(env, errno, "cannot run %s: cannot create pipe", argv[0]);
        goto out;
    }
    if ((pipefd[0] = above_stdio(pipefd[0])) < 0 || (pipefd[1] = above_stdio(pipefd[1])) < 0) {
        throw_io(env, errno, "cannot run %s: cannot create pipe", argv[0]);
        goto out;
    }

    /* the child's stack: execvpe may put a path buffer and, for scripts without #!,
     * a copy of argv on it */
    size_t argc = 0;
    while (argv[argc] != NULL) {
        argc++;
    }
    stack_size = (size_t)256 * 1024 + (argc + 2) * sizeof(char *) + PATH_MAX;
    stack_size = (stack_size + 4095) & ~(size_t)4095;
    stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        throw_io(env, errno, "cannot run %s: cannot allocate child stack", argv[0]);
        goto out;
    }

    struct child_args a = {
        .argv = argv,
        .envp = envp != NULL ? envp : environ,
        .workdir = workdir,
        .stdin_fd = in_fd,
        .out_fd = out_fd,
        .report_fd = pipefd[1],
        .passed_fd = passed_fd,
        .pdeathsig = pdeathsig,
        .new_session = new_session == JNI_TRUE,
        .parent_pid = getpid(),
    };

    /* no JVM signal handler may run on the child's side of the shared memory */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = clone(child_main, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    int clone_err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (pid < 0) {
        throw_io(env, clone_err, "cannot run %s: clone", argv[0]);
        goto out;
    }

    /* the child has exec'd or exited: EOF means exec succeeded */
    close(pipefd[1]);
    pipefd[1] = -1;
    int msg[2];
    ssize_t n;
    do {
        n = read(pipefd[0], msg, sizeof msg);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof msg) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        if (msg[0] == STAGE_CHDIR) {
            throw_io(env, msg[1], "cannot run %s: cannot change directory to %s", argv[0], workdir);
        } else if (msg[0] == STAGE_EXEC) {
            throw_io(env, msg[1], "cannot run %s", argv[0]);
        } else {
            throw_io(env, msg[1], "cannot run %s: child setup failed", argv[0]);
        }
        goto out;
    }
    result = pid;

out:
    if (stack != MAP_FAILED) {
        munmap(stack, stack_size);
    }
    close_quietly(pipefd[0]);
    close_quietly(pipefd[1]);
    close_quietly(in_fd);
    close_quietly(out_fd);
    close_quietly(passed_fd);
    free_vec(argv);
    free_vec(envp);
    free(workdir);
    free(output);
    return result;
}

/* ------------------------------------------------------------------------------------ */
/* processes                                                                              */

JNIEXPORT jint JNICALL Java_io_microsandbox_runtime_Posix_waitPid0(JNIEnv *env, jclass cls, jint pid) {
    (void)cls;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, 0);
        if (r >= 0) {
            return status;
        }
        if (errno != EINTR) {
            throw_io(env, errno, "waitpid(%d)", (int)pid);
            return -1;
        }
    }
}

JNIEXPORT jboolean JNICALL Java_io_microsandbox_runtime_Posix_kill0(JNIEnv *env, jclass cls, jint pid, jint sig) {
    (void)cls;
    if (kill(pid, sig) == 0) {
        return JNI_TRUE;
    }
    if (errno == ESRCH) {
        return JNI_FALSE;
    }
    throw_io(env, errno, "kill(%d, %d)", (int)pid, (int)sig);
    return JNI_FALSE;
}

JNIEXPORT jint JNICALL Java_io_microsandbox_runtime_Posix_setsid0(JNIEnv *env, jclass cls) {
    (void)cls;
    pid_t sid = setsid();
    if (sid >= 0) {
        return sid;
    }
    if (errno == EPERM) { /* already a process group leader */
        sid = getsid(0);
        if (sid >= 0) {
            return sid;
        }
        throw_io(env, errno, "getsid(0)");
        return -1;
    }
    throw_io(env, errno, "setsid()");
    return -1;
}

JNIEXPORT void JNICALL Java_io_microsandbox_runtime_Posix_setParentDeathSignal0(JNIEnv *env, jclass cls, jint sig) {
    (void)cls;
    if (prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0) != 0) {
        throw_io(env, errno, "prctl(PR_SET_PDEATHSIG, %d)", (int)sig);
    }
}

JNIEXPORT jint JNICALL Java_io_microsandbox_runtime_Posix_umask0(JNIEnv *env, jclass cls, jint mask) {
    (void)env;
    (void)cls;
    return (jint)umask((mode_t)(mask & 0777));
}

JNIEXPORT jint JNICALL Java_io_microsandbox_runtime_Posix_pidfdOpen0(JNIEnv *env, jclass cls, jint pid) {
    (void)cls;
    long fd = syscall(SYS_pidfd_open, (pid_t)pid, 0u); /* always close-on-exec */
    if (fd >= 0) {
        return (jint)fd;
    }
    if (errno == ESRCH) {
        return -1;
    }
    throw_io(env, errno, "pidfd_open(%d)", (int)pid);
    return -1;
}

/* Signals the process behind a pidfd: unlike kill(2) it can never hit a reused pid. */
JNIEXPORT jboolean JNICALL Java_io_microsandbox_runtime_Posix_pidfdSignal0(JNIEnv *env, jclass cls, jint pidfd, jint sig) {
    (void)cls;
    if (syscall(SYS_pidfd_send_signal, (int)pidfd, (int)sig, NULL, 0u) == 0) {
        return JNI_TRUE;
    }
    if (errno == ESRCH) {
        return JNI_FALSE; /* already exited */
    }
    throw_io(env, errno, "pidfd_send_signal(%d, %d)", (int)pidfd, (int)sig);
    return JNI_FALSE;
}

static int64_t now_millis(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

JNIEXPORT jboolean JNICALL Java_io_microsandbox_runtime_Posix_pidfdAwait0(
        JNIEnv *env, jclass cls, jint pidfd, jlong timeout_millis) {
    (void)cls;
    int64_t deadline = timeout_millis < 0 ? -1 : now_millis() + (int64_t)timeout_millis;
    for (;;) {
        int wait_ms = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_millis();
            if (left < 0) {
                left = 0;
            }
            wait_ms = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd p = {.fd = pidfd, .events = POLLIN, .revents = 0};
        int r = poll(&p, 1, wait_ms);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw_io(env, errno, "poll(pidfd %d)", (int)pidfd);
            return JNI_FALSE;
        }
        if (r > 0) {
            if (p.revents & POLLNVAL) {
                throw_io(env, EBADF, "poll(pidfd %d)", (int)pidfd);
                return JNI_FALSE;
            }
            return JNI_TRUE; /* POLLIN (exited) or POLLHUP/POLLERR (gone) */
        }
        if (deadline >= 0 && now_millis() >= deadline) {
            return JNI_FALSE;
        }
    }
}

JNIEXPORT void JNICALL Java_io_microsandbox_runtime_Posix_close0(JNIEnv *env, jclass cls, jint fd) {
    (void)env;
    (void)cls;
    if (fd >= 0) {
        close(fd); /* Linux releases the fd even on EINTR: never retry */
    }
}

/* ------------------------------------------------------------------------------------ */
/* terminals                                                                              */

JNIEXPORT jboolean JNICALL Java_io_microsandbox_runtime_Posix_isatty0(JNIEnv *env, jclass cls, jint fd) {
    (void)env;
    (void)cls;
    return isatty(fd) ? JNI_TRUE : JNI_FALSE;
}

static int tcsetattr_retry(int fd, const struct termios *t) {
    int r;
    do {
        r = tcsetattr(fd, TCSANOW, t);
    } while (r != 0 && errno == EINTR);
    return r;
}

JNIEXPORT jbyteArray JNICALL Java_io_microsandbox_runtime_Posix_enterRawMode0(JNIEnv *env, jclass cls, jint fd) {
    (void)cls;
    struct termios saved, raw;
    if (tcgetattr(fd, &saved) != 0) {
        throw_io(env, errno, "tcgetattr(fd %d)", (int)fd);
        return NULL;
    }
    jbyteArray out = (*env)->NewByteArray(env, (jsize)sizeof saved);
    if (out == NULL) {
        return NULL;
    }
    (*env)->SetByteArrayRegion(env, out, 0, (jsize)sizeof saved, (const jbyte *)&saved);
    if ((*env)->ExceptionCheck(env)) {
        (*env)->DeleteLocalRef(env, out);
        return NULL;
    }
    raw = saved;
    cfmakeraw(&raw);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr_retry(fd, &raw) != 0) {
        throw_io(env, errno, "tcsetattr(fd %d, raw)", (int)fd);
        (*env)->DeleteLocalRef(env, out);
        return NULL;
    }
    return out;
}

JNIEXPORT void JNICALL Java_io_microsandbox_runtime_Posix_restoreMode0(JNIEnv *env, jclass cls, jint fd, jbyteArray jsaved) {
    (void)cls;
    struct termios saved;
    if ((*env)->GetArrayLength(env, jsaved) != (jsize)sizeof saved) {
        throw_class(env, "java/lang/IllegalArgumentException", "saved terminal mode has the wrong size");
        return;
    }
    (*env)->GetByteArrayRegion(env, jsaved, 0, (jsize)sizeof saved, (jbyte *)&saved);
    if ((*env)->ExceptionCheck(env)) {
        return;
    }
    if (tcsetattr_retry(fd, &saved) != 0) {
        throw_io(env, errno, "tcsetattr(fd %d, restore)", (int)fd);
    }
}

/* Waits up to timeout_ms for fd to be readable, then reads at most len bytes into buf:
 * the count, 0 when nothing came in time, -1 at end of file. */
JNIEXPORT jint JNICALL Java_io_microsandbox_runtime_Posix_readTimeout0(JNIEnv *env, jclass cls, jint fd, jbyteArray jbuf, jint timeout_ms) {
    (void)cls;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int rc = poll(&p, 1, timeout_ms);
    if (rc < 0) {
        if (errno == EINTR)
            return 0;
        throw_io(env, errno, "poll(fd %d)", (int)fd);
        return 0;
    }
    if (rc == 0)
        return 0;
    char buf[4096];
    jsize len = (*env)->GetArrayLength(env, jbuf);
    if (len > (jsize)sizeof buf)
        len = (jsize)sizeof buf;
    ssize_t n = read(fd, buf, (size_t)len);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return 0;
        if (errno == EIO)
            return -1; /* the terminal hung up */
        throw_io(env, errno, "read(fd %d)", (int)fd);
        return 0;
    }
    if (n == 0)
        return -1;
    (*env)->SetByteArrayRegion(env, jbuf, 0, (jsize)n, (const jbyte *)buf);
    return (jint)n;
}

JNIEXPORT jintArray JNICALL Java_io_microsandbox_runtime_Posix_windowSize0(JNIEnv *env, jclass cls, jint fd) {
    (void)cls;
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) != 0) {
        throw_io(env, errno, "ioctl(fd %d, TIOCGWINSZ)", (int)fd);
        return NULL;
    }
    jintArray out = (*env)->NewIntArray(env, 2);
    if (out == NULL) {
        return NULL;
    }
    jint v[2] = {ws.ws_row, ws.ws_col};
    (*env)->SetIntArrayRegion(env, out, 0, 2, v);
    if ((*env)->ExceptionCheck(env)) {
        (*env)->DeleteLocalRef(env, out);
        return NULL;
    }
    return out;
}

/* ------------------------------------------------------------------------------------ */
/* statTree                                                                               */

/* nftw has no user pointer: the walk's state lives in thread-locals for its duration. */
static __thread char *tree_buf;
static __thread size_t tree_len, tree_cap, tree_root_len;
static __thread int tree_oom;
/* an entry the walk could not read (FTW_NS: no stat at all, FTW_DNR: a directory not listed) */
static __thread int tree_errno;
static __thread char *tree_failed;

static void put_i64(char *p, int64_t v) {
    for (int i = 0; i < 8; i++) {
        p[i] = (char) ((uint64_t) v >> (8 * i));
    }
}

static int tree_visit(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void) ftw;
    if (type == FTW_NS || type == FTW_DNR) {
        /* st is not filled in for FTW_NS: recording it would record whatever the stack held */
        tree_errno = errno != 0 ? errno : EACCES;
        tree_failed = strdup(path);
        return 1; /* stop the walk */
    }
    const char *rel = path + tree_root_len;
    while (*rel == '/') {
        rel++;
    }
    size_t rlen = strlen(rel);
    size_t need = rlen + 1 + 6 * 8;
    if (tree_len + need > tree_cap) {
        size_t cap = tree_cap ? tree_cap * 2 : 1 << 16;
        while (cap < tree_len + need) {
            cap *= 2;
        }
        char *grown = realloc(tree_buf, cap);
        if (grown == NULL) {
            tree_oom = 1;
            return 1; /* stop the walk */
        }
        tree_buf = grown;
        tree_cap = cap;
    }
    char *p = tree_buf + tree_len;
    memcpy(p, rel, rlen + 1);
    p += rlen + 1;
    put_i64(p, st->st_mode);
    put_i64(p + 8, st->st_uid);
    put_i64(p + 16, st->st_gid);
    put_i64(p + 24, st->st_size);
    put_i64(p + 32, (int64_t) st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec);
    put_i64(p + 40, (int64_t) st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec);
    tree_len += need;
    return 0;
}

/* An anonymous shared-memory file of size bytes (a sparse hole until written), close-on-exec:
 * guest RAM that the supervisor owns and passes to QEMU. */
JNIEXPORT jint JNICALL Java_io_microsandbox_runtime_Posix_memfdCreate0(JNIEnv *env, jclass cls, jbyteArray jname, jlong size) {
    (void) cls;
    char *name = copy_bytes(env, jname);
    if (name == NULL)
        return -1;
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) {
        throw_io(env, errno, "memfd_create %s", name);
    } else if (ftruncate(fd, (off_t) size) != 0) {
        throw_io(env, errno, "cannot size memfd %s to %lld bytes", name, (long long) size);
        close(fd);
        fd = -1;
    }
    free(name);
    return fd;
}

/* Bytes the file occupies on disk (st_blocks * 512): what a sparse file really costs. */
JNIEXPORT jlong JNICALL Java_io_microsandbox_runtime_Posix_allocatedBytes0(JNIEnv *env, jclass cls, jbyteArray jpath) {
    (void) cls;
    char path[4096];
    jsize n = (*env)->GetArrayLength(env, jpath);
    if (n >= (jsize) sizeof path) {
        throw_io(env, ENAMETOOLONG, "allocatedBytes");
        return -1;
    }
    (*env)->GetByteArrayRegion(env, jpath, 0, n, (jbyte *) path);
    path[n] = '\0';
    struct stat st;
    if (stat(path, &st) != 0) {
        throw_io(env, errno, "stat %s", path);
        return -1;
    }
    return (jlong) st.st_blocks * 512;
}

/* The data extents of a file as [start, end) pairs, found with SEEK_DATA/SEEK_HOLE: a sparse
 * copy or hash then touches what is written and skips the holes. A filesystem without hole
 * support reports the whole file as one extent. */
JNIEXPORT jlongArray JNICALL Java_io_microsandbox_runtime_Posix_dataExtents0(JNIEnv *env, jclass cls, jbyteArray jpath) {
    (void) cls;
    char *path = copy_bytes(env, jpath);
    if (path == NULL)
        return NULL;
    /* O_NONBLOCK: a FIFO put in place of a disk must not block the open (lseek then fails) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        throw_io(env, errno, "open %s", path);
        free(path);
        return NULL;
    }
    off_t end = lseek(fd, 0, SEEK_END);
    size_t cap = 64, len = 0;
    jlong *v = malloc(cap * sizeof *v);
    off_t pos = 0;
    int err = end < 0 ? errno : 0;
    while (v != NULL && err == 0 && pos < end) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0) {
            if (errno != ENXIO)
                err = errno;
            break; /* ENXIO: only a hole is left */
        }
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0) {
            err = errno;
            break;
        }
        if (len + 2 > cap) {
            jlong *grown = realloc(v, cap * 2 * sizeof *v);
            if (grown == NULL) {
                free(v);
                v = NULL;
                break;
            }
            v = grown;
            cap *= 2;
        }
        v[len++] = (jlong) data;
        v[len++] = (jlong) hole;
        pos = hole;
    }
    close(fd);
    if (v == NULL) {
        free(path);
        throw_class(env, "java/lang/OutOfMemoryError", "dataExtents");
        return NULL;
    }
    if (err != 0) {
        free(v);
        throw_io(env, err, "seek %s", path);
        free(path);
        return NULL;
    }
    free(path);
    jlongArray out = (*env)->NewLongArray(env, (jsize) len);
    if (out != NULL)
        (*env)->SetLongArrayRegion(env, out, 0, (jsize) len, v);
    free(v);
    return out;
}

JNIEXPORT jbyteArray JNICALL Java_io_microsandbox_runtime_Posix_statTree0(JNIEnv *env, jclass cls, jbyteArray jroot) {
    (void) cls;
    jsize n = (*env)->GetArrayLength(env, jroot);
    char *root = malloc((size_t) n + 1);
    if (root == NULL) {
        throw_class(env, "java/lang/OutOfMemoryError", "statTree: path");
        return NULL;
    }
    (*env)->GetByteArrayRegion(env, jroot, 0, n, (jbyte *) root);
    root[n] = '\0';
    tree_buf = NULL;
    tree_len = tree_cap = 0;
    tree_oom = 0;
    tree_errno = 0;
    tree_root_len = strlen(root);
    errno = 0;
    int rc = nftw(root, tree_visit, 64, FTW_PHYS);
    int err = errno;
    jbyteArray result = NULL;
    if (tree_oom || tree_len > INT32_MAX) {
        throw_class(env, "java/lang/OutOfMemoryError", "statTree: too many entries");
    } else if (tree_errno != 0) {
        throw_io(env, tree_errno, "cannot read %s", tree_failed != NULL ? tree_failed : root);
    } else if (rc != 0) {
        throw_io(env, err, "cannot walk %s", root);
    } else {
        result = (*env)->NewByteArray(env, (jsize) tree_len);
        if (result != NULL) {
            (*env)->SetByteArrayRegion(env, result, 0, (jsize) tree_len, (const jbyte *) tree_buf);
        }
    }
    free(tree_buf);
    tree_buf = NULL;
    free(tree_failed);
    tree_failed = NULL;
    free(root);
    return result;
}

/* ------------------------------------------------------------------------------------ */
/* image extraction: mode bits chmod cannot set through NIO, xattrs, device nodes          */

/* the path argument: malloc'd C string, NULL with an exception pending */
static char *path_arg(JNIEnv *env, jbyteArray arr) {
    jsize n = (*env)->GetArrayLength(env, arr);
    char *s = malloc((size_t) n + 1);
    if (s == NULL) {
        throw_oom(env);
        return NULL;
    }
    (*env)->GetByteArrayRegion(env, arr, 0, n, (jbyte *) s);
    s[n] = '\0';
    return s;
}

/* chmod without following a final symbolic link: the full 07777 (setuid, setgid, sticky) */
JNIEXPORT void JNICALL Java_io_microsandbox_runtime_Posix_chmod0(JNIEnv *env, jclass cls, jbyteArray jpath, jint mode) {
    (void) cls;
    char *path = path_arg(env, jpath);
    if (path == NULL) {
        return;
    }
    struct stat st;
    if (lstat(path, &st) < 0) {
        throw_io(env, errno, "lstat %s", path);
    } else if (!S_ISLNK(st.st_mode) && chmod(path, (mode_t) (mode & 07777)) < 0) {
        throw_io(env, errno, "chmod %s", path);
    }
    free(path);
}

JNIEXPORT void JNICALL Java_io_microsandbox_runtime_Posix_lsetxattr0(JNIEnv *env, jclass cls, jbyteArray jpath, jbyteArray jname, jbyteArray jvalue) {
    (void) cls;
    char *path = path_arg(env, jpath);
    char *name = path == NULL ? NULL : path_arg(env, jname);
    if (name != NULL) {
        jsize vlen = (*env)->GetArrayLength(env, jvalue);
        char *value = malloc((size_t) vlen + 1);
        if (value == NULL) {
            throw_oom(env);
        } else {
            (*env)->GetByteArrayRegion(env, jvalue, 0, vlen, (jbyte *) value);
            if (lsetxattr(path, name, value, (size_t) vlen, 0) < 0) {
                throw_io(env, errno, "lsetxattr %s %s", path, name);
            }
            free(value);
        }
    }
    free(name);
    free(path);
}

/* mknod: type bits in mode (S_IFCHR, S_IFBLK, S_IFIFO) */
JNIEXPORT void JNICALL Java_io_microsandbox_runtime_Posix_mknod0(JNIEnv *env, jclass cls, jbyteArray jpath, jint mode, jint major, jint minor) {
    (void) cls;
    char *path = path_arg(env, jpath);
    if (path == NULL) {
        return;
    }
    if (mknod(path, (mode_t) mode, makedev((unsigned) major, (unsigned) minor)) < 0) {
        throw_io(env, errno, "mknod %s", path);
    }
    free(path);
}

/* the modification (and access) time of path itself: never follows a link, never opens the file
 * (opening a device node of an image would talk to the host's device) */
JNIEXPORT void JNICALL Java_io_microsandbox_runtime_Posix_lsetmtime0(JNIEnv *env, jclass cls, jbyteArray jpath, jlong seconds) {
    (void) cls;
    char *path = path_arg(env, jpath);
    if (path == NULL) {
        return;
    }
    struct timespec ts[2] = {{(time_t) seconds, 0}, {(time_t) seconds, 0}};
    if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0) {
        throw_io(env, errno, "utimensat %s", path);
    }
    free(path);
}

/* ------------------------------------------------------------------------------------ */
/* advisory locks                                                                         */

/* An open file description lock (F_OFD_SETLK, Linux 3.15+) over the whole file. It belongs to
 * the open file, like flock(), not to the process, like the fcntl locks of FileChannel.lock:
 * closing another descriptor of the same file in this process does not release it. And unlike
 * flock() it can be tested without being taken (F_OFD_GETLK), so a probe never makes a real
 * taker fail in the moment it holds the lock. */
static int ofd_lock(int fd, int cmd, short type, short *found) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET; /* l_start 0, l_len 0: the whole file; l_pid must be 0 */
    int r;
    do {
        r = fcntl(fd, cmd, &fl);
    } while (r < 0 && errno == EINTR);
    if (found != NULL) {
        *found = fl.l_type;
    }
    return r;
}

/* Opens (creating it 0600 when create is set, never through a symbolic link) and locks path.
 * Returns the fd holding the lock, -1 when someone else holds it, -2 when the file is not
 * there and create is not set. */
JNIEXPORT jint JNICALL Java_io_microsandbox_runtime_Posix_tryLockFile0(JNIEnv *env, jclass cls, jbyteArray jpath, jboolean create, jboolean shared) {
    (void) cls;
    char *path = path_arg(env, jpath);
    if (path == NULL) {
        return -1;
    }
    int fd = open_cloexec(path, O_RDWR | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT && create) {
            throw_class(env, "java/nio/file/NoSuchFileException", path); /* its directory is gone */
        } else if (err != ENOENT) {
            throw_io(env, err, "open %s", path);
        }
        free(path);
        return -2;
    }
    if (fchmod(fd, 0600) < 0) {
        throw_io(env, errno, "chmod %s", path);
        close(fd);
        free(path);
        return -1;
    }
    if (ofd_lock(fd, F_OFD_SETLK, shared ? F_RDLCK : F_WRLCK, NULL) < 0) {
        int err = errno;
        close(fd);
        if (err != EAGAIN && err != EACCES) {
            throw_io(env, err, "lock %s", path);
        }
        free(path);
        return -1;
    }
    free(path);
    return fd;
}

/* Whether someone (this process included) holds the lock on path, without taking it; a
 * missing file is not held. */
JNIEXPORT jboolean JNICALL Java_io_microsandbox_runtime_Posix_isLockHeld0(JNIEnv *env, jclass cls, jbyteArray jpath) {
    (void) cls;
    char *path = path_arg(env, jpath);
    if (path == NULL) {
        return JNI_FALSE;
    }
    int fd = open_cloexec(path, O_RDONLY | O_NOFOLLOW, 0);
    if (fd < 0) {
        if (errno != ENOENT) {
            throw_io(env, errno, "open %s", path);
        }
        free(path);
        return JNI_FALSE;
    }
    short found = F_UNLCK;
    if (ofd_lock(fd, F_OFD_GETLK, F_WRLCK, &found) < 0) {
        throw_io(env, errno, "test the lock of %s", path);
    }
    close(fd);
    free(path);
    return found != F_UNLCK ? JNI_TRUE : JNI_FALSE;
}

/* rename(2) that fails with FileAlreadyExistsException instead of replacing to (an empty
 * directory, for one); where the filesystem lacks RENAME_NOREPLACE, a plain rename */
JNIEXPORT void JNICALL Java_io_microsandbox_runtime_Posix_renameNoReplace0(JNIEnv *env, jclass cls, jbyteArray jfrom, jbyteArray jto) {
    (void) cls;
    char *from = path_arg(env, jfrom);
    char *to = from == NULL ? NULL : path_arg(env, jto);
    if (to == NULL) {
        free(from);
        return;
    }
    long r = syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
    if (r < 0 && errno == EINVAL) {
        r = rename(from, to);
    }
    if (r < 0) {
        int err = errno;
        if (err == EEXIST || err == ENOTEMPTY) {
            throw_class(env, "java/nio/file/FileAlreadyExistsException", to);
        } else {
            throw_io(env, err, "rename %s to %s", from, to);
        }
    }
    free(from);
    free(to);
}

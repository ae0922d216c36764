/* Handing PID 1 to a custom init (systemd, tini, ...): PID 1 forks once the sandbox is set
 * up; the child carries on as the agent (port, sessions, event loop), PID 1 execs the init.
 * Orphans are the init's to reap from then on; the agent reaps its own sessions. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long a graceful stop waits for the init to power the VM off before the agent does;
 * within the host's default grace window (10 s). */
#define INIT_POWEROFF_WAIT_MS 6000

extern char **environ;

static const char *const PROBED[] = { "/sbin/init", "/lib/systemd/systemd", "/usr/lib/systemd/systemd", NULL };
static bool g_handed_off;

bool init_handed_off(void)
{
    return g_handed_off;
}

void set_oom_score_adj(const char *value)
{
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t w = write(fd, value, strlen(value));
    (void)w;
    close(fd);
}

static bool is_systemd(const char *path)
{
    char target[PATH_BUF];
    ssize_t n = readlink(path, target, sizeof target - 1);
    const char *name = path;
    if (n > 0) {
        target[n] = 0;
        name = target;
    }
    const char *base = strrchr(name, '/');
    return strcmp(base ? base + 1 : name, "systemd") == 0;
}

/* Runs in PID 1 after the fork; never returns. */
static void __attribute__((noreturn)) become_init(const char *path, const agent_config *c)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    /* the port, epoll and signalfd are the agent child's now */
    close_agent_fds();

    size_t nargs = 0, nenv = 0, nbase = 0;
    while (c->init_args && c->init_args[nargs])
        nargs++;
    while (c->init_env && c->init_env[nenv])
        nenv++;
    while (environ && environ[nbase])
        nbase++;
    char **argv = calloc(nargs + 2, sizeof(char *));
    char **envp = calloc(nbase + nenv + 1, sizeof(char *));
    if (argv && envp) {
        argv[0] = (char *)path;
        for (size_t i = 0; i < nargs; i++)
            argv[i + 1] = c->init_args[i];
        size_t n = 0;
        for (size_t i = 0; i < nbase; i++) {
            size_t kl = strcspn(environ[i], "=");
            bool overridden = false;
            for (size_t j = 0; j < nenv && !overridden; j++)
                overridden = strncmp(c->init_env[j], environ[i], kl) == 0 && c->init_env[j][kl] == '=';
            if (!overridden)
                envp[n++] = environ[i];
        }
        for (size_t j = 0; j < nenv; j++)
            envp[n++] = c->init_env[j];
        execve(path, argv, envp);
    }
    /* PID 1 must never exit: without its init the sandbox still serves, so reap orphans */
    logmsg("init %s: exec failed: %s; PID 1 only reaps orphans now", path, strerror(errno));
    for (;;)
        if (wait(NULL) < 0 && errno == ECHILD)
            pause();
}

int init_handoff(const agent_config *c, const char **stage, char *msg, size_t msglen)
{
    const char *path = c->init_cmd;
    *stage = "init";
    if (strcmp(path, "auto") == 0) {
        path = NULL;
        for (int i = 0; PROBED[i] && !path; i++)
            if (access(PROBED[i], X_OK) == 0)
                path = PROBED[i];
        if (!path) {
            snprintf(msg, msglen, "init auto: none of /sbin/init, /lib/systemd/systemd, /usr/lib/systemd/systemd is executable in the image");
            return -ENOENT;
        }
    } else if (access(path, X_OK) < 0) {
        int err = errno;
        snprintf(msg, msglen, "init %s: %s", path, strerror(err));
        return -err;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        snprintf(msg, msglen, "init: fork: %s", strerror(err));
        return -err;
    }
    if (pid > 0)
        become_init(path, c);
    g_handed_off = true;
    /* PID 1 no more, the OOM killer could pick the agent (its queues hold megabytes), and
     * the VM would run on with nobody serving the host; what it runs gets 0 back */
    set_oom_score_adj(OOM_SCORE_ADJ_NEVER);
    int rc = signals_after_fork();
    if (rc < 0) {
        snprintf(msg, msglen, "init: the agent's signalfd after the fork: %s", strerror(-rc));
        return rc;
    }
    logmsg("PID 1 is %s now; the agent serves as pid %d", path, (int)getpid());
    return 0;
}

void init_request_poweroff(void)
{
    /* systemd powers off on SIGRTMIN+4; tini, dumb-init and the like pass SIGTERM on and exit */
    int sig = is_systemd("/proc/1/exe") ? SIGRTMIN + 4 : SIGTERM;
    if (kill(1, sig) < 0) {
        logmsg("init: cannot signal PID 1: %s", strerror(errno));
        return;
    }
    /* the init's power-off ends the VM, and this process with it */
    struct timespec wait = { INIT_POWEROFF_WAIT_MS / 1000, (INIT_POWEROFF_WAIT_MS % 1000) * 1000000L };
    while (nanosleep(&wait, &wait) < 0 && errno == EINTR)
        ;
    logmsg("init: no power-off within %d ms; the agent powers off", INIT_POWEROFF_WAIT_MS);
}

/* User lookup from the sandbox root's /etc/passwd and /etc/group. A static binary has
 * no NSS, and the files of the image are the only source that matters anyway. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Splits a colon-separated line in place into at most max fields; returns the count. */
static int split(char *line, char **f, int max)
{
    int n = 0;
    line[strcspn(line, "\r\n")] = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == ':') {
            *p = 0;
            f[n++] = p + 1;
        }
    return n;
}

static bool parse_id(const char *s, unsigned long *out)
{
    char *end;
    if (!*s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    *out = strtoul(s, &end, 10);
    return !*end && !errno && *out <= 0xfffffffeUL;
}

/* Lines are read whole with getline: a fixed buffer would split a long line and parse
 * its tail as a line of its own. */

/* Account files are the guest's: one that is not a regular file (a fifo nobody writes would
 * block PID 1 for ever, /dev/zero would never end) or is over 16 MiB reads as absent. */
static FILE *open_account_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (16 << 20)) {
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    if (!f)
        close(fd);
    return f;
}

/* Finds the passwd entry by name (name != NULL) or by uid: 1 found, 0 not found, or
 * -ENAMETOOLONG (msg) for an entry whose home or name does not fit user_info. */
static int passwd_lookup(const char *name, uid_t uid, user_info *u, char *msg, size_t msglen)
{
    FILE *f = open_account_file("/etc/passwd");
    char *line = NULL, *fl[7];
    size_t cap = 0;
    int found = 0;
    unsigned long id, gid;
    while (f && !found && getline(&line, &cap, f) >= 0) {
        if (split(line, fl, 7) < 7 || !parse_id(fl[2], &id) || !parse_id(fl[3], &gid))
            continue;
        if (name ? strcmp(fl[0], name) == 0 : id == uid) {
            const char *home = fl[5][0] ? fl[5] : "/";
            if (strlen(home) >= sizeof u->home || strlen(fl[0]) >= sizeof u->name) {
                snprintf(msg, msglen, "the /etc/passwd entry of uid %lu has a %s of %zu bytes, the limit is %zu",
                         id, strlen(home) >= sizeof u->home ? "home" : "name",
                         strlen(home) >= sizeof u->home ? strlen(home) : strlen(fl[0]),
                         (strlen(home) >= sizeof u->home ? sizeof u->home : sizeof u->name) - 1);
                found = -ENAMETOOLONG;
                break;
            }
            u->uid = (uid_t)id;
            u->gid = (gid_t)gid;
            strcpy(u->home, home);
            strcpy(u->name, fl[0]);
            found = 1;
        }
    }
    free(line);
    if (f)
        fclose(f);
    return found;
}

static bool group_lookup(const char *name, gid_t *gid)
{
    FILE *f = open_account_file("/etc/group");
    char *line = NULL, *fl[4];
    size_t cap = 0;
    bool found = false;
    unsigned long id;
    while (f && !found && getline(&line, &cap, f) >= 0)
        if (split(line, fl, 4) >= 3 && strcmp(fl[0], name) == 0 && parse_id(fl[2], &id)) {
            *gid = (gid_t)id;
            found = true;
        }
    free(line);
    if (f)
        fclose(f);
    return found;
}

/* Primary gid plus every group that lists the user as a member; -E2BIG beyond MAX_GROUPS. */
static int supplementary_groups(user_info *u, char *msg, size_t msglen)
{
    u->groups[0] = u->gid;
    u->ngroups = 1;
    if (!u->name[0])
        return 0;
    FILE *f = open_account_file("/etc/group");
    char *line = NULL, *fl[4];
    size_t cap = 0;
    unsigned long id;
    int rc = 0;
    while (f && rc == 0 && getline(&line, &cap, f) >= 0) {
        if (split(line, fl, 4) < 4 || !parse_id(fl[2], &id) || (gid_t)id == u->gid)
            continue;
        char *save = NULL;
        for (char *m = strtok_r(fl[3], ",", &save); m; m = strtok_r(NULL, ",", &save))
            if (strcmp(m, u->name) == 0) {
                if (u->ngroups == MAX_GROUPS) {
                    snprintf(msg, msglen, "user %s is in more than %d groups", u->name, MAX_GROUPS);
                    rc = -E2BIG;
                } else {
                    u->groups[u->ngroups++] = (gid_t)id;
                }
                break;
            }
    }
    free(line);
    if (f)
        fclose(f);
    return rc;
}

int resolve_user(const char *spec, user_info *u, char *msg, size_t msglen)
{
    memset(u, 0, sizeof *u);
    if (!spec || !*spec)
        spec = "root";

    char user[USER_SPEC_BUF];
    const char *group = NULL;
    if (strlen(spec) >= sizeof user) {
        snprintf(msg, msglen, "user is %zu bytes, the limit is %zu", strlen(spec), sizeof user - 1);
        return -ENAMETOOLONG;
    }
    strcpy(user, spec);
    char *colon = strchr(user, ':');
    if (colon) {
        *colon = 0;
        group = colon + 1;
    }

    unsigned long id;
    int rc;
    if (parse_id(user, &id)) {
        /* a uid need not exist in passwd; then gid 0 and home / (as Docker does) */
        if ((rc = passwd_lookup(NULL, (uid_t)id, u, msg, msglen)) < 0)
            return rc;
        if (rc == 0) {
            u->uid = (uid_t)id;
            u->gid = 0;
            strcpy(u->home, "/");
        }
    } else if ((rc = passwd_lookup(user, 0, u, msg, msglen)) <= 0) {
        if (rc < 0)
            return rc;
        if (strcmp(user, "root") != 0) {
            snprintf(msg, msglen, "user %s not found in /etc/passwd", user);
            return -ENOENT;
        }
        strcpy(u->home, "/root"); /* images without /etc/passwd */
        strcpy(u->name, "root");
    }

    if (group) {
        gid_t gid;
        if (parse_id(group, &id)) {
            gid = (gid_t)id;
        } else if (!group_lookup(group, &gid)) {
            snprintf(msg, msglen, "group %s not found in /etc/group", group);
            return -ENOENT;
        }
        u->gid = gid;
    }
    return supplementary_groups(u, msg, msglen);
}

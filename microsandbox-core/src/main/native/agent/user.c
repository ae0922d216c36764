/* User lookup from the sandbox root's /etc/passwd and /etc/group. A static binary has
 * no NSS, and the files of the image are the only source that matters anyway. */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Finds the passwd entry by name (name != NULL) or by uid. */
static bool passwd_lookup(const char *name, uid_t uid, user_info *u)
{
    FILE *f = fopen("/etc/passwd", "re");
    char line[1024], *fl[7];
    bool found = false;
    unsigned long id, gid;
    while (f && !found && fgets(line, sizeof line, f)) {
        if (split(line, fl, 7) < 7 || !parse_id(fl[2], &id) || !parse_id(fl[3], &gid))
            continue;
        if (name ? strcmp(fl[0], name) == 0 : id == uid) {
            u->uid = (uid_t)id;
            u->gid = (gid_t)gid;
            snprintf(u->home, sizeof u->home, "%s", fl[5][0] ? fl[5] : "/");
            snprintf(u->name, sizeof u->name, "%s", fl[0]);
            found = true;
        }
    }
    if (f)
        fclose(f);
    return found;
}

static bool group_lookup(const char *name, gid_t *gid)
{
    FILE *f = fopen("/etc/group", "re");
    char line[4096], *fl[4];
    bool found = false;
    unsigned long id;
    while (f && !found && fgets(line, sizeof line, f))
        if (split(line, fl, 4) >= 3 && strcmp(fl[0], name) == 0 && parse_id(fl[2], &id)) {
            *gid = (gid_t)id;
            found = true;
        }
    if (f)
        fclose(f);
    return found;
}

/* Primary gid plus every group that lists the user as a member. */
static void supplementary_groups(user_info *u)
{
    u->groups[0] = u->gid;
    u->ngroups = 1;
    if (!u->name[0])
        return;
    FILE *f = fopen("/etc/group", "re");
    char line[4096], *fl[4];
    unsigned long id;
    while (f && fgets(line, sizeof line, f)) {
        if (split(line, fl, 4) < 4 || !parse_id(fl[2], &id) || (gid_t)id == u->gid)
            continue;
        for (char *m = strtok(fl[3], ","); m; m = strtok(NULL, ","))
            if (strcmp(m, u->name) == 0 && u->ngroups < (int)(sizeof u->groups / sizeof u->groups[0])) {
                u->groups[u->ngroups++] = (gid_t)id;
                break;
            }
    }
    if (f)
        fclose(f);
}

int resolve_user(const char *spec, user_info *u, char *msg, size_t msglen)
{
    memset(u, 0, sizeof *u);
    if (!spec || !*spec)
        spec = "root";

    char user[256];
    const char *group = NULL;
    snprintf(user, sizeof user, "%s", spec);
    char *colon = strchr(user, ':');
    if (colon) {
        *colon = 0;
        group = colon + 1;
    }

    unsigned long id;
    if (parse_id(user, &id)) {
        /* a uid need not exist in passwd; then gid 0 and home / (as Docker does) */
        if (!passwd_lookup(NULL, (uid_t)id, u)) {
            u->uid = (uid_t)id;
            u->gid = 0;
            snprintf(u->home, sizeof u->home, "/");
        }
    } else if (!passwd_lookup(user, 0, u)) {
        if (strcmp(user, "root") != 0) {
            snprintf(msg, msglen, "user %s not found in /etc/passwd", user);
            return -ENOENT;
        }
        snprintf(u->home, sizeof u->home, "/root"); /* images without /etc/passwd */
        snprintf(u->name, sizeof u->name, "root");
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
    supplementary_groups(u);
    return 0;
}

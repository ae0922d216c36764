/* Guest side of the sandbox network (docs/network.md): the VM has no NIC. Every IPv4
 * address is made local (a `local 0.0.0.0/0 dev lo` route) and a BPF sk_lookup program
 * hands every TCP connection, and every UDP datagram to port 53, that is not for
 * 127.0.0.0/8 to the agent's own sockets. The agent carries each connection to the host
 * as a net session; the host checks the sandbox's policy and opens the real socket. Root in
 * the guest can change routes, rules and interfaces, but there is no device that leads out:
 * the agent's port is the only way, and the host decides there. */
#include "agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NET_WINDOW (256u * 1024)     /* the host's initial credit for us (docs/protocol.md) */
#define NET_RX_WINDOW (1024u * 1024) /* the credit we give the host, announced in net.connect */
#define NET_READ_MAX 65536u
#define NET_MAX_CONNS 1024
#define NET_MAX_DNS 64             /* DNS queries waiting for the host */
#define NET_ACK_BATCH 65536u
#define TAG_TCP_LISTENER 0xFFFFFFFFu
#define TAG_DNS 0xFFFFFFFEu           /* the UDP socket every new datagram reaches */
#define NET_MAX_UDP_FLOWS 256
#define DNS_ANSWER_WAIT_NS (10ull * 1000000000) /* a resolver has given up on the query by then */
#define AGENT_ID_BIT 0x80000000u   /* ids of sessions the agent starts */

enum conn_state { C_WAIT_HOST, C_CONNECTING, C_OPEN };

typedef struct net_conn {
    uint32_t id;
    int fd;
    enum conn_state state;
    uint64_t credit;        /* bytes we may still send to the host */
    uint8_t *out;           /* bytes from the host not yet written to fd */
    size_t out_len, out_cap;
    size_t unacked;         /* bytes written to fd not yet returned to the host as window */
    bool rd_eof;            /* the guest side sent EOF (and we told the host) */
    bool wr_eof;            /* the host sent EOF; shut fd's write side once out is empty */
    bool wr_shut;
    bool udp;               /* a UDP flow: each net.data is one datagram, no credit */
    bool parked;            /* hung up with bytes left to read and no credit: out of epoll
                               (a hang-up cannot be masked, it would spin) until net.window */
    struct sockaddr_in guest_end; /* a UDP flow's guest socket */
    uint32_t events;        /* registered epoll events */
    struct net_conn *next;
} net_conn;

typedef struct {
    bool used;
    uint32_t id;
    struct sockaddr_in client;
    struct in_addr dst;
    uint64_t since_ns;  /* when the query went to the host (CLOCK_BOOTTIME) */
} dns_pending;

static bool g_net_on;
static int g_tcp_fd = -1, g_dns_fd = -1, g_exempt_map = -1;
/* Given up to accept a connection with when no fd is left, so that it is refused instead of
 * waiting in the listener's queue, which would wake the loop for ever. */
static int g_spare_fd = -1;

/* A key of the exempt map: as the sk_lookup context has them */
struct flow_key {
    uint32_t ip;   /* network order */
    uint32_t port; /* host order */
};

static net_conn *g_conns[256];
static size_t g_nconns, g_nflows;
static uint32_t g_next_id;
static dns_pending g_dns[NET_MAX_DNS];

static net_conn **bucket(uint32_t id) { return &g_conns[(id ^ (id >> 8)) & 255]; }

static net_conn *conn_find(uint32_t id)
{
    for (net_conn *c = *bucket(id); c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

static uint32_t next_agent_id(void)
{
    for (;;) {
        g_next_id = (g_next_id + 1) & 0x7FFFFFFFu;
        uint32_t id = AGENT_ID_BIT | g_next_id;
        /* 0 is the connection itself, the top ids are the listener tags */
        if (g_next_id != 0 && g_next_id < 0x7FFFFFF0u && !conn_find(id))
            return id;
    }
}

/* ---- setup ---- */

static long bpf(int cmd, union bpf_attr *attr)
{
    return syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

static void exempt(const struct sockaddr_in *guest_end, bool add)
{
    struct flow_key key = { .ip = guest_end->sin_addr.s_addr, .port = ntohs(guest_end->sin_port) };
    uint8_t one = 1;
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_fd = (uint32_t)g_exempt_map;
    attr.key = (uint64_t)(uintptr_t)&key;
    attr.value = (uint64_t)(uintptr_t)&one;
    attr.flags = BPF_ANY;
    if (bpf(add ? BPF_MAP_UPDATE_ELEM : BPF_MAP_DELETE_ELEM, &attr) < 0 && add)
        logmsg("network: cannot exempt a UDP flow's guest end: %s", strerror(errno));
}

static int lo_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int rc = 0;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        rc = -errno;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (rc == 0 && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        rc = -errno;
    close(s);
    return rc;
}

/* `ip route add local 0.0.0.0/0 dev lo table local`: every IPv4 address is this host's,
 * so a connection to any address reaches the socket lookup, where sk_lookup steers it. */
static int route_all_local(void)
{
    struct {
        struct nlmsghdr nh;
        struct rtmsg rt;
        char attrs[64];
    } req;
    memset(&req, 0, sizeof req);
    req.nh.nlmsg_type = RTM_NEWROUTE;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK;
    req.nh.nlmsg_seq = 1;
    req.rt.rtm_family = AF_INET;
    req.rt.rtm_dst_len = 0;
    req.rt.rtm_table = RT_TABLE_LOCAL;
    req.rt.rtm_protocol = RTPROT_BOOT;
    req.rt.rtm_scope = RT_SCOPE_HOST;
    req.rt.rtm_type = RTN_LOCAL;
    struct rtattr *a = (struct rtattr *)req.attrs;
    a->rta_type = RTA_OIF;
    a->rta_len = RTA_LENGTH(sizeof(int));
    int lo = (int)if_nametoindex("lo");
    memcpy(RTA_DATA(a), &lo, sizeof lo);
    req.nh.nlmsg_len = NLMSG_LENGTH(sizeof req.rt) + RTA_ALIGN(a->rta_len);

    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s < 0)
        return -errno;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    int rc = 0;
    if (sendto(s, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
        rc = -errno;
    } else {
        char buf[512];
        ssize_t n = recv(s, buf, sizeof buf, 0);
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        if (n < (ssize_t)sizeof *h)
            rc = -EIO;
        else if (h->nlmsg_type == NLMSG_ERROR)
            rc = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
    }
    close(s);
    return rc;
}

#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })

/* The sk_lookup program: loopback destinations keep the normal lookup; TCP goes to the
 * socket in map slot 0, UDP to slot 1 (a UDP flow's own connected socket is found before
 * the program runs), except UDP to an address and port in the exempt map: the guest ends of
 * the agent's UDP flows, whose replies must reach them (they may be unconnected sockets,
 * which the kernel looks up only after the program). */
static int load_program(int map_fd, int exempt_fd)
{
    struct bpf_insn prog[] = {
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0),                       /* r6 = ctx */
        INSN(BPF_LDX | BPF_W | BPF_MEM, 2, 6, offsetof(struct bpf_sk_lookup, family), 0),
        INSN(BPF_JMP | BPF_JNE | BPF_K, 2, 0, 32, AF_INET),                 /* -> pass */
        INSN(BPF_LDX | BPF_W | BPF_MEM, 2, 6, offsetof(struct bpf_sk_lookup, local_ip4), 0),
        INSN(BPF_ALU64 | BPF_AND | BPF_K, 2, 0, 0, 0xff),                  /* first octet */
        INSN(BPF_JMP | BPF_JEQ | BPF_K, 2, 0, 29, 127),                     /* -> pass */
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, 0),                      /* r3 = key 0 */
        INSN(BPF_LDX | BPF_W | BPF_MEM, 2, 6, offsetof(struct bpf_sk_lookup, protocol), 0),
        INSN(BPF_JMP | BPF_JEQ | BPF_K, 2, 0, 12, IPPROTO_TCP),             /* -> store key */
        INSN(BPF_JMP | BPF_JNE | BPF_K, 2, 0, 25, IPPROTO_UDP),             /* -> pass */
        /* UDP to a flow's guest end (a reply the agent sends) keeps the normal lookup */
        INSN(BPF_LDX | BPF_W | BPF_MEM, 2, 6, offsetof(struct bpf_sk_lookup, local_ip4), 0),
        INSN(BPF_STX | BPF_W | BPF_MEM, 10, 2, -16, 0),
        INSN(BPF_LDX | BPF_W | BPF_MEM, 2, 6, offsetof(struct bpf_sk_lookup, local_port), 0),
        INSN(BPF_STX | BPF_W | BPF_MEM, 10, 2, -12, 0),
        INSN(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, exempt_fd),
        INSN(0, 0, 0, 0, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10, 0, 0),
        INSN(BPF_ALU64 | BPF_ADD | BPF_K, 2, 0, 0, -16),
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem),
        INSN(BPF_JMP | BPF_JNE | BPF_K, 0, 0, 15, 0),                       /* exempt -> pass */
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, 1),                      /* r3 = key 1 */
        INSN(BPF_STX | BPF_W | BPF_MEM, 10, 3, -4, 0),                      /* *(fp-4) = key */
        INSN(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),   /* r1 = map */
        INSN(0, 0, 0, 0, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10, 0, 0),
        INSN(BPF_ALU64 | BPF_ADD | BPF_K, 2, 0, 0, -4),                     /* r2 = &key */
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem),
        INSN(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 7, 0),                        /* no socket -> pass */
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 7, 0, 0, 0),                      /* r7 = sk */
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 2, 7, 0, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, 0),
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_assign),
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 1, 7, 0, 0),                      /* skipped when */
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_release),             /*   no socket  */
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, SK_PASS),                /* pass: */
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
    static char log[8192];
    union bpf_attr attr;
    /* without the verifier's log first: printing every instruction it checks is most of
     * the load's cost; only a refused program is loaded again to say why */
    for (uint32_t log_level = 0; log_level <= 1; log_level++) {
        memset(&attr, 0, sizeof attr);
        attr.prog_type = BPF_PROG_TYPE_SK_LOOKUP;
        attr.expected_attach_type = BPF_SK_LOOKUP;
        attr.insns = (uint64_t)(uintptr_t)prog;
        attr.insn_cnt = sizeof prog / sizeof prog[0];
        attr.license = (uint64_t)(uintptr_t)"GPL";
        if (log_level > 0) {
            attr.log_buf = (uint64_t)(uintptr_t)log;
            attr.log_size = sizeof log;
            attr.log_level = log_level;
        }
        int fd = (int)bpf(BPF_PROG_LOAD, &attr);
        if (fd >= 0)
            return fd;
    }
    int err = errno;
    log[sizeof log - 1] = 0;
    logmsg("network: the sk_lookup program was refused: %s", log);
    return -err;
}

static int steer_sockets(void)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_SOCKMAP;
    attr.key_size = 4;
    attr.value_size = 8;
    attr.max_entries = 2;
    int map = (int)bpf(BPF_MAP_CREATE, &attr);
    if (map < 0)
        return -errno;
    int fds[2] = { g_tcp_fd, g_dns_fd };
    for (uint32_t key = 0; key < 2; key++) {
        uint64_t value = (uint64_t)fds[key];
        memset(&attr, 0, sizeof attr);
        attr.map_fd = (uint32_t)map;
        attr.key = (uint64_t)(uintptr_t)&key;
        attr.value = (uint64_t)(uintptr_t)&value;
        attr.flags = BPF_ANY;
        if (bpf(BPF_MAP_UPDATE_ELEM, &attr) < 0)
            return -errno;
    }
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_HASH;
    attr.key_size = sizeof(struct flow_key);
    attr.value_size = 1;
    attr.max_entries = NET_MAX_UDP_FLOWS;
    g_exempt_map = (int)bpf(BPF_MAP_CREATE, &attr);
    if (g_exempt_map < 0)
        return -errno;
    int prog = load_program(map, g_exempt_map);
    if (prog < 0)
        return prog;
    int netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (netns < 0)
        return -errno;
    memset(&attr, 0, sizeof attr);
    attr.link_create.prog_fd = (uint32_t)prog;
    attr.link_create.target_fd = (uint32_t)netns;
    attr.link_create.attach_type = BPF_SK_LOOKUP;
    /* the link lives as long as the agent holds its fd: the agent is PID 1 */
    if (bpf(BPF_LINK_CREATE, &attr) < 0)
        return -errno;
    close(netns);
    return 0;
}

static int make_sockets(void)
{
    int one = 1;
    g_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    g_tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (g_tcp_fd < 0 || bind(g_tcp_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(g_tcp_fd, 1024) < 0)
        return -errno;
    /* port 53 on every address: a reply's source port must be 53 (resolvers connect
     * their UDP socket), and a resolv.conf naming 127.0.0.1 is served too */
    g_dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in d = { .sin_family = AF_INET, .sin_port = htons(53), .sin_addr.s_addr = htonl(INADDR_ANY) };
    if (g_dns_fd < 0 || setsockopt(g_dns_fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0 ||
        setsockopt(g_dns_fd, IPPROTO_IP, IP_RECVORIGDSTADDR, &one, sizeof one) < 0 ||
        bind(g_dns_fd, (struct sockaddr *)&d, sizeof d) < 0)
        return -errno;
    return 0;
}

static void write_resolv_conf(void)
{
    /* any address works (every DNS datagram reaches the agent); one fixed, recognisable */
    static const char text[] = "# written by microsandbox: DNS goes through the host's policy\nnameserver 10.0.2.3\n";
    int fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        unlink("/etc/resolv.conf");
        fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    }
    if (fd < 0 || write(fd, text, sizeof text - 1) != (ssize_t)(sizeof text - 1))
        logmsg("network: cannot write /etc/resolv.conf: %s", strerror(errno));
    if (fd >= 0)
        close(fd);
}

/* Appends the TLS interception CA to the guest's trust stores: Debian's bundle (also what
 * OpenSSL reads by default there) and Alpine's /etc/ssl/cert.pem when it is a file of its own. */
void net_install_ca(const char *pem, size_t len)
{
    static const char *bundles[] = { "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/cert.pem" };
    mkdir("/etc/ssl", 0755);
    mkdir("/etc/ssl/certs", 0755);
    for (size_t i = 0; i < sizeof bundles / sizeof bundles[0]; i++) {
        struct stat st;
        if (i > 0 && (lstat(bundles[i], &st) < 0 || !S_ISREG(st.st_mode)))
            continue;
        int fd = open(bundles[i], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 || write(fd, "\n", 1) != 1 || write(fd, pem, len) != (ssize_t)len)
            logmsg("network: cannot add the TLS interception CA to %s: %s", bundles[i], strerror(errno));
        if (fd >= 0)
            close(fd);
    }
}

void net_setup(void)
{
    int rc;
    const char *step;
    if ((rc = lo_up()) < 0) {
        step = "bringing up lo";
    } else if ((rc = route_all_local()) < 0) {
        step = "the local route";
    } else if ((rc = make_sockets()) < 0) {
        step = "the agent's sockets";
    } else if ((rc = steer_sockets()) < 0) {
        step = "the sk_lookup program";
    } else {
        ev_add(g_tcp_fd, EPOLLIN, EV_NET, TAG_TCP_LISTENER);
        ev_add(g_dns_fd, EPOLLIN, EV_NET, TAG_DNS);
        write_resolv_conf();
        g_net_on = true;
        return;
    }
    /* no network at all then: nothing leaves the VM without the agent anyway */
    logmsg("network: setup failed at %s: %s; the sandbox has no network", step, strerror(-rc));
}

/* ---- connections ---- */

static void conn_events(net_conn *c)
{
    if (c->parked) {
        if (c->credit == 0 || port_throttled() || ev_add(c->fd, EPOLLIN, EV_NET, c->id) < 0)
            return;
        c->parked = false;
        c->events = EPOLLIN;
    }
    uint32_t want = 0;
    if (c->state == C_CONNECTING)
        want = EPOLLOUT;
    else if (c->udp)
        want = port_throttled() ? 0 : EPOLLIN;
    else if (c->state == C_OPEN) {
        if (!c->rd_eof && c->credit > 0 && !port_throttled())
            want |= EPOLLIN;
        if (c->out_len > 0)
            want |= EPOLLOUT;
    }
    if (want != c->events && ev_mod(c->fd, want, EV_NET, c->id) == 0)
        c->events = want;
}

static net_conn *conn_new(uint32_t id, int fd, enum conn_state state)
{
    net_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->id = id;
    c->fd = fd;
    c->state = state;
    c->credit = NET_WINDOW;
    if (ev_add(fd, 0, EV_NET, id) < 0) {
        free(c);
        return NULL;
    }
    net_conn **b = bucket(id);
    c->next = *b;
    *b = c;
    g_nconns++;
    conn_events(c);
    return c;
}

static void reset_fd(int fd)
{
    struct linger l = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

/* Ends a session; tell: send net.close to the host (TERMINAL), reset: RST the guest side. */
static void conn_end(net_conn *c, bool tell, bool reset)
{
    if (tell) {
        cbor_buf *b = frame_begin(c->id, FLAG_TERMINAL, "net.close", 1);
        cbor_put_text(b, "reset");
        cbor_put_bool(b, reset);
        frame_end();
    }
    ev_del(c->fd);
    if (reset)
        reset_fd(c->fd);
    else
        close(c->fd);
    for (net_conn **p = bucket(c->id); *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    g_nconns--;
    if (c->udp) {
        g_nflows--;
        if (c->guest_end.sin_family == AF_INET)
            exempt(&c->guest_end, false);
    }
    free(c->out);
    free(c);
}

/* Ends a session the host started before it began (nothing to connect to, no network). */
static void refuse(uint32_t id)
{
    cbor_buf *b = frame_begin(id, FLAG_TERMINAL, "net.close", 1);
    cbor_put_text(b, "reset");
    cbor_put_bool(b, true);
    frame_end();
}

static void send_data(uint32_t id, const void *data, size_t n)
{
    cbor_buf *b = frame_begin(id, 0, "net.data", 1);
    cbor_put_text(b, "data");
    cbor_put_bytes(b, data, n);
    frame_end();
}

static void send_window(net_conn *c)
{
    cbor_buf *b = frame_begin(c->id, 0, "net.window", 1);
    cbor_put_text(b, "bytes");
    cbor_put_uint(b, c->unacked);
    frame_end();
    c->unacked = 0;
}

static void maybe_finish(net_conn *c)
{
    if (c->rd_eof && c->wr_eof && c->out_len == 0)
        conn_end(c, true, false);
}

static void conn_readable(net_conn *c)
{
    static uint8_t buf[NET_READ_MAX];
    size_t want = c->credit < NET_READ_MAX ? (size_t)c->credit : NET_READ_MAX;
    ssize_t n = read(c->fd, buf, want);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_end(c, true, true);
        return;
    }
    if (n == 0) {
        c->rd_eof = true;
        send_data(c->id, "", 0);
        conn_events(c);
        maybe_finish(c);
        return;
    }
    c->credit -= (uint64_t)n;
    send_data(c->id, buf, (size_t)n);
    conn_events(c);
}

/* Returns false when the session ended. */
static bool conn_writable(net_conn *c)
{
    while (c->out_len > 0) {
        ssize_t n = write(c->fd, c->out, c->out_len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            conn_end(c, true, true);
            return false;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
        c->unacked += (size_t)n;
    }
    if (c->unacked >= NET_ACK_BATCH || (c->out_len == 0 && c->unacked > 0))
        send_window(c);
    if (c->out_len == 0 && c->wr_eof && !c->wr_shut) {
        shutdown(c->fd, SHUT_WR);
        c->wr_shut = true;
    }
    conn_events(c);
    if (c->rd_eof && c->wr_eof && c->out_len == 0) {
        conn_end(c, true, false);
        return false;
    }
    return true;
}

static void accept_guest_connections(void)
{
    for (;;) {
        struct sockaddr_in peer, local;
        socklen_t plen = sizeof peer, llen = sizeof local;
        int fd = accept4(g_tcp_fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE) && g_spare_fd >= 0) {
            close(g_spare_fd);
            fd = accept4(g_tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0)
                reset_fd(fd);
            g_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd >= 0)
                continue;
        }
        if (fd < 0)
            return;
        /* the accepted socket's own address is where the guest meant to connect */
        if (getsockname(fd, (struct sockaddr *)&local, &llen) < 0 || local.sin_family != AF_INET ||
            (ntohl(local.sin_addr.s_addr) >> 24) == 127 || g_nconns >= NET_MAX_CONNS) {
            /* 127/8 here is a connection to the agent's own listener */
            reset_fd(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        uint32_t id = next_agent_id();
        net_conn *c = conn_new(id, fd, C_WAIT_HOST);
        if (!c) {
            reset_fd(fd);
            continue;
        }
        char dst[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &local.sin_addr, dst, sizeof dst);
        cbor_buf *b = frame_begin(id, FLAG_SESSION_START, "net.connect", 4);
        cbor_put_text(b, "proto");
        cbor_put_text(b, "tcp");
        cbor_put_text(b, "dst");
        cbor_put_text(b, dst);
        cbor_put_text(b, "port");
        cbor_put_uint(b, ntohs(local.sin_port));
        cbor_put_text(b, "window");
        cbor_put_uint(b, NET_RX_WINDOW);
        frame_end();
    }
}

/* ---- DNS ---- */

/* A UDP flow: a socket bound to the address and port the guest sent to and connected to the
 * sender, so the flow's next datagrams reach it directly and replies come from where the
 * guest expects them. The host checks the policy on net.udp and carries each datagram. */
static void udp_flow_start(const struct sockaddr_in *client, const struct sockaddr_in *dst, const uint8_t *data, size_t n)
{
    if (g_nflows >= NET_MAX_UDP_FLOWS || g_nconns >= NET_MAX_CONNS)
        return; /* dropped: the sender retries or gives up */
    int one = 1;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (const struct sockaddr *)dst, sizeof *dst) < 0 ||
        connect(fd, (const struct sockaddr *)client, sizeof *client) < 0) {
        close(fd);
        return;
    }
    uint32_t id = next_agent_id();
    net_conn *c = conn_new(id, fd, C_OPEN);
    if (!c) {
        close(fd);
        return;
    }
    c->udp = true;
    c->guest_end = *client;
    exempt(client, true);
    g_nflows++;
    conn_events(c);
    char d[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &dst->sin_addr, d, sizeof d);
    cbor_buf *b = frame_begin(id, FLAG_SESSION_START, "net.udp", 2);
    cbor_put_text(b, "dst");
    cbor_put_text(b, d);
    cbor_put_text(b, "port");
    cbor_put_uint(b, ntohs(dst->sin_port));
    frame_end();
    send_data(id, data, n);
}

static void udp_flow_readable(net_conn *c)
{
    uint8_t buf[65536];
    for (int i = 0; i < 64 && !port_throttled(); i++) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0)
            return; /* EAGAIN, or an ICMP error for an earlier datagram: the flow goes on */
        send_data(c->id, buf, (size_t)n);
    }
    conn_events(c);
}

/* A free slot, or the oldest when it has waited longer than any resolver does: an answer the
 * host never sent must not keep its slot for the sandbox's life. NULL when all are recent. */
static dns_pending *free_dns_slot(void)
{
    dns_pending *oldest = NULL;
    for (int i = 0; i < NET_MAX_DNS; i++) {
        if (!g_dns[i].used)
            return &g_dns[i];
        if (!oldest || g_dns[i].since_ns < oldest->since_ns)
            oldest = &g_dns[i];
    }
    return oldest && now_boottime_ns() - oldest->since_ns > DNS_ANSWER_WAIT_NS ? oldest : NULL;
}

static void dns_readable(void)
{
    for (;;) {
        uint8_t buf[65536];
        struct sockaddr_in client;
        char ctrl[CMSG_SPACE(sizeof(struct in_pktinfo)) + CMSG_SPACE(sizeof(struct sockaddr_in))];
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
        struct msghdr mh = { .msg_name = &client, .msg_namelen = sizeof client, .msg_iov = &iov,
                             .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl };
        ssize_t n = recvmsg(g_dns_fd, &mh, 0);
        if (n < 0)
            return;
        struct in_addr dst = { 0 };
        struct sockaddr_in orig = { .sin_family = 0 };
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO)
                dst = ((struct in_pktinfo *)CMSG_DATA(cm))->ipi_addr;
            else if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_ORIGDSTADDR)
                memcpy(&orig, CMSG_DATA(cm), sizeof orig);
        }
        if (orig.sin_family == AF_INET && orig.sin_port != htons(53)) {
            udp_flow_start(&client, &orig, buf, (size_t)n);
            continue;
        }
        if (n < 12 || n > 4096)
            continue;
        dns_pending *slot = free_dns_slot();
        if (!slot)
            continue; /* the resolver retries */
        slot->used = true;
        slot->since_ns = now_boottime_ns();
        slot->id = next_agent_id();
        slot->client = client;
        slot->dst = dst;
        char d[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &dst, d, sizeof d);
        cbor_buf *b = frame_begin(slot->id, FLAG_SESSION_START, "net.dns", 2);
        cbor_put_text(b, "query");
        cbor_put_bytes(b, buf, (size_t)n);
        cbor_put_text(b, "dst");
        cbor_put_text(b, d);
        frame_end();
    }
}

static void dns_reply(uint32_t id, cbor_val p)
{
    dns_pending *slot = NULL;
    for (int i = 0; i < NET_MAX_DNS && !slot; i++)
        if (g_dns[i].used && g_dns[i].id == id)
            slot = &g_dns[i];
    if (!slot)
        return;
    slot->used = false;
    cbor_val v;
    const uint8_t *data;
    size_t len;
    if (!cbor_map_get(p, "reply", &v) || !cbor_get_bytes(v, &data, &len) || len == 0)
        return;
    /* the reply comes from the address the query went to */
    char ctrl[CMSG_SPACE(sizeof(struct in_pktinfo))];
    memset(ctrl, 0, sizeof ctrl);
    struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
    struct msghdr mh = { .msg_name = &slot->client, .msg_namelen = sizeof slot->client, .msg_iov = &iov,
                         .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = IPPROTO_IP;
    cm->cmsg_type = IP_PKTINFO;
    cm->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    ((struct in_pktinfo *)CMSG_DATA(cm))->ipi_spec_dst = slot->dst;
    if (sendmsg(g_dns_fd, &mh, MSG_DONTWAIT) < 0)
        logmsg("network: DNS reply not delivered: %s", strerror(errno));
}

/* ---- host messages ---- */

/* net.open {port}: a published port; the host accepted a connection and wants one to
 * 127.0.0.1:port in the guest. */
static void net_open(uint32_t id, cbor_val p)
{
    cbor_val v;
    uint64_t port;
    int fd = -1;
    if (g_nconns < NET_MAX_CONNS && !conn_find(id) && cbor_map_get(p, "port", &v) && cbor_get_uint(v, &port) &&
        port > 0 && port < 65536)
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 || errno == EINPROGRESS) {
            if (conn_new(id, fd, C_CONNECTING))
                return;
        }
        close(fd);
    }
    refuse(id);
}

/* net.udp_open {port}: a published UDP port; the host got datagrams from a new client and
 * wants a flow to 127.0.0.1:port in the guest. */
static void net_udp_open(uint32_t id, cbor_val p)
{
    cbor_val v;
    uint64_t port;
    int fd = -1;
    if (g_nflows < NET_MAX_UDP_FLOWS && g_nconns < NET_MAX_CONNS && !conn_find(id) && cbor_map_get(p, "port", &v) &&
        cbor_get_uint(v, &port) && port > 0 && port < 65536)
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        net_conn *c;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && (c = conn_new(id, fd, C_OPEN))) {
            c->udp = true;
            g_nflows++;
            conn_events(c);
            return;
        }
        close(fd);
    }
    refuse(id);
}

static void connecting_done(net_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
        conn_end(c, true, true);
        return;
    }
    c->state = C_OPEN;
    frame_begin(c->id, 0, "net.connected", 0);
    frame_end();
    conn_events(c);
}

void net_message(uint32_t id, const char *type, size_t tlen, cbor_val p)
{
#define IS(s) (tlen == sizeof(s) - 1 && memcmp(type, s, tlen) == 0)
    if (IS("net.open")) {
        if (g_net_on)
            net_open(id, p);
        else
            refuse(id);
        return;
    }
    if (IS("net.udp_open")) {
        if (g_net_on)
            net_udp_open(id, p);
        else
            refuse(id);
        return;
    }
    if (IS("net.dns_reply")) {
        dns_reply(id, p);
        return;
    }
    net_conn *c = conn_find(id);
    if (!c)
        return; /* an ended session */
    cbor_val v;
    if (IS("net.connected")) {
        if (c->state == C_WAIT_HOST) {
            c->state = C_OPEN;
            conn_events(c);
        }
    } else if (IS("net.data")) {
        const uint8_t *data;
        size_t len;
        if (!cbor_map_get(p, "data", &v) || !cbor_get_bytes(v, &data, &len) || c->wr_eof)
            return;
        if (c->udp) {
            if (send(c->fd, data, len, MSG_DONTWAIT) < 0 && errno != EAGAIN && errno != ECONNREFUSED)
                logmsg("network: UDP reply not delivered: %s", strerror(errno));
            return;
        }
        if (len == 0) {
            c->wr_eof = true;
        } else {
            /* the host keeps within NET_RX_WINDOW; twice that is a hard bound */
            if (c->out_len + len > 2 * NET_RX_WINDOW) {
                conn_end(c, true, true);
                return;
            }
            if (c->out_len + len > c->out_cap) {
                size_t cap = c->out_len + len < NET_RX_WINDOW ? NET_RX_WINDOW : 2 * NET_RX_WINDOW;
                uint8_t *n = realloc(c->out, cap);
                if (!n) {
                    conn_end(c, true, true);
                    return;
                }
                c->out = n;
                c->out_cap = cap;
            }
            memcpy(c->out + c->out_len, data, len);
            c->out_len += len;
        }
        if (c->state == C_OPEN)
            conn_writable(c);
    } else if (IS("net.window")) {
        uint64_t bytes;
        if (cbor_map_get(p, "bytes", &v) && cbor_get_uint(v, &bytes)) {
            c->credit = c->credit + bytes > MAX_OUTPUT_WINDOW ? MAX_OUTPUT_WINDOW : c->credit + bytes;
            conn_events(c);
        }
    } else if (IS("net.close")) {
        bool reset = true;
        if (cbor_map_get(p, "reset", &v))
            cbor_get_bool(v, &reset);
        conn_end(c, false, reset);
    }
#undef IS
}

void net_event(uint32_t tag, int fd, uint32_t events)
{
    if (tag == TAG_TCP_LISTENER || tag == TAG_DNS) {
        /* stale when the port got full or quiet earlier in this batch (a checkpoint's ping
         * may come just before): level-triggered, the event comes back once it is over */
        if (port_throttled())
            return;
        if (tag == TAG_TCP_LISTENER)
            accept_guest_connections();
        else
            dns_readable();
        return;
    }
    net_conn *c = conn_find(tag);
    if (!c || c->fd != fd)
        return; /* stale event of a closed session */
    if (c->udp) {
        udp_flow_readable(c);
        return;
    }
    if (c->state == C_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            connecting_done(c);
        return;
    }
    if (events & EPOLLERR) {
        conn_end(c, true, true);
        return;
    }
    if ((events & EPOLLOUT) && !conn_writable(c))
        return;
    if (events & (EPOLLIN | EPOLLHUP)) {
        if (c->state != C_OPEN) {
            if (events & EPOLLHUP)
                conn_end(c, true, true); /* the guest gave up before the host answered */
        } else if (!c->rd_eof && c->credit > 0) {
            conn_readable(c);
        } else if ((events & EPOLLHUP) && !c->rd_eof) {
            /* both directions are shut, but what the guest sent last is still owed to the host:
             * it waits for credit; with nothing left to read, only the EOF is */
            int avail = 0;
            if (ioctl(c->fd, FIONREAD, &avail) == 0 && avail > 0) {
                ev_del(c->fd);
                c->parked = true;
                c->events = 0;
            } else {
                conn_readable(c);
            }
        } else if (events & EPOLLHUP) {
            /* both directions are shut: what is left cannot be delivered */
            conn_end(c, true, !(c->rd_eof && c->wr_eof && c->out_len == 0));
        }
    }
}

void net_throttle_changed(void)
{
    /* new connections and datagrams wait in the kernel's queues too while the port is full
     * or quiet for a checkpoint: each would start a frame to the host */
    static uint32_t listening = EPOLLIN;
    uint32_t want = port_throttled() ? 0 : EPOLLIN;
    if (g_net_on && want != listening && ev_mod(g_tcp_fd, want, EV_NET, TAG_TCP_LISTENER) == 0
        && ev_mod(g_dns_fd, want, EV_NET, TAG_DNS) == 0)
        listening = want;
    for (int i = 0; i < 256; i++)
        for (net_conn *c = g_conns[i]; c; c = c->next)
            conn_events(c);
}

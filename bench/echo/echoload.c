/*
 * echoload.c - the load generator of the echo workloads e1, e2, e3.
 *
 *   echoload NAME SERVER_CMD... -- WORKLOAD [REPS] [TARGET_S]
 *
 * Starts SERVER_CMD in a process group of its own, with a pipe for stdin
 * and one for stdout, and reads "port N" from its stdout: the server
 * listens on 127.0.0.1:N, echoes what it reads, and exits when its stdin
 * reaches end of file.  Then, from one thread and one epoll instance:
 *
 *   1. opens the workload's connections, in batches, and makes one round
 *      trip on each, so that the server holds a goroutine, task or thread
 *      for every connection before anything is measured;
 *   2. warms the active connections up for 0.25 s;
 *   3. runs REPS (default 5) measured runs of TARGET_S (default 0.8) s.
 *
 * Each active connection plays ping-pong: it writes one message and waits
 * until every byte of it has come back, checked byte for byte, before it
 * writes the next.  A request's latency runs from its write to its last
 * echoed byte (1-us histogram buckets).  Requests still in flight when a
 * run's time is up are finished but not counted.
 *
 *   e1  100 connections, all active, 64-byte messages
 *   e2  1,000 connections, all active, 512-byte messages
 *   e3  10,000 connections, 10 active, 64-byte messages: the point is the
 *       server's resident memory with that many connections open
 *
 * Output, one line per measured run, tab-separated:
 *   NAME WL REP REQUESTS NS_PER_REQUEST REQ_PER_S P50_US P99_US SERVER_RSS_KIB
 * where NS_PER_REQUEST is the run's wall time over its requests (all
 * connections together) and SERVER_RSS_KIB the server's VmRSS at the end
 * of the run.  Any other workload name exits 2 at once, printing nothing.
 *
 * Errors (a wrong echo, a closed connection, a server that does not start)
 * exit 1.  An alarm bounds the whole program; at the end the server's
 * stdin is closed, and SIGTERM, then SIGKILL, follow if it lingers.  The
 * soft limit on open files is raised to the hard limit first, for this
 * process and the server it starts.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
    HIST_BUCKETS = 100000, /* 1 us each: up to 100 ms, the rest in one */
    BATCH = 250,           /* connections opened and primed at a time */
    MAX_MSG = 4096,
};

struct workload {
    const char *name;
    int conns, active;
    size_t msg;
};

static const struct workload workloads[] = {
    { "e1", 100, 100, 64 },
    { "e2", 1000, 1000, 512 },
    { "e3", 10000, 10, 64 },
};

struct conn {
    int fd;
    unsigned id;
    unsigned seq;          /* requests made on it so far */
    size_t sent, got;      /* bytes of the current request written, echoed */
    int busy;              /* a request is in flight */
    int64_t start;         /* ns: when the current request was written */
    unsigned char out[MAX_MSG];
};

static const char *name;
static pid_t server = -1;
static int server_stdin = -1;
static int ep = -1;
static struct conn *conns;
static size_t msg;
static uint64_t hist[HIST_BUCKETS + 1];

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void stop_server(void)
{
    if (server <= 0)
        return;
    if (server_stdin >= 0) {
        close(server_stdin);
        server_stdin = -1;
    }
    /* The server exits on end of file; give it 2 s, then insist. */
    for (int i = 0; i < 200; i++) {
        if (waitpid(server, NULL, WNOHANG) == server) {
            server = -1;
            return;
        }
        usleep(10000);
    }
    kill(-server, SIGTERM);
    usleep(200000);
    kill(-server, SIGKILL);
    waitpid(server, NULL, 0);
    server = -1;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "echoload %s: ", name ? name : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    stop_server();
    exit(1);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "echoload: the run took too long\n";
    if (write(2, m, sizeof m - 1) < 0) {
        /* nothing more to say */
    }
    if (server > 0)
        kill(-server, SIGKILL);
    _exit(1);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Starts the server and returns the port it printed. */
static int start_server(char **argv)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
        die("pipe: %s", strerror(errno));
    server = fork();
    if (server < 0)
        die("fork: %s", strerror(errno));
    if (server == 0) {
        setpgid(0, 0);
        dup2(in[0], 0);
        dup2(out[1], 1);
        execvp(argv[0], argv);
        fprintf(stderr, "echoload: cannot run %s: %s\n", argv[0],
                strerror(errno));
        _exit(127);
    }
    setpgid(server, server); /* either side may win the race */
    close(in[0]);
    close(out[1]);
    server_stdin = in[1];

    char line[128];
    size_t n = 0;
    int64_t give_up = now_ns() + 20 * (int64_t)1000000000;
    while (n < sizeof line - 1) {
        struct pollfd p = { .fd = out[0], .events = POLLIN };
        int left = (int)((give_up - now_ns()) / 1000000);
        if (left <= 0 || poll(&p, 1, left) <= 0)
            die("the server printed no port within 20 s");
        ssize_t r = read(out[0], line + n, 1);
        if (r <= 0)
            die("the server exited before printing its port");
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    int port;
    if (sscanf(line, "port %d", &port) != 1 || port <= 0 || port > 65535)
        die("expected \"port N\" from the server, got \"%s\"", line);
    /* The server's stdout stays open (a server may print more); nobody
     * reads it, which is fine for the little a server prints. */
    return port;
}

static int connect_one(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s (raise the limit on open files)", strerror(errno));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    while (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        if (errno != EINTR)
            die("connect: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* The byte at offset i of request seq on connection id: changes with all
 * three, so a crossed or stale echo is caught. */
static unsigned char pattern(unsigned id, unsigned seq, size_t i)
{
    return (unsigned char)(id * 131u + seq * 31u + (unsigned)i * 7u + 1u);
}

static void set_events(struct conn *c, uint32_t ev)
{
    struct epoll_event e = { .events = ev, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) != 0)
        die("epoll_ctl: %s", strerror(errno));
}

/* Writes what is left of c's request; waits for room if the socket is
 * full (never with these message sizes, but allowed). */
static void push(struct conn *c)
{
    while (c->sent < msg) {
        ssize_t w = write(c->fd, c->out + c->sent, msg - c->sent);
        if (w > 0) {
            c->sent += (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            set_events(c, EPOLLIN | EPOLLOUT);
            return;
        } else if (w < 0 && errno != EINTR) {
            die("write: %s", strerror(errno));
        }
    }
}

static void request(struct conn *c)
{
    c->seq++;
    for (size_t i = 0; i < msg; i++)
        c->out[i] = pattern(c->id, c->seq, i);
    c->sent = c->got = 0;
    c->busy = 1;
    c->start = now_ns();
    push(c);
}

/* Reads c's echo; returns 1 when the request is complete. */
static int pull(struct conn *c)
{
    unsigned char buf[MAX_MSG];
    for (;;) {
        ssize_t r = read(c->fd, buf, sizeof buf);
        if (r == 0)
            die("connection %u closed by the server", c->id);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            die("read: %s", strerror(errno));
        }
        if (!c->busy || c->got + (size_t)r > c->sent)
            die("connection %u: %zd bytes more than were sent", c->id, r);
        if (memcmp(buf, c->out + c->got, (size_t)r) != 0)
            die("connection %u: the echo differs from the request", c->id);
        c->got += (size_t)r;
        if (c->got == msg) {
            c->busy = 0;
            return 1;
        }
    }
}

/*
 * Runs the event loop: keeps connections lo..hi-1 busy while now < until
 * (again is 1), then lets their requests drain.  Requests that complete
 * before until are counted in *done and the histogram when record is set.
 * Returns when none is in flight any more.
 */
static void loop(int lo, int hi, int64_t until, int again, int record,
                 uint64_t *done)
{
    int inflight = 0;
    for (int i = lo; i < hi; i++) {
        request(&conns[i]);
        inflight++;
    }
    struct epoll_event ev[256];
    int64_t give_up = (until > now_ns() ? until : now_ns()) +
                      20 * (int64_t)1000000000;
    while (inflight > 0) {
        int n = epoll_wait(ep, ev, 256, 1000);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        if (now_ns() > give_up)
            die("%d requests got no answer for 20 s", inflight);
        for (int k = 0; k < n; k++) {
            struct conn *c = ev[k].data.ptr;
            if (ev[k].events & EPOLLOUT) {
                set_events(c, EPOLLIN);
                push(c);
            }
            if (!(ev[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) || !pull(c))
                continue;
            int64_t t = now_ns();
            if (t < until) {
                if (record) {
                    int64_t us = (t - c->start) / 1000;
                    hist[us < HIST_BUCKETS ? us : HIST_BUCKETS]++;
                    (*done)++;
                }
                if (again) {
                    request(c);
                    continue;
                }
            }
            inflight--;
        }
    }
}

static double percentile(uint64_t total, double q)
{
    uint64_t want = (uint64_t)(q * (double)total), seen = 0;
    for (int i = 0; i <= HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen > want)
            return i + 0.5;
    }
    return HIST_BUCKETS;
}

static long server_rss_kib(void)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)server);
    FILE *f = fopen(path, "r");
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

int main(int argc, char **argv)
{
    int sep = 0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--") == 0) {
            sep = i;
            break;
        }
    if (argc < 4 || sep < 3 || sep + 1 >= argc) {
        fprintf(stderr,
                "usage: echoload NAME SERVER_CMD... -- WORKLOAD [REPS] [TARGET_S]\n");
        return 1;
    }
    name = argv[1];
    const char *wl = argv[sep + 1];
    int reps = sep + 2 < argc ? atoi(argv[sep + 2]) : 5;
    double target = sep + 3 < argc ? atof(argv[sep + 3]) : 0.8;
    const struct workload *w = NULL;
    for (size_t i = 0; i < sizeof workloads / sizeof *workloads; i++)
        if (strcmp(wl, workloads[i].name) == 0)
            w = &workloads[i];
    if (!w)
        return 2;
    if (reps < 1 || reps > 100 || !(target > 0 && target <= 60))
        die("REPS must be 1..100 and TARGET_S in (0, 60]");
    msg = w->msg;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(60 + reps * (target + 15)));
    raise_nofile();
    argv[sep] = NULL;
    int port = start_server(argv + 2);

    conns = calloc((size_t)w->conns, sizeof *conns);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || ep < 0)
        die("out of memory or descriptors");
    /* 1: connect and prime, a batch at a time, so that the server's
     * accept queue never overflows (a dropped SYN costs a 1 s retry). */
    for (int lo = 0; lo < w->conns; lo += BATCH) {
        int hi = lo + BATCH < w->conns ? lo + BATCH : w->conns;
        for (int i = lo; i < hi; i++) {
            struct conn *c = &conns[i];
            c->id = (unsigned)i;
            c->fd = connect_one(port);
            struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
            if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) != 0)
                die("epoll_ctl: %s", strerror(errno));
        }
        loop(lo, hi, 0, 0, 0, NULL);
    }
    /* 2: warm up. */
    loop(0, w->active, now_ns() + 250000000, 1, 0, NULL);
    /* 3: measure. */
    for (int rep = 1; rep <= reps; rep++) {
        memset(hist, 0, sizeof hist);
        uint64_t done = 0;
        int64_t t0 = now_ns();
        int64_t until = t0 + (int64_t)(target * 1e9);
        loop(0, w->active, until, 1, 1, &done);
        if (done == 0)
            die("no request completed in %.2f s", target);
        double secs = (double)(until - t0) / 1e9;
        printf("%s\t%s\t%d\t%llu\t%.1f\t%.0f\t%.1f\t%.1f\t%ld\n", name, wl,
               rep, (unsigned long long)done, secs * 1e9 / (double)done,
               (double)done / secs, percentile(done, 0.50),
               percentile(done, 0.99), server_rss_kib());
        fflush(stdout);
    }
    for (int i = 0; i < w->conns; i++)
        close(conns[i].fd);
    stop_server();
    free(conns);
    return 0;
}

/*
 * echo_tasks.c - a TCP echo server with one task per connection.
 *
 *   echo_tasks [--port P] [--idle-ms MS] [--self-test N]
 *   echo_tasks --client PORT N
 *
 * The server listens on 127.0.0.1:P (0, the default, lets the kernel
 * choose; the first line printed, "port N", says which port it got) and
 * echoes what each client sends, through a 4 KiB buffer that a connection
 * holds only while it has something to echo.
 * A connection that stays quiet for MS milliseconds (default 60000) is
 * closed: its task waits with a select over the socket (CHAN_FD_CASE) and
 * a timeout, so the wait for data and the idle timer are one call, and
 * the worker thread is free meanwhile.
 *
 * SIGINT or SIGTERM, received through a signal channel, or the end of
 * standard input (Ctrl-D), shuts it down gracefully: the listener is
 * closed with chan_fd_close (which wakes the accepting task), connections
 * in progress finish, and a wait group tells when the last one is done.
 * Then it prints what it served and "bye", and exits 0.  (This is also
 * the protocol of the echo benchmarks, bench/echo/.)
 *
 * --self-test N runs N echo clients against the server in the same
 * process (threads, using the same calls), then one client that stays
 * idle until the server closes its connection, then raises SIGTERM.  --client PORT N is such a client run alone against a server
 * started separately (tests/examples.sh does both).
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chan.h>

#define MS ((int64_t)1000000)

static int64_t idle_ns = 60000 * MS;
static chan_wg_t *wg;
static atomic_long connections, echoed, idle_closed;

enum { BUF_SIZE = 4096 };

/* Echoes what fd has to read now: 1 to go on waiting, 0 to close. */
static int echo_ready(int fd)
{
    char *buf = malloc(BUF_SIZE);
    if (!buf)
        return 0;
    int more = 1;
    ssize_t n = chan_read(fd, buf, BUF_SIZE, 0);
    if (n == -EAGAIN)
        ; /* nothing after all: wait again */
    else if (n <= 0 || chan_write(fd, buf, (size_t)n, idle_ns) != n)
        more = 0; /* end of file or an error */
    else
        atomic_fetch_add(&echoed, n);
    free(buf);
    return more;
}

/* One connection: echo until the client closes, or until it stays quiet
 * for idle_ns.  The buffer exists only while there is something to echo,
 * so an idle connection costs its task's stack (a page) and nothing
 * more: the select needs no buffer, unlike a blocking read. */
static void serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    for (;;) {
        chan_case_t c[1] = { CHAN_FD_CASE(fd, POLLIN) };
        int k = chan_select(c, 1, idle_ns);
        if (k == -ETIMEDOUT) {
            atomic_fetch_add(&idle_closed, 1);
            break;
        }
        if (k != 0 || c[0].result < 0 || !echo_ready(fd))
            break;
    }
    chan_fd_close(fd);
    chan_wg_done(wg);
}

/* Accepts until the listener is closed (chan_accept then fails). */
static void acceptor(void *arg)
{
    int l = (int)(intptr_t)arg;
    for (;;) {
        int fd = chan_accept(l, NULL, NULL, CHAN_FOREVER);
        if (fd < 0)
            break; /* -EBADF once main closed the listener */
        atomic_fetch_add(&connections, 1);
        chan_wg_add(wg, 1);
        if (chan_go(NULL, serve, (void *)(intptr_t)fd) != 0) {
            chan_fd_close(fd);
            chan_wg_done(wg);
        }
    }
    chan_wg_done(wg);
}

/* Closes *arg (a channel) once standard input reaches its end.  Waits with
 * chan_fd_wait, which leaves the descriptor's mode alone (stdin is often
 * a terminal, shared with the shell). */
static void watch_stdin(void *arg)
{
    char buf[256];
    while (chan_fd_wait(0, POLLIN, CHAN_FOREVER) > 0 &&
           read(0, buf, sizeof buf) > 0)
        ;
    chan_close(arg);
}

/* ------------------------------------------------------------ client */

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (chan_connect(fd, (struct sockaddr *)&a, sizeof a, 5000 * MS) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Client i: a few messages of different sizes, each echoed exactly. */
static int client_once(int port, int i)
{
    int fd = connect_to(port);
    if (fd < 0)
        return 0;
    int ok = 1;
    for (int m = 0; m < 3 && ok; m++) {
        char out[3000], in[3000];
        size_t len = 1 + (size_t)(i * 997 + m * 631) % sizeof out;
        for (size_t j = 0; j < len; j++)
            out[j] = (char)('a' + (i + m + (int)j) % 26);
        ok = chan_write(fd, out, len, 5000 * MS) == (ssize_t)len;
        size_t got = 0;
        while (ok && got < len) {
            ssize_t n = chan_read(fd, in + got, len - got, 5000 * MS);
            ok = n > 0;
            if (ok)
                got += (size_t)n;
        }
        ok = ok && memcmp(in, out, len) == 0;
    }
    close(fd);
    return ok;
}

static int run_clients(int port, int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += client_once(port, i);
    return ok;
}

/* A client that sends nothing: the server must close it when idle. */
static int idle_client(int port)
{
    int fd = connect_to(port);
    if (fd < 0)
        return 0;
    char b;
    ssize_t n = chan_read(fd, &b, 1, 30000 * MS);
    close(fd);
    return n == 0;
}

struct self_test {
    int port, n;
    int ok, idle_ok;
};

static void *self_test_main(void *arg)
{
    struct self_test *t = arg;
    t->ok = run_clients(t->port, t->n);
    t->idle_ok = idle_client(t->port);
    printf("clients: %d of %d echoed exactly; idle client %s\n", t->ok, t->n,
           t->idle_ok ? "closed by the server" : "NOT closed");
    fflush(stdout);
    raise(SIGTERM); /* as if from outside: through the signal channel */
    return NULL;
}

/* ------------------------------------------------------------ main */

static int usage(void)
{
    fprintf(stderr, "usage: echo_tasks [--port P] [--idle-ms MS] [--self-test N]\n"
                    "       echo_tasks --client PORT N\n");
    return 2;
}

int main(int argc, char **argv)
{
    int port = 0, self_test = -1;
    if (argc > 1 && strcmp(argv[1], "--client") == 0) {
        int p = argc == 4 ? atoi(argv[2]) : 0, n = argc == 4 ? atoi(argv[3]) : 0;
        if (p <= 0 || p > 65535 || n <= 0)
            return usage();
        int ok = run_clients(p, n);
        printf("client: %d of %d echoed exactly\n", ok, n);
        return ok == n ? 0 : 1;
    }
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--idle-ms") == 0)
            idle_ns = atoi(argv[++i]) * MS;
        else if (strcmp(argv[i], "--self-test") == 0)
            self_test = atoi(argv[++i]);
        else
            return usage();
    }
    if (port < 0 || port > 65535 || idle_ns <= 0 || self_test == 0)
        return usage();

    /* The signals first, so that none arrives before it is watched. */
    chan_t *sig = chan_make(sizeof(int), 2);
    if (!sig || chan_signal_notify(sig, SIGINT) != 0 ||
        chan_signal_notify(sig, SIGTERM) != 0) {
        fprintf(stderr, "echo_tasks: cannot watch signals\n");
        return 1;
    }

    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    socklen_t alen = sizeof a;
    int one = 1;
    if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1024) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0) {
        perror("echo_tasks: listen");
        return 1;
    }
    port = ntohs(a.sin_port);
    printf("port %d\n", port);
    fflush(stdout);

    /* Every connection is a descriptor: allow as many as the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    chan_sched_opts_t o = { .threads = 2 };
    chan_sched_t *s = chan_sched_new(&o);
    wg = chan_wg_new();
    if (!s || !wg)
        return 1;
    chan_wg_add(wg, 1);
    if (chan_go(s, acceptor, (void *)(intptr_t)l) != 0)
        return 1;

    struct self_test t = { .port = port, .n = self_test };
    pthread_t client;
    chan_t *eof = chan_make(0, 0); /* closed at the end of stdin */
    if (!eof)
        return 1;
    if (self_test > 0) {
        if (pthread_create(&client, NULL, self_test_main, &t))
            return 1;
    } else if (chan_go(s, watch_stdin, eof) != 0) {
        return 1;
    }

    /* Wait for the signal, waking now and then: a build with
     * ThreadSanitizer runs a signal handler only once the thread it
     * interrupted leaves its wait, and this thread may be that one. */
    int signo = 0, k;
    do {
        chan_case_t c[2] = { CHAN_RECV_CASE(sig, &signo),
                             CHAN_RECV_CASE(eof, NULL) };
        k = chan_select(c, 2, 100 * MS);
    } while (k == -ETIMEDOUT);
    if (k == 0)
        printf("received %s: shutting down\n",
               signo == SIGINT ? "SIGINT" : "SIGTERM");
    else
        printf("end of input: shutting down\n");
    chan_fd_close(l);           /* wakes the acceptor with -EBADF */
    chan_wg_wait(wg);           /* every connection finished */
    printf("served %ld connections, echoed %ld bytes, closed %ld idle\n",
           atomic_load(&connections), atomic_load(&echoed),
           atomic_load(&idle_closed));
    printf("bye\n");
    if (self_test <= 0)
        chan_fd_close(0);       /* wakes watch_stdin, if it still waits */
    chan_sched_free(s);
    chan_wg_free(wg);
    chan_signal_stop(sig);
    chan_release(sig);
    chan_release(eof);
    if (self_test > 0) {
        pthread_join(client, NULL);
        return t.ok == t.n && t.idle_ok ? 0 : 1;
    }
    return 0;
}

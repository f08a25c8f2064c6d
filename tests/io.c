/*
 * io.c - tests of the I/O calls: chan_fd_wait, chan_read, chan_write,
 * chan_accept, chan_connect, chan_fd_close, in threads and in tasks, on
 * pipes, socketpairs and TCP on 127.0.0.1.
 *
 * "The waiter is waiting" is forced, not guessed: a waiting thread is
 * seen asleep in the kernel (test_wait_blocked, util.h) after it posted a
 * semaphore right before its call; a waiting task on a one-worker
 * scheduler is known to be parked once another task, started by it right
 * before its call, runs at all.
 */
#include "util.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

TestSuite(io, .timeout = TEST_TIMEOUT_S);


/* ------------------------------------------------------------ helpers */

static void make_pipe(int p[2])
{
    cr_assert_eq(pipe(p), 0, "pipe: %s", strerror(errno));
}

static void make_socketpair(int s[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0,
                 "socketpair: %s", strerror(errno));
}

/* A listening TCP socket on 127.0.0.1 with a port of the kernel's choice;
 * its address goes to *addr. */
static int tcp_listener(struct sockaddr_in *addr, int backlog)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(l, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof a), 0,
                 "bind: %s", strerror(errno));
    cr_assert_eq(listen(l, backlog), 0);
    socklen_t len = sizeof *addr;
    cr_assert_eq(getsockname(l, (struct sockaddr *)addr, &len), 0);
    return l;
}

/* A connected TCP pair over 127.0.0.1: c (client) and *srv (accepted). */
static int tcp_pair(int *srv)
{
    struct sockaddr_in a;
    int l = tcp_listener(&a, 4);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(c, 0);
    cr_assert_eq(chan_connect(c, (struct sockaddr *)&a, sizeof a,
                              5000 * TEST_MS), 0);
    *srv = chan_accept(l, NULL, NULL, 5000 * TEST_MS);
    cr_assert_geq(*srv, 0);
    close(l);
    return c;
}

static void fill_pipe(int fd)
{
    cr_assert_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    char buf[4096] = { 0 };
    while (write(fd, buf, sizeof buf) > 0)
        ;
    cr_assert_eq(errno, EAGAIN);
    /* A pipe may still take less than a page: fill that too. */
    while (write(fd, buf, 1) > 0)
        ;
}

/* ------------------------------------------------------------ fd_wait */

Test(io, fd_wait_bad_arguments)
{
    int p[2];
    make_pipe(p);
    cr_assert_eq(chan_fd_wait(p[0], 0, 0), -EINVAL);
    cr_assert_eq(chan_fd_wait(p[0], POLLERR | POLLHUP, 1000 * TEST_MS),
                 -EINVAL);
    cr_assert_eq(chan_fd_wait(-1, POLLIN, 0), -EBADF);
    cr_assert_eq(chan_fd_wait(-1, POLLIN, 1000 * TEST_MS), -EBADF);
    /* Start the poller first, so that its own descriptor does not take
     * the number closed below. */
    cr_assert_eq(chan_fd_wait(p[1], POLLOUT, 1000 * TEST_MS), POLLOUT);
    close(p[0]);
    close(p[1]);
    /* p[0] is closed now. */
    cr_assert_eq(chan_fd_wait(p[0], POLLIN, 0), -EBADF);
    cr_assert_eq(chan_fd_wait(p[0], POLLIN, 1000 * TEST_MS), -EBADF);
    cr_assert_eq(chan_fd_wait(p[0], POLLIN, CHAN_FOREVER), -EBADF);
}

Test(io, fd_wait_is_level_triggered)
{
    int p[2];
    make_pipe(p);
    cr_assert_eq(chan_fd_wait(p[0], POLLIN, 0), -EAGAIN);
    cr_assert_eq(chan_fd_wait(p[1], POLLOUT, 0), POLLOUT);
    cr_assert_eq(write(p[1], "x", 1), 1);
    /* Ready now: every wait returns at once, however often, with or
     * without a timeout, until the byte is read. */
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(chan_fd_wait(p[0], POLLIN, 0), POLLIN);
        cr_assert_eq(chan_fd_wait(p[0], POLLIN, CHAN_FOREVER), POLLIN);
        cr_assert_eq(chan_fd_wait(p[0], POLLIN | POLLOUT, 5000 * TEST_MS),
                     POLLIN);
    }
    char c;
    cr_assert_eq(read(p[0], &c, 1), 1);
    cr_assert_eq(chan_fd_wait(p[0], POLLIN, 0), -EAGAIN);
    close(p[0]);
    close(p[1]);
}

Test(io, fd_wait_times_out_within_bounds)
{
    int p[2];
    make_pipe(p);
    int64_t t0 = test_now_ns();
    cr_assert_eq(chan_fd_wait(p[0], POLLIN, 30 * TEST_MS), -ETIMEDOUT);
    int64_t dt = test_now_ns() - t0;
    cr_assert_geq(dt, 30 * TEST_MS);
    cr_assert_lt(dt, 5000 * TEST_MS);
    close(p[0]);
    close(p[1]);
}

Test(io, fd_wait_reports_hup_and_err_unasked)
{
    int p[2];
    make_pipe(p);
    close(p[1]);
    int r = chan_fd_wait(p[0], POLLIN, 1000 * TEST_MS);
    cr_assert_gt(r, 0);
    cr_assert(r & POLLHUP, "revents %#x", r);
    close(p[0]);

    make_pipe(p);
    fill_pipe(p[1]);
    close(p[0]);
    r = chan_fd_wait(p[1], POLLOUT, 1000 * TEST_MS);
    cr_assert_gt(r, 0);
    cr_assert(r & POLLERR, "revents %#x", r);
    close(p[1]);

    int s[2];
    make_socketpair(s);
    close(s[1]);
    r = chan_fd_wait(s[0], POLLOUT, 1000 * TEST_MS);
    cr_assert_gt(r, 0);
    cr_assert(r & POLLHUP, "revents %#x", r);
    close(s[0]);
}

struct writer {
    int fd;
    sem_t go;
    int64_t delay;
};

static void *write_after(void *arg)
{
    struct writer *w = arg;
    test_sem_wait(&w->go);
    test_sleep_ns(w->delay);
    if (write(w->fd, "y", 1) != 1)
        abort();
    return NULL;
}

/* A thread that waits, and the one who makes it ready. */
struct waiter {
    int fd;
    int events;
    int64_t timeout;
    int op;             /* 0 fd_wait, 1 read, 2 write, 3 accept, 4 select */
    struct test_call call;
    ssize_t rc;
    char buf[64];
    size_t len;         /* op 2: bytes to write */
    char *wbuf;
};

static void waiter_call(void *arg)
{
    struct waiter *w = arg;
    switch (w->op) {
    case 0:
        w->rc = chan_fd_wait(w->fd, w->events, w->timeout);
        break;
    case 1:
        w->rc = chan_read(w->fd, w->buf, sizeof w->buf, w->timeout);
        break;
    case 2:
        w->rc = chan_write(w->fd, w->wbuf, w->len, w->timeout);
        break;
    case 3:
        w->rc = chan_accept(w->fd, NULL, NULL, w->timeout);
        break;
    case 4: {
        chan_case_t c[1] = { CHAN_FD_CASE(w->fd, w->events) };
        int i = chan_select(c, 1, w->timeout);
        w->rc = i == 0 ? c[0].result : i - 1000;
        break;
    }
    }
}

static pthread_t waiter_start(struct waiter *w, int op, int fd, int events)
{
    w->op = op;
    w->fd = fd;
    w->events = events;
    if (w->timeout == 0)
        w->timeout = CHAN_FOREVER;
    test_start_blocked(&w->call, waiter_call, w);
    return w->call.th;
}

Test(io, fd_wait_wakes_when_ready)
{
    int p[2];
    make_pipe(p);
    struct waiter w = { 0 };
    pthread_t t = waiter_start(&w, 0, p[0], POLLIN);
    cr_assert_eq(write(p[1], "z", 1), 1);
    test_thread_join(t);
    cr_assert_eq(w.rc, POLLIN);
    close(p[0]);
    close(p[1]);
}

Test(io, readiness_on_socketpair_and_tcp)
{
    int s[2];
    make_socketpair(s);
    cr_assert_eq(chan_fd_wait(s[0], POLLOUT, 0), POLLOUT);
    cr_assert_eq(chan_fd_wait(s[0], POLLIN, 0), -EAGAIN);
    struct writer wr = { .fd = s[1], .delay = 10 * TEST_MS };
    test_sem_init(&wr.go, 0);
    pthread_t t = test_thread_start(write_after, &wr);
    test_sem_post(&wr.go);
    cr_assert_eq(chan_fd_wait(s[0], POLLIN, 10000 * TEST_MS), POLLIN);
    test_thread_join(t);
    close(s[0]);
    close(s[1]);

    int srv;
    int c = tcp_pair(&srv);
    cr_assert_eq(chan_fd_wait(c, POLLIN, 0), -EAGAIN);
    cr_assert_eq(chan_fd_wait(c, POLLOUT, 0), POLLOUT);
    wr.fd = srv;
    t = test_thread_start(write_after, &wr);
    test_sem_post(&wr.go);
    cr_assert_eq(chan_fd_wait(c, POLLIN, 10000 * TEST_MS), POLLIN);
    test_thread_join(t);
    char b;
    cr_assert_eq(chan_read(c, &b, 1, 0), 1);
    cr_assert_eq(b, 'y');
    close(srv);
    int r = chan_fd_wait(c, POLLIN, 10000 * TEST_MS);
    cr_assert_gt(r, 0);
    cr_assert(r & POLLIN, "EOF is readable: %#x", r);
    cr_assert_eq(chan_read(c, &b, 1, 0), 0);
    close(c);
    test_sem_destroy(&wr.go);
}

/* ------------------------------------------------------------ read */

Test(io, read_return_codes)
{
    int p[2];
    make_pipe(p);
    char buf[8];
    cr_assert_eq(chan_read(-1, buf, 1, 0), -EBADF);
    cr_assert_eq(chan_read(p[0], NULL, 1, 0), -EINVAL);
    cr_assert_eq(chan_read(p[0], buf, 0, 0), 0);
    cr_assert_eq(chan_read(p[0], buf, sizeof buf, 0), -EAGAIN);
    int64_t t0 = test_now_ns();
    cr_assert_eq(chan_read(p[0], buf, sizeof buf, 20 * TEST_MS), -ETIMEDOUT);
    cr_assert_geq(test_now_ns() - t0, 20 * TEST_MS);
    /* The library made the descriptor non-blocking. */
    cr_assert(fcntl(p[0], F_GETFL) & O_NONBLOCK);
    cr_assert_eq(write(p[1], "abc", 3), 3);
    cr_assert_eq(chan_read(p[0], buf, sizeof buf, CHAN_FOREVER), 3);
    cr_assert_eq(memcmp(buf, "abc", 3), 0);
    close(p[1]);
    cr_assert_eq(chan_read(p[0], buf, sizeof buf, CHAN_FOREVER), 0);
    close(p[0]);
    cr_assert_eq(chan_read(p[0], buf, sizeof buf, 0), -EBADF);

    /* A socket reset by its peer. */
    int srv;
    int c = tcp_pair(&srv);
    struct linger lg = { 1, 0 };
    cr_assert_eq(setsockopt(srv, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(srv);
    cr_assert_eq(chan_read(c, buf, sizeof buf, 5000 * TEST_MS), -ECONNRESET);
    close(c);
}

Test(io, read_waits_and_wakes_in_thread)
{
    int p[2];
    make_pipe(p);
    struct waiter w = { 0 };
    pthread_t t = waiter_start(&w, 1, p[0], POLLIN);
    cr_assert_eq(write(p[1], "hello", 5), 5);
    test_thread_join(t);
    cr_assert_eq(w.rc, 5);
    cr_assert_eq(memcmp(w.buf, "hello", 5), 0);
    close(p[0]);
    close(p[1]);
}

/* ------------------------------------------------------------ write */

Test(io, write_return_codes)
{
    int p[2];
    make_pipe(p);
    cr_assert_eq(chan_write(-1, "x", 1, 0), -EBADF);
    cr_assert_eq(chan_write(p[1], NULL, 1, 0), -EINVAL);
    cr_assert_eq(chan_write(p[1], "x", 0, 0), 0);
    cr_assert_eq(chan_write(p[1], "x", 1, 0), 1);
    fill_pipe(p[1]);
    cr_assert_eq(chan_write(p[1], "x", 1, 0), -EAGAIN);
    cr_assert_eq(chan_write(p[1], "x", 1, 20 * TEST_MS), -ETIMEDOUT);
    close(p[0]);
    close(p[1]);
}

struct reader {
    int fd;
    size_t want;
    size_t got;
    int bad;        /* a byte differed from the pattern */
    size_t stop_after; /* 0: read all; else close fd after this many bytes */
};

static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 131 + (i >> 9));
}

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    char buf[7001]; /* odd size: reads do not line up with writes */
    while (r->got < r->want) {
        size_t k = sizeof buf;
        if (r->stop_after && r->stop_after - r->got < k)
            k = r->stop_after - r->got;
        ssize_t n = chan_read(r->fd, buf, k, 20000 * TEST_MS);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if ((unsigned char)buf[i] != pattern(r->got + (size_t)i))
                r->bad = 1;
        r->got += (size_t)n;
        if (r->stop_after && r->got >= r->stop_after) {
            close(r->fd);
            break;
        }
    }
    return NULL;
}

Test(io, write_larger_than_pipe_buffer)
{
    size_t len = 1 << 20;
    unsigned char *buf = malloc(len);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern(i);
    int p[2];
    make_pipe(p);
    struct reader r = { .fd = p[0], .want = len };
    pthread_t t = test_thread_start(reader_main, &r);
    cr_assert_eq(chan_write(p[1], buf, len, 30000 * TEST_MS), (ssize_t)len);
    test_thread_join(t);
    cr_assert_eq(r.got, len);
    cr_assert_eq(r.bad, 0);
    close(p[0]);
    close(p[1]);
    free(buf);
}

Test(io, write_partial_on_timeout_and_on_error)
{
    size_t len = 1 << 20;
    unsigned char *buf = malloc(len);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern(i);

    /* Nobody reads: the pipe buffer fills, then the timeout ends it. */
    int p[2];
    make_pipe(p);
    ssize_t n = chan_write(p[1], buf, len, 30 * TEST_MS);
    cr_assert_gt(n, 0);
    cr_assert_lt(n, (ssize_t)len);
    close(p[0]);
    close(p[1]);

    /* The reader leaves after 100,000 bytes: EPIPE after some bytes. */
    make_pipe(p);
    struct reader r = { .fd = p[0], .want = len, .stop_after = 100000 };
    pthread_t t = test_thread_start(reader_main, &r);
    n = chan_write(p[1], buf, len, 30000 * TEST_MS);
    test_thread_join(t);
    /* The writer learns of the close at its next write, or is woken by
     * it: the call ends with what it wrote. */
    cr_assert_eq(r.got, 100000);
    cr_assert_geq(n, 100000);
    cr_assert_lt(n, (ssize_t)len);
    cr_assert_eq(r.bad, 0);
    close(p[1]);
    free(buf);
}

static int sigpipe_pending(void)
{
    sigset_t s;
    cr_assert_eq(sigpending(&s), 0);
    return sigismember(&s, SIGPIPE);
}

Test(io, write_never_raises_sigpipe)
{
    /* The default action: SIGPIPE would kill the test. */
    signal(SIGPIPE, SIG_DFL);
    int p[2];
    make_pipe(p);
    close(p[0]);
    cr_assert_eq(chan_write(p[1], "x", 1, 0), -EPIPE);
    cr_assert_eq(chan_write(p[1], "x", 1, CHAN_FOREVER), -EPIPE);
    cr_assert_eq(sigpipe_pending(), 0);
    close(p[1]);

    int s[2];
    make_socketpair(s);
    close(s[1]);
    cr_assert_eq(chan_write(s[0], "x", 1, CHAN_FOREVER), -EPIPE);
    cr_assert_eq(sigpipe_pending(), 0);
    close(s[0]);

    /* With SIGPIPE blocked and one already pending, that one stays. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    cr_assert_eq(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
    cr_assert_eq(raise(SIGPIPE), 0);
    make_pipe(p);
    close(p[0]);
    cr_assert_eq(chan_write(p[1], "x", 1, 0), -EPIPE);
    cr_assert_eq(sigpipe_pending(), 1);
    int sig = 0;
    cr_assert_eq(sigwait(&set, &sig), 0);
    cr_assert_eq(sig, SIGPIPE);
    cr_assert_eq(sigpipe_pending(), 0);
    cr_assert_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
    close(p[1]);
}

/* ------------------------------------------------------------ sockets */

Test(io, accept_and_connect)
{
    struct sockaddr_in a;
    int l = tcp_listener(&a, 8);
    cr_assert_eq(chan_accept(l, NULL, NULL, 0), -EAGAIN);
    cr_assert_eq(chan_accept(l, NULL, NULL, 20 * TEST_MS), -ETIMEDOUT);
    struct sockaddr_in peer;
    cr_assert_eq(chan_accept(l, (struct sockaddr *)&peer, NULL, 0), -EINVAL);
    cr_assert_eq(chan_accept(-1, NULL, NULL, 0), -EBADF);
    cr_assert_eq(chan_connect(-1, (struct sockaddr *)&a, sizeof a, 0), -EBADF);

    int c = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(chan_connect(c, NULL, 0, 0), -EINVAL);
    cr_assert_eq(chan_connect(c, (struct sockaddr *)&a, sizeof a,
                              5000 * TEST_MS), 0);
    socklen_t plen = sizeof peer;
    int s = chan_accept(l, (struct sockaddr *)&peer, &plen, 5000 * TEST_MS);
    cr_assert_geq(s, 0);
    cr_assert_eq(plen, sizeof peer);
    cr_assert_eq(peer.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    cr_assert(fcntl(s, F_GETFL) & O_NONBLOCK);
    cr_assert(fcntl(s, F_GETFD) & FD_CLOEXEC);
    cr_assert_eq(chan_write(c, "ping", 4, 5000 * TEST_MS), 4);
    char buf[4];
    cr_assert_eq(chan_read(s, buf, 4, 5000 * TEST_MS), 4);
    cr_assert_eq(memcmp(buf, "ping", 4), 0);
    close(c);
    close(s);
    close(l);
}

Test(io, connect_refused)
{
    /* A port bound but not listening refuses connections. */
    int b = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(b, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(b, (struct sockaddr *)&a, &len), 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(chan_connect(c, (struct sockaddr *)&a, sizeof a,
                              5000 * TEST_MS), -ECONNREFUSED);
    close(c);
    close(b);
}

Test(io, connect_times_out)
{
    /* A listener whose backlog is full drops new SYNs, so a connection
     * stays in progress.  If the kernel answers anyway, skip. */
    struct sockaddr_in a;
    int l = tcp_listener(&a, 0);
    int socks[16];
    int n = 0, timed_out = 0;
    for (; n < 16 && !timed_out; n++) {
        socks[n] = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_geq(socks[n], 0);
        int64_t t0 = test_now_ns();
        int rc = chan_connect(socks[n], (struct sockaddr *)&a, sizeof a,
                              50 * TEST_MS);
        if (rc == -ETIMEDOUT) {
            int64_t dt = test_now_ns() - t0;
            cr_assert_geq(dt, 50 * TEST_MS);
            cr_assert_lt(dt, 10000 * TEST_MS);
            timed_out = 1;
        } else {
            cr_assert_eq(rc, 0);
        }
    }
    for (int i = 0; i < n; i++)
        close(socks[i]);
    close(l);
    if (!timed_out)
        cr_skip_test("the kernel accepted 16 connections on a backlog of 0");
}

/* ------------------------------------------------------------ many waiters */

Test(io, many_threads_wait_on_one_descriptor)
{
    enum { N = 6 };
    int s[2];
    make_socketpair(s);
    fill_pipe(s[0]); /* the socket's send buffer: no room for POLLOUT */
    struct waiter w[N];
    pthread_t t[N];
    memset(w, 0, sizeof w);
    for (int i = 0; i < N; i++) {
        int ev = i % 3 == 0 ? POLLIN : i % 3 == 1 ? POLLOUT : POLLIN | POLLOUT;
        t[i] = waiter_start(&w[i], 0, s[0], ev);
    }
    /* Data to read: every POLLIN waiter wakes, the POLLOUT ones stay. */
    cr_assert_eq(write(s[1], "d", 1), 1);
    for (int i = 0; i < N; i++)
        if (w[i].events & POLLIN) {
            test_thread_join(t[i]);
            cr_assert_eq(w[i].rc, POLLIN);
        }
    cr_assert(test_stays_zero(&w[1].call.done, 50 * TEST_MS));
    cr_assert(test_stays_zero(&w[4].call.done, 1 * TEST_MS));
    /* Room to write: the POLLOUT waiters wake. */
    char buf[65536];
    while (read(s[1], buf, sizeof buf) > 0)
        if (chan_fd_wait(s[0], POLLOUT, 0) > 0)
            break;
    for (int i = 0; i < N; i++)
        if (!(w[i].events & POLLIN)) {
            test_thread_join(t[i]);
            cr_assert_eq(w[i].rc, POLLOUT);
        }
    close(s[0]);
    close(s[1]);
}

/* A task's side of a wait, on a one-worker scheduler. */
struct task_wait {
    int fd;
    int events;
    int op;             /* 0 fd_wait, 1 read */
    sem_t *parked;      /* posted by a helper task once this one parked */
    ssize_t rc;
    char buf[16];
};

static void post_parked(void *arg)
{
    test_sem_post(arg);
}

static void task_waiter(void *arg)
{
    struct task_wait *tw = arg;
    /* One worker: the helper runs only once this task has parked. */
    if (chan_go(NULL, post_parked, tw->parked) != 0)
        abort();
    ssize_t rc;
    if (tw->op == 0)
        rc = chan_fd_wait(tw->fd, tw->events, CHAN_FOREVER);
    else
        rc = chan_read(tw->fd, tw->buf, sizeof tw->buf, CHAN_FOREVER);
    /* Release: the test may poll rc while other tasks still run. */
    __atomic_store_n(&tw->rc, rc, __ATOMIC_RELEASE);
}

Test(io, many_tasks_and_threads_wait_on_one_descriptor)
{
    enum { NT = 8 };
    int p[2];
    make_pipe(p);
    chan_sched_t *s = test_sched_make(1);
    sem_t parked;
    test_sem_init(&parked, 0);
    struct task_wait tw[NT];
    for (int i = 0; i < NT; i++) {
        tw[i] = (struct task_wait){ .fd = p[0], .events = POLLIN,
                                    .parked = &parked };
        cr_assert_eq(chan_go(s, task_waiter, &tw[i]), 0);
        test_sem_wait(&parked);
    }
    struct waiter w = { 0 };
    pthread_t t = waiter_start(&w, 0, p[0], POLLIN);
    cr_assert_eq(write(p[1], "x", 1), 1);
    cr_assert_eq(chan_sched_wait(s), 0);
    test_thread_join(t);
    for (int i = 0; i < NT; i++)
        cr_assert_eq(tw[i].rc, POLLIN);
    cr_assert_eq(w.rc, POLLIN);
    chan_sched_free(s);
    test_sem_destroy(&parked);
    close(p[0]);
    close(p[1]);
}

/* ------------------------------------------------------------ fd_close */

Test(io, fd_close_wakes_every_waiter)
{
    int p[2], q[2];
    make_pipe(p);
    make_pipe(q);
    fill_pipe(q[1]);
    struct sockaddr_in a;
    int l = tcp_listener(&a, 4);
    char *big = calloc(1, 1 << 16);
    cr_assert_not_null(big);

    enum { NW = 7 };
    struct waiter w[NW];
    pthread_t t[NW];
    memset(w, 0, sizeof w);
    t[0] = waiter_start(&w[0], 0, p[0], POLLIN);
    t[1] = waiter_start(&w[1], 1, p[0], POLLIN);
    w[2].wbuf = big;
    w[2].len = 1 << 16;
    t[2] = waiter_start(&w[2], 2, q[1], POLLOUT);
    t[3] = waiter_start(&w[3], 3, l, POLLIN);
    t[4] = waiter_start(&w[4], 0, p[0], POLLIN | POLLOUT);
    t[5] = waiter_start(&w[5], 4, p[0], POLLIN);   /* a select case */
    t[6] = waiter_start(&w[6], 4, q[1], POLLOUT);

    chan_sched_t *s = test_sched_make(1);
    sem_t parked;
    test_sem_init(&parked, 0);
    struct task_wait tw = { .fd = p[0], .op = 1, .parked = &parked };
    cr_assert_eq(chan_go(s, task_waiter, &tw), 0);
    test_sem_wait(&parked);

    cr_assert_eq(chan_fd_close(p[0]), 0);
    cr_assert_eq(chan_fd_close(q[1]), 0);
    cr_assert_eq(chan_fd_close(l), 0);
    for (int i = 0; i < NW; i++) {
        test_thread_join(t[i]);
        cr_assert_eq(w[i].rc, -EBADF, "waiter %d: %zd", i, w[i].rc);
    }
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(tw.rc, -EBADF);
    /* Closed for real. */
    cr_assert_eq(fcntl(p[0], F_GETFD), -1);
    cr_assert_eq(chan_fd_close(p[0]), -EBADF);
    cr_assert_eq(chan_fd_close(-1), -EBADF);
    chan_sched_free(s);
    test_sem_destroy(&parked);
    close(p[1]);
    close(q[0]);
    free(big);
}

/* ------------------------------------------------------------ reuse */

/* Opens pipes until one has read end number fd (closing the others). */
static void pipe_at(int fd, int p[2])
{
    int keep[64], nkeep = 0;
    for (;;) {
        make_pipe(p);
        if (p[0] == fd)
            break;
        cr_assert_lt(nkeep, 62, "could not get descriptor %d again", fd);
        keep[nkeep++] = p[0];
        keep[nkeep++] = p[1];
    }
    for (int i = 0; i < nkeep; i++)
        close(keep[i]);
}

Test(io, reused_number_sees_no_old_readiness)
{
    int p[2];
    make_pipe(p);
    int num = p[0];
    /* The old pipe registered, with an edge and data pending. */
    struct waiter w = { 0 };
    pthread_t t = waiter_start(&w, 0, num, POLLIN);
    cr_assert_eq(write(p[1], "old", 3), 3);
    test_thread_join(t);
    cr_assert_eq(w.rc, POLLIN);
    cr_assert_eq(chan_fd_wait(num, POLLIN, 1000 * TEST_MS), POLLIN);
    close(p[0]);
    close(p[1]);

    int q[2];
    pipe_at(num, q);
    cr_assert_eq(chan_fd_wait(num, POLLIN, 0), -EAGAIN);
    cr_assert_eq(chan_fd_wait(num, POLLIN, 30 * TEST_MS), -ETIMEDOUT);
    char buf[8];
    cr_assert_eq(chan_read(num, buf, sizeof buf, 30 * TEST_MS), -ETIMEDOUT);
    /* And the new pipe works normally: a wait is woken by its data. */
    struct waiter w2 = { 0 };
    t = waiter_start(&w2, 1, num, POLLIN);
    cr_assert_eq(write(q[1], "new", 3), 3);
    test_thread_join(t);
    cr_assert_eq(w2.rc, 3);
    cr_assert_eq(memcmp(w2.buf, "new", 3), 0);
    close(q[0]);
    close(q[1]);
}

Test(io, reused_number_while_old_file_lives_on_in_a_dup)
{
    int p[2];
    make_pipe(p);
    int num = p[0];
    int dup_old = dup(p[0]); /* keeps the old file, and its epoll entry */
    cr_assert_geq(dup_old, 0);
    cr_assert_eq(chan_fd_wait(num, POLLIN, 10 * TEST_MS), -ETIMEDOUT);
    close(p[0]);
    int q[2];
    pipe_at(num, q);
    /* The old file becomes readable: that is not the new one's news. */
    cr_assert_eq(write(p[1], "old", 3), 3);
    cr_assert_eq(chan_fd_wait(num, POLLIN, 0), -EAGAIN);
    cr_assert_eq(chan_fd_wait(num, POLLIN, 30 * TEST_MS), -ETIMEDOUT);
    struct waiter w = { 0 };
    pthread_t t = waiter_start(&w, 1, num, POLLIN);
    cr_assert_eq(write(p[1], "old2", 4), 4);
    cr_assert(test_stays_zero(&w.call.done, 30 * TEST_MS));
    cr_assert_eq(write(q[1], "new", 3), 3);
    test_thread_join(t);
    cr_assert_eq(w.rc, 3);
    cr_assert_eq(memcmp(w.buf, "new", 3), 0);
    close(dup_old);
    close(p[1]);
    close(q[0]);
    close(q[1]);
}

/* ------------------------------------------------------------ tasks */

struct pipe_tasks {
    int p[2];
    ssize_t read_rc;
    ssize_t write_rc;
    char buf[16];
};

static void task_reader(void *arg)
{
    struct pipe_tasks *pt = arg;
    pt->read_rc = chan_read(pt->p[0], pt->buf, sizeof pt->buf, 20000 * TEST_MS);
}

static void task_writer(void *arg)
{
    struct pipe_tasks *pt = arg;
    pt->write_rc = chan_write(pt->p[1], "tasks", 5, 20000 * TEST_MS);
}

static void blocked_task_run(int use_socket)
{
    chan_sched_t *s = test_sched_make(1);
    struct pipe_tasks pt = { 0 };
    if (use_socket)
        make_socketpair(pt.p); /* blocking mode, and left so */
    else
        make_pipe(pt.p);
    /* The reader first: on one worker the writer runs only because the
     * reader parked instead of blocking the thread in read(2). */
    cr_assert_eq(chan_go(s, task_reader, &pt), 0);
    cr_assert_eq(chan_go(s, task_writer, &pt), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(pt.read_rc, 5);
    cr_assert_eq(pt.write_rc, 5);
    cr_assert_eq(memcmp(pt.buf, "tasks", 5), 0);
    if (use_socket)
        cr_assert_eq(fcntl(pt.p[0], F_GETFL) & O_NONBLOCK, 0);
    chan_sched_free(s);
    close(pt.p[0]);
    close(pt.p[1]);
}

Test(io, task_blocked_on_io_does_not_stop_others)
{
    blocked_task_run(0);
}

Test(io, task_blocked_on_a_blocking_socket_does_not_stop_others)
{
    blocked_task_run(1);
}

static void task_timeouts(void *arg)
{
    int *p = arg;
    char b;
    int64_t t0 = test_now_ns();
    int ok = chan_read(p[0], &b, 1, 20 * TEST_MS) == -ETIMEDOUT &&
             chan_fd_wait(p[0], POLLIN, 20 * TEST_MS) == -ETIMEDOUT &&
             chan_read(p[0], &b, 1, 0) == -EAGAIN &&
             test_now_ns() - t0 >= 40 * TEST_MS;
    p[2] = ok;
}

Test(io, timeouts_in_tasks)
{
    chan_sched_t *s = test_sched_make(1);
    int p[3];
    make_pipe(p);
    p[2] = -1;
    cr_assert_eq(chan_go(s, task_timeouts, p), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(p[2], 1);
    chan_sched_free(s);
    close(p[0]);
    close(p[1]);
}

/* 1,000 socketpairs, a pinger and an echoer task on each, every byte
 * checked. */
enum { PP_ROUNDS = 3, PP_MSG = 48 };

struct pp {
    int fd;
    unsigned id;
    int ok;
};

static void pp_echo(void *arg)
{
    struct pp *e = arg;
    char buf[PP_MSG];
    e->ok = 1;
    for (int r = 0; r < PP_ROUNDS; r++) {
        size_t got = 0;
        while (got < PP_MSG) {
            ssize_t n = chan_read(e->fd, buf + got, PP_MSG - got,
                                  60000 * TEST_MS);
            if (n <= 0) {
                e->ok = 0;
                return;
            }
            got += (size_t)n;
        }
        if (chan_write(e->fd, buf, PP_MSG, 60000 * TEST_MS) != PP_MSG) {
            e->ok = 0;
            return;
        }
    }
}

static void pp_ping(void *arg)
{
    struct pp *e = arg;
    char msg[PP_MSG], buf[PP_MSG];
    e->ok = 1;
    for (int r = 0; r < PP_ROUNDS; r++) {
        for (int i = 0; i < PP_MSG; i++)
            msg[i] = (char)(e->id * 7 + (unsigned)r * 13 + (unsigned)i);
        if (chan_write(e->fd, msg, PP_MSG, 60000 * TEST_MS) != PP_MSG) {
            e->ok = 0;
            return;
        }
        size_t got = 0;
        while (got < PP_MSG) {
            ssize_t n = chan_read(e->fd, buf + got, PP_MSG - got,
                                  60000 * TEST_MS);
            if (n <= 0) {
                e->ok = 0;
                return;
            }
            got += (size_t)n;
        }
        if (memcmp(msg, buf, PP_MSG) != 0)
            e->ok = 0;
    }
}

Test(io, thousand_tasks_on_their_own_socketpairs)
{
    long npairs = test_scaled(1000, 10);
    if (UNDER_TSAN && npairs > 100)
        npairs = 100; /* each live task is a TSan fiber with its own state */
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rlim_t need = (rlim_t)(2 * npairs + 64);
    if (rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
        setrlimit(RLIMIT_NOFILE, &rl);
        cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        if (rl.rlim_cur < need)
            cr_skip_test("RLIMIT_NOFILE allows %lu descriptors, %lu needed",
                         (unsigned long)rl.rlim_cur, (unsigned long)need);
    }
    struct pp *e = calloc((size_t)npairs * 2, sizeof *e);
    cr_assert_not_null(e);
    chan_sched_t *s = test_sched_make(2);
    for (long i = 0; i < npairs; i++) {
        int sp[2];
        make_socketpair(sp);
        e[2 * i] = (struct pp){ .fd = sp[0], .id = (unsigned)i };
        e[2 * i + 1] = (struct pp){ .fd = sp[1], .id = (unsigned)i };
        cr_assert_eq(chan_go(s, pp_ping, &e[2 * i]), 0);
        cr_assert_eq(chan_go(s, pp_echo, &e[2 * i + 1]), 0);
    }
    cr_assert_eq(chan_sched_wait(s), 0);
    for (long i = 0; i < 2 * npairs; i++) {
        cr_assert_eq(e[i].ok, 1, "task %ld failed", i);
        close(e[i].fd);
    }
    chan_sched_free(s);
    free(e);
}

/* ------------------------------------------------------------ fork */

Test(io, fork_while_the_poller_runs)
{
    SKIP_UNDER_QEMU("qemu-user cannot fork a process with threads");
    if (UNDER_TSAN)
        cr_skip_test("ThreadSanitizer cannot start threads after a fork");
    int p[2];
    make_pipe(p);
    /* A thread of the parent waits, so the poller runs at the fork. */
    struct waiter w = { 0 };
    pthread_t t = waiter_start(&w, 1, p[0], POLLIN);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int q[2];
        char b[4];
        int ok = pipe(q) == 0;
        ok = ok && chan_read(q[0], b, 1, 30 * TEST_MS) == -ETIMEDOUT;
        ok = ok && chan_fd_wait(q[0], POLLIN, 0) == -EAGAIN;
        ok = ok && write(q[1], "c", 1) == 1;
        ok = ok && chan_fd_wait(q[0], POLLIN, 5000 * TEST_MS) == POLLIN;
        ok = ok && chan_read(q[0], b, 4, 5000 * TEST_MS) == 1 && b[0] == 'c';
        /* The inherited pipe, too. */
        ok = ok && chan_read(p[0], b, 1, 30 * TEST_MS) == -ETIMEDOUT;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child status %#x", status);
    /* The parent's waiter was not disturbed. */
    cr_assert_eq(atomic_load(&w.call.done), 0);
    cr_assert_eq(write(p[1], "p", 1), 1);
    test_thread_join(t);
    cr_assert_eq(w.rc, 1);
    cr_assert_eq(w.buf[0], 'p');
    close(p[0]);
    close(p[1]);
}

/* ------------------------------------------------------------ select */

Test(io, select_fd_case_return_codes)
{
    int p[2];
    make_pipe(p);
    chan_case_t c[1] = { CHAN_FD_CASE(p[0], POLLIN) };
    cr_assert_eq(chan_select(c, 1, 0), -EAGAIN);
    cr_assert_eq(chan_select(c, 1, 20 * TEST_MS), -ETIMEDOUT);
    cr_assert_eq(write(p[1], "x", 1), 1);
    c[0].result = 12345;
    cr_assert_eq(chan_select(c, 1, 0), 0);
    cr_assert_eq(c[0].result, POLLIN);
    c[0].result = 12345;
    cr_assert_eq(chan_select(c, 1, CHAN_FOREVER), 0);
    cr_assert_eq(c[0].result, POLLIN);
    /* Both directions asked, POLLHUP reported unasked. */
    close(p[1]);
    chan_case_t both[1] = { CHAN_FD_CASE(p[0], POLLIN | POLLOUT) };
    cr_assert_eq(chan_select(both, 1, CHAN_FOREVER), 0);
    cr_assert(both[0].result & POLLHUP, "result %#x", both[0].result);
    close(p[0]);
    /* A descriptor that is not open is ready, with -EBADF. */
    c[0].result = 0;
    cr_assert_eq(chan_select(c, 1, 0), 0);
    cr_assert_eq(c[0].result, -EBADF);
    cr_assert_eq(chan_select(c, 1, CHAN_FOREVER), 0);
    cr_assert_eq(c[0].result, -EBADF);
}

Test(io, select_fd_case_bad_and_disabled)
{
    int p[2];
    make_pipe(p);
    chan_t *ch = chan_make(sizeof(int), 4);
    int v = 7;
    /* A bad FD case fails the whole select: the send is not performed. */
    chan_case_t bad[2] = { CHAN_SEND_CASE(ch, &v), CHAN_FD_CASE(p[0], 0) };
    cr_assert_eq(chan_select(bad, 2, 0), -EINVAL);
    bad[1].events = POLLERR;
    cr_assert_eq(chan_select(bad, 2, CHAN_FOREVER), -EINVAL);
    cr_assert_eq(chan_len(ch), 0);
    /* fd < 0 disables a case; its ch and elem are ignored. */
    chan_case_t off[2] = { CHAN_FD_CASE(-1, POLLIN), CHAN_SEND_CASE(ch, &v) };
    off[0].ch = (chan_t *)(uintptr_t)0x10; /* garbage, never touched */
    off[0].elem = (void *)(uintptr_t)0x20;
    cr_assert_eq(chan_select(off, 2, 0), 1);
    cr_assert_eq(chan_len(ch), 1);
    cr_assert_eq(chan_select(off, 1, 0), -EAGAIN);
    cr_assert_eq(chan_select(off, 1, 10 * TEST_MS), -ETIMEDOUT);
    /* An enabled FD case with a garbage ch: still only the descriptor. */
    chan_case_t fdc[2] = { CHAN_FD_CASE(p[1], POLLOUT), CHAN_RECV_CASE(NULL, NULL) };
    fdc[0].ch = (chan_t *)(uintptr_t)0x10;
    cr_assert_eq(chan_select(fdc, 2, 0), 0);
    cr_assert_eq(fdc[0].result, POLLOUT);
    chan_release(ch);
    close(p[0]);
    close(p[1]);
}

struct sel_waiter {
    chan_case_t c[2];
    int64_t timeout;
    struct test_call call;
    int rc;
};

static void sel_waiter_call(void *arg)
{
    struct sel_waiter *w = arg;
    w->rc = chan_select(w->c, 2, w->timeout);
}

static pthread_t sel_waiter_start(struct sel_waiter *w)
{
    test_start_blocked(&w->call, sel_waiter_call, w);
    return w->call.th;
}

Test(io, select_waits_for_descriptor_or_channel)
{
    int p[2];
    make_pipe(p);
    chan_t *ch = chan_make(sizeof(int), 0);
    int got = 0;
    struct sel_waiter w = { .timeout = CHAN_FOREVER };
    w.c[0] = CHAN_RECV_CASE(ch, &got);
    w.c[1] = CHAN_FD_CASE(p[0], POLLIN);

    /* The descriptor becomes ready. */
    pthread_t t = sel_waiter_start(&w);
    cr_assert_eq(write(p[1], "x", 1), 1);
    test_thread_join(t);
    cr_assert_eq(w.rc, 1);
    cr_assert_eq(w.c[1].result, POLLIN);
    char b;
    cr_assert_eq(read(p[0], &b, 1), 1);

    /* A channel peer comes first: the descriptor case is left alone. */
    t = sel_waiter_start(&w);
    int v = 42;
    cr_assert_eq(chan_send(ch, &v), 0);
    test_thread_join(t);
    cr_assert_eq(w.rc, 0);
    cr_assert_eq(got, 42);
    cr_assert_eq(w.c[0].result, 0);
    /* ... and a later edge finds no stale waiter of that select. */
    cr_assert_eq(write(p[1], "y", 1), 1);
    cr_assert_eq(chan_fd_wait(p[0], POLLIN, 0), POLLIN);

    /* A timeout ends it. */
    cr_assert_eq(read(p[0], &b, 1), 1);
    w.timeout = 20 * TEST_MS;
    int64_t t0 = test_now_ns();
    cr_assert_eq(chan_select(w.c, 2, w.timeout), -ETIMEDOUT);
    cr_assert_geq(test_now_ns() - t0, 20 * TEST_MS);

    /* chan_fd_close chooses the case with -EBADF. */
    w.timeout = CHAN_FOREVER;
    t = sel_waiter_start(&w);
    cr_assert_eq(chan_fd_close(p[0]), 0);
    test_thread_join(t);
    cr_assert_eq(w.rc, 1);
    cr_assert_eq(w.c[1].result, -EBADF);
    chan_release(ch);
    close(p[1]);
}

Test(io, select_fd_and_channel_cases_are_fair)
{
    int rounds = (int)test_scaled(1000, 200);
    int p[2];
    make_pipe(p);
    cr_assert_eq(write(p[1], "x", 1), 1); /* stays readable */
    chan_t *ch = chan_make(sizeof(int), 1);
    int v = 1, got;
    int count[3] = { 0 };
    for (int i = 0; i < rounds; i++) {
        if (chan_len(ch) == 0)
            cr_assert_eq(chan_send(ch, &v), 0);
        chan_case_t c[3] = { CHAN_FD_CASE(p[0], POLLIN),
                             CHAN_RECV_CASE(ch, &got),
                             CHAN_FD_CASE(p[1], POLLOUT) };
        int k = chan_select(c, 3, i % 2 ? CHAN_FOREVER : 0);
        cr_assert(k >= 0 && k < 3, "select returned %d", k);
        if (k == 0)
            cr_assert_eq(c[0].result, POLLIN);
        if (k == 2)
            cr_assert_eq(c[2].result, POLLOUT);
        count[k]++;
    }
    for (int k = 0; k < 3; k++)
        cr_assert_gt(count[k], rounds / 10, "case %d chosen %d times of %d",
                     k, count[k], rounds);
    chan_release(ch);
    close(p[0]);
    close(p[1]);
}

/* Several selects on one pipe, one byte at a time: every select returns
 * ready with POLLIN (or POLLHUP at the end), never an error; a reader may
 * find the byte taken by another (as after poll(2) in several threads),
 * and then waits again. */
struct sel_reader {
    int fd;
    atomic_int *total;
    int bad;
};

static void *sel_reader_main(void *arg)
{
    struct sel_reader *r = arg;
    for (;;) {
        chan_case_t c[1] = { CHAN_FD_CASE(r->fd, POLLIN) };
        int k = chan_select(c, 1, 20000 * TEST_MS);
        if (k != 0 || c[0].result <= 0 ||
            !(c[0].result & (POLLIN | POLLHUP))) {
            r->bad = 1;
            return NULL;
        }
        char b;
        ssize_t n = chan_read(r->fd, &b, 1, 0);
        if (n == 1)
            atomic_fetch_add(r->total, 1);
        else if (n == 0)
            return NULL; /* end of file */
        else if (n != -EAGAIN)
            r->bad = 1;
    }
}

Test(io, selects_share_a_descriptor_without_false_readiness)
{
    enum { NR = 4 };
    int bytes = (int)test_scaled(300, 50);
    int p[2];
    make_pipe(p);
    atomic_int total = 0;
    struct sel_reader r[NR];
    pthread_t t[NR];
    for (int i = 0; i < NR; i++) {
        r[i] = (struct sel_reader){ .fd = p[0], .total = &total };
        t[i] = test_thread_start(sel_reader_main, &r[i]);
    }
    for (int i = 0; i < bytes; i++) {
        cr_assert_eq(write(p[1], "b", 1), 1);
        if (i % 16 == 0)
            test_sleep_ns(TEST_MS / 4);
    }
    while (atomic_load(&total) < bytes)
        test_sleep_ns(TEST_MS);
    close(p[1]);
    for (int i = 0; i < NR; i++) {
        test_thread_join(t[i]);
        cr_assert_eq(r[i].bad, 0, "reader %d", i);
    }
    cr_assert_eq(atomic_load(&total), bytes);
    close(p[0]);
}

/* One reader, so nobody else takes what a select reported: each select
 * that says POLLIN must be followed by a read that gets bytes.  The writer
 * writes two bytes back to back, so that the reader often takes both
 * while the poller still has the second one's event in hand: that event
 * must not make the reader's next select report readiness that its own
 * read consumed before it queued. */
struct lone_reader {
    int fd;
    int fd_wait;  /* wait with chan_fd_wait instead of a select */
    long got;
    long empty;  /* selects that said POLLIN before a read found nothing */
    int bad;
};

static void lone_reader_run(struct lone_reader *r)
{
    char buf[64];
    for (;;) {
        chan_case_t c[1] = { CHAN_FD_CASE(r->fd, POLLIN) };
        int k = 0, ev = 0;
        if (r->fd_wait)
            ev = chan_fd_wait(r->fd, POLLIN, 20000 * TEST_MS);
        else if ((k = chan_select(c, 1, 20000 * TEST_MS)) == 0)
            ev = c[0].result;
        if (k != 0 || ev <= 0 || !(ev & (POLLIN | POLLHUP))) {
            r->bad = 1;
            return;
        }
        ssize_t n = chan_read(r->fd, buf, sizeof buf, 0);
        if (n == 0)
            return; /* end of file */
        if (n == -EAGAIN)
            r->empty++;
        else if (n > 0)
            r->got += n;
        else {
            r->bad = 1;
            return;
        }
    }
}

static void *lone_reader_thread(void *arg)
{
    lone_reader_run(arg);
    return NULL;
}

static void lone_reader_task(void *arg)
{
    lone_reader_run(arg);
}

static void lone_reader_feed(int wfd, long pairs)
{
    for (long i = 0; i < pairs; i++) {
        cr_assert_eq(write(wfd, "a", 1), 1);
        cr_assert_eq(write(wfd, "b", 1), 1);
        if (i % 4 == 0)
            test_sleep_ns(TEST_MS / 20);
    }
    close(wfd);
}

/* One reader on a new pipe: a plain thread (s NULL) or a task of s,
 * waiting with a select or with chan_fd_wait. */
static void lone_reader_case(chan_sched_t *s, int fd_wait, long pairs)
{
    int p[2];
    make_pipe(p);
    struct lone_reader r = { .fd = p[0], .fd_wait = fd_wait };
    pthread_t t = 0;
    if (s)
        cr_assert_eq(chan_go(s, lone_reader_task, &r), 0);
    else
        t = test_thread_start(lone_reader_thread, &r);
    lone_reader_feed(p[1], pairs);
    if (s)
        cr_assert_eq(chan_sched_wait(s), 0);
    else
        test_thread_join(t);
    close(p[0]);
    cr_assert_eq(r.bad, 0);
    cr_assert_eq(r.got, 2 * pairs);
    cr_assert_eq(r.empty, 0, "%s%s: %ld waits reported bytes already read",
                 s ? "task" : "thread", fd_wait ? ", chan_fd_wait" : "",
                 r.empty);
}

Test(io, lone_reader_is_never_told_of_stale_readiness)
{
    long pairs = test_scaled(4000, 200);
    /* A plain thread, woken by the poller thread. */
    lone_reader_case(NULL, 0, pairs);
    /* A task, woken by a worker that polls. */
    chan_sched_t *s = test_sched_make(2);
    lone_reader_case(s, 0, pairs);
    chan_sched_free(s);
    /* chan_fd_wait, which is woken the same way. */
    lone_reader_case(NULL, 1, pairs);
}

/* The threads of this process named name (every thread for NULL): their
 * ids and voluntary context switches so far, at most max of them;
 * returns how many. */
static int named_threads(const char *name, long *tid, long *switches,
                         int max)
{
    DIR *d = opendir("/proc/self/task");
    cr_assert(d, "opendir(/proc/self/task)");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* the thread has just ended */
        if (!fgets(comm, sizeof comm, f))
            comm[0] = 0;
        fclose(f);
        comm[strcspn(comm, "\n")] = 0;
        if (name && strcmp(comm, name) != 0)
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        if (!(f = fopen(path, "r")))
            continue;
        char line[128];
        long v = -1;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1)
                break;
        fclose(f);
        tid[n] = atol(e->d_name);
        switches[n] = v;
        n++;
    }
    closedir(d);
    return n;
}

struct ponger {
    int in, out;
    long rounds;
    atomic_int bad;
};

static void pong_task(void *arg)
{
    struct ponger *p = arg;
    for (long i = 0; i < p->rounds; i++) {
        char b;
        if (chan_read(p->in, &b, 1, 20000 * TEST_MS) != 1 ||
            write(p->out, &b, 1) != 1) {
            atomic_store(&p->bad, 1);
            return;
        }
    }
}

/* A worker asleep in the descriptor poll runs the task that the poll
 * woke itself, without waking another worker: with two workers, one of
 * them does all of the work and the other stays asleep. */
Test(io, a_worker_that_polls_runs_the_task_it_woke)
{
    long rounds = test_scaled(200, 50);
    chan_sched_t *s = test_sched_make(2);
    int a[2], b[2];
    make_pipe(a);
    make_pipe(b);
    struct ponger p = { .in = a[0], .out = b[1], .rounds = rounds };
    cr_assert_eq(chan_go(s, pong_task, &p), 0);
    /* One round first: the task has run and its descriptor is known. */
    char c = 'x';
    cr_assert_eq(write(a[1], &c, 1), 1);
    cr_assert_eq(read(b[0], &c, 1), 1);
    /* Every thread now, and the workers at the end: a thread is named
     * only once it runs, and one that a worker starts (the poller) bears
     * the worker's name until then. */
    long tid0[64], sw0[64], tid1[4], sw1[4];
    int n0 = named_threads(NULL, tid0, sw0, 64);
    for (long i = 1; i < rounds; i++) {
        /* Long enough for both workers to go to sleep, one of them in
         * the poll. */
        test_sleep_ns(2 * TEST_MS);
        cr_assert_eq(write(a[1], &c, 1), 1);
        cr_assert_eq(read(b[0], &c, 1), 1);
    }
    int n = named_threads("chan-worker", tid1, sw1, 4);
    cr_assert_eq(chan_sched_wait(s), 0);
    chan_sched_free(s);
    cr_assert_eq(atomic_load(&p.bad), 0);
    if (n != 2)
        cr_skip_test("the workers' threads are not named here (%d found)", n);
    long d[2] = { -1, -1 };
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < n0; i++)
            if (tid0[i] == tid1[j])
                d[j] = sw1[j] - sw0[i];
    cr_assert(d[0] >= 0 && d[1] >= 0, "a worker was not there at the start");
    long least = d[0] < d[1] ? d[0] : d[1];
    cr_log_info("worker context switches: %ld and %ld in %ld rounds", d[0],
                d[1], rounds);
    cr_assert_lt(least, rounds / 3,
                 "both workers woke for the I/O of one task: %ld and %ld "
                 "context switches in %ld rounds", d[0], d[1], rounds);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

struct task_sel {
    int fd;
    chan_t *quit;
    int rc;
    int result;
};

static void task_select_fd(void *arg)
{
    struct task_sel *ts = arg;
    chan_case_t c[2] = { CHAN_FD_CASE(ts->fd, POLLIN),
                         CHAN_RECV_CASE(ts->quit, NULL) };
    ts->rc = chan_select(c, 2, 10000 * TEST_MS);
    ts->result = ts->rc >= 0 ? c[ts->rc].result : 0;
}

static void task_write_one(void *arg)
{
    int fd = *(int *)arg;
    if (chan_write(fd, "t", 1, 0) != 1)
        abort();
}

Test(io, select_on_descriptor_in_tasks)
{
    chan_sched_t *s = test_sched_make(1);
    int p[2];
    make_pipe(p);
    chan_t *quit = chan_make(0, 0);
    struct task_sel a = { .fd = p[0], .quit = quit };
    cr_assert_eq(chan_go(s, task_select_fd, &a), 0);
    cr_assert_eq(chan_go(s, task_write_one, &p[1]), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(a.rc, 0);
    cr_assert_eq(a.result, POLLIN);
    /* The quit channel wins when the descriptor stays quiet. */
    char b;
    cr_assert_eq(read(p[0], &b, 1), 1);
    struct task_sel q = { .fd = p[0], .quit = quit };
    cr_assert_eq(chan_go(s, task_select_fd, &q), 0);
    cr_assert_eq(chan_close(quit), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(q.rc, 1);
    cr_assert_eq(q.result, -EPIPE);
    chan_sched_free(s);
    chan_release(quit);
    close(p[0]);
    close(p[1]);
}

Test(io, tasks_wait_for_different_events_on_one_descriptor)
{
    enum { NT = 6 };
    int s[2];
    make_socketpair(s);
    fill_pipe(s[0]); /* no room: POLLOUT waits too */
    chan_sched_t *sc = test_sched_make(1);
    sem_t parked;
    test_sem_init(&parked, 0);
    struct task_wait tw[NT];
    for (int i = 0; i < NT; i++) {
        tw[i] = (struct task_wait){ .fd = s[0],
                                    .events = i % 2 ? POLLOUT : POLLIN,
                                    .parked = &parked, .rc = 12345 };
        cr_assert_eq(chan_go(sc, task_waiter, &tw[i]), 0);
        test_sem_wait(&parked);
    }
    cr_assert_eq(write(s[1], "x", 1), 1);
    /* The POLLIN tasks finish; the POLLOUT ones still wait. */
    for (int i = 0; i < NT; i += 2)
        while (__atomic_load_n(&tw[i].rc, __ATOMIC_ACQUIRE) == 12345)
            test_sleep_ns(TEST_MS);
    for (int i = 0; i < NT; i += 2)
        cr_assert_eq(tw[i].rc, POLLIN);
    for (int i = 1; i < NT; i += 2)
        cr_assert_eq(__atomic_load_n(&tw[i].rc, __ATOMIC_ACQUIRE), 12345);
    char buf[65536];
    while (read(s[1], buf, sizeof buf) > 0)
        if (chan_fd_wait(s[0], POLLOUT, 0) > 0)
            break;
    cr_assert_eq(chan_sched_wait(sc), 0);
    for (int i = 1; i < NT; i += 2)
        cr_assert_eq(tw[i].rc, POLLOUT);
    chan_sched_free(sc);
    test_sem_destroy(&parked);
    close(s[0]);
    close(s[1]);
}

/* ------------------------------------------------------------ idle poll */

/*
 * Once the program waits for descriptors, an idle worker sleeps in
 * epoll_wait itself instead of on its condition variable, and whatever
 * gives it work must get it out of there.  "The worker sleeps in
 * epoll_wait" is seen in the kernel: /proc/self/task/TID/wchan names the
 * function a sleeping thread sleeps in.
 */

/*
 * in_poll_wait - waits until thread tid sleeps in epoll_wait: 1; 0 where
 * the kernel does not say where a thread sleeps (wchan always "0" for a
 * sleeping thread).  Fails the test after 10 s of never seeing it.
 */
static int in_poll_wait(long tid)
{
    int64_t start = test_now_ns();
    int named = 0;
    for (;;) {
        char path[64], buf[128] = "";
        snprintf(path, sizeof path, "/proc/self/task/%ld/wchan", tid);
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            buf[n] = '\0';
            fclose(f);
        }
        if (strstr(buf, "epoll") || strstr(buf, "ep_poll"))
            return 1;
        if (buf[0] && strcmp(buf, "0") != 0)
            named = 1;
        int64_t waited = test_now_ns() - start;
        if (!named && waited > 2000 * TEST_MS &&
            test_thread_state(tid) == 'S') {
            cr_log_info("wchan says nothing here: not checked");
            return 0;
        }
        cr_assert(waited < 10000 * TEST_MS,
                  "worker %ld never slept in epoll_wait (wchan %s)", tid, buf);
        test_sleep_ns(TEST_MS);
    }
}

struct idle_poll {
    atomic_long tid;        /* the worker's, written by the task */
    atomic_int observed;    /* the test saw the worker in epoll_wait */
    chan_t *in, *out;
    int fd;
    int64_t rc;
};

/* Starts the poller (a wait that times out), then says on which thread
 * it runs. */
static void idle_poll_start(struct idle_poll *ip)
{
    int p[2];
    if (pipe(p) != 0 ||
        chan_fd_wait(p[0], POLLIN, TEST_MS) != -ETIMEDOUT)
        abort();
    close(p[0]);
    close(p[1]);
    atomic_store(&ip->tid, test_gettid());
}

static void idle_poll_recv(void *arg)
{
    struct idle_poll *ip = arg;
    idle_poll_start(ip);
    int v = 0;
    int rc = chan_recv(ip->in, &v);
    int64_t r = rc == 0 ? v + 1 : rc;
    if (chan_send(ip->out, &r) != 0)
        abort();
}

static void idle_poll_timer(void *arg)
{
    struct idle_poll *ip = arg;
    idle_poll_start(ip);
    int v, rc;
    /* Each timeout is a timer that fires while the worker sleeps in the
     * poll; the last one at least after the test has seen it there. */
    do
        rc = chan_timedrecv(ip->in, &v, 50 * TEST_MS);
    while (rc == -ETIMEDOUT && !atomic_load(&ip->observed));
    int64_t r = rc;
    if (chan_send(ip->out, &r) != 0)
        abort();
}

static void idle_poll_read(void *arg)
{
    struct idle_poll *ip = arg;
    idle_poll_start(ip);
    char c = 0;
    ssize_t n = chan_read(ip->fd, &c, 1, CHAN_FOREVER);
    int64_t r = n == 1 ? c : n;
    if (chan_send(ip->out, &r) != 0)
        abort();
}

/* One worker, one task that waits (kind 0: a channel, 1: a timer, 2: a
 * pipe); the worker is seen asleep in epoll_wait; then the test wakes
 * the task, which answers. */
static void idle_poll_run(int kind)
{
    chan_sched_t *s = test_sched_make(1);
    struct idle_poll ip = { .in = chan_make(sizeof(int), 0),
                            .out = chan_make(sizeof(int64_t), 1) };
    cr_assert(ip.in && ip.out);
    int p[2];
    make_pipe(p);
    ip.fd = p[0];
    void (*fn[])(void *) = { idle_poll_recv, idle_poll_timer,
                             idle_poll_read };
    cr_assert_eq(chan_go(s, fn[kind], &ip), 0);
    while (atomic_load(&ip.tid) == 0)
        test_sleep_ns(TEST_MS);
    in_poll_wait(atomic_load(&ip.tid));
    atomic_store(&ip.observed, 1);
    if (kind == 0) {
        int v = 41;
        cr_assert_eq(chan_timedsend(ip.in, &v, 10000 * TEST_MS), 0);
    } else if (kind == 2) {
        cr_assert_eq(write(p[1], "*", 1), 1);
    }
    int64_t r = 0;
    cr_assert_eq(chan_timedrecv(ip.out, &r, 10000 * TEST_MS), 0);
    cr_assert_eq(r, kind == 0 ? 42 : kind == 1 ? -ETIMEDOUT : '*');
    cr_assert_eq(chan_sched_wait(s), 0);
    /* The worker is back in the poll: freeing must get it out. */
    in_poll_wait(atomic_load(&ip.tid));
    chan_sched_free(s);
    chan_release(ip.in);
    chan_release(ip.out);
    close(p[0]);
    close(p[1]);
}

Test(io, idle_worker_polls_and_is_woken_by_a_thread_send)
{
    idle_poll_run(0);
}

Test(io, idle_worker_polls_and_is_woken_by_a_timer)
{
    idle_poll_run(1);
}

Test(io, idle_worker_polls_and_is_woken_by_io)
{
    idle_poll_run(2);
}

struct busy {
    sem_t running;
    atomic_int stop;
};

static void busy_task(void *arg)
{
    struct busy *b = arg;
    test_sem_post(&b->running);
    int64_t end = test_now_ns() + 20000 * TEST_MS;
    while (!atomic_load(&b->stop) && test_now_ns() < end)
        ;
}

struct late_write {
    long tid;
    int fd;
};

static void *late_write_main(void *arg)
{
    struct late_write *lw = arg;
    test_wait_blocked(lw->tid, NULL);
    if (write(lw->fd, "t", 1) != 1)
        abort();
    return NULL;
}

/* While the only worker runs a task that never parks, nobody but the
 * poller thread can see that a plain thread's descriptor is ready. */
Test(io, thread_served_while_the_only_worker_is_busy)
{
    chan_sched_t *s = test_sched_make(1);
    struct idle_poll ip = { 0 };
    cr_assert_eq(chan_go(s, (void (*)(void *))idle_poll_start, &ip), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    /* The worker has polled, and may hold the poll now, when it turns busy. */
    in_poll_wait(atomic_load(&ip.tid));
    struct busy b = { 0 };
    test_sem_init(&b.running, 0);
    cr_assert_eq(chan_go(s, busy_task, &b), 0);
    test_sem_wait(&b.running);
    int p[2];
    make_pipe(p);
    for (int round = 0; round < 3; round++) {
        struct late_write lw = { test_gettid(), p[1] };
        pthread_t t = test_thread_start(late_write_main, &lw);
        char c = 0;
        cr_assert_eq(chan_read(p[0], &c, 1, 10000 * TEST_MS), 1);
        cr_assert_eq(c, 't');
        test_thread_join(t);
    }
    atomic_store(&b.stop, 1);
    cr_assert_eq(chan_sched_wait(s), 0);
    chan_sched_free(s);
    test_sem_destroy(&b.running);
    close(p[0]);
    close(p[1]);
}

struct pipe_reader {
    int p[2];
    atomic_int ready;
    ssize_t rc;
    char c;
};

static void pipe_reader_task(void *arg)
{
    struct pipe_reader *r = arg;
    atomic_store(&r->ready, 1);
    r->rc = chan_read(r->p[0], &r->c, 1, 20000 * TEST_MS);
}

/* Tasks parked on pipes while every worker sleeps (one of them in the
 * poll) are all woken by their data, in rounds. */
Test(io, tasks_woken_by_io_while_every_worker_sleeps)
{
    enum { N = 16 };
    int rounds = (int)test_scaled(20, 3);
    chan_sched_t *s = test_sched_make(2);
    struct pipe_reader r[N];
    for (int i = 0; i < N; i++)
        make_pipe(r[i].p);
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < N; i++) {
            atomic_store(&r[i].ready, 0);
            r[i].rc = 0;
            cr_assert_eq(chan_go(s, pipe_reader_task, &r[i]), 0);
        }
        for (int i = 0; i < N; i++)
            while (!atomic_load(&r[i].ready))
                test_sleep_ns(TEST_MS / 4);
        if (round % 2)
            test_sleep_ns(2 * TEST_MS); /* let the workers fall asleep */
        for (int i = 0; i < N; i++)
            cr_assert_eq(write(r[i].p[1], &"abcdefghijklmnop"[i], 1), 1);
        cr_assert_eq(chan_sched_wait(s), 0);
        for (int i = 0; i < N; i++) {
            cr_assert_eq(r[i].rc, 1, "round %d reader %d: %zd", round, i,
                         r[i].rc);
            cr_assert_eq(r[i].c, "abcdefghijklmnop"[i]);
        }
    }
    chan_sched_free(s);
    for (int i = 0; i < N; i++) {
        close(r[i].p[0]);
        close(r[i].p[1]);
    }
}

static void echo_task(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[64];
    for (;;) {
        ssize_t n = chan_read(fd, buf, sizeof buf, 20000 * TEST_MS);
        if (n <= 0 || chan_write(fd, buf, (size_t)n, 20000 * TEST_MS) != n)
            break;
    }
}

/* Round trips between plain threads and tasks on two workers: the poll
 * goes back and forth between the workers and the poller thread. */
Test(io, threads_and_tasks_ping_pong_through_the_poll)
{
    enum { T = 3 };
    long trips = test_scaled(2000, 200);
    chan_sched_t *s = test_sched_make(2);
    int sp[T][2];
    for (int i = 0; i < T; i++) {
        make_socketpair(sp[i]);
        cr_assert_eq(chan_go(s, echo_task, (void *)(intptr_t)sp[i][1]), 0);
    }
    for (long k = 0; k < trips; k++) {
        int i = (int)(k % T);
        char out[8], in[8];
        snprintf(out, sizeof out, "%ld", k % 1000000);
        size_t len = strlen(out);
        cr_assert_eq(chan_write(sp[i][0], out, len, 10000 * TEST_MS),
                     (ssize_t)len);
        size_t got = 0;
        while (got < len) {
            ssize_t n = chan_read(sp[i][0], in + got, len - got,
                                  10000 * TEST_MS);
            cr_assert_gt(n, 0, "trip %ld: %zd", k, n);
            got += (size_t)n;
        }
        cr_assert_eq(memcmp(in, out, len), 0);
        if (k % 97 == 0)
            test_sleep_ns(TEST_MS); /* and now and then all fall idle */
    }
    for (int i = 0; i < T; i++)
        shutdown(sp[i][0], SHUT_WR);
    cr_assert_eq(chan_sched_wait(s), 0);
    chan_sched_free(s);
    for (int i = 0; i < T; i++) {
        close(sp[i][0]);
        close(sp[i][1]);
    }
}

/* ------------------------------------------------------------ reuse, more */

struct reuse_task {
    int num;
    sem_t first_done, reused;
    ssize_t rc1, rc2;
    char buf[8];
};

static void reuse_task_main(void *arg)
{
    struct reuse_task *rt = arg;
    rt->rc1 = chan_fd_wait(rt->num, POLLIN, 10 * TEST_MS);
    test_sem_post(&rt->first_done);
    test_sem_wait(&rt->reused); /* the worker's thread: one task only */
    rt->rc2 = chan_read(rt->num, rt->buf, sizeof rt->buf, 10000 * TEST_MS);
}

/* The number is closed with close(2) and given to a socket between two
 * waits of one task: the second wait is woken by the socket's data. */
Test(io, reuse_by_a_socket_between_two_waits_of_a_task)
{
    int p[2], sp[2];
    make_pipe(p);
    make_socketpair(sp);
    chan_sched_t *s = test_sched_make(1);
    struct reuse_task rt = { .num = p[0] };
    test_sem_init(&rt.first_done, 0);
    test_sem_init(&rt.reused, 0);
    cr_assert_eq(chan_go(s, reuse_task_main, &rt), 0);
    test_sem_wait(&rt.first_done);
    cr_assert_eq(rt.rc1, -ETIMEDOUT);
    close(p[0]);
    cr_assert_eq(dup2(sp[0], rt.num), rt.num);
    close(sp[0]);
    test_sem_post(&rt.reused);
    test_sleep_ns(5 * TEST_MS); /* (either order must work) */
    cr_assert_eq(write(sp[1], "sock", 4), 4);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(rt.rc2, 4);
    cr_assert_eq(memcmp(rt.buf, "sock", 4), 0);
    chan_sched_free(s);
    test_sem_destroy(&rt.first_done);
    test_sem_destroy(&rt.reused);
    close(rt.num);
    close(p[1]);
    close(sp[1]);
}

/* dup2 onto a registered number that stays open all along (the old file
 * lives on in its other descriptor): waits on the number follow the new
 * file, and the old one's data is not theirs. */
Test(io, dup2_onto_a_registered_number)
{
    int a[2], b[2];
    make_pipe(a);
    make_pipe(b);
    int num = dup(a[0]);
    cr_assert_geq(num, 0);
    cr_assert_eq(chan_fd_wait(num, POLLIN, 10 * TEST_MS), -ETIMEDOUT);
    cr_assert_eq(dup2(b[0], num), num);
    cr_assert_eq(write(a[1], "old", 3), 3);
    cr_assert_eq(chan_fd_wait(num, POLLIN, 30 * TEST_MS), -ETIMEDOUT);
    struct waiter w = { 0 };
    pthread_t t = waiter_start(&w, 1, num, POLLIN);
    cr_assert_eq(write(a[1], "old2", 4), 4);
    cr_assert(test_stays_zero(&w.call.done, 30 * TEST_MS));
    cr_assert_eq(write(b[1], "new", 3), 3);
    test_thread_join(t);
    cr_assert_eq(w.rc, 3);
    cr_assert_eq(memcmp(w.buf, "new", 3), 0);
    close(num);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

/*
 * pollfd.c - tests of chan_pollfd: the level of each descriptor in every
 * state of a channel (checked with poll(2) and a timeout of 0), the states
 * that a waiter makes (a thread or task blocked in a send or receive, a
 * select, a timed wait that times out), close, the creation race, bad
 * input, the descriptor's lifetime, and event-loop consumers and producers
 * that must see every value exactly once.
 *
 * "A waiter is present" is forced, not guessed: the helper blocks in the
 * library, and the test waits, with a bounded poll(2), for the descriptor
 * to report it (or for the helper thread to sleep in the kernel).
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <dirent.h>

#include "util.h"

TestSuite(pollfd, .timeout = TEST_TIMEOUT_S);

/* How long a bounded wait for a level may take before the test fails. */
#define WAIT_MS 10000

/* 1 if fd is readable right now, 0 if not (poll with timeout 0). */
static int ready(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int n;
    while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR)
        ;
    cr_assert_geq(n, 0, "poll: %s", strerror(errno));
    cr_assert_eq(p.revents & (POLLERR | POLLNVAL), 0, "fd %d is bad", fd);
    return n == 1 && (p.revents & POLLIN);
}

/* Waits until fd is readable; fails the test after WAIT_MS. */
static void wait_ready(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int64_t end = test_now_ns() + WAIT_MS * TEST_MS;
    for (;;) {
        int n = poll(&p, 1, 100);
        if (n == 1 && (p.revents & POLLIN))
            return;
        cr_assert(n >= 0 || errno == EINTR, "poll: %s", strerror(errno));
        cr_assert(test_now_ns() < end, "fd %d never became readable", fd);
    }
}

/*
 * The eventfd counter behind fd, from /proc/self/fdinfo: 1 while ready, 0
 * while not, never more (one write per not-ready -> ready change).  -1
 * where it cannot be read.
 */
static long efd_count(int fd)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "eventfd-count: %lx", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* Checks both levels of ch's descriptors in and out. */
#define LEVELS(in, out, want_in, want_out)                                    \
    do {                                                                      \
        cr_assert_eq(ready(in), (want_in), "POLLIN level at line %d",         \
                     __LINE__);                                               \
        cr_assert_eq(ready(out), (want_out), "POLLOUT level at line %d",      \
                     __LINE__);                                               \
        long ci_ = efd_count(in), co_ = efd_count(out);                       \
        cr_assert(ci_ == -1 || ci_ == (want_in), "POLLIN count %ld", ci_);    \
        cr_assert(co_ == -1 || co_ == (want_out), "POLLOUT count %ld", co_);  \
    } while (0)

/* The number of open descriptors of this process. */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d, "/proc/self/fd: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* ------------------------------------------------------------------ */
/* Bad input, identity, lifetime                                      */

Test(pollfd, bad_input)
{
    chan_t *ch = chan_make(sizeof(int), 2);
    cr_assert_not_null(ch);
    errno = 4242;
    cr_assert_eq(chan_pollfd(NULL, POLLIN), -EINVAL);
    cr_assert_eq(chan_pollfd(NULL, POLLOUT), -EINVAL);
    cr_assert_eq(chan_pollfd(ch, 0), -EINVAL);
    cr_assert_eq(chan_pollfd(ch, POLLIN | POLLOUT), -EINVAL);
    cr_assert_eq(chan_pollfd(ch, POLLPRI), -EINVAL);
    cr_assert_eq(chan_pollfd(ch, POLLERR), -EINVAL);
    cr_assert_eq(chan_pollfd(ch, POLLIN | POLLPRI), -EINVAL);
    cr_assert_eq(chan_pollfd(ch, POLLOUT | 0x1000), -EINVAL);
    cr_assert_eq(chan_pollfd(ch, -1), -EINVAL);
    int fd = chan_pollfd(ch, POLLIN);
    cr_assert_geq(fd, 0);
    cr_assert_eq(errno, 4242, "chan_pollfd touched errno");
    /* Bad input after a descriptor exists still fails the same way. */
    cr_assert_eq(chan_pollfd(ch, POLLIN | POLLOUT), -EINVAL);
    chan_release(ch);
}

Test(pollfd, descriptors_distinct_stable_cloexec)
{
    size_t caps[] = { 0, 1, 4 };
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        chan_t *ch = chan_make(sizeof(int), caps[k]);
        cr_assert_not_null(ch);
        int in = chan_pollfd(ch, POLLIN);
        int out = chan_pollfd(ch, POLLOUT);
        cr_assert_geq(in, 0);
        cr_assert_geq(out, 0);
        cr_assert_neq(in, out);
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(chan_pollfd(ch, POLLIN), in);
            cr_assert_eq(chan_pollfd(ch, POLLOUT), out);
        }
        cr_assert_eq(fcntl(in, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
        cr_assert_eq(fcntl(out, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
        chan_release(ch);
    }
}

Test(pollfd, closed_at_last_release_and_not_leaked)
{
    /* No other thread runs in this test, so nothing can reuse a number
     * between the release and the fcntl below. */
    int before = count_fds();
    chan_t *ch = chan_make(sizeof(int), 3);
    cr_assert_not_null(ch);
    int in = chan_pollfd(ch, POLLIN);
    int out = chan_pollfd(ch, POLLOUT);
    cr_assert_geq(in, 0);
    cr_assert_geq(out, 0);
    cr_assert_eq(count_fds(), before + 2);
    chan_retain(ch);
    chan_release(ch);
    cr_assert_neq(fcntl(in, F_GETFD), -1, "closed before the last release");
    cr_assert_neq(fcntl(out, F_GETFD), -1, "closed before the last release");
    chan_release(ch);
    errno = 0;
    cr_assert_eq(fcntl(in, F_GETFD), -1);
    cr_assert_eq(errno, EBADF);
    errno = 0;
    cr_assert_eq(fcntl(out, F_GETFD), -1);
    cr_assert_eq(errno, EBADF);
    cr_assert_eq(count_fds(), before);

    /* Many channels of every kind, one or both descriptors: none stays. */
    for (int i = 0; i < 300; i++) {
        chan_t *c = chan_make(i % 2 ? sizeof(int) : 0, (size_t)(i % 3) * 2);
        cr_assert_not_null(c);
        if (i % 4 != 1)
            cr_assert_geq(chan_pollfd(c, POLLIN), 0);
        if (i % 4 != 2)
            cr_assert_geq(chan_pollfd(c, POLLOUT), 0);
        if (i % 5 == 0)
            cr_assert_eq(chan_close(c), 0);
        chan_release(c);
    }
    cr_assert_eq(count_fds(), before, "descriptors leaked");
}

/* ------------------------------------------------------------------ */
/* Levels of buffered channels                                        */

/* Levels through empty, partly full, full and back, for capacity cap. */
static void buffered_levels(size_t elem_size, size_t cap)
{
    chan_t *ch = chan_make(elem_size, cap);
    cr_assert_not_null(ch);
    int in = chan_pollfd(ch, POLLIN);
    int out = chan_pollfd(ch, POLLOUT);
    cr_assert_geq(in, 0);
    cr_assert_geq(out, 0);
    int v = 7, got = 0;
    for (int round = 0; round < 3; round++) {
        LEVELS(in, out, 0, 1); /* empty */
        for (size_t i = 0; i < cap; i++) {
            cr_assert_eq(chan_trysend(ch, &v), 0);
            LEVELS(in, out, 1, i + 1 < cap); /* full at the last one */
        }
        cr_assert_eq(chan_trysend(ch, &v), -EAGAIN);
        LEVELS(in, out, 1, 0);
        for (size_t i = 0; i < cap; i++) {
            if (round == 1)
                cr_assert_eq(chan_recv(ch, &got), 0);
            else
                cr_assert_eq(chan_tryrecv(ch, &got), 0);
            LEVELS(in, out, i + 1 < cap, 1);
        }
        cr_assert_eq(chan_tryrecv(ch, &got), -EAGAIN);
        LEVELS(in, out, 0, 1);
        /* Blocking and timed forms move the levels the same way. */
        cr_assert_eq(chan_timedsend(ch, &v, 1000 * TEST_MS), 0);
        LEVELS(in, out, 1, cap > 1);
        cr_assert_eq(chan_timedrecv(ch, &got, 1000 * TEST_MS), 0);
        LEVELS(in, out, 0, 1);
    }
    cr_assert_eq(chan_close(ch), 0);
    LEVELS(in, out, 1, 1);
    cr_assert_eq(chan_tryrecv(ch, &got), -EPIPE);
    LEVELS(in, out, 1, 1);
    chan_release(ch);
}

Test(pollfd, buffered_levels)
{
    buffered_levels(sizeof(int), 1);
    buffered_levels(sizeof(int), 2);
    buffered_levels(sizeof(int), 5);
    buffered_levels(0, 1);
    buffered_levels(0, 3);
}

/* A descriptor made for a channel that already holds values starts up. */
Test(pollfd, made_on_a_busy_buffered_channel)
{
    for (size_t cap = 1; cap <= 4; cap++) {
        chan_t *ch = chan_make(sizeof(int), cap);
        cr_assert_not_null(ch);
        int v = 1;
        for (size_t i = 0; i < cap; i++)
            cr_assert_eq(chan_send(ch, &v), 0);
        int in = chan_pollfd(ch, POLLIN);
        int out = chan_pollfd(ch, POLLOUT);
        LEVELS(in, out, 1, 0);
        cr_assert_eq(chan_recv(ch, &v), 0);
        LEVELS(in, out, cap > 1, 1);
        chan_release(ch);

        /* Only POLLIN, made while the ring holds one value. */
        ch = chan_make(sizeof(int), cap);
        cr_assert_eq(chan_send(ch, &v), 0);
        in = chan_pollfd(ch, POLLIN);
        cr_assert_eq(ready(in), 1);
        cr_assert_eq(chan_tryrecv(ch, &v), 0);
        cr_assert_eq(ready(in), 0);
        cr_assert_eq(chan_trysend(ch, &v), 0);
        cr_assert_eq(ready(in), 1);
        chan_release(ch);
    }
}

/* Closing a buffered channel that holds values: POLLIN stays up while it
 * drains and after (-EPIPE), POLLOUT is up at once. */
Test(pollfd, buffered_close)
{
    chan_t *ch = chan_make(sizeof(int), 2);
    int in = chan_pollfd(ch, POLLIN);
    int out = chan_pollfd(ch, POLLOUT);
    int v = 3;
    cr_assert_eq(chan_send(ch, &v), 0);
    cr_assert_eq(chan_send(ch, &v), 0);
    LEVELS(in, out, 1, 0);
    cr_assert_eq(chan_close(ch), 0);
    LEVELS(in, out, 1, 1);
    cr_assert_eq(chan_trysend(ch, &v), -EPIPE);
    cr_assert_eq(chan_recv(ch, &v), 0);
    cr_assert_eq(chan_recv(ch, &v), 0);
    LEVELS(in, out, 1, 1);
    cr_assert_eq(chan_recv(ch, &v), -EPIPE);
    LEVELS(in, out, 1, 1);
    chan_release(ch);
}

/* ------------------------------------------------------------------ */
/* Levels of unbuffered channels: waiting peers                       */

struct peer {
    chan_t *ch;
    int is_send;
    int64_t timeout;  /* CHAN_FOREVER, or a timed wait */
    int value;
    int rc;
    struct test_call call;
};

static void peer_call(void *arg)
{
    struct peer *p = arg;
    if (p->is_send)
        p->rc = p->timeout < 0 ? chan_send(p->ch, &p->value)
                               : chan_timedsend(p->ch, &p->value, p->timeout);
    else
        p->rc = p->timeout < 0 ? chan_recv(p->ch, &p->value)
                               : chan_timedrecv(p->ch, &p->value, p->timeout);
}

static pthread_t peer_start(struct peer *p, chan_t *ch, int is_send,
                            int value, int64_t timeout)
{
    memset(p, 0, sizeof *p);
    p->ch = ch;
    p->is_send = is_send;
    p->value = value;
    p->timeout = timeout;
    test_start(&p->call, peer_call, p);
    return p->call.th;
}

Test(pollfd, unbuffered_waiting_sender_and_receiver)
{
    chan_t *ch = chan_make(sizeof(int), 0);
    int in = chan_pollfd(ch, POLLIN);
    int out = chan_pollfd(ch, POLLOUT);
    LEVELS(in, out, 0, 0);
    int v = 0;
    cr_assert_eq(chan_tryrecv(ch, &v), -EAGAIN);
    cr_assert_eq(chan_trysend(ch, &v), -EAGAIN);
    LEVELS(in, out, 0, 0);

    for (int round = 0; round < 3; round++) {
        /* A sender waits: POLLIN only, until its value is taken. */
        struct peer p;
        pthread_t t = peer_start(&p, ch, 1, 100 + round, CHAN_FOREVER);
        wait_ready(in);
        LEVELS(in, out, 1, 0);
        if (round == 0)
            cr_assert_eq(chan_tryrecv(ch, &v), 0);
        else
            cr_assert_eq(chan_recv(ch, &v), 0);
        cr_assert_eq(v, 100 + round);
        LEVELS(in, out, 0, 0);
        test_thread_join(t);
        cr_assert_eq(p.rc, 0);
        test_sem_destroy(&p.call.started);

        /* A receiver waits: POLLOUT only, until it is served. */
        t = peer_start(&p, ch, 0, 0, CHAN_FOREVER);
        wait_ready(out);
        LEVELS(in, out, 0, 1);
        v = 200 + round;
        if (round == 0)
            cr_assert_eq(chan_trysend(ch, &v), 0);
        else
            cr_assert_eq(chan_send(ch, &v), 0);
        LEVELS(in, out, 0, 0);
        test_thread_join(t);
        cr_assert_eq(p.rc, 0);
        cr_assert_eq(p.value, 200 + round);
        test_sem_destroy(&p.call.started);
    }
    chan_release(ch);
}

/* A descriptor made while a sender is already parked starts up. */
Test(pollfd, made_while_a_sender_waits)
{
    chan_t *ch = chan_make(sizeof(int), 0);
    struct peer p;
    pthread_t t = peer_start(&p, ch, 1, 5, CHAN_FOREVER);
    cr_assert(test_wait_blocked(atomic_load(&p.call.tid), &p.call.done));
    int in = chan_pollfd(ch, POLLIN);
    int out = chan_pollfd(ch, POLLOUT);
    LEVELS(in, out, 1, 0);
    int v = 0;
    cr_assert_eq(chan_recv(ch, &v), 0);
    cr_assert_eq(v, 5);
    LEVELS(in, out, 0, 0);
    test_thread_join(t);
    test_sem_destroy(&p.call.started);
    chan_release(ch);
}

/* A timed wait that times out takes its level down with it. */
Test(pollfd, level_falls_after_a_timeout)
{
    size_t caps[] = { 0, 1, 3 };
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        chan_t *ch = chan_make(sizeof(int), caps[k]);
        int in = chan_pollfd(ch, POLLIN);
        int out = chan_pollfd(ch, POLLOUT);
        int v = 1;
        for (size_t i = 0; i < caps[k]; i++) /* fill: senders must wait */
            cr_assert_eq(chan_send(ch, &v), 0);
        int want_in = caps[k] > 0;
        LEVELS(in, out, want_in, 0);

        struct peer p;
        pthread_t t = peer_start(&p, ch, 1, 9, 300 * TEST_MS);
        if (caps[k] == 0)
            wait_ready(in); /* the sender is queued */
        test_thread_join(t);
        cr_assert_eq(p.rc, -ETIMEDOUT);
        LEVELS(in, out, want_in, 0);
        test_sem_destroy(&p.call.started);

        /* A receiver that times out on the emptied channel. */
        for (size_t i = 0; i < caps[k]; i++)
            cr_assert_eq(chan_recv(ch, &v), 0);
        LEVELS(in, out, 0, caps[k] > 0);
        t = peer_start(&p, ch, 0, 0, 300 * TEST_MS);
        if (caps[k] == 0)
            wait_ready(out);
        test_thread_join(t);
        cr_assert_eq(p.rc, -ETIMEDOUT);
        LEVELS(in, out, 0, caps[k] > 0);
        test_sem_destroy(&p.call.started);
        chan_release(ch);
    }
}

/* Selects: a waiting select counts as a waiter; one that fires on another
 * channel, or times out, takes its level down when it unlinks. */
struct sel_peer {
    chan_t *a, *b;   /* recv on a (watched), recv on b */
    int64_t timeout;
    int rc;
    int va, vb;
    sem_t started;
};

static void *sel_main(void *arg)
{
    struct sel_peer *p = arg;
    chan_case_t cases[] = { CHAN_RECV_CASE(p->a, &p->va),
                            CHAN_RECV_CASE(p->b, &p->vb) };
    test_sem_post(&p->started);
    p->rc = chan_select(cases, 2, p->timeout);
    return NULL;
}

Test(pollfd, select_waiters)
{
    chan_t *a = chan_make(sizeof(int), 0);
    chan_t *b = chan_make(sizeof(int), 0);
    int in = chan_pollfd(a, POLLIN);
    int out = chan_pollfd(a, POLLOUT);
    for (int round = 0; round < 3; round++) {
        struct sel_peer p = { .a = a, .b = b,
                              .timeout = round == 2 ? 300 * TEST_MS
                                                    : CHAN_FOREVER };
        test_sem_init(&p.started, 0);
        pthread_t t = test_thread_start(sel_main, &p);
        test_sem_wait(&p.started);
        wait_ready(out); /* the select's receiver waits on a */
        LEVELS(in, out, 0, 1);
        int v = 40 + round;
        if (round == 0) {
            /* It fires on a: served directly. */
            cr_assert_eq(chan_send(a, &v), 0);
            LEVELS(in, out, 0, 0);
            test_thread_join(t);
            cr_assert_eq(p.rc, 0);
            cr_assert_eq(p.va, v);
        } else if (round == 1) {
            /* It fires on b: its waiter on a goes stale, then leaves. */
            cr_assert_eq(chan_send(b, &v), 0);
            test_thread_join(t);
            cr_assert_eq(p.rc, 1);
            cr_assert_eq(p.vb, v);
            LEVELS(in, out, 0, 0);
        } else {
            test_thread_join(t);
            cr_assert_eq(p.rc, -ETIMEDOUT);
            LEVELS(in, out, 0, 0);
        }
        test_sem_destroy(&p.started);
    }
    /* A try select with nobody to pair with changes nothing. */
    chan_case_t c = CHAN_SEND_CASE(a, &(int){ 1 });
    cr_assert_eq(chan_select(&c, 1, 0), -EAGAIN);
    LEVELS(in, out, 0, 0);
    chan_release(a);
    chan_release(b);
}

Test(pollfd, unbuffered_close)
{
    chan_t *ch = chan_make(0, 0);
    int in = chan_pollfd(ch, POLLIN);
    int out = chan_pollfd(ch, POLLOUT);
    struct peer p;
    pthread_t t = peer_start(&p, ch, 0, 0, CHAN_FOREVER);
    wait_ready(out);
    LEVELS(in, out, 0, 1);
    cr_assert_eq(chan_close(ch), 0);
    LEVELS(in, out, 1, 1);
    test_thread_join(t);
    cr_assert_eq(p.rc, -EPIPE);
    LEVELS(in, out, 1, 1);
    cr_assert_eq(chan_tryrecv(ch, NULL), -EPIPE);
    cr_assert_eq(chan_trysend(ch, NULL), -EPIPE);
    LEVELS(in, out, 1, 1);
    test_sem_destroy(&p.call.started);
    chan_release(ch);
}

/* A task parked in a send or receive is a waiter like a thread. */
struct task_arg {
    chan_t *ch;
    int is_send;
    int value;
    int rc;
};

static void task_op(void *arg)
{
    struct task_arg *a = arg;
    a->rc = a->is_send ? chan_send(a->ch, &a->value)
                       : chan_recv(a->ch, &a->value);
}

Test(pollfd, tasks_as_waiters)
{
    chan_sched_opts_t o = { .threads = 2 };
    chan_sched_t *s = chan_sched_new(&o);
    cr_assert_not_null(s);
    chan_t *ch = chan_make(sizeof(int), 0);
    int in = chan_pollfd(ch, POLLIN);
    int out = chan_pollfd(ch, POLLOUT);
    for (int round = 0; round < 5; round++) {
        struct task_arg snd = { ch, 1, 300 + round, -1 };
        cr_assert_eq(chan_go(s, task_op, &snd), 0);
        wait_ready(in);
        LEVELS(in, out, 1, 0);
        int v = 0;
        cr_assert_eq(chan_tryrecv(ch, &v), 0);
        cr_assert_eq(v, 300 + round);
        LEVELS(in, out, 0, 0);
        cr_assert_eq(chan_sched_wait(s), 0);
        cr_assert_eq(snd.rc, 0);

        struct task_arg rcv = { ch, 0, 0, -1 };
        cr_assert_eq(chan_go(s, task_op, &rcv), 0);
        wait_ready(out);
        LEVELS(in, out, 0, 1);
        v = 400 + round;
        cr_assert_eq(chan_trysend(ch, &v), 0);
        LEVELS(in, out, 0, 0);
        cr_assert_eq(chan_sched_wait(s), 0);
        cr_assert_eq(rcv.rc, 0);
        cr_assert_eq(rcv.value, v);
    }
    chan_release(ch);
    chan_sched_free(s);
}

/* ------------------------------------------------------------------ */
/* The creation race                                                  */

struct racer {
    chan_t *ch;
    int events;
    int fd;
    pthread_barrier_t *go;
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    test_barrier_wait(r->go);
    r->fd = chan_pollfd(r->ch, r->events);
    return NULL;
}

Test(pollfd, creation_race)
{
    enum { RACERS = 4 };
    long iters = test_scaled(300, 30);
    int before = count_fds();
    for (long it = 0; it < iters; it++) {
        size_t cap = (size_t)(it % 3) * 2; /* 0, 2, 4 */
        chan_t *ch = chan_make(sizeof(int), cap);
        int v = 1;
        if (cap)
            cr_assert_eq(chan_send(ch, &v), 0); /* starts readable */
        pthread_barrier_t go;
        test_barrier_init(&go, RACERS);
        struct racer r[RACERS];
        pthread_t t[RACERS];
        for (int i = 0; i < RACERS; i++) {
            r[i] = (struct racer){ ch, i % 2 ? POLLOUT : POLLIN, -1, &go };
            t[i] = test_thread_start(racer_main, &r[i]);
        }
        for (int i = 0; i < RACERS; i++)
            test_thread_join(t[i]);
        test_barrier_destroy(&go);
        for (int i = 0; i < RACERS; i++) {
            cr_assert_geq(r[i].fd, 0);
            cr_assert_eq(r[i].fd, r[i % 2].fd, "two descriptors for one "
                                               "direction");
        }
        cr_assert_neq(r[0].fd, r[1].fd);
        cr_assert_eq(count_fds(), before + 2, "a losing racer's eventfd "
                                              "stayed open");
        if (cap)
            LEVELS(r[0].fd, r[1].fd, 1, 1);
        else
            LEVELS(r[0].fd, r[1].fd, 0, 0);
        chan_release(ch);
    }
    cr_assert_eq(count_fds(), before);
}

/* ------------------------------------------------------------------ */
/* Event-loop consumers and producers                                 */

enum { PRODUCERS = 4, TASK_PRODUCERS = 8 };

struct prod {
    chan_t *ch;
    int first, count;
    int rc;
};

static void *prod_thread(void *arg)
{
    struct prod *p = arg;
    for (int i = 0; i < p->count && p->rc == 0; i++) {
        int v = p->first + i;
        p->rc = chan_send(p->ch, &v);
    }
    return NULL;
}

static void prod_task(void *arg)
{
    (void)prod_thread(arg);
}

/*
 * One epoll consumer, many producers (threads and tasks): every value
 * arrives exactly once.  The consumer drains with chan_tryrecv until
 * -EAGAIN after each wake-up, as the contract says, and stops at -EPIPE.
 */
static void epoll_consumer(size_t cap)
{
    int per = (int)test_scaled(2000, 50);
    int total = (PRODUCERS + TASK_PRODUCERS) * per;
    chan_t *ch = chan_make(sizeof(int), cap);
    int fd = chan_pollfd(ch, POLLIN);
    cr_assert_geq(fd, 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    cr_assert_geq(ep, 0);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
    cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);

    chan_sched_opts_t o = { .threads = 2 };
    chan_sched_t *s = chan_sched_new(&o);
    cr_assert_not_null(s);
    struct prod p[PRODUCERS + TASK_PRODUCERS];
    pthread_t t[PRODUCERS];
    for (int i = 0; i < PRODUCERS + TASK_PRODUCERS; i++) {
        p[i] = (struct prod){ ch, i * per, per, 0 };
        if (i < PRODUCERS)
            t[i] = test_thread_start(prod_thread, &p[i]);
        else
            cr_assert_eq(chan_go(s, prod_task, &p[i]), 0);
    }

    /* The test thread is the event loop. */
    unsigned char *seen = calloc((size_t)total, 1);
    cr_assert_not_null(seen);
    int got = 0, wakeups = 0, empty_wakeups = 0, closed = 0, close_sent = 0;
    int64_t end = test_now_ns() + 50000 * TEST_MS;
    while (!closed) {
        struct epoll_event out;
        int n = epoll_wait(ep, &out, 1, 100);
        cr_assert(n >= 0 || errno == EINTR, "epoll_wait: %s", strerror(errno));
        cr_assert(test_now_ns() < end, "stuck after %d of %d values", got,
                  total);
        if (n <= 0)
            continue;
        wakeups++;
        int this_round = 0, v, rc;
        while ((rc = chan_tryrecv(ch, &v)) == 0) {
            cr_assert(v >= 0 && v < total, "value %d out of range", v);
            cr_assert_eq(seen[v], 0, "value %d received twice", v);
            seen[v] = 1;
            got++;
            this_round++;
        }
        if (rc == -EPIPE)
            closed = 1;
        else
            cr_assert_eq(rc, -EAGAIN);
        if (!this_round && !closed)
            empty_wakeups++;
        /* Every producer is done once everything arrived: close, which
         * the next wake-up reports as -EPIPE. */
        if (got == total && !closed && !close_sent) {
            cr_assert_eq(chan_close(ch), 0);
            close_sent = 1;
        }
    }
    for (int i = 0; i < PRODUCERS; i++)
        test_thread_join(t[i]);
    cr_assert_eq(chan_sched_wait(s), 0);
    chan_sched_free(s);
    for (int i = 0; i < PRODUCERS + TASK_PRODUCERS; i++)
        cr_assert_eq(p[i].rc, 0);
    cr_assert_eq(got, total);
    for (int i = 0; i < total; i++)
        cr_assert_eq(seen[i], 1, "value %d lost", i);
    cr_log_info("cap %zu: %d values, %d wake-ups, %d empty", cap, total,
                wakeups, empty_wakeups);
    free(seen);
    close(ep);
    chan_release(ch);
}

Test(pollfd, epoll_consumer_unbuffered) { epoll_consumer(0); }
Test(pollfd, epoll_consumer_cap1) { epoll_consumer(1); }
Test(pollfd, epoll_consumer_buffered) { epoll_consumer(16); }

/* Consumers (threads and tasks) blocking in chan_recv; one producer
 * driven by poll(2) on POLLOUT, with chan_trysend until -EAGAIN. */
struct cons {
    chan_t *ch;
    unsigned char *seen;
    atomic_int *dups;
    int total;
    int count;
};

static void *cons_thread(void *arg)
{
    struct cons *c = arg;
    int v;
    while (chan_recv(c->ch, &v) == 0) {
        if (v < 0 || v >= c->total)
            atomic_fetch_add(c->dups, 1);
        else if (__atomic_exchange_n(&c->seen[v], 1, __ATOMIC_RELAXED))
            atomic_fetch_add(c->dups, 1);
        c->count++;
    }
    return NULL;
}

static void cons_task(void *arg)
{
    (void)cons_thread(arg);
}

static void poll_producer(size_t cap)
{
    enum { CT = 2, CK = 4 };
    int total = (int)test_scaled(20000, 500);
    chan_t *ch = chan_make(sizeof(int), cap);
    int fd = chan_pollfd(ch, POLLOUT);
    cr_assert_geq(fd, 0);
    unsigned char *seen = calloc((size_t)total, 1);
    atomic_int dups = 0;
    struct cons c[CT + CK];
    pthread_t t[CT];
    chan_sched_opts_t o = { .threads = 2 };
    chan_sched_t *s = chan_sched_new(&o);
    cr_assert_not_null(s);
    for (int i = 0; i < CT + CK; i++) {
        c[i] = (struct cons){ ch, seen, &dups, total, 0 };
        if (i < CT)
            t[i] = test_thread_start(cons_thread, &c[i]);
        else
            cr_assert_eq(chan_go(s, cons_task, &c[i]), 0);
    }
    int next = 0;
    int64_t end = test_now_ns() + 50000 * TEST_MS;
    while (next < total) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int n = poll(&p, 1, 100);
        cr_assert(n >= 0 || errno == EINTR, "poll: %s", strerror(errno));
        cr_assert(test_now_ns() < end, "stuck after %d of %d", next, total);
        if (n <= 0)
            continue;
        int rc;
        while (next < total && (rc = chan_trysend(ch, &next)) == 0)
            next++;
        if (next < total)
            cr_assert_eq(rc, -EAGAIN);
    }
    cr_assert_eq(chan_close(ch), 0);
    for (int i = 0; i < CT; i++)
        test_thread_join(t[i]);
    cr_assert_eq(chan_sched_wait(s), 0);
    chan_sched_free(s);
    int sum = 0;
    for (int i = 0; i < CT + CK; i++)
        sum += c[i].count;
    cr_assert_eq(atomic_load(&dups), 0);
    cr_assert_eq(sum, total);
    for (int i = 0; i < total; i++)
        cr_assert_eq(seen[i], 1, "value %d lost", i);
    free(seen);
    chan_release(ch);
}

Test(pollfd, poll_producer_unbuffered) { poll_producer(0); }
Test(pollfd, poll_producer_buffered) { poll_producer(8); }

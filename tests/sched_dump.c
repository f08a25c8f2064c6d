/*
 * sched_dump.c - tests of chan_sched_dump and of the CHAN_DEBUG=deadlock
 * report: the line of a parked task of each kind (send, receive, select,
 * sleep, wait group, chan_blocking, timed waits), running and runnable
 * tasks, how long a task has been parked, a dump from a task of the
 * scheduler itself, bad arguments, dumps racing tasks that start and
 * finish, and the report: its first line, its dump, that it comes once,
 * that the program goes on, and that tasks with a deadline, a timer or a
 * chan_blocking call pending get none.
 *
 * A dump is read back through a pipe.  The test thread learns that its
 * tasks are parked by dumping until every expected line is there, so no
 * test guesses with a sleep; only the "no report" tests wait out a fixed
 * time, as they must.  Each test runs in its own process, so a test that
 * sets CHAN_DEBUG before making its schedulers gets a monitor.
 */
#include "util.h"

#include <fcntl.h>
#include <poll.h>

TestSuite(dump, .timeout = TEST_TIMEOUT_S);
TestSuite(deadlock, .timeout = TEST_TIMEOUT_S);

/* How long the test thread waits for anything before failing. */
#define WAIT_MS 20000

static void make_pipe(int fds[2])
{
    cr_assert_eq(pipe(fds), 0, "pipe failed");
    /* Reads must not block: the test polls with deadlines. */
    cr_assert_eq(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
}

/* Appends what can be read from fd within ms to buf (NUL-terminated);
 * returns the number of bytes read. */
static size_t read_for(int fd, char *buf, size_t size, size_t *len, int ms)
{
    size_t got = 0;
    int64_t end = test_now_ns() + ms * TEST_MS;
    for (;;) {
        int64_t left = (end - test_now_ns()) / TEST_MS;
        if (left < 0)
            left = 0;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, (int)left);
        if (r <= 0)
            break;
        ssize_t n = read(fd, buf + *len, size - 1 - *len);
        if (n <= 0)
            break;
        *len += (size_t)n;
        got += (size_t)n;
        buf[*len] = '\0';
        if (*len + 1 >= size)
            break;
        /* Drain what is there already, then return. */
        ms = 0;
        end = test_now_ns();
    }
    buf[*len] = '\0';
    return got;
}

/* A dump of s, read back through a pipe, in buf. */
static void dump_into(chan_sched_t *s, char *buf, size_t size)
{
    int fds[2];
    make_pipe(fds);
    int rc = chan_sched_dump(s, fds[1]);
    close(fds[1]);
    size_t len = 0;
    buf[0] = '\0';
    while (read_for(fds[0], buf, size, &len, 1000) > 0)
        ;
    close(fds[0]);
    cr_assert_eq(rc, 0, "chan_sched_dump returned %d", rc);
}

/* The line of buf that contains what, copied to line; 0 if none. */
static int line_with(const char *buf, const char *what, char *line,
                     size_t size)
{
    const char *p = strstr(buf, what);
    if (!p)
        return 0;
    const char *b = p;
    while (b > buf && b[-1] != '\n')
        b--;
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - b) : strlen(b);
    if (n >= size)
        n = size - 1;
    memcpy(line, b, n);
    line[n] = '\0';
    return 1;
}

static int count_of(const char *buf, const char *what)
{
    int n = 0;
    for (const char *p = buf; (p = strstr(p, what)) != NULL; p++)
        n++;
    return n;
}

/* Dumps s until buf holds nparked parked tasks; fails after WAIT_MS. */
static void dump_until_parked(chan_sched_t *s, char *buf, size_t size,
                              int nparked)
{
    int64_t end = test_now_ns() + WAIT_MS * TEST_MS;
    for (;;) {
        dump_into(s, buf, size);
        if (count_of(buf, " parked ") == nparked)
            return;
        cr_assert(test_now_ns() < end, "never saw %d parked tasks in:\n%s",
                  nparked, buf);
        test_sleep_ns(TEST_MS);
    }
}

/* ------------------------------------------------------------ tasks */

struct world {
    chan_t *full;      /* elem 4, cap 2, full: a send blocks */
    chan_t *empty;     /* elem 8, cap 0: a receive blocks */
    chan_t *timed;     /* elem 8, cap 1: a timed receive blocks */
    chan_t *sel[3];    /* elem 8, cap 0 */
    chan_wg_t *wg;
    sem_t blocking_go;
    int64_t sleep_ns;
    _Atomic int rc_send, rc_recv, rc_timed, rc_sel, rc_wg, rc_blocking;
    int dump_fd;
    _Atomic int rc_dump;
    _Atomic int dumped;
};

static void t_send(void *arg)
{
    struct world *w = arg;
    int v = 3;
    atomic_store(&w->rc_send, chan_send(w->full, &v));
}

static void t_recv(void *arg)
{
    struct world *w = arg;
    int64_t v;
    atomic_store(&w->rc_recv, chan_recv(w->empty, &v));
}

static void t_timed(void *arg)
{
    struct world *w = arg;
    int64_t v;
    atomic_store(&w->rc_timed, chan_timedrecv(w->timed, &v, 60000 * TEST_MS));
}

static void t_select(void *arg)
{
    struct world *w = arg;
    int64_t v;
    chan_case_t c[4] = {
        CHAN_RECV_CASE(w->sel[0], &v),
        CHAN_RECV_CASE(NULL, &v), /* disabled: not counted */
        CHAN_RECV_CASE(w->sel[1], &v),
        CHAN_RECV_CASE(w->sel[2], &v),
    };
    atomic_store(&w->rc_sel, chan_select(c, 4, CHAN_FOREVER));
}

static void t_sleep(void *arg)
{
    struct world *w = arg;
    chan_sleep(w->sleep_ns);
}

static void t_wg(void *arg)
{
    struct world *w = arg;
    atomic_store(&w->rc_wg, chan_wg_wait(w->wg));
}

static void blocking_fn(void *arg)
{
    struct world *w = arg;
    test_sem_wait(&w->blocking_go);
}

static void t_blocking(void *arg)
{
    struct world *w = arg;
    atomic_store(&w->rc_blocking, chan_blocking(blocking_fn, w));
}

static void t_nothing(void *arg)
{
    (void)arg;
}

/* Starts a task that will be runnable, then dumps from inside s. */
static void t_dumper(void *arg)
{
    struct world *w = arg;
    int rc = chan_go(NULL, t_nothing, NULL);
    if (rc == 0)
        rc = chan_sched_dump(chan_sched_current(),
                             w->dump_fd);
    atomic_store(&w->rc_dump, rc);
    atomic_store(&w->dumped, 1);
}

static void world_init(struct world *w)
{
    memset(w, 0, sizeof *w);
    w->full = chan_make(4, 2);
    w->empty = chan_make(8, 0);
    w->timed = chan_make(8, 1);
    for (int i = 0; i < 3; i++)
        w->sel[i] = chan_make(8, 0);
    w->wg = chan_wg_new();
    cr_assert(w->full && w->empty && w->timed && w->sel[0] && w->sel[1] &&
              w->sel[2] && w->wg);
    int v = 1;
    cr_assert_eq(chan_send(w->full, &v), 0);
    cr_assert_eq(chan_send(w->full, &v), 0);
    cr_assert_eq(chan_wg_add(w->wg, 1), 0);
    test_sem_init(&w->blocking_go, 0);
    atomic_init(&w->rc_send, 1);
    atomic_init(&w->rc_recv, 1);
    atomic_init(&w->rc_timed, 1);
    atomic_init(&w->rc_sel, 1);
    atomic_init(&w->rc_wg, 1);
    atomic_init(&w->rc_blocking, 1);
    atomic_init(&w->rc_dump, 1);
}

/* Wakes every task of world_init's kinds; the sleeper ends by itself. */
static void world_release(struct world *w)
{
    int v;
    int64_t x = 5;
    cr_assert_eq(chan_recv(w->full, &v), 0); /* the sender moves in */
    cr_assert_eq(chan_send(w->empty, &x), 0);
    cr_assert_eq(chan_close(w->timed), 0);
    cr_assert_eq(chan_close(w->sel[1]), 0);
    cr_assert_eq(chan_wg_done(w->wg), 0);
    test_sem_post(&w->blocking_go);
}

static void world_free(struct world *w)
{
    cr_assert_eq(atomic_load(&w->rc_send), 0);
    cr_assert_eq(atomic_load(&w->rc_recv), 0);
    cr_assert_eq(atomic_load(&w->rc_timed), -EPIPE);
    cr_assert_eq(atomic_load(&w->rc_sel), 2);
    cr_assert_eq(atomic_load(&w->rc_wg), 0);
    cr_assert_eq(atomic_load(&w->rc_blocking), 0);
    chan_release(w->full);
    chan_release(w->empty);
    chan_release(w->timed);
    for (int i = 0; i < 3; i++)
        chan_release(w->sel[i]);
    chan_wg_free(w->wg);
    test_sem_destroy(&w->blocking_go);
}

/* ------------------------------------------------------------ dump */

Test(dump, null_scheduler_is_einval)
{
    cr_assert_eq(chan_sched_dump(NULL, 2), -EINVAL);
    cr_assert_eq(chan_sched_dump(NULL, -1), -EINVAL);
}

Test(dump, bad_descriptor_is_ebadf_and_errno_is_kept)
{
    chan_sched_t *s = test_sched_make(1);
    int fds[2];
    make_pipe(fds);
    close(fds[0]);
    close(fds[1]); /* fds[1] is now no open descriptor */
    errno = 1234;
    cr_assert_eq(chan_sched_dump(s, fds[1]), -EBADF);
    cr_assert_eq(chan_sched_dump(s, -1), -EBADF);
    cr_assert_eq(errno, 1234, "chan_sched_dump changed errno");
    /* A descriptor open for reading only. */
    make_pipe(fds);
    cr_assert_eq(chan_sched_dump(s, fds[0]), -EBADF);
    close(fds[0]);
    close(fds[1]);
    chan_sched_free(s);
}

Test(dump, idle_scheduler_prints_its_header)
{
    chan_sched_t *s = test_sched_make(2);
    char buf[1024], expect[128];
    dump_into(s, buf, sizeof buf);
    snprintf(expect, sizeof expect,
             "libchan: scheduler %p: 0 tasks, 2 workers\n", (void *)s);
    cr_assert_eq(strcmp(buf, expect), 0, "dump was:\n%s", buf);
    chan_sched_free(s);
}

Test(dump, lines_of_every_kind_of_task)
{
    static struct world w;
    world_init(&w);
    w.sleep_ns = 1000 * TEST_MS;
    /* One worker: the dumper runs while the task it starts stays
     * runnable. */
    chan_sched_t *s = test_sched_make(1);
    cr_assert_eq(chan_go(s, t_send, &w), 0);
    cr_assert_eq(chan_go(s, t_recv, &w), 0);
    cr_assert_eq(chan_go(s, t_timed, &w), 0);
    cr_assert_eq(chan_go(s, t_select, &w), 0);
    cr_assert_eq(chan_go(s, t_sleep, &w), 0);
    cr_assert_eq(chan_go(s, t_wg, &w), 0);
    cr_assert_eq(chan_go(s, t_blocking, &w), 0);
    static char buf[16384], again[16384];
    dump_until_parked(s, buf, sizeof buf, 7);
    int64_t first = test_now_ns();

    /* The dump of a task of s, into a pipe the test thread drains. */
    int fds[2];
    make_pipe(fds);
    w.dump_fd = fds[1];
    cr_assert_eq(chan_go(s, t_dumper, &w), 0);
    size_t len = 0;
    buf[0] = '\0';
    cr_assert(test_wait_nonzero(&w.dumped, WAIT_MS * TEST_MS));
    close(fds[1]);
    while (read_for(fds[0], buf, sizeof buf, &len, 1000) > 0)
        ;
    close(fds[0]);
    cr_assert_eq(atomic_load(&w.rc_dump), 0);

    char expect[256], line[512];
    snprintf(expect, sizeof expect,
             "libchan: scheduler %p: 9 tasks, 1 workers\n", (void *)s);
    cr_assert_eq(strncmp(buf, expect, strlen(expect)), 0, "dump:\n%s", buf);
    cr_assert_eq(count_of(buf, "\n  task "), 9, "dump:\n%s", buf);
    cr_assert_eq(count_of(buf, " parked "), 7, "dump:\n%s", buf);

    snprintf(expect, sizeof expect,
             "send on channel %p (elem 4, cap 2, len 2), started at ",
             (void *)w.full);
    cr_assert(line_with(buf, expect, line, sizeof line), "dump:\n%s", buf);
    cr_assert(strstr(line, "sched_dump.c:"), "%s", line);
    snprintf(expect, sizeof expect,
             "recv on channel %p (elem 8, cap 0, len 0), started at ",
             (void *)w.empty);
    cr_assert(line_with(buf, expect, line, sizeof line), "dump:\n%s", buf);
    snprintf(expect, sizeof expect,
             "recv on channel %p (elem 8, cap 1, len 0), with a deadline",
             (void *)w.timed);
    cr_assert(line_with(buf, expect, line, sizeof line), "dump:\n%s", buf);
    cr_assert(line_with(buf, ": select over 3 cases, started", line,
                        sizeof line), "dump:\n%s", buf);
    cr_assert(line_with(buf, ": sleep, started", line, sizeof line),
              "dump:\n%s", buf);
    snprintf(expect, sizeof expect, ": wait group %p, started", (void *)w.wg);
    cr_assert(line_with(buf, expect, line, sizeof line), "dump:\n%s", buf);
    cr_assert(line_with(buf, ": chan_blocking call, started", line,
                        sizeof line), "dump:\n%s", buf);
    cr_assert(line_with(buf, " running on worker 0, started at ", line,
                        sizeof line), "dump:\n%s", buf);
    cr_assert(strstr(line, "sched_dump.c:"), "%s", line);
    cr_assert(line_with(buf, " runnable, started at ", line, sizeof line),
              "dump:\n%s", buf);
    cr_assert_eq(count_of(buf, "with a deadline"), 1, "dump:\n%s", buf);

    /* For how long: the receiver has been parked since the first dump
     * that saw it, before `first`. */
    test_sleep_ns(300 * TEST_MS);
    dump_into(s, again, sizeof again);
    int64_t bound = test_now_ns();
    snprintf(expect, sizeof expect, "recv on channel %p (elem 8, cap 0",
             (void *)w.empty);
    cr_assert(line_with(again, expect, line, sizeof line), "%s", again);
    long sec = -1;
    int ms = -1;
    const char *p = strstr(line, " parked ");
    cr_assert(p && sscanf(p, " parked %ld.%ds:", &sec, &ms) == 2, "%s", line);
    int64_t shown = sec * 1000 + ms;
    cr_assert_geq(shown, 300, "%s", line);
    cr_assert_leq(shown, (bound - first) / TEST_MS + 1000, "%s", line);

    world_release(&w);
    chan_sched_free(s);
    world_free(&w);
}

/* Tasks that start tasks that finish at once, while other threads and a
 * task dump the scheduler. */
struct churn {
    chan_sched_t *s;
    int fd;
    long rounds;
    _Atomic int bad;
    chan_t *ch;
};

static void t_short(void *arg)
{
    struct churn *c = arg;
    int v = 1;
    if (chan_trysend(c->ch, &v) != 0)
        chan_yield();
}

static void t_spawner(void *arg)
{
    struct churn *c = arg;
    int v;
    for (long i = 0; i < c->rounds; i++) {
        if (chan_go(NULL, t_short, c) != 0)
            atomic_store(&c->bad, 1);
        while (chan_tryrecv(c->ch, &v) == 0)
            ;
        if (i % 64 == 0 && chan_sched_dump(c->s, c->fd))
            atomic_store(&c->bad, 2);
    }
}

static void *dump_thread(void *arg)
{
    struct churn *c = arg;
    for (long i = 0; i < c->rounds / 16; i++)
        if (chan_sched_dump(c->s, c->fd) != 0)
            atomic_store(&c->bad, 3);
    return NULL;
}

Test(dump, races_with_tasks_starting_and_finishing)
{
    struct churn c = { .rounds = test_scaled(2000, 200) };
    c.s = test_sched_make(2);
    c.fd = open("/dev/null", O_WRONLY);
    cr_assert_geq(c.fd, 0);
    c.ch = chan_make(sizeof(int), 16);
    cr_assert_not_null(c.ch);
    atomic_init(&c.bad, 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        th[i] = test_thread_start(dump_thread, &c);
    cr_assert_eq(chan_go(c.s, t_spawner, &c), 0);
    cr_assert_eq(chan_go(c.s, t_spawner, &c), 0);
    for (int i = 0; i < 2; i++)
        test_thread_join(th[i]);
    cr_assert_eq(chan_sched_wait(c.s), 0);
    cr_assert_eq(atomic_load(&c.bad), 0);
    char buf[512], expect[128];
    dump_into(c.s, buf, sizeof buf);
    snprintf(expect, sizeof expect,
             "libchan: scheduler %p: 0 tasks, 2 workers\n", (void *)c.s);
    cr_assert_eq(strcmp(buf, expect), 0, "dump was:\n%s", buf);
    chan_sched_free(c.s);
    chan_release(c.ch);
    close(c.fd);
}

/* ------------------------------------------------------------ deadlock */

/* Standard error goes to a pipe until stderr_restore. */
struct captured {
    int saved;
    int rd;
};

static void stderr_capture(struct captured *c)
{
    int fds[2];
    make_pipe(fds);
    fflush(stderr);
    c->saved = dup(2);
    cr_assert_geq(c->saved, 0);
    cr_assert_eq(dup2(fds[1], 2), 2);
    close(fds[1]);
    c->rd = fds[0];
}

static void stderr_restore(struct captured *c)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
}

static void debug_on(void)
{
    /* Read by chan_sched_new; the test's process has no other thread
     * yet. */
    cr_assert_eq(setenv("CHAN_DEBUG", "deadlock", 1), 0);
}

struct stuck {
    chan_t *ch;
    chan_wg_t *wg;
    _Atomic int done;
};

static void t_stuck_recv(void *arg)
{
    struct stuck *k = arg;
    int64_t v;
    if (chan_recv(k->ch, &v) == 0)
        atomic_fetch_add(&k->done, 1);
}

static void t_stuck_wg(void *arg)
{
    struct stuck *k = arg;
    if (chan_wg_wait(k->wg) == 0)
        atomic_fetch_add(&k->done, 1);
}

static void stuck_init(struct stuck *k)
{
    k->ch = chan_make(8, 0);
    k->wg = chan_wg_new();
    cr_assert(k->ch && k->wg);
    cr_assert_eq(chan_wg_add(k->wg, 1), 0);
    atomic_init(&k->done, 0);
}

/* From a plain thread: wakes the two receivers and the wg waiter. */
static void stuck_release(struct stuck *k)
{
    int64_t v = 1;
    cr_assert_eq(chan_send(k->ch, &v), 0);
    cr_assert_eq(chan_send(k->ch, &v), 0);
    cr_assert_eq(chan_wg_done(k->wg), 0);
}

static void stuck_free(struct stuck *k)
{
    chan_release(k->ch);
    chan_wg_free(k->wg);
}

Test(deadlock, reported_once_and_the_program_goes_on)
{
    debug_on();
    struct captured cap;
    stderr_capture(&cap);
    struct stuck k;
    stuck_init(&k);
    chan_sched_t *s = test_sched_make(2);
    int rc1 = chan_go(s, t_stuck_recv, &k);
    int rc2 = chan_go(s, t_stuck_recv, &k);
    int rc3 = chan_go(s, t_stuck_wg, &k);
    int64_t start = test_now_ns();
    static char buf[16384];
    size_t len = 0;
    /* The report within 3 s (a second of being stuck, plus checks). */
    while (!strchr(buf, '\n') && test_now_ns() - start < 3000 * TEST_MS)
        read_for(cap.rd, buf, sizeof buf, &len, 100);
    int64_t took = test_now_ns() - start;
    /* Once: nothing more comes while the tasks stay blocked. */
    size_t first_len = len;
    read_for(cap.rd, buf, sizeof buf, &len, 1500);
    int more = count_of(buf, "possible deadlock");
    /* The report stopped nothing: a plain thread wakes the tasks. */
    stuck_release(&k);
    cr_assert_eq(chan_sched_wait(s), 0);
    int done = atomic_load(&k.done);
    stderr_restore(&cap);
    close(cap.rd);

    cr_assert(rc1 == 0 && rc2 == 0 && rc3 == 0);
    cr_log_info("report after %lld ms", (long long)(took / TEST_MS));
    char expect[256];
    snprintf(expect, sizeof expect,
             "libchan: possible deadlock: all 3 tasks of scheduler %p are "
             "blocked\n",
             (void *)s);
    cr_assert_eq(strncmp(buf, expect, strlen(expect)), 0,
                 "no report within 3 s; stderr had:\n%s", buf);
    unsigned n = 0;
    void *p = NULL;
    cr_assert_eq(sscanf(buf, "libchan: possible deadlock: all %u tasks of "
                             "scheduler %p are blocked\n", &n, &p), 2);
    cr_assert_eq(n, 3);
    cr_assert_eq(p, (void *)s);
    /* Followed by the dump. */
    snprintf(expect, sizeof expect,
             "blocked\nlibchan: scheduler %p: 3 tasks, 2 workers\n",
             (void *)s);
    cr_assert(strstr(buf, expect), "%s", buf);
    snprintf(expect, sizeof expect, "recv on channel %p (elem 8, cap 0, len 0)",
             (void *)k.ch);
    cr_assert_eq(count_of(buf, expect), 2, "%s", buf);
    snprintf(expect, sizeof expect, "wait group %p", (void *)k.wg);
    cr_assert_eq(count_of(buf, expect), 1, "%s", buf);
    cr_assert_eq(more, 1, "reported more than once:\n%s", buf);
    cr_assert_eq(len, first_len, "more output after the report:\n%s", buf);
    cr_assert_eq(done, 3);
    chan_sched_free(s);
    stuck_free(&k);
}

Test(deadlock, none_while_a_chan_blocking_call_is_pending)
{
    debug_on();
    struct captured cap;
    stderr_capture(&cap);
    static struct world w;
    world_init(&w);
    struct stuck k;
    stuck_init(&k);
    /* s: blocked tasks and one in chan_blocking; ctl: blocked tasks only,
     * whose report shows that the monitor works in this process. */
    chan_sched_t *s = test_sched_make(2), *ctl = test_sched_make(1);
    int rc = chan_go(s, t_recv, &w) | chan_go(s, t_wg, &w) |
             chan_go(s, t_blocking, &w) | chan_go(ctl, t_stuck_recv, &k) |
             chan_go(ctl, t_stuck_recv, &k);
    static char buf[16384];
    size_t len = 0;
    read_for(cap.rd, buf, sizeof buf, &len, 2500);
    /* Wake everything; the remaining world tasks are not used here. */
    int64_t v = 1;
    int rcs = chan_send(w.empty, &v) | chan_wg_done(w.wg);
    test_sem_post(&w.blocking_go);
    rcs |= chan_send(k.ch, &v) | chan_send(k.ch, &v);
    int w1 = chan_sched_wait(s), w2 = chan_sched_wait(ctl);
    stderr_restore(&cap);
    close(cap.rd);

    cr_assert_eq(rc, 0);
    cr_assert_eq(rcs, 0);
    cr_assert(w1 == 0 && w2 == 0);
    char expect[256];
    snprintf(expect, sizeof expect,
             "libchan: possible deadlock: all 2 tasks of scheduler %p are "
             "blocked\n",
             (void *)ctl);
    cr_assert_eq(strncmp(buf, expect, strlen(expect)), 0,
                 "no report of the control scheduler; stderr had:\n%s", buf);
    cr_assert_eq(count_of(buf, "possible deadlock"), 1, "%s", buf);
    cr_assert_eq(atomic_load(&w.rc_recv), 0);
    cr_assert_eq(atomic_load(&w.rc_blocking), 0);
    chan_sched_free(s);
    chan_sched_free(ctl);
    stuck_free(&k);
}

static void t_after(void *arg)
{
    (void)arg;
    chan_t *t = chan_after(2700 * TEST_MS);
    int64_t when;
    if (t) {
        chan_recv(t, &when);
        chan_release(t);
    }
}

Test(deadlock, none_while_timers_or_deadlines_are_pending)
{
    debug_on();
    struct captured cap;
    stderr_capture(&cap);
    static struct world w;
    world_init(&w);
    w.sleep_ns = 2700 * TEST_MS;
    chan_sched_t *a = test_sched_make(1), *b = test_sched_make(1), *c = test_sched_make(1);
    /* a: a sleeper; b: a timed receive; c: a receive from chan_after;
     * each with a task blocked for good beside it. */
    int rc = chan_go(a, t_sleep, &w) | chan_go(a, t_recv, &w) |
             chan_go(b, t_timed, &w) | chan_go(b, t_recv, &w) |
             chan_go(c, t_after, NULL) | chan_go(c, t_wg, &w);
    static char buf[16384];
    size_t len = 0;
    read_for(cap.rd, buf, sizeof buf, &len, 2500);
    int64_t v = 1;
    int rcs = chan_send(w.empty, &v) | chan_send(w.empty, &v) |
              chan_close(w.timed) | chan_wg_done(w.wg);
    int w1 = chan_sched_wait(a), w2 = chan_sched_wait(b),
        w3 = chan_sched_wait(c);
    stderr_restore(&cap);
    close(cap.rd);

    cr_assert_eq(rc, 0);
    cr_assert_eq(rcs, 0);
    cr_assert(w1 == 0 && w2 == 0 && w3 == 0);
    cr_assert_eq(len, 0, "unexpected report:\n%s", buf);
    cr_assert_eq(atomic_load(&w.rc_timed), -EPIPE);
    chan_sched_free(a);
    chan_sched_free(b);
    chan_sched_free(c);
}

struct fdwait {
    int fd;
    _Atomic int rc;
};

static void t_fd_wait(void *arg)
{
    struct fdwait *f = arg;
    atomic_store(&f->rc, chan_fd_wait(f->fd, POLLIN, CHAN_FOREVER));
}

Test(dump, line_of_a_descriptor_wait)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    struct fdwait f = { .fd = fds[0] };
    atomic_init(&f.rc, 0);
    chan_sched_t *s = test_sched_make(1);
    cr_assert_eq(chan_go(s, t_fd_wait, &f), 0);
    static char buf[4096];
    dump_until_parked(s, buf, sizeof buf, 1);
    char expect[128], line[512];
    snprintf(expect, sizeof expect, ": descriptor %d (events 0x%x), started",
             fds[0], POLLIN);
    cr_assert(line_with(buf, expect, line, sizeof line), "dump:\n%s", buf);
    cr_assert_eq(write(fds[1], "x", 1), 1);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert(atomic_load(&f.rc) & POLLIN, "chan_fd_wait returned %d",
              atomic_load(&f.rc));
    chan_sched_free(s);
    close(fds[0]);
    close(fds[1]);
}

/*
 * sched_park.c - tests of tasks that block: tasks and plain threads on the
 * same channels in both directions, a thread's close waking a parked task,
 * ping-pong between tasks, select, timeouts and their races with wakeups,
 * sleeps that share one worker, and wait groups, all in tasks.
 *
 * Counts scale with CHAN_TEST_SCALE (tests/util.h).
 */
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>

TestSuite(sched_park, .timeout = TEST_TIMEOUT_S);

/* ------------------------------------------------------------ tasks and threads */

struct mixed {
    chan_t *to_tasks, *to_threads;
    long n;
    atomic_long task_sum, thread_sum;
    atomic_int bad;
};

static void task_consumer(void *arg)
{
    struct mixed *m = arg;
    long v, sum = 0;
    int rc;
    while ((rc = chan_recv(m->to_tasks, &v)) == 0)
        sum += v;
    if (rc != -EPIPE)
        atomic_fetch_add(&m->bad, 1);
    atomic_fetch_add(&m->task_sum, sum);
}

static void task_producer(void *arg)
{
    struct mixed *m = arg;
    for (long i = 1; i <= m->n; i++)
        if (chan_send(m->to_threads, &i) != 0)
            atomic_fetch_add(&m->bad, 1);
}

static void *thread_consumer(void *arg)
{
    struct mixed *m = arg;
    long v, sum = 0;
    while (chan_recv(m->to_threads, &v) == 0)
        sum += v;
    atomic_fetch_add(&m->thread_sum, sum);
    return NULL;
}

static void *thread_producer(void *arg)
{
    struct mixed *m = arg;
    for (long i = 1; i <= m->n; i++)
        if (chan_send(m->to_tasks, &i) != 0)
            atomic_fetch_add(&m->bad, 1);
    return NULL;
}

static void run_mixed(size_t cap)
{
    struct mixed m = { .n = test_scaled(20000, 100) };
    cr_assert_not_null(m.to_tasks = chan_make(sizeof(long), cap));
    cr_assert_not_null(m.to_threads = chan_make(sizeof(long), cap));
    chan_sched_t *s = test_sched_make(2);
    enum { K = 3 };
    pthread_t prod[K], cons[K];
    for (int i = 0; i < K; i++) {
        cr_assert_eq(chan_go(s, task_consumer, &m), 0);
        cr_assert_eq(chan_go(s, task_producer, &m), 0);
        prod[i] = test_thread_start(thread_producer, &m);
        cons[i] = test_thread_start(thread_consumer, &m);
    }
    for (int i = 0; i < K; i++)
        test_thread_join(prod[i]);
    cr_assert_eq(chan_close(m.to_tasks), 0);
    /* The task consumers end with the close; the task producers once the
     * thread consumers have taken everything. */
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(chan_close(m.to_threads), 0);
    for (int i = 0; i < K; i++)
        test_thread_join(cons[i]);
    long want = K * (m.n * (m.n + 1) / 2);
    cr_assert_eq(atomic_load(&m.bad), 0);
    cr_assert_eq(atomic_load(&m.task_sum), want);
    cr_assert_eq(atomic_load(&m.thread_sum), want);
    chan_sched_free(s);
    chan_release(m.to_tasks);
    chan_release(m.to_threads);
}

Test(sched_park, tasks_and_threads_unbuffered_both_directions)
{
    run_mixed(0);
}

Test(sched_park, tasks_and_threads_buffered_both_directions)
{
    run_mixed(16);
}

/*
 * One value at a time through a buffered channel, each acknowledged before
 * the next is sent, between a thread and a task.  The receiving side finds
 * the ring empty nearly every time and goes to the lock to wait, while the
 * sender's next value may land in the ring without the lock at any moment:
 * a receiver that queued itself without looking at the ring again after
 * freezing it would miss that value for good (the sender then times out
 * waiting for the acknowledgement), or take the one after it first.
 */
struct lockstep {
    chan_t *data, *ack;
    chan_t *never;       /* with a select: a second case that never fires */
    long n;
    atomic_long bad;     /* values out of order, errors, timeouts */
};

/* One receive from l->data, plainly or by a select with l->never. */
static int lockstep_take(struct lockstep *l, long *v)
{
    if (!l->never)
        return chan_timedrecv(l->data, v, 10000000000LL);
    long x;
    chan_case_t cases[] = { CHAN_RECV_CASE(l->never, &x),
                            CHAN_RECV_CASE(l->data, v) };
    int rc = chan_select(cases, 2, 10000000000LL);
    return rc == 1 ? cases[1].result : rc < 0 ? rc : -EPROTO;
}

static void lockstep_send(struct lockstep *l)
{
    for (long i = 0; i < l->n; i++) {
        long a;
        if (chan_send(l->data, &i) != 0 ||
            chan_timedrecv(l->ack, &a, 10000000000LL) != 0 || a != i) {
            atomic_fetch_add(&l->bad, 1);
            return;
        }
    }
}

static void lockstep_recv(struct lockstep *l)
{
    for (long i = 0; i < l->n; i++) {
        long v;
        if (lockstep_take(l, &v) != 0 || v != i ||
            chan_send(l->ack, &v) != 0) {
            atomic_fetch_add(&l->bad, 1);
            return;
        }
    }
}

static void lockstep_send_task(void *arg) { lockstep_send(arg); }
static void lockstep_recv_task(void *arg) { lockstep_recv(arg); }
static void *lockstep_send_thread(void *arg) { lockstep_send(arg); return NULL; }
static void *lockstep_recv_thread(void *arg) { lockstep_recv(arg); return NULL; }

static void run_lockstep(int task_receives, int by_select)
{
    struct lockstep l = { .n = test_scaled(100000, 1000) };
    cr_assert_not_null(l.data = chan_make(sizeof(long), 4));
    cr_assert_not_null(l.ack = chan_make(sizeof(long), 4));
    if (by_select)
        cr_assert_not_null(l.never = chan_make(sizeof(long), 4));
    atomic_init(&l.bad, 0);
    chan_sched_t *s = test_sched_make(2);
    pthread_t th;
    if (task_receives) {
        cr_assert_eq(chan_go(s, lockstep_recv_task, &l), 0);
        th = test_thread_start(lockstep_send_thread, &l);
    } else {
        cr_assert_eq(chan_go(s, lockstep_send_task, &l), 0);
        th = test_thread_start(lockstep_recv_thread, &l);
    }
    test_thread_join(th);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(atomic_load(&l.bad), 0);
    chan_sched_free(s);
    chan_release(l.data);
    chan_release(l.ack);
    chan_release(l.never);
}

Test(sched_park, buffered_lockstep_thread_to_task)
{
    run_lockstep(1, 0);
}

Test(sched_park, buffered_lockstep_task_to_thread)
{
    run_lockstep(0, 0);
}

Test(sched_park, buffered_lockstep_thread_to_task_select)
{
    run_lockstep(1, 1);
}

struct closer {
    chan_t *ch;
    sem_t about_to_block;
    long worker_tid;
    int rc;
};

static void blocked_recv(void *arg)
{
    struct closer *c = arg;
    c->worker_tid = test_gettid();
    test_sem_post(&c->about_to_block);
    c->rc = chan_recv(c->ch, NULL);
}

Test(sched_park, thread_close_wakes_parked_task)
{
    struct closer c = { .ch = chan_make(0, 0), .rc = 1 };
    cr_assert_not_null(c.ch);
    test_sem_init(&c.about_to_block, 0);
    chan_sched_t *s = test_sched_make(1);
    cr_assert_eq(chan_go(s, blocked_recv, &c), 0);
    test_sem_wait(&c.about_to_block);
    /* The only worker sleeps only once the task has parked and nothing
     * is left to run. */
    cr_assert_eq(test_wait_blocked(c.worker_tid, NULL), 1);
    cr_assert_eq(chan_close(c.ch), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(c.rc, -EPIPE);
    chan_sched_free(s);
    chan_release(c.ch);
    test_sem_destroy(&c.about_to_block);
}

/* ------------------------------------------------------------ ping-pong */

struct pingpong {
    chan_t *ping, *pong;
    long n;
    atomic_int bad;
};

static void pinger(void *arg)
{
    struct pingpong *p = arg;
    for (long i = 0; i < p->n; i++) {
        long v = i;
        if (chan_send(p->ping, &v) != 0 || chan_recv(p->pong, &v) != 0 ||
            v != i + 1)
            atomic_fetch_add(&p->bad, 1);
    }
    chan_close(p->ping);
}

static void ponger(void *arg)
{
    struct pingpong *p = arg;
    long v;
    while (chan_recv(p->ping, &v) == 0) {
        v++;
        if (chan_send(p->pong, &v) != 0)
            atomic_fetch_add(&p->bad, 1);
    }
}

Test(sched_park, ping_pong_between_tasks)
{
    struct pingpong p = { .ping = chan_make(sizeof(long), 0),
                          .pong = chan_make(sizeof(long), 0),
                          .n = test_scaled(50000, 100) };
    cr_assert(p.ping && p.pong);
    chan_sched_t *s = test_sched_make(2);
    cr_assert_eq(chan_go(s, ponger, &p), 0);
    cr_assert_eq(chan_go(s, pinger, &p), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(atomic_load(&p.bad), 0);
    chan_sched_free(s);
    chan_release(p.ping);
    chan_release(p.pong);
}

/* ------------------------------------------------------------ select and timeouts */

struct sel {
    chan_t *a, *b, *never;
    long n;
    atomic_long got_a, got_b;
    int rc_timeout, rc_try, rc_timedrecv, rc_timedsend, rc_empty;
    int64_t waited_ns;
};

static void selector(void *arg)
{
    struct sel *s = arg;
    long va, vb;
    long left = 2 * s->n;
    while (left > 0) {
        chan_case_t c[2] = { CHAN_RECV_CASE(s->a, &va),
                             CHAN_RECV_CASE(s->b, &vb) };
        int i = chan_select(c, 2, CHAN_FOREVER);
        if (i == 0 && c[0].result == 0)
            atomic_fetch_add(&s->got_a, 1);
        else if (i == 1 && c[1].result == 0)
            atomic_fetch_add(&s->got_b, 1);
        else
            return;
        left--;
    }
    /* Timeouts, in a task. */
    chan_case_t c[1] = { CHAN_RECV_CASE(s->never, NULL) };
    int64_t t0 = test_now_ns();
    s->rc_timeout = chan_select(c, 1, 30 * TEST_MS);
    s->waited_ns = test_now_ns() - t0;
    s->rc_try = chan_select(c, 1, 0);
    s->rc_timedrecv = chan_timedrecv(s->never, NULL, 5 * TEST_MS);
    s->rc_timedsend = chan_timedsend(s->never, NULL, 5 * TEST_MS);
    s->rc_empty = chan_select(NULL, 0, 5 * TEST_MS);
}

static void feed(chan_t *ch, long n)
{
    for (long i = 0; i < n; i++)
        if (chan_send(ch, &i) != 0)
            return;
}

static void feed_a(void *arg)
{
    struct sel *s = arg;
    feed(s->a, s->n);
}

static void *feed_b(void *arg)
{
    struct sel *s = arg;
    feed(s->b, s->n);
    return NULL;
}

Test(sched_park, select_and_timeouts_in_tasks)
{
    struct sel s = { .a = chan_make(sizeof(long), 0),
                     .b = chan_make(sizeof(long), 4),
                     .never = chan_make(0, 0),
                     .n = test_scaled(5000, 50) };
    cr_assert(s.a && s.b && s.never);
    chan_sched_t *sc = test_sched_make(2);
    cr_assert_eq(chan_go(sc, selector, &s), 0);
    cr_assert_eq(chan_go(sc, feed_a, &s), 0); /* a task feeds a */
    pthread_t th = test_thread_start(feed_b, &s); /* a thread feeds b */
    test_thread_join(th);
    cr_assert_eq(chan_sched_wait(sc), 0);
    cr_assert_eq(atomic_load(&s.got_a), s.n);
    cr_assert_eq(atomic_load(&s.got_b), s.n);
    cr_assert_eq(s.rc_timeout, -ETIMEDOUT);
    cr_assert_geq(s.waited_ns, 30 * TEST_MS);
    cr_assert_lt(s.waited_ns, 3000 * TEST_MS);
    cr_assert_eq(s.rc_try, -EAGAIN);
    cr_assert_eq(s.rc_timedrecv, -ETIMEDOUT);
    cr_assert_eq(s.rc_timedsend, -ETIMEDOUT);
    cr_assert_eq(s.rc_empty, -ETIMEDOUT);
    chan_sched_free(sc);
    chan_release(s.a);
    chan_release(s.b);
    chan_release(s.never);
}

struct early {
    chan_t *ch;
    int rc;
    long v;
    int64_t waited_ns;
};

static void timed_receiver(void *arg)
{
    struct early *e = arg;
    int64_t t0 = test_now_ns();
    e->rc = chan_timedrecv(e->ch, &e->v, 20000 * TEST_MS);
    e->waited_ns = test_now_ns() - t0;
}

static void late_sender(void *arg)
{
    struct early *e = arg;
    chan_sleep(20 * TEST_MS);
    long v = 42;
    chan_send(e->ch, &v);
}

Test(sched_park, timed_wait_in_task_is_woken_before_its_deadline)
{
    struct early e = { .ch = chan_make(sizeof(long), 0), .rc = 1 };
    cr_assert_not_null(e.ch);
    chan_sched_t *s = test_sched_make(1);
    cr_assert_eq(chan_go(s, timed_receiver, &e), 0);
    cr_assert_eq(chan_go(s, late_sender, &e), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(e.rc, 0);
    cr_assert_eq(e.v, 42);
    cr_assert_geq(e.waited_ns, 20 * TEST_MS);
    cr_assert_lt(e.waited_ns, 10000 * TEST_MS);
    chan_sched_free(s);
    chan_release(e.ch);
}

/*
 * Timeouts racing wakeups: receivers with short timeouts against senders
 * with short timeouts on one unbuffered channel.  Whatever the
 * interleaving, every value a sender reports as sent is received exactly
 * once, and nothing else is.
 */
struct race {
    chan_t *ch;
    long per;
    atomic_long sent_sum, sent_n, recv_sum, recv_n;
    atomic_int senders_left;
    atomic_int bad;
};

static void race_sender(void *arg)
{
    struct race *r = arg;
    for (long i = 1; i <= r->per; i++) {
        int rc = chan_timedsend(r->ch, &i, (i % 7) * 50000);
        if (rc == 0) {
            atomic_fetch_add(&r->sent_sum, i);
            atomic_fetch_add(&r->sent_n, 1);
        } else if (rc != -ETIMEDOUT && rc != -EAGAIN) {
            atomic_fetch_add(&r->bad, 1);
        }
    }
    if (atomic_fetch_sub(&r->senders_left, 1) == 1)
        chan_close(r->ch);
}

static void race_receiver(void *arg)
{
    struct race *r = arg;
    long v, k = 0;
    for (;;) {
        int rc = chan_timedrecv(r->ch, &v, (++k % 5) * 40000);
        if (rc == 0) {
            atomic_fetch_add(&r->recv_sum, v);
            atomic_fetch_add(&r->recv_n, 1);
        } else if (rc == -EPIPE) {
            return;
        } else if (rc != -ETIMEDOUT && rc != -EAGAIN) {
            atomic_fetch_add(&r->bad, 1);
            return;
        }
    }
}

Test(sched_park, timeouts_racing_wakeups_lose_nothing)
{
    enum { SENDERS = 4, RECEIVERS = 4 };
    struct race r = { .ch = chan_make(sizeof(long), 0),
                      .per = test_scaled(3000, 50),
                      .senders_left = SENDERS };
    cr_assert_not_null(r.ch);
    chan_sched_t *s = test_sched_make(2);
    for (int i = 0; i < RECEIVERS; i++)
        cr_assert_eq(chan_go(s, race_receiver, &r), 0);
    for (int i = 0; i < SENDERS; i++)
        cr_assert_eq(chan_go(s, race_sender, &r), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(atomic_load(&r.bad), 0);
    cr_assert_gt(atomic_load(&r.sent_n), 0);
    cr_assert_eq(atomic_load(&r.recv_n), atomic_load(&r.sent_n));
    cr_assert_eq(atomic_load(&r.recv_sum), atomic_load(&r.sent_sum));
    chan_sched_free(s);
    chan_release(r.ch);
}

/* ------------------------------------------------------------ sleep */

struct nap {
    int64_t ns;
    atomic_int bad;
    atomic_long done;
};

static void napper(void *arg)
{
    struct nap *n = arg;
    int64_t t0 = test_now_ns();
    if (chan_sleep(n->ns) != 0 || test_now_ns() - t0 < n->ns)
        atomic_fetch_add(&n->bad, 1);
    if (chan_sleep(0) != 0 || chan_sleep(-3) != 0)
        atomic_fetch_add(&n->bad, 1);
    atomic_fetch_add(&n->done, 1);
}

Test(sched_park, sleeping_tasks_share_one_worker)
{
    /* 100 tasks sleep 100 ms each on one worker.  Parked, they sleep
     * together: well under the 10 s that sleeping one after another would
     * take. */
    struct nap n = { .ns = 100 * TEST_MS };
    chan_sched_t *s = test_sched_make(1);
    int64_t t0 = test_now_ns();
    for (int i = 0; i < 100; i++)
        cr_assert_eq(chan_go(s, napper, &n), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    int64_t dt = test_now_ns() - t0;
    cr_assert_eq(atomic_load(&n.bad), 0);
    cr_assert_eq(atomic_load(&n.done), 100);
    cr_assert_geq(dt, 100 * TEST_MS);
    cr_assert_lt(dt, 3000 * TEST_MS, "sleeps took %lld ms", (long long)(dt / TEST_MS));
    chan_sched_free(s);
}

/* ------------------------------------------------------------ wait groups */

struct wgt {
    chan_wg_t *wg;
    long n;
    atomic_long done;
    int rc_wait;
    long seen_at_wait;
};

static void wg_worker(void *arg)
{
    struct wgt *w = arg;
    chan_sleep(1 * TEST_MS);
    atomic_fetch_add(&w->done, 1);
    chan_wg_done(w->wg);
}

static void wg_waiter(void *arg)
{
    struct wgt *w = arg;
    w->rc_wait = chan_wg_wait(w->wg);
    w->seen_at_wait = atomic_load(&w->done);
}

Test(sched_park, wait_group_in_tasks)
{
    struct wgt w = { .wg = chan_wg_new(), .n = test_scaled(200, 10),
                     .rc_wait = 1 };
    cr_assert_not_null(w.wg);
    chan_sched_t *s = test_sched_make(2);
    cr_assert_eq(chan_wg_add(w.wg, (int)w.n), 0);
    cr_assert_eq(chan_go(s, wg_waiter, &w), 0);
    for (long i = 0; i < w.n; i++)
        cr_assert_eq(chan_go(s, wg_worker, &w), 0);
    cr_assert_eq(chan_wg_wait(w.wg), 0); /* a thread waits too */
    cr_assert_eq(atomic_load(&w.done), w.n);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(w.rc_wait, 0);
    cr_assert_eq(w.seen_at_wait, w.n);
    chan_sched_free(s);
    chan_wg_free(w.wg);
}


/* ------------------------------------------------------------ broadcast */

/* A plain thread's close wakes every task blocked on the channel, of two
 * schedulers, in long runs of each and interleaved, along with plain
 * threads and selects. */
enum { BC_RUN = 150 };

struct bcast_waiter {
    chan_t *ch;
    chan_wg_t *blocking;
    int select;
    int rc;
};

static void bcast_wait(struct bcast_waiter *b)
{
    chan_wg_done(b->blocking);
    if (b->select) {
        chan_case_t c[1] = { CHAN_RECV_CASE(b->ch, NULL) };
        int k = chan_select(c, 1, CHAN_FOREVER);
        b->rc = k == 0 ? c[0].result : k;
    } else {
        b->rc = chan_recv(b->ch, NULL);
    }
}

static void bcast_task(void *arg)
{
    bcast_wait(arg);
}

static void *bcast_thread(void *arg)
{
    bcast_wait(arg);
    return NULL;
}

Test(sched_park, thread_close_wakes_the_tasks_of_two_schedulers)
{
    enum { NT = 3, N = 4 * BC_RUN + NT };
    chan_sched_t *s[2] = { test_sched_make(2), test_sched_make(2) };
    chan_t *ch = chan_make(0, 0);
    chan_wg_t *blocking = chan_wg_new();
    cr_assert(ch && blocking);
    cr_assert_eq(chan_wg_add(blocking, N), 0);
    static struct bcast_waiter w[N];
    pthread_t t[NT];
    int k = 0;
    /* A run of each scheduler's tasks, then the two interleaved. */
    for (int run = 0; run < 2; run++)
        for (int i = 0; i < BC_RUN; i++, k++) {
            w[k] = (struct bcast_waiter){ ch, blocking, k % 3 == 0, 1 };
            cr_assert_eq(chan_go(s[run], bcast_task, &w[k]), 0);
        }
    for (int i = 0; i < 2 * BC_RUN; i++, k++) {
        w[k] = (struct bcast_waiter){ ch, blocking, k % 3 == 0, 1 };
        cr_assert_eq(chan_go(s[i % 2], bcast_task, &w[k]), 0);
    }
    for (int i = 0; i < NT; i++, k++) {
        w[k] = (struct bcast_waiter){ ch, blocking, i == 0, 1 };
        t[i] = test_thread_start(bcast_thread, &w[k]);
    }
    cr_assert_eq(chan_wg_wait(blocking), 0);
    /* Most have parked by now; any that has not sees the close instead. */
    test_sleep_ns(20 * TEST_MS);
    cr_assert_eq(chan_close(ch), 0);
    cr_assert_eq(chan_sched_wait(s[0]), 0);
    cr_assert_eq(chan_sched_wait(s[1]), 0);
    for (int i = 0; i < NT; i++)
        test_thread_join(t[i]);
    for (int i = 0; i < N; i++)
        cr_assert_eq(w[i].rc, -EPIPE, "waiter %d: %d", i, w[i].rc);
    chan_sched_free(s[0]);
    chan_sched_free(s[1]);
    chan_wg_free(blocking);
    chan_release(ch);
}

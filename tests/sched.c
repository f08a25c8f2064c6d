/*
 * sched.c - tests of the M:N scheduler: every function and return code,
 * tasks and threads on the same channels, select, timeouts and sleeps in
 * tasks, wait groups in tasks, work stealing, guard pages, and a few
 * larger runs (a 10,000-task ring, 100,000 tasks started by tasks).
 *
 * Counts scale with CHAN_TEST_SCALE (tests/util.h).  Criterion runs every
 * test in its own process, so each test makes its own schedulers; each
 * frees what it made, so that LeakSanitizer checks chan_sched_free.
 */
#include "util.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

TestSuite(sched, .timeout = TEST_TIMEOUT_S);

static chan_sched_t *sched_make(unsigned threads)
{
    chan_sched_opts_t o = { .threads = threads, .stack_size = 0 };
    chan_sched_t *s = chan_sched_new(&o);
    cr_assert_not_null(s, "chan_sched_new(%u threads) failed", threads);
    return s;
}

static void nothing(void *arg)
{
    (void)arg;
}

static void count_up(void *arg)
{
    atomic_fetch_add((atomic_long *)arg, 1);
}

/* ------------------------------------------------------------ API */

Test(sched, new_with_defaults_and_options)
{
    chan_sched_t *s = chan_sched_new(NULL);
    cr_assert_not_null(s);
    atomic_long n = 0;
    cr_assert_eq(chan_go(s, count_up, &n), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(atomic_load(&n), 1);
    chan_sched_free(s);

    /* A tiny stack size is rounded up to whole pages and still works. */
    chan_sched_opts_t o = { .threads = 3, .stack_size = 1 };
    s = chan_sched_new(&o);
    cr_assert_not_null(s);
    cr_assert_eq(chan_go(s, count_up, &n), 0);
    chan_sched_free(s);
    cr_assert_eq(atomic_load(&n), 2);

    /* Absurd sizes are refused, not crashed on. */
    o.threads = 1;
    o.stack_size = SIZE_MAX;
    cr_assert_null(chan_sched_new(&o));
    o.threads = UINT_MAX;
    o.stack_size = 0;
    cr_assert_null(chan_sched_new(&o));
}

Test(sched, free_null_and_free_idle)
{
    chan_sched_free(NULL);
    chan_sched_t *s = sched_make(2);
    chan_sched_free(s); /* never ran a task */
}

struct go_args {
    chan_sched_t *s;
    atomic_long n;
    int rc_null_fn;
    int rc_own;
    int rc_wait_own;
    int rc_wait_null;
    chan_sched_t *current;
};

static void go_inside(void *arg)
{
    struct go_args *a = arg;
    a->current = chan_sched_current();
    a->rc_null_fn = chan_go(NULL, NULL, NULL);
    a->rc_own = chan_go(NULL, count_up, &a->n);
    a->rc_wait_own = chan_sched_wait(a->s);
    a->rc_wait_null = chan_sched_wait(NULL);
}

Test(sched, go_and_wait_return_codes)
{
    chan_sched_t *s = sched_make(2);
    struct go_args a = { .s = s };
    cr_assert_eq(chan_go(s, NULL, NULL), -EINVAL);
    cr_assert_eq(chan_go(NULL, count_up, &a.n), -EINVAL);
    cr_assert_eq(chan_sched_wait(NULL), -EINVAL);
    cr_assert_null(chan_sched_current());
    cr_assert_eq(chan_go(s, go_inside, &a), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(a.current, s);
    cr_assert_eq(a.rc_null_fn, -EINVAL);
    cr_assert_eq(a.rc_own, 0);
    cr_assert_eq(a.rc_wait_own, -EDEADLK);
    cr_assert_eq(a.rc_wait_null, -EINVAL);
    /* The task started with s == NULL ran on s and was waited for. */
    cr_assert_eq(atomic_load(&a.n), 1);
    chan_sched_free(s);
}

Test(sched, wait_with_no_tasks_returns_at_once)
{
    chan_sched_t *s = sched_make(1);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    chan_sched_free(s);
}

Test(sched, yield_and_sleep_in_a_thread)
{
    chan_yield(); /* sched_yield: simply returns */
    cr_assert_eq(chan_sleep(0), 0);
    cr_assert_eq(chan_sleep(-1), 0);
    cr_assert_eq(chan_sleep(INT64_MIN), 0);
    int64_t t0 = test_now_ns();
    cr_assert_eq(chan_sleep(20 * TEST_MS), 0);
    int64_t dt = test_now_ns() - t0;
    cr_assert_geq(dt, 20 * TEST_MS);
    cr_assert_lt(dt, 2000 * TEST_MS);
}

/* ------------------------------------------------------------ several schedulers */

struct two {
    chan_sched_t *b;
    chan_t *ch;
    atomic_long n;
    chan_sched_t *seen_b;
    int rc_wait_other;
};

static void on_b(void *arg)
{
    struct two *t = arg;
    t->seen_b = chan_sched_current();
    long v = 0;
    for (long i = 0; i < 1000; i++) {
        if (chan_recv(t->ch, &v) != 0 || v != i)
            return;
        atomic_fetch_add(&t->n, 1);
    }
}

static void on_a(void *arg)
{
    struct two *t = arg;
    /* Start a task on another scheduler from a task of this one. */
    if (chan_go(t->b, on_b, t) != 0)
        return;
    for (long i = 0; i < 1000; i++)
        if (chan_send(t->ch, &i) != 0)
            return;
    /* Waiting for another scheduler from a task is allowed. */
    t->rc_wait_other = chan_sched_wait(t->b);
}

Test(sched, two_schedulers_share_a_channel)
{
    chan_sched_t *a = sched_make(1), *b = sched_make(2);
    struct two t = { .b = b, .ch = chan_make(sizeof(long), 0),
                     .rc_wait_other = 1 };
    cr_assert_not_null(t.ch);
    cr_assert_eq(chan_go(a, on_a, &t), 0);
    cr_assert_eq(chan_sched_wait(a), 0);
    cr_assert_eq(chan_sched_wait(b), 0);
    cr_assert_eq(t.rc_wait_other, 0);
    cr_assert_eq(t.seen_b, b);
    cr_assert_eq(atomic_load(&t.n), 1000);
    chan_sched_free(a);
    chan_sched_free(b);
    chan_release(t.ch);
}

/*
 * A task of a one-worker scheduler A waits for (or frees) scheduler B,
 * whose only task waits on gate; the task of A that closes gate can only
 * run if the waiting task parks and leaves A's worker free.  If the wait
 * blocked the worker thread instead, nothing would ever close gate.
 */
struct cross {
    chan_sched_t *b;
    chan_t *gate;     /* B's task waits for it to close */
    chan_t *started;  /* capacity 1: the waiter is running on A's worker */
    chan_t *done;     /* capacity 1: the waiter is through */
    int free_b;       /* chan_sched_free(b) instead of chan_sched_wait(b) */
    atomic_int b_done;
    int rc;
    int b_done_seen;
};

static void cross_b(void *arg)
{
    struct cross *c = arg;
    if (chan_recv(c->gate, NULL) == -EPIPE)
        atomic_store(&c->b_done, 1);
}

static void cross_waiter(void *arg)
{
    struct cross *c = arg;
    (void)chan_send(c->started, NULL); /* buffered: does not park */
    /* From here on this task keeps A's only worker until it parks. */
    if (c->free_b) {
        chan_sched_free(c->b);
        c->rc = 0;
    } else {
        c->rc = chan_sched_wait(c->b);
    }
    c->b_done_seen = atomic_load(&c->b_done);
    (void)chan_send(c->done, NULL);
}

static void cross_opener(void *arg)
{
    chan_close(((struct cross *)arg)->gate);
}

static void wait_for_other_sched_in_task(int free_b)
{
    chan_sched_t *a = sched_make(1), *b = sched_make(1);
    struct cross c = { .b = b, .free_b = free_b, .rc = 1 };
    c.gate = chan_make(0, 0);
    c.started = chan_make(0, 1);
    c.done = chan_make(0, 1);
    cr_assert(c.gate && c.started && c.done);
    cr_assert_eq(chan_go(b, cross_b, &c), 0);
    cr_assert_eq(chan_go(a, cross_waiter, &c), 0);
    cr_assert_eq(chan_recv(c.started, NULL), 0);
    cr_assert_eq(chan_go(a, cross_opener, &c), 0);
    /* Generous: the whole exchange takes microseconds. */
    cr_assert_eq(chan_timedrecv(c.done, NULL, 20000 * TEST_MS), 0,
                 "the waiting task kept its worker thread");
    cr_assert_eq(c.rc, 0);
    cr_assert_eq(c.b_done_seen, 1, "the wait returned before B's task did");
    chan_sched_free(a);
    if (!free_b)
        chan_sched_free(b);
    chan_release(c.gate);
    chan_release(c.started);
    chan_release(c.done);
}

Test(sched, wait_for_another_scheduler_parks_the_task)
{
    wait_for_other_sched_in_task(0);
}

Test(sched, free_of_another_scheduler_parks_the_task)
{
    wait_for_other_sched_in_task(1);
}

/* ------------------------------------------------------------ ring */

struct ring_stage {
    chan_t *in, *out;
};

/* Passes each token on, incremented, until its input is closed. */
static void ring_relay(void *arg)
{
    struct ring_stage *st = arg;
    long v;
    while (chan_recv(st->in, &v) == 0) {
        v++;
        if (chan_send(st->out, &v) != 0)
            break;
    }
    chan_close(st->out);
}

Test(sched, ring_of_10000_tasks)
{
    long n = test_scaled(UNDER_TSAN ? 1000 : 10000, 10);
    /* Every stage is alive at once, each stack two mappings (the guard
     * page and the stack); stay well inside Linux's default limit of
     * 65530 mappings per process whatever the scale. */
    if (n > 25000)
        n = 25000;
    long laps = test_scaled(20, 2);
    chan_sched_t *s = sched_make(0);
    chan_t **ch = calloc((size_t)n + 1, sizeof *ch);
    struct ring_stage *st = calloc((size_t)n, sizeof *st);
    cr_assert(ch && st);
    for (long i = 0; i <= n; i++)
        cr_assert_not_null(ch[i] = chan_make(sizeof(long), 0));
    for (long i = 0; i < n; i++) {
        st[i].in = ch[i];
        st[i].out = ch[i + 1];
        cr_assert_eq(chan_go(s, ring_relay, &st[i]), 0);
    }
    for (long k = 0; k < laps; k++) {
        long v = k;
        cr_assert_eq(chan_send(ch[0], &v), 0);
        cr_assert_eq(chan_recv(ch[n], &v), 0);
        cr_assert_eq(v, k + n, "lap %ld came back as %ld", k, v);
    }
    cr_assert_eq(chan_close(ch[0]), 0);
    long v;
    cr_assert_eq(chan_recv(ch[n], &v), -EPIPE); /* the close went round */
    cr_assert_eq(chan_sched_wait(s), 0);
    chan_sched_free(s);
    for (long i = 0; i <= n; i++)
        chan_release(ch[i]);
    free(ch);
    free(st);
}

/* ------------------------------------------------------------ spawning */

struct spawn {
    long per;
    atomic_long done;
    atomic_int errors;
};

static void leaf(void *arg)
{
    atomic_fetch_add(&((struct spawn *)arg)->done, 1);
}

static void spawner(void *arg)
{
    struct spawn *sp = arg;
    for (long i = 0; i < sp->per; i++)
        if (chan_go(NULL, leaf, sp) != 0)
            atomic_fetch_add(&sp->errors, 1);
}

Test(sched, hundred_thousand_tasks_started_by_tasks)
{
    long spawners = 100;
    struct spawn sp = { .per = test_scaled(UNDER_TSAN ? 300 : 1000, 10) };
    chan_sched_t *s = sched_make(0);
    for (long i = 0; i < spawners; i++)
        cr_assert_eq(chan_go(s, spawner, &sp), 0);
    /* Waits for the spawners and everything they started. */
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(atomic_load(&sp.errors), 0);
    cr_assert_eq(atomic_load(&sp.done), spawners * sp.per);
    chan_sched_free(s);
}

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
    chan_sched_t *s = sched_make(2);
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

Test(sched, tasks_and_threads_unbuffered_both_directions)
{
    run_mixed(0);
}

Test(sched, tasks_and_threads_buffered_both_directions)
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
    chan_sched_t *s = sched_make(2);
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

Test(sched, buffered_lockstep_thread_to_task)
{
    run_lockstep(1, 0);
}

Test(sched, buffered_lockstep_task_to_thread)
{
    run_lockstep(0, 0);
}

Test(sched, buffered_lockstep_thread_to_task_select)
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

Test(sched, thread_close_wakes_parked_task)
{
    struct closer c = { .ch = chan_make(0, 0), .rc = 1 };
    cr_assert_not_null(c.ch);
    test_sem_init(&c.about_to_block, 0);
    chan_sched_t *s = sched_make(1);
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

Test(sched, ping_pong_between_tasks)
{
    struct pingpong p = { .ping = chan_make(sizeof(long), 0),
                          .pong = chan_make(sizeof(long), 0),
                          .n = test_scaled(50000, 100) };
    cr_assert(p.ping && p.pong);
    chan_sched_t *s = sched_make(2);
    cr_assert_eq(chan_go(s, ponger, &p), 0);
    cr_assert_eq(chan_go(s, pinger, &p), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(atomic_load(&p.bad), 0);
    chan_sched_free(s);
    chan_release(p.ping);
    chan_release(p.pong);
}

/* ------------------------------------------------------------ yield */

struct turns {
    atomic_int turn;   /* whose turn it is: 0 or 1 */
    long rounds;
    atomic_int bad;
};

static void taker(void *arg, int me)
{
    struct turns *t = arg;
    for (long i = 0; i < t->rounds; i++) {
        long spins = 0;
        /* One worker: the other task only runs if this one yields. */
        while (atomic_load(&t->turn) != me) {
            chan_yield();
            if (++spins > 1000000) {
                atomic_fetch_add(&t->bad, 1);
                return;
            }
        }
        atomic_store(&t->turn, 1 - me);
    }
}

static void taker0(void *arg)
{
    taker(arg, 0);
}

static void taker1(void *arg)
{
    taker(arg, 1);
}

Test(sched, yield_lets_the_other_task_run)
{
    struct turns t = { .rounds = test_scaled(2000, 10) };
    chan_sched_t *s = sched_make(1);
    cr_assert_eq(chan_go(s, taker0, &t), 0);
    cr_assert_eq(chan_go(s, taker1, &t), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(atomic_load(&t.bad), 0);
    chan_sched_free(s);
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

Test(sched, select_and_timeouts_in_tasks)
{
    struct sel s = { .a = chan_make(sizeof(long), 0),
                     .b = chan_make(sizeof(long), 4),
                     .never = chan_make(0, 0),
                     .n = test_scaled(5000, 50) };
    cr_assert(s.a && s.b && s.never);
    chan_sched_t *sc = sched_make(2);
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

Test(sched, timed_wait_in_task_is_woken_before_its_deadline)
{
    struct early e = { .ch = chan_make(sizeof(long), 0), .rc = 1 };
    cr_assert_not_null(e.ch);
    chan_sched_t *s = sched_make(1);
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

Test(sched, timeouts_racing_wakeups_lose_nothing)
{
    enum { SENDERS = 4, RECEIVERS = 4 };
    struct race r = { .ch = chan_make(sizeof(long), 0),
                      .per = test_scaled(3000, 50),
                      .senders_left = SENDERS };
    cr_assert_not_null(r.ch);
    chan_sched_t *s = sched_make(2);
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

Test(sched, sleeping_tasks_share_one_worker)
{
    /* 100 tasks sleep 100 ms each on one worker.  Parked, they sleep
     * together: well under the 10 s that sleeping one after another would
     * take. */
    struct nap n = { .ns = 100 * TEST_MS };
    chan_sched_t *s = sched_make(1);
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

Test(sched, wait_group_in_tasks)
{
    struct wgt w = { .wg = chan_wg_new(), .n = test_scaled(200, 10),
                     .rc_wait = 1 };
    cr_assert_not_null(w.wg);
    chan_sched_t *s = sched_make(2);
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

/* ------------------------------------------------------------ work stealing */

#define STEAL_TASKS 200 /* fewer than a local queue holds: none spill */

struct steal {
    pthread_t ran_on[STEAL_TASKS];
    long n;
    pthread_t first;        /* the spawner's worker thread */
    atomic_int other_ran;   /* a job ran on another worker */
    atomic_int gave_up;
};

struct steal_job {
    struct steal *st;
    long i;
};

static void busy_job(void *arg)
{
    struct steal_job *j = arg;
    struct steal *st = j->st;
    pthread_t me = pthread_self();
    st->ran_on[j->i] = me;
    if (!pthread_equal(me, st->first)) {
        atomic_store(&st->other_ran, 1);
        return;
    }
    /* On the spawner's worker: keep it busy, without yielding, until a
     * job has run elsewhere.  Only stealing from this worker's queue can
     * make that happen, since every job was queued here. */
    int64_t give_up = test_now_ns() + 5000 * TEST_MS;
    while (!atomic_load(&st->other_ran) && !atomic_load(&st->gave_up)) {
        if (test_now_ns() > give_up) {
            atomic_store(&st->gave_up, 1);
            return;
        }
    }
}

static void steal_spawner(void *arg)
{
    struct steal_job *jobs = arg;
    jobs[0].st->first = pthread_self();
    for (long i = 0; i < jobs[0].st->n; i++)
        if (chan_go(NULL, busy_job, &jobs[i]) != 0)
            return;
}

Test(sched, work_is_stolen_by_idle_workers)
{
    /* One task starts every job on its own worker's queue (a task's
     * chan_go queues locally); the other worker must steal to get any. */
    static struct steal st;
    static struct steal_job jobs[STEAL_TASKS];
    st.n = STEAL_TASKS;
    for (long i = 0; i < st.n; i++)
        jobs[i] = (struct steal_job){ &st, i };
    chan_sched_t *s = sched_make(2);
    cr_assert_eq(chan_go(s, steal_spawner, jobs), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(atomic_load(&st.gave_up), 0, "no job was stolen in 5 s");
    long other = 0;
    for (long i = 0; i < st.n; i++)
        if (!pthread_equal(st.ran_on[i], st.first))
            other++;
    cr_assert_gt(other, 0, "every job ran on the spawner's worker");
    chan_sched_free(s);
}

/* ------------------------------------------------------------ stacks */

static void *guard_lo, *guard_hi; /* where the fault must land */

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    char *a = si->si_addr;
    _exit(a >= (char *)guard_lo && a < (char *)guard_hi ? 42 : 43);
}

/* Far more than any stack holds; volatile, so the compiler cannot see
 * that the recursion never ends in practice. */
static volatile long max_depth = 1L << 40;

__attribute__((noinline)) static long recurse(long depth)
{
    volatile char buf[512];
    if (depth > max_depth)
        return 0;
    buf[0] = (char)depth;
    buf[511] = (char)depth;
    return recurse(depth + 1) + buf[0] + buf[511];
}

static char altstack[64 * 1024];

static void overflow_task(void *arg)
{
    size_t size = *(size_t *)arg;
    /* The handler must not run on the overflowed stack: give this worker
     * thread an alternate signal stack. */
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack };
    if (sigaltstack(&ss, NULL) != 0)
        _exit(44);
    /* The stack's top is within a page above this frame; its guard page
     * is the page below its bottom, size bytes further down. */
    char *here = __builtin_frame_address(0); /* on the real stack, even
                                                with ASan's fake stacks */
    long page = sysconf(_SC_PAGESIZE);
    guard_lo = here - size - 2 * page;
    guard_hi = here - size + page;
    recurse(0);
    _exit(45);
}

Test(sched, stack_overflow_hits_the_guard_page)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, NULL);
        static size_t size = 64 * 1024;
        chan_sched_opts_t o = { .threads = 1, .stack_size = size };
        chan_sched_t *s = chan_sched_new(&o);
        if (!s || chan_go(s, overflow_task, &size) != 0)
            _exit(46);
        chan_sched_wait(s);
        _exit(47);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "the child died of signal %d",
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert_eq(WEXITSTATUS(status), 42,
                 "exit %d: 43 fault outside the guard page, 45 no fault",
                 WEXITSTATUS(status));
}

struct deep {
    size_t bytes;
    int ok;
};

__attribute__((noinline)) static void use_stack(struct deep *d)
{
    volatile char buf[200 * 1024];
    memset((char *)buf, 1, sizeof buf);
    d->ok = buf[0] == 1 && buf[sizeof buf - 1] == 1;
}

static void deep_task(void *arg)
{
    use_stack(arg);
}

Test(sched, stack_size_option_is_honoured)
{
    chan_sched_opts_t o = { .threads = 1, .stack_size = 1024 * 1024 };
    chan_sched_t *s = chan_sched_new(&o);
    cr_assert_not_null(s);
    struct deep d = { 0 };
    cr_assert_eq(chan_go(s, deep_task, &d), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(d.ok, 1);
    chan_sched_free(s);
}

/* ------------------------------------------------------------ teardown */

Test(sched, create_run_free_many_times)
{
    /* With ASan, LeakSanitizer checks at exit that nothing of these
     * schedulers, tasks and stacks is left. */
    long rounds = test_scaled(20, 3);
    for (long r = 0; r < rounds; r++) {
        struct spawn sp = { .per = 50 };
        chan_sched_t *s = sched_make((unsigned)(r % 3) + 1);
        for (int i = 0; i < 10; i++)
            cr_assert_eq(chan_go(s, spawner, &sp), 0);
        chan_sched_free(s); /* waits for the tasks first */
        cr_assert_eq(atomic_load(&sp.done), 500);
    }
    chan_sched_t *s = sched_make(1);
    cr_assert_eq(chan_go(s, nothing, NULL), 0);
    chan_sched_free(s);
}

static void recv_one(void *arg)
{
    int v = 0;
    (void)chan_recv(arg, &v);
}

static void *send_one(void *arg)
{
    int v = 7;
    (void)chan_send(arg, &v);
    return NULL;
}

Test(sched, free_right_after_threads_woke_the_last_tasks)
{
    /* Plain threads' sends make the tasks runnable; the tasks may return,
     * and chan_sched_free may go on to free the scheduler, while a sender
     * is still inside its wakeup.  A wakeup that touched the scheduler
     * after publishing its task was caught here by ASan as a use after
     * free, and in other builds by an assertion on the destroyed idle
     * lock. */
    enum { WAKERS = 16 };
    long rounds = test_scaled(300, 30);
    for (long r = 0; r < rounds; r++) {
        chan_sched_t *s = sched_make(2);
        chan_t *ch[WAKERS];
        pthread_t t[WAKERS];
        for (int i = 0; i < WAKERS; i++) {
            ch[i] = chan_make(sizeof(int), 0);
            cr_assert_not_null(ch[i]);
            cr_assert_eq(chan_go(s, recv_one, ch[i]), 0);
        }
        for (int i = 0; i < WAKERS; i++)
            t[i] = test_thread_start(send_one, ch[i]);
        chan_sched_free(s);
        for (int i = 0; i < WAKERS; i++) {
            test_thread_join(t[i]);
            chan_release(ch[i]);
        }
    }
}

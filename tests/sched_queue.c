/*
 * sched_queue.c - tests of the scheduler's run queues: a ring of 10,000
 * tasks passing a token (every task queued and woken in turn), yield
 * giving the other task of a worker its turn, and idle workers stealing
 * work from a busy one.
 *
 * Counts scale with CHAN_TEST_SCALE (tests/util.h).
 */
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>

TestSuite(sched_queue, .timeout = TEST_TIMEOUT_S);

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

Test(sched_queue, ring_of_10000_tasks)
{
    long n = test_scaled(UNDER_TSAN ? 1000 : 10000, 10);
    /* Every stage is alive at once, each stack two mappings (the guard
     * page and the stack); stay well inside Linux's default limit of
     * 65530 mappings per process whatever the scale. */
    if (n > 25000)
        n = 25000;
    long laps = test_scaled(20, 2);
    chan_sched_t *s = test_sched_make(0);
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

Test(sched_queue, yield_lets_the_other_task_run)
{
    struct turns t = { .rounds = test_scaled(2000, 10) };
    chan_sched_t *s = test_sched_make(1);
    cr_assert_eq(chan_go(s, taker0, &t), 0);
    cr_assert_eq(chan_go(s, taker1, &t), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(atomic_load(&t.bad), 0);
    chan_sched_free(s);
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

Test(sched_queue, work_is_stolen_by_idle_workers)
{
    /* One task starts every job on its own worker's queue (a task's
     * chan_go queues locally); the other worker must steal to get any. */
    static struct steal st;
    static struct steal_job jobs[STEAL_TASKS];
    st.n = STEAL_TASKS;
    for (long i = 0; i < st.n; i++)
        jobs[i] = (struct steal_job){ &st, i };
    chan_sched_t *s = test_sched_make(2);
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


/*
 * Two tasks that keep yielding to each other on one worker never leave its
 * ring empty: one of them is always waiting for its turn.  An idle worker
 * must take it, so that each runs on a CPU of its own, however often they
 * yield (a worker whose ring keeps running empty keeps its tasks; one
 * whose ring never does has more work than it gets through).
 */
struct yielders {
    atomic_long tid[2];
    atomic_int apart; /* the two ran on different workers at once */
    atomic_int gave_up;
};

struct yielder {
    struct yielders *y;
    int i;
};

static void yielder_body(void *arg)
{
    struct yielder *me = arg;
    struct yielders *y = me->y;
    int64_t give_up = test_now_ns() + 5000 * TEST_MS;
    while (!atomic_load(&y->apart) && !atomic_load(&y->gave_up)) {
        long tid = test_gettid();
        atomic_store(&y->tid[me->i], tid);
        long other = atomic_load(&y->tid[1 - me->i]);
        if (other != 0 && other != tid) {
            atomic_store(&y->apart, 1);
            break;
        }
        if (test_now_ns() > give_up)
            atomic_store(&y->gave_up, 1);
        chan_yield();
    }
}

static void yielders_spawner(void *arg)
{
    struct yielder *ys = arg;
    /* Both queued on this worker (a task's chan_go queues locally). */
    for (int i = 0; i < 2; i++)
        if (chan_go(NULL, yielder_body, &ys[i]) != 0)
            return;
}

Test(sched_queue, tasks_that_keep_yielding_are_spread_over_the_workers)
{
    static struct yielders y;
    static struct yielder ys[2] = { { &y, 0 }, { &y, 1 } };
    chan_sched_t *s = test_sched_make(2);
    cr_assert_eq(chan_go(s, yielders_spawner, ys), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(atomic_load(&y.gave_up), 0,
                 "both tasks stayed on one worker for 5 s");
    cr_assert_eq(atomic_load(&y.apart), 1);
    chan_sched_free(s);
}

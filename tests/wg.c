/*
 * wg.c - wait groups, in the spirit of Go's sync/waitgroup_test.go: a group
 * released only when its counter reaches zero, many waiters, wait at zero,
 * a counter that would go negative, reuse after zero.
 */
#include "util.h"

TestSuite(wg, .timeout = TEST_TIMEOUT_S);

Test(wg, rejects_null)
{
    cr_assert_eq(chan_wg_add(NULL, 1), -EINVAL);
    cr_assert_eq(chan_wg_done(NULL), -EINVAL);
    cr_assert_eq(chan_wg_wait(NULL), -EINVAL);
    chan_wg_free(NULL);
}

Test(wg, wait_at_zero_returns_at_once)
{
    chan_wg_t *wg = chan_wg_new();
    cr_assert_not_null(wg);
    cr_assert_eq(chan_wg_wait(wg), 0);
    cr_assert_eq(chan_wg_add(wg, 3), 0);
    cr_assert_eq(chan_wg_add(wg, -3), 0);
    cr_assert_eq(chan_wg_wait(wg), 0);
    cr_assert_eq(chan_wg_add(wg, 0), 0);
    cr_assert_eq(chan_wg_wait(wg), 0);
    chan_wg_free(wg);
}

Test(wg, negative_counter_is_rejected_and_unchanged)
{
    chan_wg_t *wg = chan_wg_new();
    cr_assert_not_null(wg);
    cr_assert_eq(chan_wg_done(wg), -EINVAL);
    cr_assert_eq(chan_wg_add(wg, -1), -EINVAL);
    cr_assert_eq(chan_wg_add(wg, 2), 0);
    cr_assert_eq(chan_wg_add(wg, -3), -EINVAL, "would go to -1");
    cr_assert_eq(chan_wg_add(wg, INT32_MIN), -EINVAL);
    /* Still 2: two dones bring it to zero, a third fails. */
    cr_assert_eq(chan_wg_done(wg), 0);
    cr_assert_eq(chan_wg_done(wg), 0);
    cr_assert_eq(chan_wg_done(wg), -EINVAL);
    cr_assert_eq(chan_wg_wait(wg), 0);
    chan_wg_free(wg);
}

struct pair {
    chan_wg_t *wg1, *wg2;
    chan_t *exited;
    int rc[3];
};

static void *go_pair(void *arg)
{
    struct pair *p = arg;
    int one = 1;
    p->rc[0] = chan_wg_done(p->wg1);
    p->rc[1] = chan_wg_wait(p->wg2);
    p->rc[2] = chan_send(p->exited, &one);
    return NULL;
}

/* Go's testWaitGroup: n threads report to wg1 and then wait on wg2; none
 * may leave before the last wg2.Done. */
Test(wg, released_only_at_zero)
{
    enum { N = 16 };
    chan_wg_t *wg1 = chan_wg_new(), *wg2 = chan_wg_new();
    chan_t *exited = chan_make(sizeof(int), N);
    cr_assert(wg1 && wg2 && exited);
    struct pair p[N];
    pthread_t th[N];
    cr_assert_eq(chan_wg_add(wg1, N), 0);
    cr_assert_eq(chan_wg_add(wg2, N), 0);
    for (int i = 0; i < N; i++) {
        p[i] = (struct pair){ wg1, wg2, exited, { -1, -1, -1 } };
        th[i] = test_thread_start(go_pair, &p[i]);
    }
    cr_assert_eq(chan_wg_wait(wg1), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(chan_tryrecv(exited, NULL), -EAGAIN,
                     "wait group released group too soon");
        cr_assert_eq(chan_wg_done(wg2), 0);
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(chan_timedrecv(exited, NULL, 10000 * TEST_MS), 0);
    for (int i = 0; i < N; i++) {
        test_thread_join(th[i]);
        cr_assert_eq(p[i].rc[0], 0);
        cr_assert_eq(p[i].rc[1], 0);
        cr_assert_eq(p[i].rc[2], 0);
    }
    chan_release(exited);
    chan_wg_free(wg1);
    chan_wg_free(wg2);
}

struct waiter {
    chan_wg_t *wg;
    int rc;
    struct test_call call;
};

static void wait_call(void *arg)
{
    struct waiter *w = arg;
    w->rc = chan_wg_wait(w->wg);
}

Test(wg, every_blocked_waiter_wakes)
{
    enum { N = 6 };
    chan_wg_t *wg = chan_wg_new();
    cr_assert_not_null(wg);
    cr_assert_eq(chan_wg_add(wg, 2), 0);
    struct waiter w[N];
    for (int i = 0; i < N; i++) {
        w[i].wg = wg;
        w[i].rc = -1;
        test_start(&w[i].call, wait_call, &w[i]);
    }
    /* Every waiter is asleep inside chan_wg_wait. */
    for (int i = 0; i < N; i++)
        cr_assert(test_wait_blocked(atomic_load(&w[i].call.tid),
                                    &w[i].call.done),
                  "waiter %d returned while the counter was 2", i);
    cr_assert_eq(chan_wg_done(wg), 0);
    for (int i = 0; i < N; i++)
        cr_assert(test_stays_zero(&w[i].call.done, 5 * TEST_MS),
                  "waiter %d released at 1", i);
    cr_assert_eq(chan_wg_done(wg), 0);
    for (int i = 0; i < N; i++) {
        test_join(&w[i].call);
        cr_assert_eq(w[i].rc, 0);
        cr_assert_eq(atomic_load(&w[i].call.done), 1);
    }
    chan_wg_free(wg);
}

Test(wg, reuse_after_zero)
{
    chan_wg_t *wg = chan_wg_new();
    cr_assert_not_null(wg);
    const long rounds = test_scaled(50, 5);
    for (long r = 0; r < rounds; r++) {
        cr_assert_eq(chan_wg_add(wg, 1), 0);
        struct waiter w = { .wg = wg, .rc = -1 };
        /* The waiter must be inside chan_wg_wait before the done, or it
         * would wait for the next round's count. */
        test_start_blocked(&w.call, wait_call, &w);
        cr_assert_eq(chan_wg_done(wg), 0);
        /* Reuse at once, before the old waiter has necessarily woken: it
         * was claimed by the done above and must still return. */
        cr_assert_eq(chan_wg_add(wg, 1), 0);
        test_join(&w.call);
        cr_assert_eq(w.rc, 0);
        cr_assert_eq(chan_wg_done(wg), 0);
    }
    chan_wg_free(wg);
}

struct worker {
    chan_wg_t *wg;
    atomic_long *sum;
    long n;
    int bad;
};

static void *add_done_worker(void *arg)
{
    struct worker *w = arg;
    for (long i = 0; i < w->n; i++) {
        if (chan_wg_add(w->wg, 2) != 0)
            w->bad++;
        atomic_fetch_add(w->sum, 1);
        if (chan_wg_done(w->wg) != 0 || chan_wg_done(w->wg) != 0)
            w->bad++;
    }
    /* The one count main added for this thread. */
    if (chan_wg_done(w->wg) != 0)
        w->bad++;
    return NULL;
}

Test(wg, many_threads_add_and_done)
{
    enum { T = 8 };
    chan_wg_t *wg = chan_wg_new();
    cr_assert_not_null(wg);
    atomic_long sum;
    atomic_init(&sum, 0);
    struct worker w[T];
    pthread_t th[T];
    cr_assert_eq(chan_wg_add(wg, T), 0);
    for (int i = 0; i < T; i++) {
        w[i] = (struct worker){ wg, &sum, test_scaled(2000, 10), 0 };
        th[i] = test_thread_start(add_done_worker, &w[i]);
    }
    cr_assert_eq(chan_wg_wait(wg), 0);
    /* Zero is reached only after every worker's last done, so every
     * increment happened before. */
    long expect = 0;
    for (int i = 0; i < T; i++)
        expect += w[i].n;
    cr_assert_eq(atomic_load(&sum), expect);
    for (int i = 0; i < T; i++) {
        test_thread_join(th[i]);
        cr_assert_eq(w[i].bad, 0);
    }
    chan_wg_free(wg);
}

/*
 * A waiter that arrives just as the counter reaches zero: it must either
 * see zero and return, or be woken by the done that reached it.  Many
 * rounds, with the done after a varying short spin, so that the wait's
 * last look and the done's check for waiters meet in every order.
 */
struct racer {
    chan_wg_t *wg;
    sem_t go, back;
    long rounds;
    int bad;
};

static void *race_waiter(void *arg)
{
    struct racer *r = arg;
    for (long i = 0; i < r->rounds; i++) {
        test_sem_wait(&r->go);
        if (chan_wg_wait(r->wg) != 0)
            r->bad++;
        test_sem_post(&r->back);
    }
    return NULL;
}

Test(wg, wait_races_the_last_done)
{
    struct racer r = { .wg = chan_wg_new(), .rounds = test_scaled(20000, 100) };
    cr_assert_not_null(r.wg);
    test_sem_init(&r.go, 0);
    test_sem_init(&r.back, 0);
    pthread_t th = test_thread_start(race_waiter, &r);
    for (long i = 0; i < r.rounds; i++) {
        cr_assert_eq(chan_wg_add(r.wg, 1), 0);
        test_sem_post(&r.go);
        for (volatile long k = 0; k < i % 64; k++)
            ;
        cr_assert_eq(chan_wg_done(r.wg), 0);
        test_sem_wait(&r.back); /* hangs (the suite's time limit) if lost */
    }
    test_thread_join(th);
    cr_assert_eq(r.bad, 0);
    test_sem_destroy(&r.go);
    test_sem_destroy(&r.back);
    chan_wg_free(r.wg);
}

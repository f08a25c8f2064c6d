/*
 * sched.c - tests of the scheduler's life cycle: every function of its API
 * and each return code, tasks that start tasks (100,000 of them), several
 * schedulers sharing channels and waiting for each other, and teardown
 * right after the last task returned.  Run queues are tested in
 * sched_queue.c, parking tasks in sched_park.c, stacks in sched_stack.c.
 *
 * Counts scale with CHAN_TEST_SCALE (tests/util.h).  Criterion runs every
 * test in its own process, so each test makes its own schedulers; each
 * frees what it made, so that LeakSanitizer checks chan_sched_free.
 */
#include "util.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

TestSuite(sched, .timeout = TEST_TIMEOUT_S);

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

/* The threads of this process, or -1 where they cannot be counted. */
static long thread_count(void)
{
#ifdef __linux__
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %ld", &n) == 1)
            break;
    fclose(f);
    return n;
#else
    return -1;
#endif
}

static void *no_op_thread(void *arg)
{
    return arg;
}

Test(sched, free_null_and_free_idle)
{
    errno = 1234;
    chan_sched_free(NULL);
    cr_assert_eq(errno, 1234);

    /* A scheduler that never ran a task still has its workers, and its
     * free stops them all (a joined thread may linger in the count for a
     * moment after its join). */
    /* A sanitizer's runtime may start a thread of its own with the first
     * thread a program starts: let that happen before counting. */
    test_thread_join(test_thread_start(no_op_thread, NULL));
    long before = thread_count();
    chan_sched_t *s = test_sched_make(2);
    if (before >= 0)
        cr_assert_geq(thread_count(), before + 2);
    chan_sched_free(s);
    cr_assert_eq(errno, 1234);
    if (before >= 0) {
        int64_t give_up = test_now_ns() + 10000 * TEST_MS;
        while (thread_count() > before && test_now_ns() < give_up)
            test_sleep_ns(TEST_MS);
        cr_assert_eq(thread_count(), before);
    }
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
    chan_sched_t *s = test_sched_make(2);
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
    chan_sched_t *s = test_sched_make(1);
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
    chan_sched_t *s = test_sched_make(0);
    for (long i = 0; i < spawners; i++)
        cr_assert_eq(chan_go(s, spawner, &sp), 0);
    /* Waits for the spawners and everything they started. */
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(atomic_load(&sp.errors), 0);
    cr_assert_eq(atomic_load(&sp.done), spawners * sp.per);
    chan_sched_free(s);
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
    chan_sched_t *a = test_sched_make(1), *b = test_sched_make(2);
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
    chan_sched_t *a = test_sched_make(1), *b = test_sched_make(1);
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

/* ------------------------------------------------------------ teardown */

Test(sched, create_run_free_many_times)
{
    /* With ASan, LeakSanitizer checks at exit that nothing of these
     * schedulers, tasks and stacks is left. */
    long rounds = test_scaled(20, 3);
    for (long r = 0; r < rounds; r++) {
        struct spawn sp = { .per = 50 };
        chan_sched_t *s = test_sched_make((unsigned)(r % 3) + 1);
        for (int i = 0; i < 10; i++)
            cr_assert_eq(chan_go(s, spawner, &sp), 0);
        chan_sched_free(s); /* waits for the tasks first */
        cr_assert_eq(atomic_load(&sp.done), 500);
    }
    chan_sched_t *s = test_sched_make(1);
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
        chan_sched_t *s = test_sched_make(2);
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

/*
 * timer.c - chan_after, chan_tick and chan_timer_stop, in the spirit of Go's
 * time/sleep_test.go and time/tick_test.go: a timer fires after at least
 * its delay, its value is the CLOCK_MONOTONIC time it fired, a second
 * receive blocks, stop before and after firing, releasing stops, a slow
 * receiver makes a ticker drop ticks, and 100,000 pending timers; tickers
 * far faster than the timer thread (Go's TestTickerStress and
 * TestTimerStopStress); and chan_timer_reset.
 *
 * Timing checks have a lower bound (never early) that is exact and an
 * upper bound that is generous, since the suites also run under
 * ThreadSanitizer and AddressSanitizer on small, shared machines.
 */
#include "util.h"

#include <sys/resource.h>
#include <sys/wait.h>

TestSuite(timer, .timeout = TEST_TIMEOUT_S);

/* How late a timer may fire before a test calls it broken. */
#define LATE_NS (2000 * TEST_MS)

Test(timer, after_fires_after_delay_with_its_fire_time)
{
    const int64_t delays[] = { 1 * TEST_MS, 10 * TEST_MS, 30 * TEST_MS };
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
        int64_t t0 = test_now_ns();
        chan_t *ch = chan_after(delays[i]);
        cr_assert_not_null(ch);
        cr_assert_eq(chan_cap(ch), 1);
        int64_t v = 0;
        cr_assert_eq(chan_recv(ch, &v), 0);
        int64_t t1 = test_now_ns();
        cr_assert_geq(t1 - t0, delays[i], "fired after %lld ns, delay %lld",
                      (long long)(t1 - t0), (long long)delays[i]);
        /* The value is a CLOCK_MONOTONIC time between the deadline and
         * the moment we got it. */
        cr_assert_geq(v, t0 + delays[i]);
        cr_assert_leq(v, t1);
        cr_assert_lt(t1 - t0, delays[i] + LATE_NS);
        chan_release(ch);
    }
}

Test(timer, second_receive_blocks)
{
    chan_t *ch = chan_after(1 * TEST_MS);
    cr_assert_not_null(ch);
    int64_t v = 0;
    cr_assert_eq(chan_recv(ch, &v), 0);
    /* Not closed, just quiet, as a Go timer channel. */
    int64_t w = -7;
    cr_assert_eq(chan_timedrecv(ch, &w, 30 * TEST_MS), -ETIMEDOUT);
    cr_assert_eq(w, -7);
    cr_assert_eq(chan_tryrecv(ch, &w), -EAGAIN);
    cr_assert_eq(chan_timer_stop(ch), -EPIPE);
    chan_release(ch);
}

Test(timer, zero_or_negative_delay_fires_at_once)
{
    const int64_t delays[] = { 0, -1, INT64_MIN };
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
        int64_t t0 = test_now_ns();
        chan_t *ch = chan_after(delays[i]);
        cr_assert_not_null(ch);
        int64_t v = 0;
        cr_assert_eq(chan_tryrecv(ch, &v), 0);
        cr_assert_geq(v, t0);
        cr_assert_leq(v, test_now_ns());
        cr_assert_eq(chan_timer_stop(ch), -EPIPE, "it has fired already");
        chan_release(ch);
    }
}

Test(timer, works_in_select_with_other_channels)
{
    chan_t *never = chan_make(sizeof(int), 0);
    int64_t t0 = test_now_ns();
    chan_t *t = chan_after(10 * TEST_MS);
    cr_assert_not_null(never);
    cr_assert_not_null(t);
    int x;
    int64_t v = 0;
    chan_case_t cases[] = { CHAN_RECV_CASE(never, &x), CHAN_RECV_CASE(t, &v) };
    cr_assert_eq(chan_select(cases, 2, CHAN_FOREVER), 1);
    cr_assert_eq(cases[1].result, 0);
    cr_assert_geq(v, t0 + 10 * TEST_MS);
    chan_release(t);
    chan_release(never);
}

Test(timer, stop_before_firing)
{
    chan_t *ch = chan_after(20 * TEST_MS);
    cr_assert_not_null(ch);
    cr_assert_eq(chan_timer_stop(ch), 0);
    cr_assert_eq(chan_timer_stop(ch), -EPIPE, "already stopped");
    int64_t v;
    cr_assert_eq(chan_timedrecv(ch, &v, 60 * TEST_MS), -ETIMEDOUT,
                 "a stopped timer must not fire");
    chan_release(ch);
}

Test(timer, stop_after_firing_keeps_the_value)
{
    chan_t *ch = chan_after(1 * TEST_MS);
    cr_assert_not_null(ch);
    int64_t give_up = test_now_ns() + 10000 * TEST_MS;
    while (chan_len(ch) == 0) {
        cr_assert_lt(test_now_ns(), give_up, "the timer never fired");
        test_sleep_ns(TEST_MS);
    }
    cr_assert_eq(chan_timer_stop(ch), -EPIPE);
    int64_t v = 0;
    cr_assert_eq(chan_tryrecv(ch, &v), 0, "the delivered value stays");
    cr_assert_gt(v, 0);
    chan_release(ch);
}

Test(timer, stop_rejects_non_timers)
{
    cr_assert_eq(chan_timer_stop(NULL), -EINVAL);
    chan_t *plain = chan_make(sizeof(int64_t), 1);
    cr_assert_not_null(plain);
    cr_assert_eq(chan_timer_stop(plain), -EINVAL);
    chan_release(plain);
}

Test(timer, tick_rejects_non_positive_period)
{
    cr_assert_null(chan_tick(0));
    cr_assert_null(chan_tick(-1));
    cr_assert_null(chan_tick(INT64_MIN));
}

Test(timer, tick_fires_every_period)
{
    const int64_t period = 10 * TEST_MS;
    const int count = 8;
    int64_t t0 = test_now_ns();
    chan_t *ch = chan_tick(period);
    cr_assert_not_null(ch);
    cr_assert_eq(chan_cap(ch), 1);
    int64_t prev = t0;
    for (int i = 0; i < count; i++) {
        int64_t v = 0;
        cr_assert_eq(chan_recv(ch, &v), 0);
        cr_assert_gt(v, prev, "tick values increase");
        /* Never early: tick k fires at least k periods after the start. */
        cr_assert_geq(v, t0 + (int64_t)(i + 1) * period);
        prev = v;
    }
    int64_t elapsed = test_now_ns() - t0;
    cr_assert_geq(elapsed, count * period);
    cr_assert_lt(elapsed, count * period + LATE_NS);
    cr_assert_eq(chan_timer_stop(ch), 0, "a running ticker stops");
    cr_assert_eq(chan_timer_stop(ch), -EPIPE);
    chan_release(ch);
}

Test(timer, tick_drops_ticks_for_a_slow_receiver)
{
    const int64_t period = 5 * TEST_MS;
    int64_t t0 = test_now_ns();
    chan_t *ch = chan_tick(period);
    cr_assert_not_null(ch);
    /* Miss about twenty ticks. */
    test_sleep_ns(20 * period);
    cr_assert_eq(chan_len(ch), 1, "capacity 1: missed ticks are dropped");
    int64_t v1 = 0, v2 = 0;
    cr_assert_eq(chan_tryrecv(ch, &v1), 0);
    int64_t got1 = test_now_ns();
    /* The value is the first tick that found room, long ago. */
    cr_assert_geq(v1, t0 + period);
    cr_assert_lt(v1, got1);
    /* No burst of queued ticks: the next one is a fresh one, fired after
     * we took the first. */
    cr_assert_eq(chan_recv(ch, &v2), 0);
    cr_assert_geq(v2, got1 - period,
                  "next tick %lld ns before the previous receive",
                  (long long)(got1 - v2));
    cr_assert_gt(v2, v1);
    cr_assert_eq(chan_timer_stop(ch), 0);
    chan_release(ch);
}

Test(timer, tick_stop_stops_ticking)
{
    const int64_t period = 2 * TEST_MS;
    chan_t *ch = chan_tick(period);
    cr_assert_not_null(ch);
    int64_t v;
    cr_assert_eq(chan_recv(ch, &v), 0);
    cr_assert_eq(chan_timer_stop(ch), 0);
    (void)chan_tryrecv(ch, &v); /* a tick may have landed before the stop */
    cr_assert_eq(chan_timedrecv(ch, &v, 20 * period), -ETIMEDOUT);
    chan_release(ch);
}

Test(timer, release_stops_the_timer)
{
    /* If releasing did not take the timers off the heap, the timer thread
     * would send to freed channels (AddressSanitizer reports it) or
     * crash; if it did not free them, LeakSanitizer reports it. */
    for (int i = 0; i < 20; i++) {
        chan_t *a = chan_after((int64_t)(i % 3) * TEST_MS);
        chan_t *t = chan_tick(1 * TEST_MS);
        cr_assert_not_null(a);
        cr_assert_not_null(t);
        if (i % 2)
            test_sleep_ns(TEST_MS);
        chan_release(a);
        chan_release(t);
    }
    test_sleep_ns(20 * TEST_MS);
    /* The timer thread is still healthy. */
    chan_t *ch = chan_after(1 * TEST_MS);
    cr_assert_not_null(ch);
    cr_assert_eq(chan_timedrecv(ch, NULL, 10000 * TEST_MS), 0);
    chan_release(ch);
}

Test(timer, a_retained_reference_keeps_the_timer)
{
    chan_t *ch = chan_after(5 * TEST_MS);
    cr_assert_not_null(ch);
    chan_t *other = chan_retain(ch);
    chan_release(ch); /* not the last reference: the timer keeps going */
    int64_t v = 0;
    cr_assert_eq(chan_timedrecv(other, &v, 10000 * TEST_MS), 0);
    chan_release(other);
}

struct releaser {
    int rounds;
    int failures;
};

static void *release_race(void *arg)
{
    struct releaser *r = arg;
    for (int i = 0; i < r->rounds; i++) {
        chan_t *t = chan_tick(200000); /* 0.2 ms: often firing */
        chan_t *a = chan_after(100000);
        if (!t || !a) {
            r->failures++;
            chan_release(t);
            chan_release(a);
            continue;
        }
        if (i % 4 == 0)
            (void)chan_timedrecv(t, NULL, 5 * TEST_MS);
        if (i % 2 == 0 && chan_timer_stop(a) != 0 && chan_timer_stop(a) != -EPIPE)
            r->failures++;
        chan_release(t);
        chan_release(a);
    }
    return NULL;
}

Test(timer, release_races_with_firing)
{
    struct releaser r[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        r[i].rounds = (int)test_scaled(300, 10);
        r[i].failures = 0;
        th[i] = test_thread_start(release_race, &r[i]);
    }
    for (int i = 0; i < 3; i++) {
        test_thread_join(th[i]);
        cr_assert_eq(r[i].failures, 0);
    }
}

Test(timer, timers_fire_in_deadline_order)
{
    /* Deadlines 3 ms apart, created in a scrambled order: each fires no
     * earlier than its own deadline, and whenever one deadline is surely
     * earlier than another (judging by clock readings taken around each
     * chan_after) its fire time is not later. */
    enum { N = 24 };
    chan_t *ch[N];
    int64_t before[N], after[N], fired[N];
    for (int k = 0; k < N; k++) {
        int i = (k * 7) % N; /* 7 is coprime with 24: a permutation */
        before[i] = test_now_ns() + (int64_t)(i + 1) * 3 * TEST_MS;
        ch[i] = chan_after((int64_t)(i + 1) * 3 * TEST_MS);
        after[i] = test_now_ns() + (int64_t)(i + 1) * 3 * TEST_MS;
        cr_assert_not_null(ch[i]);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(chan_recv(ch[i], &fired[i]), 0);
        cr_assert_geq(fired[i], before[i]);
        chan_release(ch[i]);
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (after[i] < before[j])
                cr_assert_leq(fired[i], fired[j],
                              "timer %d fired after timer %d", i, j);
}

Test(timer, a_hundred_thousand_pending_timers)
{
    const long n = test_scaled(100000, 1000);
    chan_t **ch = calloc((size_t)n, sizeof *ch);
    cr_assert_not_null(ch);
    const int64_t hour = 3600LL * 1000 * TEST_MS;
    int64_t t0 = test_now_ns();
    for (long i = 0; i < n; i++) {
        /* Every 1000th timer is short; the rest wait an hour, with
         * scrambled deadlines so the heap really has to sort. */
        int64_t d = i % 1000 == 0 ? (i / 1000 % 50 + 1) * TEST_MS
                                  : hour + (int64_t)((i * 7919) % n) * 1000;
        ch[i] = chan_after(d);
        cr_assert_not_null(ch[i]);
    }
    int64_t created = test_now_ns() - t0;
    /* The short ones fire while 100,000 others are pending. */
    for (long i = 0; i < n; i += 1000) {
        int64_t v = 0;
        cr_assert_eq(chan_recv(ch[i], &v), 0);
        cr_assert_geq(v, t0 + (i / 1000 % 50 + 1) * TEST_MS);
        cr_assert_eq(chan_timer_stop(ch[i]), -EPIPE);
    }
    /* Stop every other long one (removal from the middle of the heap),
     * release the rest while pending. */
    for (long i = 0; i < n; i++) {
        if (i % 1000 != 0 && i % 2 == 0)
            cr_assert_eq(chan_timer_stop(ch[i]), 0);
        chan_release(ch[i]);
    }
    free(ch);
    /* How fast this is belongs to the benchmarks, not to a test. */
    cr_log_info("created %ld timers in %lld ms", n,
                (long long)(created / TEST_MS));
}

Test(timer, timers_work_in_a_forked_child)
{
    SKIP_UNDER_QEMU("qemu-user cannot fork a process with threads");
#if defined(__SANITIZE_THREAD__)
    cr_skip_test("ThreadSanitizer cannot start threads after a fork");
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
    cr_skip_test("ThreadSanitizer cannot start threads after a fork");
#endif
#endif
    /* The parent's timer thread exists and is busy at the fork; the child
     * must get a consistent heap and its own thread. */
    chan_t *tick = chan_tick(100000);
    cr_assert_not_null(tick);
    cr_assert_eq(chan_recv(tick, NULL), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        chan_t *a = chan_after(2 * TEST_MS);
        int ok = a && chan_timedrecv(a, NULL, 10000 * TEST_MS) == 0;
        /* The inherited ticker runs again too. */
        ok = ok && chan_timedrecv(tick, NULL, 10000 * TEST_MS) == 0;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child status %#x", status);
    chan_release(tick);
}

/* ------------------------------------------------------- tiny periods */

/*
 * Tickers with periods far shorter than one firing takes.  Without passes
 * and the hand-over of the heap lock, the timer thread fires such a ticker
 * again and again without ever letting go of the lock, and every call below
 * hangs until the suite's timeout.
 */

/* The CPU time the whole process has used so far, in ns. */
static int64_t process_cpu_ns(void)
{
    struct rusage ru;
    cr_assert_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

/* Waits (bounded) until ticker ch holds a tick nobody received. */
static void wait_full(chan_t *ch)
{
    int64_t give_up = test_now_ns() + 10000 * TEST_MS;
    while (chan_len(ch) == 0) {
        cr_assert_lt(test_now_ns(), give_up, "the ticker never ticked");
        test_sleep_ns(TEST_MS);
    }
}

Test(timer, a_1ns_ticker_lets_other_timers_fire)
{
    chan_t *tick = chan_tick(1);
    cr_assert_not_null(tick);
    wait_full(tick);
    for (int i = 0; i < 3; i++) {
        int64_t t0 = test_now_ns();
        chan_t *a = chan_after(10 * TEST_MS);
        cr_assert_not_null(a);
        int64_t v = 0;
        cr_assert_eq(chan_timedrecv(a, &v, 10 * TEST_MS + LATE_NS), 0);
        cr_assert_geq(v, t0 + 10 * TEST_MS);
        cr_assert_lt(test_now_ns() - t0, 10 * TEST_MS + LATE_NS);
        cr_assert_eq(chan_timer_stop(a), -EPIPE);
        chan_release(a);
    }
    cr_assert_eq(chan_timer_stop(tick), 0);
    chan_release(tick);
}

struct tick_receiver {
    chan_t *tick;
    atomic_int stop;
    atomic_long got;
    int bad;  /* a failed receive or a tick value that did not increase */
};

/* Receives from r->tick as fast as it can until r->stop. */
static void *receive_ticks(void *arg)
{
    struct tick_receiver *r = arg;
    int64_t prev = 0;
    while (!atomic_load(&r->stop)) {
        int64_t v = 0;
        int rc = chan_timedrecv(r->tick, &v, 10 * TEST_MS);
        if (rc == -ETIMEDOUT)
            continue;
        if (rc != 0 || v <= prev)
            r->bad++;
        prev = v;
        atomic_fetch_add(&r->got, 1);
    }
    return NULL;
}

/* One round of timer calls that each take the heap lock; counts
 * unexpected results in *bad. */
static void timer_calls(long i, int *bad)
{
    chan_t *a = chan_after(3600LL * 1000 * TEST_MS);
    chan_t *b = chan_after(1 * TEST_MS);
    chan_t *t = chan_tick(1);
    if (!a || !b || !t) {
        (*bad)++;
    } else {
        *bad += chan_timer_stop(a) != 0;
        *bad += chan_timer_stop(a) != -EPIPE;
        if (i % 2)
            *bad += chan_timer_stop(t) != 0;
    }
    chan_release(a);
    chan_release(b); /* pending or fired */
    chan_release(t); /* running or stopped */
}

struct caller {
    long rounds;
    int bad;
};

static void *timer_caller(void *arg)
{
    struct caller *c = arg;
    for (long i = 0; i < c->rounds; i++)
        timer_calls(i, &c->bad);
    return NULL;
}

Test(timer, tiny_tickers_let_stop_and_release_return)
{
    /* Three idle tickers with full channels, and two more drained by
     * receivers as fast as they can: the timer thread is as busy as it
     * gets. */
    const int64_t periods[] = { 1, 100, 1000 };
    chan_t *idle[3];
    for (int i = 0; i < 3; i++) {
        idle[i] = chan_tick(periods[i]);
        cr_assert_not_null(idle[i]);
    }
    struct tick_receiver r[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        r[i].tick = chan_tick(1);
        cr_assert_not_null(r[i].tick);
        atomic_init(&r[i].stop, 0);
        atomic_init(&r[i].got, 0);
        r[i].bad = 0;
        th[i] = test_thread_start(receive_ticks, &r[i]);
    }
    for (int i = 0; i < 3; i++)
        wait_full(idle[i]);
    /* The receivers are under way. */
    int64_t give_up = test_now_ns() + 10000 * TEST_MS;
    for (int i = 0; i < 2; i++)
        while (atomic_load(&r[i].got) < 10) {
            cr_assert_lt(test_now_ns(), give_up, "no ticks for receiver %d", i);
            test_sleep_ns(TEST_MS);
        }

    /* Three threads at once, so that the heap lock has waiters. */
    const long rounds = test_scaled(200, 20);
    struct caller c[3];
    pthread_t ct[3];
    int64_t t0 = test_now_ns();
    for (int i = 0; i < 3; i++) {
        c[i] = (struct caller){ rounds, 0 };
        ct[i] = test_thread_start(timer_caller, &c[i]);
    }
    for (int i = 0; i < 3; i++) {
        test_thread_join(ct[i]);
        cr_assert_eq(c[i].bad, 0);
    }
    /* Hundreds of calls, each of which waits at most for one firing; the
     * bound only catches a hang. */
    cr_assert_lt(test_now_ns() - t0, 10 * LATE_NS);
    for (int i = 0; i < 2; i++) {
        atomic_store(&r[i].stop, 1);
        test_thread_join(th[i]);
        cr_assert_eq(r[i].bad, 0);
        cr_assert_eq(chan_timer_stop(r[i].tick), 0);
        chan_release(r[i].tick);
    }
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(chan_timer_stop(idle[i]), 0);
        chan_release(idle[i]);
    }
}

Test(timer, a_1ns_ticker_keeps_ticking_for_a_busy_receiver)
{
    chan_t *tick = chan_tick(1);
    cr_assert_not_null(tick);
    const long count = test_scaled(2000, 200);
    int64_t prev = 0;
    for (long i = 0; i < count; i++) {
        int64_t v = 0;
        cr_assert_eq(chan_timedrecv(tick, &v, LATE_NS), 0, "tick %ld", i);
        cr_assert_gt(v, prev, "tick values increase");
        prev = v;
        /* Now and then leave it waiting, so that firings miss. */
        if (i % 100 == 99)
            test_sleep_ns(2 * TEST_MS);
    }
    cr_assert_eq(chan_timer_stop(tick), 0);
    chan_release(tick);
}

struct task_waits {
    chan_t *never;
    int recv_rc;
    int sleep_rc;
    int64_t recv_ns, sleep_ns;
};

static void timed_task(void *arg)
{
    struct task_waits *w = arg;
    int64_t t0 = test_now_ns();
    w->recv_rc = chan_timedrecv(w->never, NULL, 5 * TEST_MS);
    int64_t t1 = test_now_ns();
    w->sleep_rc = chan_sleep(5 * TEST_MS);
    w->recv_ns = t1 - t0;
    w->sleep_ns = test_now_ns() - t1;
}

Test(timer, a_1ns_ticker_lets_tasks_wait_with_timeouts)
{
    chan_t *tick = chan_tick(1);
    cr_assert_not_null(tick);
    wait_full(tick);
    chan_sched_t *s = chan_sched_new(&(chan_sched_opts_t){ .threads = 2 });
    cr_assert_not_null(s);
    enum { TASKS = 4 };
    struct task_waits w[TASKS];
    for (int i = 0; i < TASKS; i++) {
        w[i] = (struct task_waits){ .never = chan_make(sizeof(int), 0),
                                    .recv_rc = 1, .sleep_rc = 1 };
        cr_assert_not_null(w[i].never);
        cr_assert_eq(chan_go(s, timed_task, &w[i]), 0);
    }
    chan_sched_free(s);
    for (int i = 0; i < TASKS; i++) {
        cr_assert_eq(w[i].recv_rc, -ETIMEDOUT);
        cr_assert_eq(w[i].sleep_rc, 0);
        cr_assert_geq(w[i].recv_ns, 5 * TEST_MS);
        cr_assert_geq(w[i].sleep_ns, 5 * TEST_MS);
        cr_assert_lt(w[i].recv_ns, 5 * TEST_MS + LATE_NS);
        cr_assert_lt(w[i].sleep_ns, 5 * TEST_MS + LATE_NS);
        chan_release(w[i].never);
    }
    cr_assert_eq(chan_timer_stop(tick), 0);
    chan_release(tick);
}

Test(timer, idle_tiny_tickers_use_little_cpu)
{
    /* Nobody receives: every firing finds the channel full.  Firing them
     * at full speed would take a whole CPU; the bound (half of one CPU for
     * the whole process) is loose enough for sanitizers and emulators. */
    const int64_t periods[] = { 1, 100, 1000 };
    chan_t *tick[3];
    for (int i = 0; i < 3; i++) {
        tick[i] = chan_tick(periods[i]);
        cr_assert_not_null(tick[i]);
    }
    for (int i = 0; i < 3; i++)
        wait_full(tick[i]);
    int64_t cpu0 = process_cpu_ns(), t0 = test_now_ns();
    test_sleep_ns(1000 * TEST_MS);
    int64_t cpu = process_cpu_ns() - cpu0, wall = test_now_ns() - t0;
    cr_log_info("idle tickers: %lld ms of CPU in %lld ms",
                (long long)(cpu / TEST_MS), (long long)(wall / TEST_MS));
    cr_assert_lt(cpu, wall / 2, "%lld ms of CPU in %lld ms",
                 (long long)(cpu / TEST_MS), (long long)(wall / TEST_MS));
    /* They still tick once received from. */
    for (int i = 0; i < 3; i++) {
        int64_t v1 = 0, v2 = 0;
        int64_t before = test_now_ns();
        cr_assert_eq(chan_tryrecv(tick[i], &v1), 0);
        cr_assert_eq(chan_timedrecv(tick[i], &v2, LATE_NS), 0);
        cr_assert_gt(v2, v1);
        /* A fresh tick, fired after the old one was taken. */
        cr_assert_geq(v2, before);
        cr_assert_eq(chan_timer_stop(tick[i]), 0);
        chan_release(tick[i]);
    }
}

/* ------------------------------------------------------------ reset */

#define HOUR_NS (3600LL * 1000 * TEST_MS)

Test(timer, reset_rejects_non_timers_and_bad_periods)
{
    cr_assert_eq(chan_timer_reset(NULL, TEST_MS), -EINVAL);
    chan_t *plain = chan_make(sizeof(int64_t), 1);
    cr_assert_not_null(plain);
    cr_assert_eq(chan_timer_reset(plain, TEST_MS), -EINVAL);
    int64_t v = 0;
    cr_assert_eq(chan_tryrecv(plain, &v), -EAGAIN, "not made a timer");
    chan_release(plain);

    /* A ticker needs a period > 0, and a refused reset changes nothing. */
    chan_t *tick = chan_tick(HOUR_NS);
    cr_assert_not_null(tick);
    cr_assert_eq(chan_timer_reset(tick, 0), -EINVAL);
    cr_assert_eq(chan_timer_reset(tick, -1), -EINVAL);
    cr_assert_eq(chan_timer_reset(tick, INT64_MIN), -EINVAL);
    cr_assert_eq(chan_tryrecv(tick, &v), -EAGAIN);
    cr_assert_eq(chan_timer_stop(tick), 0, "still running");
    cr_assert_eq(chan_timer_reset(tick, 0), -EINVAL);
    cr_assert_eq(chan_timer_stop(tick), -EPIPE, "still stopped");
    chan_release(tick);
}

Test(timer, reset_of_a_pending_after_moves_its_deadline)
{
    /* Later, then sooner: 0 each time (it was pending), one value. */
    chan_t *a = chan_after(HOUR_NS);
    cr_assert_not_null(a);
    cr_assert_eq(chan_timer_reset(a, 2 * HOUR_NS), 0);
    int64_t t0 = test_now_ns();
    cr_assert_eq(chan_timer_reset(a, 20 * TEST_MS), 0);
    int64_t v = 0;
    cr_assert_eq(chan_timedrecv(a, &v, 20 * TEST_MS + LATE_NS), 0);
    cr_assert_geq(v, t0 + 20 * TEST_MS);
    cr_assert_lt(test_now_ns() - t0, 20 * TEST_MS + LATE_NS);
    /* Fired once: nothing more comes, and stop says so. */
    cr_assert_eq(chan_timedrecv(a, &v, 30 * TEST_MS), -ETIMEDOUT);
    cr_assert_eq(chan_timer_stop(a), -EPIPE);
    chan_release(a);

    /* Sooner, then later: the old deadline passes without a value. */
    int64_t made = test_now_ns();
    a = chan_after(10 * TEST_MS);
    cr_assert_not_null(a);
    t0 = test_now_ns();
    int rc = chan_timer_reset(a, 60 * TEST_MS);
    /* A slow machine may have let the first 10 ms pass already. */
    if (test_now_ns() - made < 10 * TEST_MS)
        cr_assert_eq(rc, 0);
    else
        cr_assert(rc == 0 || rc == -EPIPE, "reset returned %d", rc);
    cr_assert_eq(chan_timedrecv(a, &v, 60 * TEST_MS + LATE_NS), 0);
    cr_assert_geq(v, t0 + 60 * TEST_MS);
    chan_release(a);
}

Test(timer, reset_after_firing_discards_the_value_not_received)
{
    chan_t *a = chan_after(1 * TEST_MS);
    cr_assert_not_null(a);
    wait_full(a);
    int64_t t0 = test_now_ns();
    cr_assert_eq(chan_timer_reset(a, 50 * TEST_MS), -EPIPE, "it had fired");
    int64_t v = 0;
    cr_assert_eq(chan_tryrecv(a, &v), -EAGAIN, "the old value is gone");
    cr_assert_eq(chan_timedrecv(a, &v, 50 * TEST_MS + LATE_NS), 0);
    cr_assert_geq(v, t0 + 50 * TEST_MS, "a value of the new setting");
    cr_assert_eq(chan_timedrecv(a, &v, 30 * TEST_MS), -ETIMEDOUT,
                 "the new setting fires once");
    /* A value already received: the reset just runs it again. */
    t0 = test_now_ns();
    cr_assert_eq(chan_timer_reset(a, 5 * TEST_MS), -EPIPE);
    cr_assert_eq(chan_timedrecv(a, &v, 5 * TEST_MS + LATE_NS), 0);
    cr_assert_geq(v, t0 + 5 * TEST_MS);
    chan_release(a);
}

Test(timer, reset_of_a_stopped_after_runs_it_again)
{
    chan_t *a = chan_after(HOUR_NS);
    cr_assert_not_null(a);
    cr_assert_eq(chan_timer_stop(a), 0);
    int64_t t0 = test_now_ns();
    cr_assert_eq(chan_timer_reset(a, 5 * TEST_MS), -EPIPE, "it was stopped");
    int64_t v = 0;
    cr_assert_eq(chan_timedrecv(a, &v, 5 * TEST_MS + LATE_NS), 0);
    cr_assert_geq(v, t0 + 5 * TEST_MS);
    /* Reset, then stop before it fires: nothing comes. */
    cr_assert_eq(chan_timer_reset(a, 20 * TEST_MS), -EPIPE);
    cr_assert_eq(chan_timer_stop(a), 0);
    cr_assert_eq(chan_timedrecv(a, &v, 60 * TEST_MS), -ETIMEDOUT);
    chan_release(a);
}

Test(timer, reset_of_an_after_to_now_fires_inside_the_call)
{
    const int64_t delays[] = { 0, -1, INT64_MIN };
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
        /* Pending: returns 0, and the value is there on return. */
        chan_t *a = chan_after(HOUR_NS);
        cr_assert_not_null(a);
        int64_t t0 = test_now_ns();
        cr_assert_eq(chan_timer_reset(a, delays[i]), 0);
        int64_t v = 0;
        cr_assert_eq(chan_tryrecv(a, &v), 0);
        cr_assert_geq(v, t0);
        cr_assert_leq(v, test_now_ns());
        /* Fired, value not received: that one is replaced by a new one. */
        cr_assert_eq(chan_timer_reset(a, HOUR_NS), -EPIPE);
        cr_assert_eq(chan_timer_reset(a, 0), 0);
        int64_t t1 = test_now_ns();
        cr_assert_eq(chan_timer_reset(a, delays[i]), -EPIPE);
        cr_assert_eq(chan_tryrecv(a, &v), 0);
        cr_assert_geq(v, t1, "not the value of the earlier reset");
        cr_assert_eq(chan_tryrecv(a, &v), -EAGAIN);
        cr_assert_eq(chan_timer_stop(a), -EPIPE);
        chan_release(a);
    }
}

Test(timer, reset_of_a_ticker_changes_its_period)
{
    /* From an hour to 5 ms. */
    chan_t *tick = chan_tick(HOUR_NS);
    cr_assert_not_null(tick);
    const int64_t period = 5 * TEST_MS;
    const int count = 6;
    int64_t t0 = test_now_ns();
    cr_assert_eq(chan_timer_reset(tick, period), 0, "it was running");
    int64_t prev = t0;
    for (int i = 0; i < count; i++) {
        int64_t v = 0;
        cr_assert_eq(chan_timedrecv(tick, &v, period + LATE_NS), 0);
        cr_assert_gt(v, prev);
        cr_assert_geq(v, t0 + (int64_t)(i + 1) * period);
        prev = v;
    }
    cr_assert_lt(test_now_ns() - t0, count * period + LATE_NS);

    /* From 5 ms to an hour, with a tick waiting: the tick is dropped and
     * no other comes. */
    wait_full(tick);
    cr_assert_eq(chan_timer_reset(tick, HOUR_NS), 0);
    int64_t v = 0;
    cr_assert_eq(chan_tryrecv(tick, &v), -EAGAIN, "the stale tick is gone");
    cr_assert_eq(chan_timedrecv(tick, &v, 40 * TEST_MS), -ETIMEDOUT);

    /* Stopped, then reset: it ticks again, and says it had stopped. */
    cr_assert_eq(chan_timer_stop(tick), 0);
    t0 = test_now_ns();
    cr_assert_eq(chan_timer_reset(tick, period), -EPIPE);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(chan_timedrecv(tick, &v, period + LATE_NS), 0);
        cr_assert_geq(v, t0 + (int64_t)(i + 1) * period);
    }
    cr_assert_eq(chan_timer_stop(tick), 0);
    chan_release(tick);
}

/*
 * Reset racing receives.  The receiver notes when each receive started
 * and what it got; the resetter notes when each reset started and
 * returned.  A receive that started after reset i returned must get a value
 * of setting i or later, and every setting's values are at least its delay
 * after the start of its reset.  Values never repeat or go back.
 */
enum { RACE_MAX = 4096 };

struct reset_race {
    chan_t *timer;
    int ticker;
    atomic_int done;
    long nrecv;
    int64_t recv_start[RACE_MAX], recv_val[RACE_MAX];
    int bad_rc;
};

static void *race_receiver(void *arg)
{
    struct reset_race *r = arg;
    while (!atomic_load(&r->done) && r->nrecv < RACE_MAX) {
        int64_t start = test_now_ns(), v = 0;
        int rc = chan_timedrecv(r->timer, &v, 2 * TEST_MS);
        if (rc == -ETIMEDOUT)
            continue;
        if (rc != 0) {
            r->bad_rc = rc;
            break;
        }
        r->recv_start[r->nrecv] = start;
        r->recv_val[r->nrecv] = v;
        r->nrecv++;
    }
    return NULL;
}

static void reset_race(int ticker)
{
    static struct reset_race r; /* large: not on the stack */
    memset(&r, 0, sizeof r);
    r.ticker = ticker;
    r.timer = ticker ? chan_tick(TEST_MS) : chan_after(TEST_MS);
    cr_assert_not_null(r.timer);
    atomic_init(&r.done, 0);

    const long rounds = test_scaled(600, 60);
    int64_t *reset_start = calloc((size_t)rounds, sizeof *reset_start);
    int64_t *reset_end = calloc((size_t)rounds, sizeof *reset_end);
    int64_t *delay = calloc((size_t)rounds, sizeof *delay);
    cr_assert(reset_start && reset_end && delay);
    long epipe = 0;
    pthread_t th = test_thread_start(race_receiver, &r);
    for (long i = 0; i < rounds; i++) {
        /* 1 to 3 ms: some settings fire, and are received or discarded;
         * others are replaced before they fire. */
        delay[i] = (1 + i % 3) * TEST_MS;
        reset_start[i] = test_now_ns();
        int rc = chan_timer_reset(r.timer, delay[i]);
        reset_end[i] = test_now_ns();
        cr_assert(rc == 0 || rc == -EPIPE, "reset %ld returned %d", i, rc);
        /* A ticker runs until stopped: it never says -EPIPE here. */
        if (ticker)
            cr_assert_eq(rc, 0);
        epipe += rc == -EPIPE;
        /* Now and then wait about as long as the delay (the next reset
         * races the firing) or longer (it fires first). */
        if (i % 4 == 1)
            test_sleep_ns(delay[i]);
        else if (i % 4 == 3)
            test_sleep_ns(delay[i] + TEST_MS / 2);
    }
    atomic_store(&r.done, 1);
    test_thread_join(th);
    cr_assert_eq(r.bad_rc, 0);
    int stop_rc = chan_timer_stop(r.timer);
    cr_assert_eq(stop_rc, ticker ? 0 : stop_rc);

    /* earliest[i]: the earliest value any setting from reset i on can
     * give (a later reset may have a shorter delay). */
    int64_t *earliest = calloc((size_t)rounds, sizeof *earliest);
    cr_assert_not_null(earliest);
    for (long j = rounds - 1; j >= 0; j--) {
        earliest[j] = reset_start[j] + delay[j];
        if (j + 1 < rounds && earliest[j + 1] < earliest[j])
            earliest[j] = earliest[j + 1];
    }
    long i = -1; /* the last reset that had returned */
    for (long k = 0; k < r.nrecv; k++) {
        if (k > 0)
            cr_assert_gt(r.recv_val[k], r.recv_val[k - 1],
                         "value %ld repeats or goes back", k);
        while (i + 1 < rounds && reset_end[i + 1] < r.recv_start[k])
            i++;
        if (i >= 0)
            cr_assert_geq(r.recv_val[k], earliest[i],
                          "receive %ld got a value of a setting before reset"
                          " %ld", k, i);
    }
    free(earliest);
    if (!ticker)
        /* Each setting fires at most once, and a fired one shows up as
         * -EPIPE from the next reset or the final stop. */
        cr_assert_leq(r.nrecv, epipe + (stop_rc == -EPIPE),
                      "%ld values from %ld fired settings", r.nrecv,
                      epipe + (stop_rc == -EPIPE));
    cr_assert_gt(epipe + r.nrecv, 0, "nothing ever fired");
    cr_log_info("%s: %ld resets, %ld -EPIPE, %ld received",
                ticker ? "tick" : "after", rounds, epipe, r.nrecv);
    free(reset_start);
    free(reset_end);
    free(delay);
    chan_release(r.timer);
}

Test(timer, reset_of_an_after_races_receives)
{
    reset_race(0);
}

Test(timer, reset_of_a_ticker_races_receives)
{
    reset_race(1);
}

struct reset_stopper {
    chan_t *timer;
    int rounds;
    int bad;
};

static void *reset_loop(void *arg)
{
    struct reset_stopper *s = arg;
    for (int i = 0; i < s->rounds; i++) {
        int rc = chan_timer_reset(s->timer, (i % 2) ? 100000 : HOUR_NS);
        if (rc != 0 && rc != -EPIPE)
            s->bad++;
    }
    chan_release(s->timer); /* the reference this thread was given */
    return NULL;
}

static void *stop_loop(void *arg)
{
    struct reset_stopper *s = arg;
    for (int i = 0; i < s->rounds; i++) {
        int rc = chan_timer_stop(s->timer);
        if (rc != 0 && rc != -EPIPE)
            s->bad++;
        (void)chan_tryrecv(s->timer, NULL);
    }
    chan_release(s->timer);
    return NULL;
}

Test(timer, reset_races_stop_and_release)
{
    /* Resets and stops from two threads while the timer fires, each with
     * its own reference; main drops its reference meanwhile, and the last
     * thread out frees the timer.  AddressSanitizer and ThreadSanitizer
     * watch the lifetimes; the return codes must stay in range. */
    const int rounds = (int)test_scaled(2000, 100);
    for (int k = 0; k < 6; k++) {
        chan_t *t = k % 2 ? chan_tick(100000) : chan_after(100000);
        cr_assert_not_null(t);
        struct reset_stopper rs = { chan_retain(t), rounds, 0 };
        struct reset_stopper st = { chan_retain(t), rounds, 0 };
        pthread_t a = test_thread_start(reset_loop, &rs);
        pthread_t b = test_thread_start(stop_loop, &st);
        chan_release(t);
        test_thread_join(a);
        test_thread_join(b);
        cr_assert_eq(rs.bad, 0);
        cr_assert_eq(st.bad, 0);
    }
}

Test(timer, calls_leave_errno_alone)
{
    errno = 4242;
    chan_t *a = chan_after(1 * TEST_MS); /* starts the timer thread */
    chan_t *t = chan_tick(1 * TEST_MS);
    chan_t *z = chan_after(0);
    cr_assert(a && t && z);
    cr_assert_eq(chan_recv(a, NULL), 0);
    cr_assert_eq(chan_recv(t, NULL), 0);
    cr_assert_eq(chan_timer_reset(a, 0), -EPIPE);
    cr_assert_eq(chan_timer_reset(t, 2 * TEST_MS), 0);
    cr_assert_eq(chan_timer_reset(z, HOUR_NS), -EPIPE);
    cr_assert_eq(chan_timer_reset(NULL, 1), -EINVAL);
    cr_assert_null(chan_tick(0));
    cr_assert_eq(chan_timer_stop(z), 0);
    cr_assert_eq(chan_timer_stop(t), 0);
    chan_release(a);
    chan_release(t);
    chan_release(z);
    cr_assert_eq(errno, 4242);
}

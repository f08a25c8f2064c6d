/*
 * util.h - small helpers shared by the Criterion test programs.
 *
 *  - test_scale(), test_scaled(): iteration counts scale with the
 *    environment variable CHAN_TEST_SCALE (a positive number, default 1),
 *    so CI can run the suites short and a developer can run them long.
 *  - test_now_ns(), test_sleep_ns(): CLOCK_MONOTONIC, as the library uses.
 *  - Semaphores, barriers and threads that fail the test (instead of
 *    returning an error code) when the system refuses them.
 *  - test_wait_blocked(): waits until a thread is asleep in the kernel,
 *    which after it has posted "about to call" means that it is parked
 *    inside the library call.  This is how a test forces an interleaving
 *    such as "the receiver is already blocked when the sender arrives"
 *    without guessing with a sleep.  test_start_blocked() makes one
 *    library call on a thread of its own and returns once it is parked.
 *
 * Criterion assertions may only be made on the test's own thread (a failed
 * assertion unwinds that thread), so worker threads record what happened in
 * their argument structs and the test thread checks it after joining.
 */
#ifndef CHAN_TESTS_UTIL_H
#define CHAN_TESTS_UTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

#include <chan.h>

/* A generous per-test time limit: CI also runs the suites under TSan and
 * ASan, which are 5-15x slower, on small machines. */
#define TEST_TIMEOUT_S 60

#define TEST_MS ((int64_t)1000000)

/* ------------------------------------------------------------ scale */

/*
 * test_scale - CHAN_TEST_SCALE as a positive number; 1 when unset.  A value
 * that is not a positive number fails the test run rather than being
 * silently ignored.
 */
static inline double test_scale(void)
{
    const char *s = getenv("CHAN_TEST_SCALE");
    if (!s || !*s)
        return 1.0;
    char *end;
    double v = strtod(s, &end);
    cr_assert(end != s && *end == '\0' && v > 0 && v < 1e6,
              "CHAN_TEST_SCALE must be a positive number, not \"%s\"", s);
    return v;
}

/* test_scaled - n times the scale, rounded, and never below min. */
static inline long test_scaled(long n, long min)
{
    double v = (double)n * test_scale() + 0.5;
    long r = v > 1e15 ? (long)1e15 : (long)v;
    return r < min ? min : r;
}

/* ------------------------------------------------------------ time */

/* test_now_ns - the CLOCK_MONOTONIC time in nanoseconds. */
static inline int64_t test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* test_sleep_ns - sleep at least ns nanoseconds. */
static inline void test_sleep_ns(int64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
        ;
}

/* ------------------------------------------------------------ sync */

static inline void test_sem_init(sem_t *s, unsigned value)
{
    cr_assert_eq(sem_init(s, 0, value), 0, "sem_init failed");
}

static inline void test_sem_post(sem_t *s)
{
    if (sem_post(s) != 0)
        abort();
}

static inline void test_sem_wait(sem_t *s)
{
    while (sem_wait(s) != 0)
        if (errno != EINTR)
            abort();
}

static inline void test_sem_destroy(sem_t *s)
{
    sem_destroy(s);
}

static inline void test_barrier_init(pthread_barrier_t *b, unsigned n)
{
    cr_assert_eq(pthread_barrier_init(b, NULL, n), 0,
                 "pthread_barrier_init failed");
}

static inline void test_barrier_wait(pthread_barrier_t *b)
{
    int e = pthread_barrier_wait(b);
    if (e != 0 && e != PTHREAD_BARRIER_SERIAL_THREAD)
        abort();
}

static inline void test_barrier_destroy(pthread_barrier_t *b)
{
    pthread_barrier_destroy(b);
}

/* ------------------------------------------------------------ threads */

/* test_thread_start - start fn(arg) on a new thread; fails the test if the
 * thread cannot be created. */
static inline pthread_t test_thread_start(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    int e = pthread_create(&t, NULL, fn, arg);
    cr_assert_eq(e, 0, "pthread_create: %s", strerror(e));
    return t;
}

/* test_thread_join - join t and return what it returned. */
static inline void *test_thread_join(pthread_t t)
{
    void *ret = NULL;
    int e = pthread_join(t, &ret);
    cr_assert_eq(e, 0, "pthread_join: %s", strerror(e));
    return ret;
}

/* test_gettid - the kernel's id of the calling thread (0 where unknown). */
static inline long test_gettid(void)
{
#ifdef __linux__
    return (long)syscall(SYS_gettid);
#else
    return 0;
#endif
}

/* The state letter of thread tid ('R', 'S', ...), or 0 if unknown. */
static inline char test_thread_state(long tid)
{
#ifdef __linux__
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "tid (comm) S ...": comm may hold spaces and parentheses. */
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : 0;
#else
    (void)tid;
    return 0;
#endif
}

/*
 * test_wait_blocked - wait until thread tid sleeps in the kernel, or until
 * *done becomes nonzero (the call returned; done may be NULL).  Returns 1
 * once the thread was seen asleep three times in a row, a millisecond
 * apart; 0 if the call returned first.  Where thread states cannot be read
 * it waits 50 ms and returns 1.
 *
 * Use it after the thread posted a semaphore right before a blocking library
 * call: a thread that is running, spinning or preempted shows 'R', and
 * nothing but the library call puts it to sleep for long (a sanitizer
 * runtime's internal lock is held for microseconds), so a sleep that lasts
 * means that it is parked there.  Waiting more than 10 s fails the test.
 */
static inline int test_wait_blocked(long tid, atomic_int *done)
{
    int64_t give_up = test_now_ns() + 10000 * TEST_MS;
    int seen = 0;
    for (;;) {
        if (done && atomic_load(done))
            return 0;
        char st = tid ? test_thread_state(tid) : 0;
        if (st == 0) {
            test_sleep_ns(50 * TEST_MS);
            return done && atomic_load(done) ? 0 : 1;
        }
        seen = (st == 'S' || st == 'D') ? seen + 1 : 0;
        if (seen >= 3)
            return done && atomic_load(done) ? 0 : 1;
        cr_assert(test_now_ns() < give_up, "thread %ld never blocked", tid);
        test_sleep_ns(TEST_MS);
    }
}

/*
 * test_stays_zero - checks that *flag stays 0 for about ns nanoseconds
 * (polling); returns 1 if it did.  Used to see that a blocked call has not
 * returned.
 */
static inline int test_stays_zero(atomic_int *flag, int64_t ns)
{
    int64_t end = test_now_ns() + ns;
    do {
        if (atomic_load(flag))
            return 0;
        test_sleep_ns(TEST_MS);
    } while (test_now_ns() < end);
    return atomic_load(flag) == 0;
}

/* test_wait_nonzero - polls until *flag is nonzero; 0 if ns passed first. */
static inline int test_wait_nonzero(atomic_int *flag, int64_t ns)
{
    int64_t end = test_now_ns() + ns;
    while (!atomic_load(flag)) {
        if (test_now_ns() >= end)
            return 0;
        test_sleep_ns(TEST_MS / 2);
    }
    return 1;
}

/* ------------------------------------------------------------ blocked calls */

/*
 * A library call made on a thread of its own, so that the test thread can
 * act while the call blocks.  test_start() runs call(arg) on a new thread
 * and returns once that thread is about to make it; test_start_blocked()
 * returns once the call sleeps inside the library (test_wait_blocked) and
 * fails the test if it returned instead; test_join() waits for the thread.
 * done becomes 1 once call(arg) has returned: what call wrote into arg is
 * then visible.
 */
struct test_call {
    void (*call)(void *arg);
    void *arg;
    atomic_int done;   /* 1 once the call returned */
    atomic_long tid;   /* the thread's kernel id */
    sem_t started;     /* posted right before the call */
    pthread_t th;
};

static inline void *test_call_main(void *p)
{
    struct test_call *c = p;
    atomic_store(&c->tid, test_gettid());
    test_sem_post(&c->started);
    c->call(c->arg);
    atomic_store(&c->done, 1);
    return NULL;
}

static inline void test_start(struct test_call *c, void (*call)(void *arg),
                              void *arg)
{
    c->call = call;
    c->arg = arg;
    atomic_init(&c->done, 0);
    atomic_init(&c->tid, 0);
    test_sem_init(&c->started, 0);
    c->th = test_thread_start(test_call_main, c);
    test_sem_wait(&c->started);
}

static inline void test_start_blocked(struct test_call *c,
                                      void (*call)(void *arg), void *arg)
{
    test_start(c, call, arg);
    cr_assert(test_wait_blocked(atomic_load(&c->tid), &c->done),
              "the call returned instead of blocking");
}

static inline void test_join(struct test_call *c)
{
    test_thread_join(c->th);
    test_sem_destroy(&c->started);
}

/* ------------------------------------------------------------ schedulers */

/* test_sched_make - a scheduler of threads workers (0: one per CPU) with
 * the default stacks; fails the test if it cannot be made. */
static inline chan_sched_t *test_sched_make(unsigned threads)
{
    chan_sched_opts_t o = { .threads = threads, .stack_size = 0 };
    chan_sched_t *s = chan_sched_new(&o);
    cr_assert_not_null(s, "chan_sched_new(%u threads) failed", threads);
    return s;
}

/* ------------------------------------------------------------ random */

/* A small per-thread PRNG (xorshift32) for test choices; seed nonzero. */
static inline uint32_t test_rand(uint32_t *state)
{
    uint32_t x = *state ? *state : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

/* UNDER_TSAN - 1 in a ThreadSanitizer build (by --enable-tsan or by
 * CFLAGS), which gives every live task a whole thread state of its own, so
 * tests that keep thousands of tasks alive scale down under it. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* SKIP_UNDER_QEMU(why) - skips the calling test, saying why, when the
 * environment has CHAN_TEST_QEMU=1, as the cross build's 'make check' under
 * qemu-user sets it: for the few things qemu-user itself cannot run, such
 * as a child forked while other threads run (qemu aborts with
 * "cpu == current_cpu"). */
#define SKIP_UNDER_QEMU(why)                                                  \
    do {                                                                      \
        const char *q_ = getenv("CHAN_TEST_QEMU");                            \
        if (q_ && strcmp(q_, "1") == 0)                                       \
            cr_skip_test(why);                                                \
    } while (0)

#endif /* CHAN_TESTS_UTIL_H */

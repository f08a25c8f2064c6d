/*
 * errno.c - no function of the library reads or writes errno (chan.h):
 * not when it succeeds, not when it fails, and not when the C library
 * fails under it.
 *
 * How.  This program is linked with the static library and with
 * -Wl,--wrap=NAME for each C library function below (Makefile.am;
 * .ci/run uses the same list), so the library's calls to malloc reach
 * __wrap_malloc here, which calls the real one as __real_malloc.  Each
 * wrapper can be told to fail: the k-th wrapped call made by the calling
 * thread after fault_arm(k) fails with a plausible errno (ENOMEM for the
 * allocators, EMFILE for pipe, EINVAL for sigaction, ...).  And every
 * wrapped call that succeeds leaves errno set to SCRIBBLE, as the C
 * library is allowed to do, so a library path that does not save and
 * restore errno around a call is caught on success as well.  Wrapping at
 * link time rather than defining malloc in the program works under the
 * sanitizers too, whose runtimes define malloc themselves: __real_malloc
 * is then theirs.
 *
 * Each test sets errno to SENTINEL right before a call and checks it right
 * after.  A constructor is driven through each of its failure points in
 * turn: fault_arm(1), fault_arm(2), ... until a run meets no armed fault
 * (then it must have succeeded), and the test checks that there was at
 * least one failure point, which shows that the wrappers are live.
 *
 * (The suite is keeps_errno: errno itself is a macro.)  Criterion runs
 * every test in its own process, so "the first timer" or
 * "the first signal channel" of a test is the first of its process.
 */
#include "util.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/types.h>
#ifdef __linux__
#include <linux/futex.h>
#endif

TestSuite(keeps_errno, .timeout = TEST_TIMEOUT_S);

/* What errno holds before every call under test, and what the wrappers
 * leave in it after a call that succeeded. */
enum { SENTINEL = 12345, SCRIBBLE = 777 };

/* ------------------------------------------------------------ faults */

/* The calling thread's fault: the at-th wrapped call after fault_arm
 * fails (0: none); fired says whether it came. */
static _Thread_local struct {
    int at, calls, fired;
} fault;

/* Stack mappings are made by worker threads: the next mmap_failures of
 * them fail, whichever thread makes them. */
static atomic_int mmap_failures;

static void fault_arm(int k)
{
    fault.at = k;
    fault.calls = 0;
    fault.fired = 0;
}

/* Disarms; returns whether the armed call failed. */
static int fault_disarm(void)
{
    fault.at = 0;
    return fault.fired;
}

/* Whether this wrapped call is the one to fail; counts it. */
static int fault_now(void)
{
    if (!fault.at || ++fault.calls != fault.at)
        return 0;
    fault.fired = 1;
    return 1;
}

/* The wrappers.  Each fails when told to, else calls the real function
 * and, if that succeeded, scribbles on errno. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd,
                  off_t off);
int __real_pipe(int fds[2]);
int __real_pipe2(int fds[2], int flags);
int __real_fcntl(int fd, int cmd, ...);
int __real_close(int fd);
ssize_t __real_write(int fd, const void *buf, size_t n);
int __real_sigaction(int signo, const struct sigaction *sa,
                     struct sigaction *old);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg);
long __real_sysconf(int name);
long __real_syscall(long nr, ...);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd,
                  off_t off);
int __wrap_pipe(int fds[2]);
int __wrap_pipe2(int fds[2], int flags);
int __wrap_fcntl(int fd, int cmd, ...);
int __wrap_close(int fd);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
int __wrap_sigaction(int signo, const struct sigaction *sa,
                     struct sigaction *old);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg);
long __wrap_sysconf(int name);
long __wrap_syscall(long nr, ...);

#define FAIL_WITH(err, ret)                                                   \
    do {                                                                      \
        errno = (err);                                                        \
        return ret;                                                           \
    } while (0)
#define SCRIBBLE_IF(ok)                                                       \
    do {                                                                      \
        if (ok)                                                               \
            errno = SCRIBBLE;                                                 \
    } while (0)

void *__wrap_malloc(size_t n)
{
    if (fault_now())
        FAIL_WITH(ENOMEM, NULL);
    void *p = __real_malloc(n);
    SCRIBBLE_IF(p);
    return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (fault_now())
        FAIL_WITH(ENOMEM, NULL);
    void *p = __real_calloc(n, size);
    SCRIBBLE_IF(p);
    return p;
}

void *__wrap_realloc(void *old, size_t n)
{
    if (fault_now())
        FAIL_WITH(ENOMEM, NULL);
    void *p = __real_realloc(old, n);
    SCRIBBLE_IF(p);
    return p;
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd,
                  off_t off)
{
    int left = atomic_load(&mmap_failures);
    while (left > 0)
        if (atomic_compare_exchange_weak(&mmap_failures, &left, left - 1))
            FAIL_WITH(ENOMEM, MAP_FAILED);
    if (fault_now())
        FAIL_WITH(ENOMEM, MAP_FAILED);
    void *p = __real_mmap(addr, len, prot, flags, fd, off);
    SCRIBBLE_IF(p != MAP_FAILED);
    return p;
}

int __wrap_pipe(int fds[2])
{
    if (fault_now())
        FAIL_WITH(EMFILE, -1);
    int r = __real_pipe(fds);
    SCRIBBLE_IF(r == 0);
    return r;
}

int __wrap_pipe2(int fds[2], int flags)
{
    if (fault_now())
        FAIL_WITH(EMFILE, -1);
    int r = __real_pipe2(fds, flags);
    SCRIBBLE_IF(r == 0);
    return r;
}

/* Every command the library uses takes an int or nothing. */
int __wrap_fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int arg = va_arg(ap, int);
    va_end(ap);
    if (fault_now())
        FAIL_WITH(EBADF, -1);
    int r = __real_fcntl(fd, cmd, arg);
    SCRIBBLE_IF(r != -1);
    return r;
}

int __wrap_close(int fd)
{
    if (fault_now())
        FAIL_WITH(EIO, -1);
    int r = __real_close(fd);
    SCRIBBLE_IF(r == 0);
    return r;
}

/* Called by the library's signal handler: async-signal-safe, as is the
 * initial-exec thread-local fault of the program. */
ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    if (fault_now())
        FAIL_WITH(EAGAIN, -1);
    ssize_t r = __real_write(fd, buf, n);
    SCRIBBLE_IF(r >= 0);
    return r;
}

int __wrap_sigaction(int signo, const struct sigaction *sa,
                     struct sigaction *old)
{
    if (fault_now())
        FAIL_WITH(EINVAL, -1);
    int r = __real_sigaction(signo, sa, old);
    SCRIBBLE_IF(r == 0);
    return r;
}

/* pthread_create reports through its result; glibc's can leave errno set
 * by the failed mmap of the new thread's stack as well. */
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg)
{
    if (fault_now())
        FAIL_WITH(ENOMEM, EAGAIN);
    int r = __real_pthread_create(t, attr, fn, arg);
    SCRIBBLE_IF(r == 0);
    return r;
}

long __wrap_sysconf(int name)
{
    if (fault_now())
        FAIL_WITH(EINVAL, -1);
    long r = __real_sysconf(name);
    SCRIBBLE_IF(1);
    return r;
}

/*
 * The library's system calls: futexes and process_madvise, every argument
 * a long or a pointer.  A futex wake is never failed (a lost wake would
 * hang the test, and the kernel does not fail one that way); a futex wait
 * fails as if interrupted, which its callers must take as a spurious
 * wakeup.
 */
long __wrap_syscall(long nr, ...)
{
    /* Read only the arguments the call has (reading more could touch
     * the caller's frame beyond them, which ASan reports). */
    int nargs = 6;
#ifdef SYS_gettid
    if (nr == SYS_gettid)
        nargs = 0;
#endif
#ifdef SYS_process_madvise
    if (nr == SYS_process_madvise)
        nargs = 5;
#endif
    va_list ap;
    long a[6] = { 0 };
    va_start(ap, nr);
    for (int i = 0; i < nargs; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    int wake = 0;
#ifdef SYS_futex
    wake = nr == SYS_futex && (a[1] & FUTEX_CMD_MASK) == FUTEX_WAKE;
#endif
    if (!wake && fault_now())
        FAIL_WITH(EINTR, -1);
    long r = __real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    SCRIBBLE_IF(r != -1);
    return r;
}

/*
 * EXPECT_KEPT(call) - evaluates call with errno set to SENTINEL and fails
 * the test unless errno is still SENTINEL afterwards; yields call's value.
 */
#define EXPECT_KEPT(call)                                                     \
    ({                                                                        \
        errno = SENTINEL;                                                     \
        __typeof__(call) kept_r_ = (call);                                    \
        int kept_e_ = errno;                                                  \
        cr_assert_eq(kept_e_, SENTINEL, "%s changed errno to %d", #call,      \
                     kept_e_);                                                \
        kept_r_;                                                              \
    })
#define EXPECT_KEPT_VOID(call)                                                \
    do {                                                                      \
        errno = SENTINEL;                                                     \
        call;                                                                 \
        int kept_e_ = errno;                                                  \
        cr_assert_eq(kept_e_, SENTINEL, "%s changed errno to %d", #call,      \
                     kept_e_);                                                \
    } while (0)

/*
 * FOR_EACH_FAULT(result, call, undo) - runs call with its k-th wrapped
 * call failing, for k = 1, 2, ... until a run meets no fault, and checks
 * errno after every run.  A run with a fault that succeeded anyway (result
 * nonzero: the library had a way around the failure) is undone with undo;
 * the last run, without a fault, must succeed, and its result is the
 * caller's.  Fails the test if call made no wrapped call at all.
 */
#define FOR_EACH_FAULT(result, call, undo)                                    \
    do {                                                                      \
        int k_;                                                               \
        for (k_ = 1;; k_++) {                                                 \
            fault_arm(k_);                                                    \
            errno = SENTINEL;                                                 \
            call;                                                             \
            int e_ = errno;                                                   \
            int fired_ = fault_disarm();                                      \
            cr_assert_eq(e_, SENTINEL,                                        \
                         "%s with wrapped call %d %s: errno %d", #call, k_,   \
                         fired_ ? "failing" : "(none failing)", e_);          \
            if (!fired_) {                                                    \
                cr_assert((result), "%s failed with no fault", #call);        \
                break;                                                        \
            }                                                                 \
            if (result) {                                                     \
                undo;                                                         \
            }                                                                 \
        }                                                                     \
        cr_assert_gt(k_, 1, "%s made no wrapped call", #call);                \
    } while (0)

/* ------------------------------------------------------------ wrappers */

Test(keeps_errno, wrappers_fail_and_scribble)
{
    /* The test's own calls are wrapped too: check the machinery on one,
     * made through a volatile pointer so that the compiler cannot assume
     * anything about it. */
    void *(*volatile alloc)(size_t) = malloc;
    fault_arm(1);
    errno = 0;
    void *p = alloc(16);
    int e = errno;
    cr_assert_eq(fault_disarm(), 1);
    cr_assert_null(p);
    cr_assert_eq(e, ENOMEM);
    errno = 0;
    p = alloc(16);
    e = errno;
    cr_assert_not_null(p);
    cr_assert_eq(e, SCRIBBLE);
    free(p);
}

/* ------------------------------------------------------------ channels */

Test(keeps_errno, chan_make_and_its_failures)
{
    chan_t *ch = NULL;
    FOR_EACH_FAULT(ch, ch = chan_make(sizeof(int), 4), chan_release(ch));
    EXPECT_KEPT_VOID(chan_release(ch));
    FOR_EACH_FAULT(ch, ch = chan_make(0, 0), chan_release(ch));
    EXPECT_KEPT_VOID(chan_release(ch));
    cr_assert_null(EXPECT_KEPT(chan_make(SIZE_MAX / 2, SIZE_MAX / 2)));
}

Test(keeps_errno, channel_operations_that_do_not_wait)
{
    chan_t *ch = chan_make(sizeof(int), 2);
    cr_assert_not_null(ch);
    int v = 1, got = 0;
    cr_assert_eq(EXPECT_KEPT(chan_retain(ch)), ch);
    EXPECT_KEPT_VOID(chan_release(ch));
    cr_assert_eq(EXPECT_KEPT(chan_send(ch, &v)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_trysend(ch, &v)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_trysend(ch, &v)), -EAGAIN);
    cr_assert_eq(EXPECT_KEPT(chan_timedsend(ch, &v, 0)), -EAGAIN);
    cr_assert_eq(EXPECT_KEPT(chan_len(ch)), 2);
    cr_assert_eq(EXPECT_KEPT(chan_cap(ch)), 2);
    cr_assert_eq(EXPECT_KEPT(chan_recv(ch, &got)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_tryrecv(ch, &got)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_tryrecv(ch, &got)), -EAGAIN);
    cr_assert_eq(EXPECT_KEPT(chan_timedrecv(ch, &got, 0)), -EAGAIN);
    cr_assert_eq(EXPECT_KEPT(chan_send(NULL, &v)), -EINVAL);
    cr_assert_eq(EXPECT_KEPT(chan_recv(NULL, &got)), -EINVAL);
    cr_assert_eq(EXPECT_KEPT(chan_close(ch)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_close(ch)), -EPIPE);
    cr_assert_eq(EXPECT_KEPT(chan_send(ch, &v)), -EPIPE);
    cr_assert_eq(EXPECT_KEPT(chan_recv(ch, &got)), -EPIPE);
    EXPECT_KEPT_VOID(chan_release(ch));
}

/* A timed wait that times out ends in a futex wait that fails with
 * ETIMEDOUT; every wait is also run with its system calls failing. */
Test(keeps_errno, timed_waits_that_time_out)
{
    chan_t *ch = chan_make(sizeof(int), 0);
    cr_assert_not_null(ch);
    int v = 1, rc = 0;
    cr_assert_eq(EXPECT_KEPT(chan_timedrecv(ch, &v, 2 * TEST_MS)),
                 -ETIMEDOUT);
    cr_assert_eq(EXPECT_KEPT(chan_timedsend(ch, &v, 2 * TEST_MS)),
                 -ETIMEDOUT);
    cr_assert_eq(EXPECT_KEPT(chan_sleep(2 * TEST_MS)), 0);
    FOR_EACH_FAULT(rc == -ETIMEDOUT,
                   rc = chan_timedrecv(ch, &v, 2 * TEST_MS), (void)0);
    FOR_EACH_FAULT(rc == 0, rc = chan_sleep(2 * TEST_MS), (void)0);
    chan_release(ch);
}

struct blocked {
    chan_t *ch;
    int rc, value, err;
    struct test_call call;
};

static void recv_blocked(void *arg)
{
    struct blocked *b = arg;
    errno = SENTINEL;
    b->rc = chan_recv(b->ch, &b->value);
    b->err = errno;
}

/* A receiver asleep in the kernel, woken by a send. */
Test(keeps_errno, blocked_recv_woken_up)
{
    struct blocked b = { .ch = chan_make(sizeof(int), 0) };
    cr_assert_not_null(b.ch);
    test_start_blocked(&b.call, recv_blocked, &b);
    int v = 42;
    cr_assert_eq(EXPECT_KEPT(chan_send(b.ch, &v)), 0);
    test_join(&b.call);
    cr_assert_eq(b.rc, 0);
    cr_assert_eq(b.value, 42);
    cr_assert_eq(b.err, SENTINEL, "the woken receiver's errno is %d", b.err);
    chan_release(b.ch);
}

/* ------------------------------------------------------------ select */

Test(keeps_errno, select_and_its_failures)
{
    enum { N = 40 }; /* more cases than a select keeps on its stack */
    chan_t *ch[N];
    chan_case_t cases[N];
    int v = 7;
    for (int i = 0; i < N; i++) {
        ch[i] = chan_make(sizeof(int), 1);
        cr_assert_not_null(ch[i]);
        cases[i] = CHAN_RECV_CASE(ch[i], NULL);
    }
    int rc = 0;
    cr_assert_eq(EXPECT_KEPT(chan_select(cases, N, 0)), -EAGAIN);
    cr_assert_eq(EXPECT_KEPT(chan_select(cases, N, 2 * TEST_MS)),
                 -ETIMEDOUT);
    cr_assert_eq(EXPECT_KEPT(chan_select(cases, 2, 2 * TEST_MS)),
                 -ETIMEDOUT);
    cr_assert_eq(EXPECT_KEPT(chan_select(NULL, 0, 2 * TEST_MS)),
                 -ETIMEDOUT);
    cr_assert_eq(EXPECT_KEPT(chan_select(NULL, 1, 0)), -EINVAL);
    cr_assert_eq(chan_send(ch[N - 1], &v), 0);
    FOR_EACH_FAULT(rc == N - 1, rc = chan_select(cases, N, 0),
                   cr_assert_eq(chan_send(ch[N - 1], &v), 0));
    cr_assert_eq(rc, N - 1);
    cr_assert_eq(EXPECT_KEPT(chan_tryrecv(ch[N - 1], NULL)), -EAGAIN);
    for (int i = 0; i < N; i++)
        chan_release(ch[i]);
}

/* ------------------------------------------------------------ timers */

/* Stops pending timer t and drops it. */
static void stop_and_release(chan_t *t)
{
    cr_assert_eq(EXPECT_KEPT(chan_timer_stop(t)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_timer_stop(t)), -EPIPE);
    EXPECT_KEPT_VOID(chan_release(t));
}

Test(keeps_errno, first_timer_and_its_failures)
{
    chan_t *t = NULL;
    int64_t when = 0;
    FOR_EACH_FAULT(t, t = chan_after(3600 * 1000 * TEST_MS),
                   stop_and_release(t));
    stop_and_release(t);
    FOR_EACH_FAULT(t, t = chan_tick(3600 * 1000 * TEST_MS),
                   stop_and_release(t));
    stop_and_release(t);
    t = EXPECT_KEPT(chan_after(0));
    cr_assert_not_null(t);
    cr_assert_eq(EXPECT_KEPT(chan_recv(t, &when)), 0);
    chan_release(t);
    t = EXPECT_KEPT(chan_after(TEST_MS));
    cr_assert_not_null(t);
    cr_assert_eq(EXPECT_KEPT(chan_recv(t, &when)), 0);
    chan_release(t);
    cr_assert_eq(EXPECT_KEPT(chan_timer_stop(NULL)), -EINVAL);
    cr_assert_null(EXPECT_KEPT(chan_tick(0)));
}

/* Enough pending timers to grow the heap, then stopped, which shrinks it
 * again. */
Test(keeps_errno, timer_heap_growing_and_shrinking)
{
    enum { N = 300 };
    chan_t *t[N];
    for (int i = 0; i < N; i++) {
        t[i] = EXPECT_KEPT(chan_after(3600 * 1000 * TEST_MS + i));
        cr_assert_not_null(t[i]);
    }
    for (int i = 0; i < N; i++)
        EXPECT_KEPT_VOID(chan_release(t[i]));
}

/* ------------------------------------------------------------ signals */

Test(keeps_errno, first_signal_channel_and_its_failures)
{
    chan_t *ch = chan_make(sizeof(int), 1);
    cr_assert_not_null(ch);
    int rc = -1, got = 0;
    /* A repeated registration changes nothing: no undo. */
    FOR_EACH_FAULT(rc == 0, rc = chan_signal_notify(ch, SIGUSR1), (void)0);
    cr_assert_eq(rc, 0);
    /* The handler writes to a pipe (its write scribbles on errno). */
    cr_assert_eq(EXPECT_KEPT(raise(SIGUSR1)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_timedrecv(ch, &got, 10000 * TEST_MS)), 0);
    cr_assert_eq(got, SIGUSR1);
    FOR_EACH_FAULT(rc == 0, rc = chan_signal_notify(ch, SIGUSR2), (void)0);
    cr_assert_eq(EXPECT_KEPT(chan_signal_notify(ch, SIGUSR2)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_signal_notify(ch, SIGKILL)), -EINVAL);
    cr_assert_eq(EXPECT_KEPT(chan_signal_notify(NULL, SIGUSR1)), -EINVAL);
    cr_assert_eq(EXPECT_KEPT(chan_signal_stop(ch)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_signal_stop(NULL)), -EINVAL);
    chan_release(ch);
}

/* Signal numbers the C library keeps for itself: sigaction refuses them
 * with EINVAL, and so does chan_signal_notify, keeping errno. */
Test(keeps_errno, signals_the_c_library_reserves)
{
    chan_t *ch = chan_make(sizeof(int), 1);
    cr_assert_not_null(ch);
    cr_assert_eq(EXPECT_KEPT(chan_signal_notify(ch, SIGUSR1)), 0);
    int reserved[] = { 32, 33, SIGRTMIN - 1 };
    int seen = 0;
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++) {
        int signo = reserved[i];
        struct sigaction sa;
        if (signo < 1 || signo >= NSIG || sigaction(signo, NULL, &sa) == 0) {
            cr_log_info("signal %d is not reserved here", signo);
            continue;
        }
        seen++;
        cr_assert_eq(EXPECT_KEPT(chan_signal_notify(ch, signo)), -EINVAL,
                     "signal %d", signo);
    }
    cr_assert_eq(chan_signal_stop(ch), 0);
    chan_release(ch);
#ifdef __GLIBC__
    cr_assert_gt(seen, 0, "the C library reserves none of 32, 33");
#endif
}

/* ------------------------------------------------------------ wait groups */

Test(keeps_errno, wait_groups_and_their_failures)
{
    chan_wg_t *wg = NULL;
    FOR_EACH_FAULT(wg, wg = chan_wg_new(), chan_wg_free(wg));
    cr_assert_eq(EXPECT_KEPT(chan_wg_add(wg, 2)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_wg_add(wg, -3)), -EINVAL);
    cr_assert_eq(EXPECT_KEPT(chan_wg_done(wg)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_wg_done(wg)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_wg_wait(wg)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_wg_add(NULL, 1)), -EINVAL);
    cr_assert_eq(EXPECT_KEPT(chan_wg_wait(NULL)), -EINVAL);
    EXPECT_KEPT_VOID(chan_wg_free(wg));
    EXPECT_KEPT_VOID(chan_wg_free(NULL));
}

struct wg_blocked {
    chan_wg_t *wg;
    int rc, err;
    struct test_call call;
};

static void wg_wait_blocked(void *arg)
{
    struct wg_blocked *b = arg;
    errno = SENTINEL;
    b->rc = chan_wg_wait(b->wg);
    b->err = errno;
}

Test(keeps_errno, blocked_wait_group_wait_woken_up)
{
    struct wg_blocked b = { .wg = chan_wg_new() };
    cr_assert_not_null(b.wg);
    cr_assert_eq(chan_wg_add(b.wg, 1), 0);
    test_start_blocked(&b.call, wg_wait_blocked, &b);
    cr_assert_eq(EXPECT_KEPT(chan_wg_done(b.wg)), 0);
    test_join(&b.call);
    cr_assert_eq(b.rc, 0);
    cr_assert_eq(b.err, SENTINEL, "the woken waiter's errno is %d", b.err);
    chan_wg_free(b.wg);
}

/* ------------------------------------------------------------ scheduler */

static void nothing(void *arg)
{
    (void)arg;
}

Test(keeps_errno, scheduler_and_its_failures)
{
    chan_sched_t *s = NULL;
    chan_sched_opts_t two = { .threads = 2, .stack_size = 0 };
    FOR_EACH_FAULT(s, s = chan_sched_new(&two), chan_sched_free(s));
    EXPECT_KEPT_VOID(chan_sched_free(s));
    /* Without a thread count it asks sysconf, whose failure it survives. */
    FOR_EACH_FAULT(s, s = chan_sched_new(NULL), chan_sched_free(s));
    int rc = -1;
    /* A task that did start runs nothing: no undo. */
    FOR_EACH_FAULT(rc == 0, rc = chan_go(s, nothing, NULL), (void)0);
    cr_assert_eq(EXPECT_KEPT(chan_go(NULL, nothing, NULL)), -EINVAL);
    cr_assert_eq(EXPECT_KEPT(chan_go(s, NULL, NULL)), -EINVAL);
    cr_assert_null(EXPECT_KEPT(chan_sched_current()));
    EXPECT_KEPT_VOID(chan_yield());
    cr_assert_eq(EXPECT_KEPT(chan_sched_wait(s)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_sched_wait(NULL)), -EINVAL);
    EXPECT_KEPT_VOID(chan_sched_free(s));
    chan_sched_opts_t bad = { .threads = UINT_MAX, .stack_size = 0 };
    cr_assert_null(EXPECT_KEPT(chan_sched_new(&bad)));
}

/*
 * Inside tasks.  With one worker a task never changes threads, so its
 * errno is that worker's: set before a call, it must be the same after,
 * whatever the worker did in between for this task and for others.
 */
struct in_task {
    chan_sched_t *s;
    chan_t *ch;
    int bad;          /* the first check that failed (its line), or 0 */
    int err;          /* errno then */
};

#define TASK_EXPECT_KEPT(st, call)                                            \
    do {                                                                      \
        errno = SENTINEL;                                                     \
        call;                                                                 \
        if (errno != SENTINEL && !(st)->bad) {                                \
            (st)->bad = __LINE__;                                             \
            (st)->err = errno;                                                \
        }                                                                     \
    } while (0)

static void task_sender(void *arg)
{
    struct in_task *st = arg;
    int v = 5;
    TASK_EXPECT_KEPT(st, chan_yield());
    TASK_EXPECT_KEPT(st, (void)chan_send(st->ch, &v));
}

static void task_main_checks(void *arg)
{
    struct in_task *st = arg;
    int v = 0;
    TASK_EXPECT_KEPT(st, (void)chan_sched_current());
    TASK_EXPECT_KEPT(st, chan_yield());
    TASK_EXPECT_KEPT(st, (void)chan_sleep(2 * TEST_MS));
    /* The first timer of the process is started from a task here. */
    TASK_EXPECT_KEPT(st, (void)chan_timedrecv(st->ch, &v, 2 * TEST_MS));
    TASK_EXPECT_KEPT(st, (void)chan_go(NULL, task_sender, st));
    /* Parks until the sender, another task on this worker, sends. */
    TASK_EXPECT_KEPT(st, (void)chan_recv(st->ch, &v));
    if (v != 5 && !st->bad)
        st->bad = __LINE__;
    chan_t *t = chan_after(TEST_MS);
    TASK_EXPECT_KEPT(st, (void)chan_recv(t, NULL));
    chan_release(t);
}

Test(keeps_errno, calls_inside_a_task)
{
    chan_sched_opts_t one = { .threads = 1, .stack_size = 0 };
    struct in_task st = { .s = chan_sched_new(&one),
                          .ch = chan_make(sizeof(int), 0) };
    cr_assert_not_null(st.s);
    cr_assert_not_null(st.ch);
    cr_assert_eq(chan_go(st.s, task_main_checks, &st), 0);
    cr_assert_eq(chan_sched_wait(st.s), 0);
    cr_assert_eq(st.bad, 0, "errno %d after the call at line %d", st.err,
                 st.bad);
    chan_sched_free(st.s);
    chan_release(st.ch);
}

/*
 * A stack that cannot be mapped.  Stacks of 2 MiB are mapped one at a
 * time, so the second task needs a mapping of its own while the first
 * still runs.  The first task, on the only worker, waits until that
 * mapping has failed (the second task then waits for a stack) and checks
 * that its errno, the worker's, is untouched.  When it finishes, the
 * second task gets its stack.
 */
struct no_stack {
    int err;
    atomic_int ran;
};

static void second_task(void *arg)
{
    atomic_store(&((struct no_stack *)arg)->ran, 1);
}

static void first_task(void *arg)
{
    struct no_stack *ns = arg;
    errno = SENTINEL;
    atomic_store(&mmap_failures, 1);
    if (chan_go(NULL, second_task, ns) != 0) {
        ns->err = -1;
        return;
    }
    while (atomic_load(&mmap_failures) > 0)
        chan_yield();
    ns->err = errno;
}

Test(keeps_errno, stack_that_cannot_be_mapped)
{
    chan_sched_opts_t one = { .threads = 1, .stack_size = 2 << 20 };
    chan_sched_t *s = chan_sched_new(&one);
    cr_assert_not_null(s);
    struct no_stack ns = { 0 };
    cr_assert_eq(chan_go(s, first_task, &ns), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(ns.err, SENTINEL, "the worker's errno is %d", ns.err);
    cr_assert_eq(atomic_load(&ns.ran), 1);
    chan_sched_free(s);
}

/* ------------------------------------------------------------ blocking */

static void nothing_blocking(void *arg)
{
    (void)arg;
}

Test(keeps_errno, blocking_call_in_a_thread)
{
    cr_assert_eq(EXPECT_KEPT(chan_blocking(nothing_blocking, NULL)), 0);
    cr_assert_eq(EXPECT_KEPT(chan_blocking(NULL, NULL)), -EINVAL);
}

/*
 * chan_blocking parks the calling task while a helper runs fn, and the
 * task may resume on another thread: what it finds in errno then is that
 * thread's, which the call must not overwrite with what it saw before the
 * park.  With one worker the other thread is the same one, so the test
 * makes another task change the worker's errno during the park: then the
 * calling task must find that value, not its own from before.
 */
struct blocking_park {
    sem_t go;         /* posted by the second task; fn waits for it */
    int err;          /* the first task's errno after the call */
    int rc;
    int faults_bad;   /* the fault run whose errno was wrong, or 0 */
    int faults_err;
    int faults_seen;  /* runs with a fault, of which the first */
    int faults_rc;    /* returned this */
};

static void wait_for_go(void *arg)
{
    test_sem_wait(&((struct blocking_park *)arg)->go);
}

static void change_errno_then_go(void *arg)
{
    errno = SCRIBBLE + 1;
    test_sem_post(&((struct blocking_park *)arg)->go);
}

static void blocking_in_task(void *arg)
{
    struct blocking_park *bp = arg;
    /* Each failure point of starting a helper: the call fails before it
     * parks, so errno must be what it was. */
    for (int k = 1;; k++) {
        fault_arm(k);
        errno = SENTINEL;
        int rc = chan_blocking(nothing_blocking, NULL);
        int e = errno;
        int fired = fault_disarm();
        if (e != SENTINEL && !bp->faults_bad) {
            bp->faults_bad = k;
            bp->faults_err = e;
        }
        if (!fired)
            break;
        if (bp->faults_seen++ == 0)
            bp->faults_rc = rc;
    }
    errno = SENTINEL;
    if (chan_go(NULL, change_errno_then_go, bp) != 0) {
        bp->rc = -1;
        return;
    }
    bp->rc = chan_blocking(wait_for_go, bp);
    bp->err = errno;
}

Test(keeps_errno, blocking_call_in_a_task)
{
    chan_sched_opts_t one = { .threads = 1, .stack_size = 0 };
    chan_sched_t *s = chan_sched_new(&one);
    cr_assert_not_null(s);
    struct blocking_park bp = { .rc = 1 };
    test_sem_init(&bp.go, 0);
    cr_assert_eq(chan_go(s, blocking_in_task, &bp), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(bp.faults_bad, 0, "errno %d with wrapped call %d failing",
                 bp.faults_err, bp.faults_bad);
    cr_assert_gt(bp.faults_seen, 0, "starting a helper made no wrapped call");
    cr_assert_eq(bp.faults_rc, -EAGAIN);
    cr_assert_eq(bp.rc, 0);
    cr_assert_eq(bp.err, SCRIBBLE + 1,
                 "errno %d after the park, not the thread's", bp.err);
    test_sem_destroy(&bp.go);
    chan_sched_free(s);
}

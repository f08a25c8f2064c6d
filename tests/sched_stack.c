/*
 * sched_stack.c - tests of task stacks: overflows end the program with a
 * fault instead of corrupting a neighbouring stack, and the fault lands in
 * the guard region below the stack; the stack size asked for is what a
 * task gets; sizes that cannot be mapped are refused; stacks that cannot
 * be mapped later neither hang the program nor go unreported.
 *
 * Most cases run in a child forked before any thread exists, with its
 * standard error read through a pipe.  A child that overflows must die: of
 * SIGSEGV or SIGBUS, or, in a sanitizer build, by the sanitizer's report
 * of that fault and its non-zero exit.  Returning normally is a failure.
 *
 * Failing mappings.  This program defines mmap, which the library's calls
 * then reach instead of the C library's (the executable comes first in
 * symbol lookup; with a static library the linker takes this definition).
 * It forwards every call to the kernel, except that while fail_stacks is
 * set it refuses task stacks (MAP_STACK mappings, which only the library
 * makes here) with ENOMEM.
 */
#include "util.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* ------------------------------------------------------------ mmap */

#if defined(__linux__) && defined(SYS_mmap) && \
    (defined(__x86_64__) || defined(__aarch64__))
#define CAN_FAIL_MMAP 1

static atomic_int fail_stacks;
static atomic_long refused_maps;

/* Not instrumented: the C library and the sanitizers' own start-up may
 * map memory before ThreadSanitizer can run instrumented code. */
#if SANITIZED
__attribute__((no_sanitize("thread", "address")))
#endif
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if ((flags & MAP_STACK) && atomic_load(&fail_stacks)) {
        atomic_fetch_add(&refused_maps, 1);
        errno = ENOMEM;
        return MAP_FAILED;
    }
    /* On these two, the system call takes the offset in bytes. */
    long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    return r == -1 ? MAP_FAILED : (void *)r;
}
#else
#define CAN_FAIL_MMAP 0
static atomic_int fail_stacks;
static atomic_long refused_maps;
#endif

TestSuite(sched_stack, .timeout = TEST_TIMEOUT_S);

/* ------------------------------------------------------------ children */

/* The child's exit status when the overflowing task returned. */
#define CHILD_RETURNED 50
/* ... and when it could not even start the task. */
#define CHILD_NO_TASK 51

/* What became of a child: its wait status and what it wrote to stderr. */
struct outcome {
    int status;
    char err[16384];
    size_t nerr;
};

/*
 * Runs body in a forked child whose standard error goes to a pipe, and
 * collects its end.  The child exits with body's return value.
 */
static void run_child(int (*body)(void *), void *arg, struct outcome *o)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(fds[0]);
        if (dup2(fds[1], 2) != 2)
            _exit(CHILD_NO_TASK);
        close(fds[1]);
        /* A dying child writes no core file, and a stuck one dies of
         * SIGALRM long before the test's own timeout. */
        struct rlimit no_core = { 0, 0 };
        (void)setrlimit(RLIMIT_CORE, &no_core);
        alarm(TEST_TIMEOUT_S / 2);
        _exit(body(arg));
    }
    close(fds[1]);
    o->nerr = 0;
    for (;;) {
        ssize_t k = read(fds[0], o->err + o->nerr, sizeof o->err - 1 - o->nerr);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        o->nerr += (size_t)k;
        if (o->nerr == sizeof o->err - 1) {
            /* Keep draining, so that the child never blocks on a write. */
            char sink[4096];
            while (read(fds[0], sink, sizeof sink) > 0)
                ;
            break;
        }
    }
    o->err[o->nerr] = '\0';
    close(fds[0]);
    cr_assert_eq(waitpid(pid, &o->status, 0), pid);
}

/* Asserts that the child died of its overflow (see the top of the file). */
static void assert_died_of_fault(const struct outcome *o, const char *what)
{
    int st = o->status;
    if (WIFSIGNALED(st)) {
        cr_assert(WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGBUS,
                  "%s: killed by signal %d, not SIGSEGV or SIGBUS; stderr: %s",
                  what, WTERMSIG(st), o->err);
        return;
    }
    cr_assert(WIFEXITED(st));
    cr_assert_neq(WEXITSTATUS(st), CHILD_RETURNED,
                  "%s: the task returned normally; stderr: %s", what, o->err);
    cr_assert_neq(WEXITSTATUS(st), CHILD_NO_TASK,
                  "%s: the task could not be started; stderr: %s", what,
                  o->err);
    /* Only a sanitizer turns the fault into an exit, after its report. */
    cr_assert(SANITIZED && WEXITSTATUS(st) != 0 &&
                  strstr(o->err, "Sanitizer") != NULL &&
                  (strstr(o->err, "SEGV") || strstr(o->err, "stack-overflow") ||
                   strstr(o->err, "BUS")),
              "%s: exit %d without a fault; stderr: %s", what,
              WEXITSTATUS(st), o->err);
}

static void count_up(void *arg)
{
    atomic_fetch_add((atomic_long *)arg, 1);
}

static void park_on_gate(void *gate)
{
    (void)chan_recv(gate, NULL);
}

struct overflow {
    void (*fn)(void);
    chan_t *gate;
};

static void overflow_task(void *arg)
{
    struct overflow *ov = arg;
    ov->fn();
    chan_close(ov->gate); /* only if fn returned */
}

/*
 * Runs fn as a task on a one-worker scheduler with stacks of stack_size
 * bytes (0: the default).  Two other tasks stay parked meanwhile, so fn
 * runs on a stack in the middle of a batch, right above another stack
 * (mapped, cached for a later task), into which an overflow that jumped
 * the guard would write without a fault.  Plain builds take the default
 * action of SIGSEGV and SIGBUS, whatever the test runner installed;
 * sanitizer builds keep the sanitizer's handlers, which report the fault.
 */
static int overflow_child(void (*fn)(void), size_t stack_size)
{
#if !SANITIZED
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
#endif
    chan_sched_opts_t o = { .threads = 1, .stack_size = stack_size };
    chan_sched_t *s = chan_sched_new(&o);
    struct overflow ov = { fn, chan_make(0, 0) };
    if (!s || !ov.gate || chan_go(s, park_on_gate, ov.gate) != 0 ||
        chan_go(s, park_on_gate, ov.gate) != 0 ||
        chan_go(s, overflow_task, &ov) != 0)
        return CHILD_NO_TASK;
    chan_sched_free(s);
    chan_release(ov.gate);
    return CHILD_RETURNED;
}

/* The library's default stack in plain builds; sanitizer builds default
 * to larger stacks, so they ask for this size. */
#define STACK_64K (SANITIZED ? (size_t)64 * 1024 : 0)

/* ------------------------------------------------------------ a large frame */

/*
 * 60 KiB of locals fit in a 64 KiB stack, but the printf below them does
 * not: on an unbuffered stream glibc's printf puts an 8 KiB buffer on the
 * stack, a frame that jumps a single guard page.
 */
__attribute__((noinline)) static void large_locals_and_printf(void)
{
    volatile char buf[60 * 1024];
    memset((char *)buf, 'x', sizeof buf);
    printf("%c%c %p %d %s\n", buf[0], buf[sizeof buf - 1], (void *)buf, 42,
           "in a task");
}

static int large_locals_child(void *arg)
{
    (void)arg;
    /* stdout into the void, unbuffered like stderr */
    if (!freopen("/dev/null", "w", stdout))
        return CHILD_NO_TASK;
    setvbuf(stdout, NULL, _IONBF, 0);
    return overflow_child(large_locals_and_printf, STACK_64K);
}

Test(sched_stack, large_locals_and_printf_fault)
{
    struct outcome o;
    run_child(large_locals_child, NULL, &o);
    assert_died_of_fault(&o, "60 KiB of locals and printf");
}

/* ------------------------------------------------------------ a huge frame */

/*
 * A frame larger than any guard, compiled as -fstack-clash-protection
 * compiles it: the prologue touches the new frame a page (on AArch64, at
 * most 64 KiB) at a time, downwards, so the first touch below the stack
 * lands in the guard.  Without the probes the frame would reach past the
 * guard, wherever its first store went.
 */
#if defined(__GNUC__) && !defined(__clang__) && \
    (defined(__x86_64__) || defined(__aarch64__))
#define HAVE_CLASH_ATTR 1
__attribute__((noinline, optimize("stack-clash-protection")))
static void huge_frame_probed(void)
{
    volatile char buf[512 * 1024];
    buf[0] = 1;
    buf[sizeof buf - 1] = buf[0];
}
#else
#define HAVE_CLASH_ATTR 0
#endif

static int huge_frame_child(void *arg)
{
    (void)arg;
#if HAVE_CLASH_ATTR
    return overflow_child(huge_frame_probed, STACK_64K);
#else
    return CHILD_NO_TASK;
#endif
}

Test(sched_stack, huge_frame_with_clash_protection_faults)
{
    if (!HAVE_CLASH_ATTR)
        cr_skip_test("this compiler cannot probe one function's frame");
    struct outcome o;
    run_child(huge_frame_child, NULL, &o);
    assert_died_of_fault(&o, "a 512 KiB frame, probed");
}

/* ------------------------------------------------------------ recursion */

/* Far more than any stack holds; volatile, so the compiler cannot see
 * that the recursion never ends in practice. */
static volatile long max_depth = 1L << 40;

__attribute__((noinline)) static long recurse(long depth)
{
    volatile char buf[256];
    if (depth > max_depth)
        return 0;
    buf[0] = (char)depth;
    buf[255] = (char)depth;
    return recurse(depth + 1) + buf[0] + buf[255];
}

static void deep_recursion(void)
{
    (void)recurse(0);
}

static int recursion_child(void *arg)
{
    (void)arg;
    return overflow_child(deep_recursion, STACK_64K);
}

Test(sched_stack, deep_recursion_faults)
{
    struct outcome o;
    run_child(recursion_child, NULL, &o);
    assert_died_of_fault(&o, "deep recursion");
}

/* ------------------------------------------------------------ sizes */

Test(sched_stack, new_refuses_sizes_it_cannot_map)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t absurd[] = { (size_t)1 << 40, SIZE_MAX / 2, SIZE_MAX,
                        SIZE_MAX - page + 2, /* rounds up past SIZE_MAX */
                        ((size_t)1 << 30) + 1 };
    for (size_t i = 0; i < sizeof absurd / sizeof absurd[0]; i++) {
        if (sizeof(size_t) < 8 && absurd[i] == ((size_t)1 << 30) + 1)
            continue;
        chan_sched_opts_t o = { .threads = 1, .stack_size = absurd[i] };
        cr_assert_null(chan_sched_new(&o), "stack_size %zu accepted",
                       absurd[i]);
    }
    /* The largest size allowed works (only the pages touched cost). */
    chan_sched_opts_t o = { .threads = 1,
                            .stack_size = sizeof(size_t) >= 8
                                              ? (size_t)1 << 30
                                              : (size_t)256 << 20 };
    chan_sched_t *s = chan_sched_new(&o);
    cr_assert_not_null(s);
    atomic_long n = 0;
    cr_assert_eq(chan_go(s, count_up, &n), 0);
    chan_sched_free(s);
    cr_assert_eq(atomic_load(&n), 1);
}

Test(sched_stack, new_fails_when_no_stack_can_be_mapped)
{
    if (!CAN_FAIL_MMAP)
        cr_skip_test("mmap cannot be made to fail on this system");
    atomic_store(&fail_stacks, 1);
    chan_sched_t *s = chan_sched_new(NULL);
    atomic_store(&fail_stacks, 0);
    cr_assert_null(s);
    cr_assert_gt(atomic_load(&refused_maps), 0);
    s = chan_sched_new(NULL);
    cr_assert_not_null(s);
    chan_sched_free(s);
}

/* ------------------------------------------------------------ famine */

/*
 * A one-worker scheduler whose only stack is held by a parked task
 * ("holder") while stack mappings fail: tasks started then find no stack.
 */
struct famine {
    chan_t *gate;     /* the holder waits for it to close */
    chan_t *started;  /* capacity 1: the holder runs */
    chan_t *ran;      /* a waiting task ran (capacity: every task) */
    atomic_long runs;
};

/* The message the library writes once when it cannot map a stack. */
#define NO_STACK_MSG "libchan: cannot map a task stack of "

enum {
    FAMINE_OK = 0,
    FAMINE_NO_SCHED = 60,     /* chan_sched_new failed before the famine */
    FAMINE_HOLDER = 61,       /* the holder could not start */
    FAMINE_NEVER_REFUSED = 62,/* chan_go kept accepting tasks */
    FAMINE_BAD_RC = 63,       /* chan_go failed with another code */
    FAMINE_RAN_EARLY = 64,    /* a task ran without a stack to run on */
    FAMINE_NOT_BACK = 65,     /* memory came back, the tasks did not run */
    FAMINE_GO_AFTER = 66,     /* chan_go failed once memory came back */
    FAMINE_LOST = 67,         /* not every accepted task ran */
};

#define FAMINE_MAX_TASKS 1000

static void famine_holder(void *arg)
{
    struct famine *f = arg;
    (void)chan_send(f->started, NULL);
    (void)chan_recv(f->gate, NULL);
}

static void famine_runner(void *arg)
{
    struct famine *f = arg;
    atomic_fetch_add(&f->runs, 1);
    (void)chan_send(f->ran, NULL);
}

static int famine_child(void *arg)
{
    int comes_back = *(int *)arg;
    chan_sched_opts_t o = { .threads = 1, .stack_size = 0 };
    chan_sched_t *s = chan_sched_new(&o);
    struct famine f = { .gate = chan_make(0, 0),
                        .started = chan_make(0, 1),
                        .ran = chan_make(0, FAMINE_MAX_TASKS + 1) };
    if (!s || !f.gate || !f.started || !f.ran)
        return FAMINE_NO_SCHED;
    atomic_store(&fail_stacks, 1);
    /* The holder runs on the stack chan_sched_new mapped. */
    if (chan_go(s, famine_holder, &f) != 0 ||
        chan_recv(f.started, NULL) != 0)
        return FAMINE_HOLDER;
    /* Until the worker has failed to find a stack for one of them, new
     * tasks are accepted; then chan_go refuses them. */
    long accepted = 0;
    int rc;
    int64_t deadline = test_now_ns() + 20000 * TEST_MS;
    while ((rc = chan_go(s, famine_runner, &f)) == 0) {
        if (++accepted == FAMINE_MAX_TASKS || test_now_ns() > deadline)
            return FAMINE_NEVER_REFUSED;
        (void)chan_sleep(TEST_MS);
    }
    if (rc != -ENOMEM)
        return FAMINE_BAD_RC;
    if (atomic_load(&f.runs) != 0)
        return FAMINE_RAN_EARLY;
    if (comes_back) {
        /* The waiting tasks get new stacks while the holder keeps its
         * own, and chan_go works again. */
        atomic_store(&fail_stacks, 0);
        for (long i = 0; i < accepted; i++)
            if (chan_timedrecv(f.ran, NULL, 20000 * TEST_MS) != 0)
                return FAMINE_NOT_BACK;
        if (chan_go(s, famine_runner, &f) != 0)
            return FAMINE_GO_AFTER;
        accepted++;
    }
    /* For good or not: once the holder returns, the waiting tasks run on
     * its stack, one after another, and the wait ends. */
    chan_close(f.gate);
    chan_sched_free(s);
    if (atomic_load(&f.runs) != accepted)
        return FAMINE_LOST;
    chan_release(f.gate);
    chan_release(f.started);
    chan_release(f.ran);
    return FAMINE_OK;
}

static void famine_test(int comes_back)
{
    if (!CAN_FAIL_MMAP)
        cr_skip_test("mmap cannot be made to fail on this system");
    struct outcome o;
    run_child(famine_child, &comes_back, &o);
    cr_assert(WIFEXITED(o.status), "the child died of signal %d%s; stderr: %s",
              WIFSIGNALED(o.status) ? WTERMSIG(o.status) : 0,
              WIFSIGNALED(o.status) && WTERMSIG(o.status) == SIGALRM
                  ? " (it hung)" : "",
              o.err);
    cr_assert_eq(WEXITSTATUS(o.status), FAMINE_OK,
                 "exit %d (see enum famine); stderr: %s",
                 WEXITSTATUS(o.status), o.err);
    const char *msg = strstr(o.err, NO_STACK_MSG);
    cr_assert_not_null(msg, "no message on stderr: %s", o.err);
    cr_assert_null(strstr(msg + 1, NO_STACK_MSG), "more than one message: %s",
                   o.err);
    cr_assert_not_null(strstr(msg, " bytes (ENOMEM); retrying\n"),
                       "stderr: %s", o.err);
}

Test(sched_stack, stacks_that_stay_gone_end_and_say_so)
{
    famine_test(0);
}

Test(sched_stack, stacks_that_come_back_run_the_waiting_tasks)
{
    famine_test(1);
}
/* ------------------------------------------------------------ guard page */

static void *guard_lo, *guard_hi; /* where the fault must land */

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    char *a = si->si_addr;
    _exit(a >= (char *)guard_lo && a < (char *)guard_hi ? 42 : 43);
}


__attribute__((noinline)) static long recurse_512(long depth)
{
    volatile char buf[512];
    if (depth > max_depth)
        return 0;
    buf[0] = (char)depth;
    buf[511] = (char)depth;
    return recurse_512(depth + 1) + buf[0] + buf[511];
}

static char altstack[64 * 1024];

static void overflow_in_guard_task(void *arg)
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
    recurse_512(0);
    _exit(45);
}

Test(sched_stack, stack_overflow_hits_the_guard_page)
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
        if (!s || chan_go(s, overflow_in_guard_task, &size) != 0)
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

Test(sched_stack, stack_size_option_is_honoured)
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


/* A burst of tasks that each need a stack of their own (all blocked at
 * once), then finish: once the workers are idle, the memory of the stacks
 * beyond the caches goes back to the kernel (their pages are no longer
 * resident), and the next burst finds the mappings again. */
enum { BURST = 600, BURST_TOUCH = 16 * 1024 };

struct burst {
    chan_t *gate;
    chan_wg_t *started;
    char *page[BURST];
    atomic_int bad;
};

struct burst_arg {
    struct burst *b;
    int i;
};

static void burst_body(void *arg)
{
    struct burst_arg *a = arg;
    volatile char deep[BURST_TOUCH];
    for (size_t k = 0; k < sizeof deep; k += 512)
        deep[k] = 1;
    long page = sysconf(_SC_PAGESIZE);
    a->b->page[a->i] =
        (char *)((uintptr_t)&deep[0] & ~(uintptr_t)(page - 1));
    chan_wg_done(a->b->started);
    if (chan_recv(a->b->gate, NULL) != -EPIPE)
        atomic_store(&a->b->bad, 1);
}

static int burst_resident(struct burst *b)
{
    long page = sysconf(_SC_PAGESIZE);
    int n = 0;
    for (int i = 0; i < BURST; i++) {
        unsigned char v = 0;
        cr_assert_eq(mincore(b->page[i], (size_t)page, &v), 0);
        n += v & 1;
    }
    return n;
}

static int page_cmp(const void *x, const void *y)
{
    uintptr_t a = (uintptr_t)*(char *const *)x, b = (uintptr_t)*(char *const *)y;
    return a < b ? -1 : a > b;
}

/* How many tasks of the burst share a stack page with another: none may
 * (the stacks of one batch are spread over the worker's cache, the shared
 * cache and the pool, from which the other worker takes them). */
static int burst_shared(struct burst *b)
{
    static char *v[BURST];
    memcpy(v, b->page, sizeof v);
    qsort(v, BURST, sizeof v[0], page_cmp);
    int n = 0;
    for (int i = 1; i < BURST; i++)
        n += v[i] == v[i - 1];
    return n;
}

static void burst_run(chan_sched_t *s, struct burst *b, struct burst_arg *a)
{
    b->gate = chan_make(0, 0);
    b->started = chan_wg_new();
    cr_assert(b->gate && b->started);
    cr_assert_eq(chan_wg_add(b->started, BURST), 0);
    for (int i = 0; i < BURST; i++) {
        a[i] = (struct burst_arg){ b, i };
        cr_assert_eq(chan_go(s, burst_body, &a[i]), 0);
    }
    cr_assert_eq(chan_wg_wait(b->started), 0);
    cr_assert_eq(burst_shared(b), 0);
    cr_assert_eq(burst_resident(b), BURST);
    cr_assert_eq(chan_close(b->gate), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(atomic_load(&b->bad), 0);
    chan_release(b->gate);
    chan_wg_free(b->started);
}

Test(sched_stack, memory_of_finished_stacks_goes_back_when_idle)
{
    chan_sched_t *s = test_sched_make(2);
    static struct burst b;
    static struct burst_arg a[BURST];
    for (int round = 0; round < 2; round++) {
        burst_run(s, &b, a);
        /* At most the caches (16 per worker, 64 shared) stay resident;
         * the idle workers discard the rest soon after the burst. */
        int64_t deadline = test_now_ns() + 10000 * TEST_MS;
        int left;
        while ((left = burst_resident(&b)) > 16 * 2 + 64 &&
               test_now_ns() < deadline)
            test_sleep_ns(TEST_MS);
        cr_assert_leq(left, 16 * 2 + 64, "round %d: %d of %d stacks resident",
                      round, left, BURST);
    }
    chan_sched_free(s);
}

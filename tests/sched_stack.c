/*
 * sched_stack.c - tests of task stacks: overflows end the program with a
 * fault instead of corrupting a neighbouring stack.
 *
 * Every case runs in a child forked before any thread exists, with its
 * standard error read through a pipe.  A child that overflows must die: of
 * SIGSEGV or SIGBUS, or, in a sanitizer build, by the sanitizer's report
 * of that fault and its non-zero exit.  Returning normally is a failure.
 */
#include "util.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>

TestSuite(sched_stack, .timeout = TEST_TIMEOUT_S);

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
        /* A dying child writes no core file. */
        struct rlimit no_core = { 0, 0 };
        (void)setrlimit(RLIMIT_CORE, &no_core);
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

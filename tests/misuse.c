/*
 * misuse.c - tests of the mistakes that the library names: chan_elem_size
 * and the typed CHAN_SEND / CHAN_RECV family that refuse a value of the
 * wrong size, and, in forked children, use after the last release, a
 * second last release and a last release while a thread or task is blocked
 * on the channel, each of which must abort with a message naming the
 * function and the mistake.
 *
 * The use-after-release tests read freed memory on purpose.  Under
 * AddressSanitizer the library leaves the report to the sanitizer, and
 * ThreadSanitizer reports it too, so there they check that the child dies
 * with the sanitizer's report.
 */
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "util.h"

TestSuite(misuse, .timeout = TEST_TIMEOUT_S);

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* ------------------------------------------------------------------ */
/* chan_elem_size and the typed forms                                 */

Test(misuse, elem_size)
{
    cr_assert_eq(chan_elem_size(NULL), 0);
    size_t sizes[] = { 0, 1, 3, sizeof(int), sizeof(int64_t), 1000 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (size_t cap = 0; cap < 3; cap++) {
            chan_t *ch = chan_make(sizes[i], cap);
            cr_assert_not_null(ch);
            cr_assert_eq(chan_elem_size(ch), sizes[i]);
            chan_release(ch);
        }
    }
}

struct point {
    int x, y;
};

Test(misuse, typed_matching_sizes)
{
    chan_t *ch = chan_make(sizeof(int), 4);
    int x = 5, got = 0;
    cr_assert_eq(CHAN_SEND(ch, x), 0);
    cr_assert_eq(CHAN_TRYSEND(ch, x), 0);
    int arr[2] = { 7, 8 }, k = 0;
    cr_assert_eq(CHAN_SEND(ch, arr[k++]), 0);
    cr_assert_eq(k, 1, "the value was evaluated more than once");
    cr_assert_eq(chan_len(ch), 3);
    cr_assert_eq(CHAN_RECV(ch, &got), 0);
    cr_assert_eq(got, 5);
    cr_assert_eq(CHAN_TRYRECV(ch, &got), 0);
    cr_assert_eq(got, 5);
    cr_assert_eq(CHAN_RECV(ch, &got), 0);
    cr_assert_eq(got, 7);
    cr_assert_eq(CHAN_TRYRECV(ch, &got), -EAGAIN);
#if defined(__GNUC__) || defined(__clang__)
    /* Any expression, copied first (GNU C). */
    cr_assert_eq(CHAN_SEND(ch, 40 + 2), 0);
    cr_assert_eq(CHAN_RECV(ch, &got), 0);
    cr_assert_eq(got, 42);
#endif
    chan_release(ch);

    chan_t *pc = chan_make(sizeof(struct point), 0);
    struct point p = { 1, 2 }, q = { 0, 0 };
    cr_assert_eq(CHAN_TRYSEND(pc, p), -EAGAIN); /* nobody receives */
    cr_assert_eq(chan_close(pc), 0);
    cr_assert_eq(CHAN_SEND(pc, p), -EPIPE);
    cr_assert_eq(CHAN_RECV(pc, &q), -EPIPE);
    chan_release(pc);
}

Test(misuse, typed_mismatch_is_refused)
{
    chan_t *ch = chan_make(sizeof(int64_t), 4);
    int small = 3;
    int64_t big = 9, got = -1;
    cr_assert_eq(CHAN_SEND(ch, small), -EINVAL);
    cr_assert_eq(CHAN_TRYSEND(ch, small), -EINVAL);
    cr_assert_eq(chan_len(ch), 0, "a refused send sent something");
    cr_assert_eq(CHAN_SEND(ch, big), 0);
    int small_got = -1;
    cr_assert_eq(CHAN_RECV(ch, &small_got), -EINVAL);
    cr_assert_eq(CHAN_TRYRECV(ch, &small_got), -EINVAL);
    cr_assert_eq(small_got, -1, "a refused receive wrote");
    cr_assert_eq(chan_len(ch), 1, "a refused receive took the value");
    struct point p = { 1, 2 };
    cr_assert_eq(sizeof p, sizeof big); /* same size: accepted */
    cr_assert_eq(CHAN_RECV(ch, &got), 0);
    cr_assert_eq(got, 9);
    /* Mismatch on an empty channel: -EINVAL, not -EAGAIN or a block. */
    cr_assert_eq(CHAN_RECV(ch, &small_got), -EINVAL);
    char c = 'c';
    cr_assert_eq(CHAN_SEND(ch, c), -EINVAL);
    cr_assert_eq(chan_len(ch), 0);
    /* NULL channel. */
    chan_t *none = NULL;
    cr_assert_eq(CHAN_SEND(none, big), -EINVAL);
    cr_assert_eq(CHAN_RECV(none, &got), -EINVAL);
    cr_assert_eq(CHAN_TRYSEND(none, big), -EINVAL);
    cr_assert_eq(CHAN_TRYRECV(none, &got), -EINVAL);
    chan_release(ch);

    /* Unbuffered: a refused send must not block either. */
    chan_t *u = chan_make(sizeof(short), 0);
    cr_assert_eq(CHAN_SEND(u, big), -EINVAL);
    cr_assert_eq(CHAN_RECV(u, &got), -EINVAL);
    chan_release(u);
}

/* ------------------------------------------------------------------ */
/* Misuse in a forked child                                           */

struct died {
    int signaled, sig, exited, status;
    char err[4096];
};

/* Runs fn(arg) in a child whose standard error goes into d->err. */
static void run_child(void (*fn)(void *), void *arg, struct died *d)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        close(p[1]);
        /* A mistake that goes unnoticed may hang: SIGALRM ends the child
         * then, which fails the test, rather than outliving it. */
        alarm(30);
        fn(arg);
        _exit(0); /* not reported: the test fails on this */
    }
    close(p[1]);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(p[0], d->err + n, sizeof d->err - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == sizeof d->err - 1)
            break;
    }
    d->err[n] = '\0';
    close(p[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
    d->signaled = WIFSIGNALED(st);
    d->sig = d->signaled ? WTERMSIG(st) : 0;
    d->exited = WIFEXITED(st);
    d->status = d->exited ? WEXITSTATUS(st) : 0;
}

/* The child must die of SIGABRT, saying want. */
static void expect_abort(void (*fn)(void *), void *arg, const char *want)
{
    struct died d;
    run_child(fn, arg, &d);
    cr_assert(d.signaled && d.sig == SIGABRT,
              "child did not abort (exited %d, status %d, signal %d); "
              "stderr: %s", d.exited, d.status, d.sig, d.err);
    cr_assert_not_null(strstr(d.err, want), "stderr '%s' lacks '%s'", d.err,
                       want);
}

/*
 * A use of freed memory: the library's message.  Under AddressSanitizer
 * the sanitizer's report instead; under ThreadSanitizer, which reports the
 * freed memory too and then, depending on halt_on_error, stops the child
 * or lets the library abort it, either.
 */
static void expect_freed_use(void (*fn)(void *), void *arg, const char *want)
{
    if (!UNDER_ASAN && !UNDER_TSAN) {
        expect_abort(fn, arg, want);
        return;
    }
    struct died d;
    run_child(fn, arg, &d);
    cr_assert(d.signaled ? d.sig != SIGALRM : d.exited && d.status != 0,
              "child did not die of the mistake (signal %d, status %d); "
              "stderr: %s", d.sig, d.status, d.err);
    const char *report = UNDER_ASAN ? "AddressSanitizer: heap-use-after-free"
                                    : "ThreadSanitizer: heap-use-after-free";
    cr_assert(strstr(d.err, report) || (!UNDER_ASAN && strstr(d.err, want)),
              "neither '%s' nor '%s' in: %s", report, want, d.err);
}

#define USED_AFTER(fn) "libchan: " fn ": channel used after its last chan_release"

/* Which operation a child does on a released channel. */
enum after_op {
    A_SEND, A_RECV, A_TRYSEND, A_TRYRECV, A_TIMEDSEND, A_TIMEDRECV, A_CLOSE,
    A_SELECT, A_POLLFD, A_RETAIN, A_RELEASE
};

struct after {
    enum after_op op;
    size_t cap;
    int closed_first;  /* close before the release */
    int pollfd_first;  /* give it a pollfd before the release */
};

static void after_release(void *arg)
{
    struct after *a = arg;
    chan_t *ch = chan_make(sizeof(int), a->cap);
    if (a->closed_first)
        chan_close(ch);
    if (a->pollfd_first)
        chan_pollfd(ch, POLLIN);
    chan_release(ch);
    int v = 1;
    chan_case_t c = CHAN_RECV_CASE(ch, &v);
    switch (a->op) {
    case A_SEND: chan_send(ch, &v); break;
    case A_RECV: chan_recv(ch, &v); break;
    case A_TRYSEND: chan_trysend(ch, &v); break;
    case A_TRYRECV: chan_tryrecv(ch, &v); break;
    case A_TIMEDSEND: chan_timedsend(ch, &v, 1000 * TEST_MS); break;
    case A_TIMEDRECV: chan_timedrecv(ch, &v, 1000 * TEST_MS); break;
    case A_CLOSE: chan_close(ch); break;
    case A_SELECT: chan_select(&c, 1, 0); break;
    case A_POLLFD: chan_pollfd(ch, POLLOUT); break;
    case A_RETAIN: chan_retain(ch); break;
    case A_RELEASE: chan_release(ch); break;
    }
}

static const char *after_msg(enum after_op op)
{
    switch (op) {
    case A_SEND: return USED_AFTER("chan_send");
    case A_RECV: return USED_AFTER("chan_recv");
    case A_TRYSEND: return USED_AFTER("chan_trysend");
    case A_TRYRECV: return USED_AFTER("chan_tryrecv");
    case A_TIMEDSEND: return USED_AFTER("chan_timedsend");
    case A_TIMEDRECV: return USED_AFTER("chan_timedrecv");
    case A_CLOSE: return USED_AFTER("chan_close");
    case A_SELECT: return USED_AFTER("chan_select");
    case A_POLLFD: return USED_AFTER("chan_pollfd");
    case A_RETAIN: return USED_AFTER("chan_retain");
    case A_RELEASE:
        return "libchan: chan_release: channel released again after its "
               "last chan_release";
    }
    return "?";
}

/* Every operation, on unbuffered, capacity-1 and buffered channels (whose
 * lock-free path must notice too), open or closed before the release.
 * Under a sanitizer, whose report takes long to write, fewer of them: its
 * check of the freed memory does not depend on the channel's kind. */
static void each_op_after_release(enum after_op first, enum after_op last)
{
    size_t caps[] = { 0, 4, 1 };
    int kinds = UNDER_ASAN || UNDER_TSAN ? 1 : 3;
    int states = UNDER_ASAN || UNDER_TSAN ? 1 : 2;
    for (int op = first; op <= (int)last; op++)
        for (int k = 0; k < kinds; k++)
            for (int closed = 0; closed < states; closed++) {
                struct after a = { (enum after_op)op, caps[k], closed,
                                   op == A_SEND && k == 1 };
                expect_freed_use(after_release, &a, after_msg(a.op));
            }
}

Test(misuse, send_recv_after_last_release)
{
    each_op_after_release(A_SEND, A_TIMEDRECV);
}

Test(misuse, close_select_pollfd_after_last_release)
{
    each_op_after_release(A_CLOSE, A_POLLFD);
}

Test(misuse, retain_and_double_release)
{
    each_op_after_release(A_RETAIN, A_RELEASE);
}

/* A correct program is not reported: the child exits 0 without a word. */
static void correct_use(void *arg)
{
    (void)arg;
    for (size_t cap = 0; cap < 4; cap++) {
        chan_t *ch = chan_make(sizeof(int), cap);
        chan_retain(ch);
        int v = 1;
        if (cap)
            chan_send(ch, &v);
        chan_close(ch);
        chan_release(ch);
        chan_release(ch);
    }
    fputs("fine", stderr);
}

Test(misuse, correct_program_not_reported)
{
    struct died d;
    run_child(correct_use, NULL, &d);
    cr_assert(d.exited && d.status == 0, "child died: %s", d.err);
    cr_assert(strcmp(d.err, "fine") == 0, "stderr: %s", d.err);
}

/* The last release while a thread or task is blocked on the channel. */
struct blocked {
    int use_task;
    int is_send;
};

struct blocked_op {
    chan_t *ch;
    int is_send;
};

static void *blocked_thread(void *arg)
{
    struct blocked_op *b = arg;
    int v = 0;
    if (b->is_send)
        chan_send(b->ch, &v);
    else
        chan_recv(b->ch, &v);
    return NULL;
}

static void blocked_task(void *arg)
{
    (void)blocked_thread(arg);
}

static void release_while_blocked(void *arg)
{
    struct blocked *b = arg;
    chan_t *ch = chan_make(sizeof(int), 0);
    /* A waiting sender makes the channel ready to receive, a waiting
     * receiver ready to send: the pollfd says when the waiter is queued. */
    int fd = chan_pollfd(ch, b->is_send ? POLLIN : POLLOUT);
    struct blocked_op op = { ch, b->is_send };
    pthread_t t;
    if (b->use_task) {
        chan_sched_opts_t o = { .threads = 1 };
        chan_sched_t *s = chan_sched_new(&o);
        if (!s || chan_go(s, blocked_task, &op) != 0)
            _exit(3);
    } else if (pthread_create(&t, NULL, blocked_thread, &op) != 0) {
        _exit(3);
    }
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (fd < 0 || poll(&p, 1, 10000) != 1)
        _exit(4);
    chan_release(ch);
}

Test(misuse, last_release_with_a_blocked_thread_or_task)
{
    const char *want = "libchan: chan_release: last reference released "
                       "while a thread or task is blocked on the channel";
    for (int task = 0; task < 2; task++)
        for (int send = 0; send < 2; send++) {
            struct blocked b = { task, send };
            expect_abort(release_while_blocked, &b, want);
        }
}

/*
 * blocking.c - tests of chan_blocking: inline in a plain thread, on a helper
 * in a task while the task's one worker runs other tasks, a pool that grows
 * to its limit and then queues, helpers reused and retired when idle, the
 * -EAGAIN of a pool that cannot start a thread, and a fresh pool after
 * fork().
 *
 * Every wait of the test thread on a task or a helper has a deadline, so a
 * broken pool fails a test instead of hanging it.  Each test runs in its
 * own process, so a test that sets CHAN_BLOCKING_THREADS or
 * CHAN_BLOCKING_IDLE_MS before its first call gets a pool configured by
 * them.
 */
#include "util.h"

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

TestSuite(blocking, .timeout = TEST_TIMEOUT_S);


/* How long the test thread waits for anything before failing. */
#define WAIT_MS 30000

/* sem_timedwait for up to ms milliseconds; 0, or -ETIMEDOUT. */
static int sem_wait_ms(sem_t *s, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (ms % 1000) * TEST_MS;
    ts.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    while (sem_timedwait(s, &ts) != 0) {
        if (errno == ETIMEDOUT)
            return -ETIMEDOUT;
        if (errno != EINTR)
            abort();
    }
    return 0;
}

/* The number of threads of this process (entries of /proc/self/task). */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------ a call */

/* One call of chan_blocking from a task, and what its fn saw. */
struct call {
    sem_t *entered;        /* fn posts it first, if set */
    sem_t *release;        /* then fn waits for it, if set */
    int release_rc;        /* fn's wait for release: 0 or -ETIMEDOUT */
    atomic_int ran;        /* fn was called */
    long fn_tid;           /* the thread fn ran on */
    long task_tid;         /* the task's thread just before the call */
    int rc;                /* what chan_blocking returned */
    int errno_kept;        /* the task's errno survived the call */
    sem_t *done;           /* the task posts it after the call, if set */
};

static void fn_record(void *arg)
{
    struct call *c = arg;
    c->fn_tid = test_gettid();
    atomic_store(&c->ran, 1);
    if (c->entered)
        test_sem_post(c->entered);
    if (c->release)
        c->release_rc = sem_wait_ms(c->release, WAIT_MS);
    /* A helper's errno is its own: the caller must not see this. */
    errno = EIO;
}

static void task_call(void *arg)
{
    struct call *c = arg;
    c->task_tid = test_gettid();
    errno = ENOTTY;
    c->rc = chan_blocking(fn_record, c);
    c->errno_kept = errno == ENOTTY;
    if (c->done)
        test_sem_post(c->done);
}

static void task_null(void *arg)
{
    struct call *c = arg;
    c->rc = chan_blocking(NULL, c);
}

/* ------------------------------------------------------------ basics */

Test(blocking, null_fn_is_rejected)
{
    cr_assert_eq(chan_blocking(NULL, NULL), -EINVAL);
    chan_sched_t *s = test_sched_make(1);
    struct call c = { .rc = 1 };
    cr_assert_eq(chan_go(s, task_null, &c), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(c.rc, -EINVAL);
    chan_sched_free(s);
}

Test(blocking, plain_thread_runs_fn_inline)
{
    int before = thread_count();
    struct call c = { .rc = 1 };
    errno = ENOTTY;
    cr_assert_eq(chan_blocking(fn_record, &c), 0);
    /* Inline: fn's own errno is the caller's. */
    cr_assert_eq(errno, EIO);
    cr_assert_eq(atomic_load(&c.ran), 1);
    cr_assert_eq(c.fn_tid, test_gettid());
    /* And no helper was started for it. */
    cr_assert_eq(thread_count(), before);
}

Test(blocking, task_runs_fn_on_a_helper_and_keeps_errno)
{
    chan_sched_t *s = test_sched_make(1);
    struct call c = { .rc = 1 };
    cr_assert_eq(chan_go(s, task_call, &c), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(c.rc, 0);
    cr_assert_eq(atomic_load(&c.ran), 1);
    cr_assert_neq(c.fn_tid, c.task_tid, "fn ran on the task's worker");
    cr_assert_neq(c.fn_tid, test_gettid());
    cr_assert(c.errno_kept, "chan_blocking changed the task's errno");
    chan_sched_free(s);
}

static void fn_nested(void *arg)
{
    struct call *c = arg;
    /* On a helper, which is a plain thread: the inner call is inline. */
    c->rc = chan_blocking(fn_record, c);
}

static void task_nested(void *arg)
{
    struct call *c = arg;
    c->task_tid = test_gettid();
    int rc = chan_blocking(fn_nested, c);
    if (rc != 0)
        c->rc = 100 + rc;
}

Test(blocking, call_from_fn_runs_inline_on_the_helper)
{
    chan_sched_t *s = test_sched_make(1);
    struct call c = { .rc = 1 };
    cr_assert_eq(chan_go(s, task_nested, &c), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(c.rc, 0);
    cr_assert_eq(atomic_load(&c.ran), 1);
    cr_assert_neq(c.fn_tid, c.task_tid);
    chan_sched_free(s);
}

/* ------------------------------------------------------------ the worker */

struct pipe_call {
    int fds[2];
    sem_t entered;
    int poll_rc;      /* fn's poll: 1 once the other task wrote */
    char got;
    int rc;
    int write_rc;
};

static void fn_read_pipe(void *arg)
{
    struct pipe_call *p = arg;
    test_sem_post(&p->entered);
    /* Bounded, so that a held worker fails the test instead of hanging
     * it: the byte can only come from a task of the same one worker. */
    struct pollfd pfd = { .fd = p->fds[0], .events = POLLIN };
    p->poll_rc = poll(&pfd, 1, WAIT_MS);
    if (p->poll_rc == 1 && read(p->fds[0], &p->got, 1) != 1)
        p->poll_rc = -1;
}

static void task_read_pipe(void *arg)
{
    struct pipe_call *p = arg;
    p->rc = chan_blocking(fn_read_pipe, p);
}

static void task_write_pipe(void *arg)
{
    struct pipe_call *p = arg;
    p->write_rc = (int)write(p->fds[1], "x", 1);
}

Test(blocking, one_worker_runs_other_tasks_while_fn_blocks)
{
    chan_sched_t *s = test_sched_make(1);
    struct pipe_call p = { .rc = 1, .write_rc = -2 };
    cr_assert_eq(pipe(p.fds), 0);
    test_sem_init(&p.entered, 0);
    cr_assert_eq(chan_go(s, task_read_pipe, &p), 0);
    /* fn is inside its read: the writer can only run if the worker is
     * free. */
    cr_assert_eq(sem_wait_ms(&p.entered, WAIT_MS), 0);
    cr_assert_eq(chan_go(s, task_write_pipe, &p), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(p.write_rc, 1);
    cr_assert_eq(p.poll_rc, 1, "fn's read timed out: the worker was held");
    cr_assert_eq(p.got, 'x');
    cr_assert_eq(p.rc, 0);
    chan_sched_free(s);
    close(p.fds[0]);
    close(p.fds[1]);
    test_sem_destroy(&p.entered);
}

/* ------------------------------------------------------------ the pool */

/*
 * n tasks on one worker each call chan_blocking with a fn that waits until
 * released, and the test releases them only once all n are inside fn at
 * the same time: n helpers at once.
 */
static void run_concurrent(int n, long *tids)
{
    chan_sched_t *s = test_sched_make(1);
    sem_t entered, release;
    test_sem_init(&entered, 0);
    test_sem_init(&release, 0);
    struct call *c = calloc((size_t)n, sizeof *c);
    cr_assert_not_null(c);
    for (int i = 0; i < n; i++) {
        c[i].entered = &entered;
        c[i].release = &release;
        c[i].rc = 1;
        cr_assert_eq(chan_go(s, task_call, &c[i]), 0);
    }
    for (int i = 0; i < n; i++)
        cr_assert_eq(sem_wait_ms(&entered, WAIT_MS), 0,
                     "only %d of %d calls got a helper", i, n);
    for (int i = 0; i < n; i++)
        test_sem_post(&release);
    cr_assert_eq(chan_sched_wait(s), 0);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(c[i].rc, 0);
        cr_assert_eq(c[i].release_rc, 0);
        cr_assert(c[i].errno_kept);
        for (int j = 0; j < i; j++)
            cr_assert_neq(c[i].fn_tid, c[j].fn_tid, "two calls, one helper");
        if (tids)
            tids[i] = c[i].fn_tid;
    }
    free(c);
    chan_sched_free(s);
    test_sem_destroy(&entered);
    test_sem_destroy(&release);
}

Test(blocking, pool_grows_to_its_default_limit)
{
    /* The documented default: 64 helpers at once. */
    run_concurrent(64, NULL);
}

Test(blocking, limit_from_the_environment)
{
    cr_assert_eq(setenv("CHAN_BLOCKING_THREADS", "100", 1), 0);
    run_concurrent(100, NULL);
}

Test(blocking, calls_beyond_the_limit_wait_for_a_free_helper)
{
    cr_assert_eq(setenv("CHAN_BLOCKING_THREADS", "2", 1), 0);
    chan_sched_t *s = test_sched_make(1);
    sem_t entered, release, done;
    test_sem_init(&entered, 0);
    test_sem_init(&release, 0);
    test_sem_init(&done, 0);
    struct call c[3];
    for (int i = 0; i < 3; i++)
        c[i] = (struct call){ .entered = &entered, .release = &release,
                              .done = &done, .rc = 1 };
    cr_assert_eq(chan_go(s, task_call, &c[0]), 0);
    cr_assert_eq(chan_go(s, task_call, &c[1]), 0);
    cr_assert_eq(sem_wait_ms(&entered, WAIT_MS), 0);
    cr_assert_eq(sem_wait_ms(&entered, WAIT_MS), 0);
    /* Both helpers are busy: the third call waits instead of failing. */
    cr_assert_eq(chan_go(s, task_call, &c[2]), 0);
    cr_assert_eq(sem_wait_ms(&entered, 200), -ETIMEDOUT,
                 "a third helper ran beyond the limit of 2");
    cr_assert_eq(atomic_load(&c[2].ran), 0);
    test_sem_post(&release);
    /* One helper is free again and takes the waiting call. */
    cr_assert_eq(sem_wait_ms(&entered, WAIT_MS), 0);
    test_sem_post(&release);
    test_sem_post(&release);
    cr_assert_eq(chan_sched_wait(s), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(c[i].rc, 0);
        cr_assert_eq(c[i].release_rc, 0);
    }
    cr_assert_neq(c[0].fn_tid, c[1].fn_tid);
    cr_assert(c[2].fn_tid == c[0].fn_tid || c[2].fn_tid == c[1].fn_tid,
              "the waiting call ran on a third thread");
    chan_sched_free(s);
    test_sem_destroy(&entered);
    test_sem_destroy(&release);
    test_sem_destroy(&done);
}

Test(blocking, idle_helper_is_reused)
{
    chan_sched_t *s = test_sched_make(1);
    struct call a = { .rc = 1 }, b = { .rc = 1 };
    cr_assert_eq(chan_go(s, task_call, &a), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    int after_first = thread_count();
    cr_assert_eq(chan_go(s, task_call, &b), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(a.rc, 0);
    cr_assert_eq(b.rc, 0);
    /* One helper for both (it waits 10 s for work before exiting). */
    cr_assert_eq(b.fn_tid, a.fn_tid);
    cr_assert_eq(thread_count(), after_first);
    chan_sched_free(s);
}

Test(blocking, idle_helpers_exit)
{
    cr_assert_eq(setenv("CHAN_BLOCKING_IDLE_MS", "50", 1), 0);
    chan_sched_t *s = test_sched_make(1);
    int base = thread_count();
    cr_assert_gt(base, 1);
    enum { N = 4 };
    long tids[N];
    run_concurrent(N, tids);
    /* run_concurrent had its own scheduler: count ours plus the helpers,
     * which all go once idle for 50 ms. */
    int64_t give_up = test_now_ns() + WAIT_MS * TEST_MS;
    int n;
    while ((n = thread_count()) != base) {
        cr_assert(test_now_ns() < give_up, "%d threads, not %d", n, base);
        test_sleep_ns(10 * TEST_MS);
    }
    /* A call after they left starts a new one. */
    struct call c = { .rc = 1 };
    cr_assert_eq(chan_go(s, task_call, &c), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(c.rc, 0);
    cr_assert_eq(atomic_load(&c.ran), 1);
    chan_sched_free(s);
}

/* ------------------------------------------------------------ -EAGAIN */

static void *thread_nothing(void *arg)
{
    return arg;
}

/*
 * The body of eagain_when_no_thread_can_be_had, in a child process whose
 * exit status is 0 on success, 77 if thread creation could not be made to
 * fail, and the number of the failed step otherwise.
 */
static int eagain_child(void)
{
    chan_sched_t *s = test_sched_make(1);
    sem_t entered, release, done;
    if (sem_init(&entered, 0, 0) || sem_init(&release, 0, 0) ||
        sem_init(&done, 0, 0))
        return 1;
    /* One helper, idle once its call returned. */
    struct call a = { .rc = 1 };
    if (chan_go(s, task_call, &a) != 0 || chan_sched_wait(s) != 0 || a.rc)
        return 2;

    /* From now on no thread can be created: RLIMIT_NPROC, which binds
     * root only once it has given up its privileges. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NPROC, &rl) != 0)
        return 3;
    rl.rlim_cur = 0;
    if (setrlimit(RLIMIT_NPROC, &rl) != 0)
        return 4;
    if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
        return 77;
    pthread_t t;
    if (pthread_create(&t, NULL, thread_nothing, NULL) == 0) {
        pthread_join(t, NULL);
        return 77;
    }

    /* The idle helper still serves a call. */
    struct call b = { .entered = &entered, .release = &release, .rc = 1 };
    if (chan_go(s, task_call, &b) != 0 || sem_wait_ms(&entered, WAIT_MS))
        return 5;
    if (b.fn_tid != a.fn_tid)
        return 6;
    /* While it is busy, another call cannot have one. */
    struct call c = { .done = &done, .rc = 1 };
    if (chan_go(s, task_call, &c) != 0 || sem_wait_ms(&done, WAIT_MS))
        return 7;
    if (c.rc != -EAGAIN)
        return 8;
    if (atomic_load(&c.ran))
        return 9;
    if (!c.errno_kept)
        return 10;
    test_sem_post(&release);
    if (chan_sched_wait(s) != 0 || b.rc != 0 || b.release_rc != 0)
        return 11;
    chan_sched_free(s);
    return 0;
}

/* Waits up to WAIT_MS for child pid; kills it if it does not exit. */
static int wait_child(pid_t pid)
{
    int64_t give_up = test_now_ns() + WAIT_MS * TEST_MS;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        cr_assert_eq(r, 0, "waitpid");
        if (test_now_ns() > give_up) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            cr_assert(0, "the child process hung");
        }
        test_sleep_ns(5 * TEST_MS);
    }
}

Test(blocking, eagain_when_no_thread_can_be_had)
{
    /* In a child: it changes the process's limits for good.  The test
     * process has no other thread yet, so the child may start threads
     * even under ThreadSanitizer. */
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0)
        _exit(eagain_child());
    int status = wait_child(pid);
    cr_assert(WIFEXITED(status), "child status %#x", status);
    if (WEXITSTATUS(status) == 77)
        cr_skip_test("thread creation cannot be made to fail here");
    cr_assert_eq(WEXITSTATUS(status), 0, "the child failed at step %d",
                 WEXITSTATUS(status));
}

/* ------------------------------------------------------------ fork */

Test(blocking, fork_child_starts_helpers_of_its_own)
{
    SKIP_UNDER_QEMU("qemu-user cannot fork a process with threads");
#if UNDER_TSAN
    cr_skip_test("ThreadSanitizer cannot start threads after a fork");
#endif
    /* With a limit of one helper, a child that still counted the parent's
     * helper would queue its call for a thread that it does not have. */
    cr_assert_eq(setenv("CHAN_BLOCKING_THREADS", "1", 1), 0);
    chan_sched_t *s = test_sched_make(1);
    struct call a = { .rc = 1 };
    cr_assert_eq(chan_go(s, task_call, &a), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_eq(a.rc, 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        chan_sched_opts_t o = { .threads = 1, .stack_size = 0 };
        chan_sched_t *cs = chan_sched_new(&o);
        struct call b = { .rc = 1 };
        int ok = cs && chan_go(cs, task_call, &b) == 0 &&
                 chan_sched_wait(cs) == 0 && b.rc == 0 &&
                 atomic_load(&b.ran) == 1;
        _exit(ok ? 0 : 1);
    }
    int status = wait_child(pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child status %#x", status);
    chan_sched_free(s);
}

static void child_exit_now(void)
{
    _exit(0);
}

struct forker {
    pid_t pid;
};

static void fn_fork(void *arg)
{
    struct forker *f = arg;
    fflush(NULL);
    f->pid = fork();
    if (f->pid == 0)
        /* The child ends as soon as its only thread, this helper, leaves:
         * at exit, before anything inherited from the test runs. */
        atexit(child_exit_now);
}

static void task_fork(void *arg)
{
    struct forker *f = arg;
    if (chan_blocking(fn_fork, f) != 0)
        f->pid = -2;
}

Test(blocking, fork_inside_fn_leaves_the_child_alone)
{
    SKIP_UNDER_QEMU("qemu-user cannot fork a process with threads");
#if UNDER_TSAN
    cr_skip_test("ThreadSanitizer cannot start threads after a fork");
#endif
    /* A child that took the copied helper for one of its own would count
     * it idle and keep it, and so itself, alive for two minutes. */
    cr_assert_eq(setenv("CHAN_BLOCKING_IDLE_MS", "120000", 1), 0);
    chan_sched_t *s = test_sched_make(1);
    struct forker f = { .pid = -1 };
    cr_assert_eq(chan_go(s, task_fork, &f), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    cr_assert_gt(f.pid, 0);
    int status = wait_child(f.pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child status %#x", status);
    chan_sched_free(s);
}

/*
 * blocking.c - chan_blocking: a call that may block in anything runs on a
 * helper thread of the library while the calling task is parked, so that
 * the task's worker thread goes on running other tasks.
 *
 * The pool.  One process-wide pool of detached helper threads, started
 * lazily: a program that never calls chan_blocking from a task starts no
 * helper (and one that calls it only from plain threads neither: there
 * fn simply runs inline).  A call from a task is handed to an idle helper
 * if there is one, else to a new helper while fewer than pool.max exist;
 * else it is queued, and the first helper to finish its call takes it.  A
 * helper that finds nothing to do for pool.idle_ns exits.  pool.max
 * (CHAN_BLOCKING_THREADS, default DEFAULT_MAX) and pool.idle_ns
 * (CHAN_BLOCKING_IDLE_MS, default DEFAULT_IDLE_MS) are read from the
 * environment once, at the first call from a task.
 *
 * Invariants (with pool.mu held):
 *   - threads counts the helpers that exist or are being started, so
 *     threads <= max.  idle counts those that have finished their last
 *     call and not taken another: waiting on pool.cv, or on their way to
 *     it.  A helper is counted idle before it unparks the task whose call
 *     it ran, so that the task's next call finds it free.
 *   - queued is the length of the queue head..tail.
 *   - While the queue is not empty, no helper exits: a helper leaves only
 *     after seeing the queue empty.  So a queued job is taken by an idle
 *     helper (it was signalled) or by a busy one, which looks at the queue
 *     before it goes idle.  A job is never queued when there is no helper
 *     at all: then a new one is started for it, or the call fails.
 *   - A new helper gets its first job as its start argument, never through
 *     the queue: if the thread cannot be created, the job is still the
 *     caller's alone, which then returns -EAGAIN without fn having run.
 *
 * Locking.  pool.mu guards every field of pool but max and idle_ns (set
 * once under pthread_once).  It is a leaf lock (src/internal.h): fn runs,
 * threads are created and tasks are unparked with it dropped.
 *
 * Lifetimes.  A job lives on the calling task's stack; the task stays
 * parked until the helper unparks it, after fn has returned, and the
 * helper never touches the job after that unpark.  The caller's parker is
 * armed (chan__park_prepare) before the job is published, under pool.mu or
 * by pthread_create, both of which order the arming before the helper's
 * unpark.
 *
 * fork().  Only the forking thread exists in the child, so none of the
 * parent's helpers do.  The atfork handlers hold pool.mu across the fork
 * and, in the child, forget the helpers and any queued jobs (whose tasks
 * do not run in the child either) and give pool.cv a fresh start, so the
 * child's first call starts a helper of its own instead of waiting for
 * one that is not there.  A fork from inside fn leaves the child running on
 * a copy of that helper; pool.gen tells the copy that it belongs to the
 * parent's pool, so once fn returns it leaves (ending the child, whose
 * only thread it is) without touching the child's pool or waking a task
 * that does not run in the child.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "clock.h"
#include "park.h"

enum {
    /* Helpers that may exist at once unless CHAN_BLOCKING_THREADS says
     * otherwise, and the most it may ask for (Go's default limit on the
     * threads of a program). */
    DEFAULT_MAX = 64,
    MAX_MAX = 10000,
    /* How long a helper waits for a job before it exits, in ms, unless
     * CHAN_BLOCKING_IDLE_MS says otherwise (which may ask for 1 ms to one
     * day). */
    DEFAULT_IDLE_MS = 10000,
    MAX_IDLE_MS = 86400000,
};

/* One call of chan_blocking from a task, on the task's stack. */
struct job {
    void (*fn)(void *arg);
    void *arg;
    chan__parker_t *parker;  /* the caller's, armed; unparked once fn returned */
    struct job *next;        /* pool.mu while queued */
};

static struct {
    pthread_mutex_t mu;      /* see Locking above */
    pthread_cond_t cv;       /* CLOCK_MONOTONIC; idle helpers wait here */
    struct job *head, *tail; /* jobs waiting for a helper, oldest first */
    unsigned queued;         /* jobs in the queue */
    unsigned threads;        /* helpers alive or being started */
    unsigned idle;           /* helpers waiting on cv */
    unsigned gen;            /* incremented in a child after fork() */
    unsigned max;            /* limit on threads; set once */
    int64_t idle_ns;         /* a helper's longest wait for a job; set once */
} pool = { .mu = PTHREAD_MUTEX_INITIALIZER };

static pthread_once_t once = PTHREAD_ONCE_INIT;

/* The value of environment variable name if it is a decimal integer in
 * lo..hi, else def. */
static long env_long(const char *name, long def, long lo, long hi)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    int saved = chan__errno_save();
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    int ok = errno == 0 && *end == '\0' && v >= lo && v <= hi;
    chan__errno_restore(saved);
    return ok ? v : def;
}

static void cond_init(void)
{
    pthread_condattr_t attr;
    chan__check(pthread_condattr_init(&attr));
    chan__check(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC));
    chan__check(pthread_cond_init(&pool.cv, &attr));
    pthread_condattr_destroy(&attr);
}

/* atfork handlers: see fork() above. */
static void before_fork(void)
{
    chan__check(pthread_mutex_lock(&pool.mu));
}

static void after_fork_parent(void)
{
    chan__check(pthread_mutex_unlock(&pool.mu));
}

static void after_fork_child(void)
{
    pool.head = pool.tail = NULL;
    pool.queued = 0;
    pool.threads = 0;
    pool.idle = 0;
    pool.gen++;
    /* The parent's idle helpers were waiting on cv; in the child those
     * waiters do not exist. */
    cond_init();
    chan__check(pthread_mutex_unlock(&pool.mu));
}

static void init_once(void)
{
    pool.max = (unsigned)env_long("CHAN_BLOCKING_THREADS", DEFAULT_MAX, 1,
                                  MAX_MAX);
    pool.idle_ns = (int64_t)env_long("CHAN_BLOCKING_IDLE_MS", DEFAULT_IDLE_MS,
                                     1, MAX_IDLE_MS) * 1000000;
    cond_init();
    chan__check(pthread_atfork(before_fork, after_fork_parent,
                               after_fork_child));
}

/*
 * The next job for a helper that has finished one and been counted idle:
 * the oldest queued, else one it waits for, at most pool.idle_ns; NULL if
 * none came (the helper has then been counted out and must exit).  Called
 * with pool.mu held; returns with it held.
 */
static struct job *next_job(void)
{
    struct timespec ts = chan__timespec(chan__now() + pool.idle_ns);
    while (!pool.head) {
        int e = pthread_cond_timedwait(&pool.cv, &pool.mu, &ts);
        chan__assert(e == 0 || e == ETIMEDOUT);
        if (e == ETIMEDOUT && !pool.head) {
            pool.idle--;
            pool.threads--;
            return NULL;
        }
    }
    pool.idle--;
    struct job *j = pool.head;
    pool.head = j->next;
    if (!pool.head)
        pool.tail = NULL;
    pool.queued--;
    return j;
}

/* A helper; arg is its first job.  It belongs to generation pool.gen. */
static void *helper(void *arg)
{
    chan__thread_name("chan-blocking");
    struct job *j = arg;
    chan__check(pthread_mutex_lock(&pool.mu));
    unsigned gen = pool.gen;
    chan__check(pthread_mutex_unlock(&pool.mu));
    do {
        chan__parker_t *p = j->parker;
        j->fn(j->arg);
        chan__check(pthread_mutex_lock(&pool.mu));
        if (pool.gen != gen) { /* fn forked: see fork() above */
            chan__check(pthread_mutex_unlock(&pool.mu));
            return NULL;
        }
        /* Idle before the caller resumes, so that a call it makes next
         * finds this helper free instead of starting another. */
        pool.idle++;
        chan__check(pthread_mutex_unlock(&pool.mu));
        /* The task may return and drop j's frame as soon as it is
         * unparked: j is not touched after this. */
        chan__unpark(p);
        chan__check(pthread_mutex_lock(&pool.mu));
        j = next_job();
        chan__check(pthread_mutex_unlock(&pool.mu));
    } while (j);
    return NULL;
}

/* Appends j to the queue.  Called with pool.mu held. */
static void enqueue(struct job *j)
{
    j->next = NULL;
    if (pool.tail)
        pool.tail->next = j;
    else
        pool.head = j;
    pool.tail = j;
    pool.queued++;
    if (pool.idle > 0)
        chan__check(pthread_cond_signal(&pool.cv));
}

/* Hands j to a helper.  Returns 0, or -EAGAIN if none can be had. */
static int submit(struct job *j)
{
    chan__check(pthread_mutex_lock(&pool.mu));
    if (pool.queued < pool.idle || pool.threads >= pool.max) {
        /* An idle helper is free for it, or every helper allowed exists
         * and the first to finish will take it. */
        enqueue(j);
        chan__check(pthread_mutex_unlock(&pool.mu));
        return 0;
    }
    pool.threads++;
    chan__check(pthread_mutex_unlock(&pool.mu));
    if (chan__thread_start_quiet(helper, j) == 0)
        return 0;
    chan__check(pthread_mutex_lock(&pool.mu));
    pool.threads--;
    chan__check(pthread_mutex_unlock(&pool.mu));
    return -EAGAIN;
}

int chan_blocking(void (*fn)(void *arg), void *arg)
{
    if (!fn)
        return -EINVAL;
    if (!chan_sched_current()) {
        fn(arg);
        return 0;
    }
    /* Starting a helper may set errno.  Restored before the park: the
     * task may resume on another thread, whose errno is not this one. */
    int saved = chan__errno_save();
    chan__check(pthread_once(&once, init_once));
    struct job j = { fn, arg, chan__park_self(), NULL };
    chan__park_prepare(j.parker);
    chan__park_note(j.parker, CHAN_WAIT_BLOCKING, NULL, 0, 0,
                    CHAN_NO_DEADLINE);
    int rc = submit(&j);
    chan__errno_restore(saved);
    if (rc == 0)
        chan__assert(chan__park_wait(j.parker, CHAN_NO_DEADLINE) == 0);
    return rc;
}

/*
 * api.c - the scheduler's public API (chan.h): chan_sched_new,
 * chan_sched_wait and chan_sched_free; chan_go, chan_sched_current,
 * chan_yield and chan_sleep.
 *
 * The scheduler's files call each other top-down, never back up:
 *   api.c    (this file) uses all of the below;
 *   dump.c   chan_sched_dump and the deadlock monitor; uses none of them;
 *   task.c   a task's life: its struct, switching to it and back,
 *            parking and waking it, and the worker loop that runs tasks;
 *            uses sched.c and stack.c;
 *   sched.c  which worker runs the caller, the run queues, stealing and
 *            idling; uses stack.c (the tasks waiting for a stack);
 *   stack.c  stacks, their caches and the stack policy; uses none.
 * sched.h describes the objects they share.
 */
#include "internal.h"

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "netpoll.h"
#include "park.h"
#include "sched/sched.h"
#include "sched/stack.h"
#include "waitq.h"

/* Default stack: 64 KiB; sanitizers' larger frames get four times that. */
#if defined(CHAN_ASAN) || defined(CHAN_TSAN)
#define DEFAULT_STACK (256 * 1024)
#else
#define DEFAULT_STACK (64 * 1024)
#endif

enum {
    /* Stacks cached per worker, and in the shared cache. */
    WORKER_STACKS = 16,
    SHARED_STACKS = 64,
    /* More worker threads than this are refused (NULL): far beyond any
     * useful count, and the workers array and the victim search of
     * stealing grow with it. */
    MAX_WORKERS = 4096,
};

/* Larger stacks are refused (NULL), as Go refuses goroutine stacks beyond
 * 1 GB: no task needs one, and a size near the address space would only
 * round over or fail to map for good. */
#define MAX_STACK (sizeof(void *) >= 8 ? (size_t)1 << 30 : (size_t)256 << 20)

/* ---------------------------------------------------------------- sched */

static void sched_destroy(chan_sched_t *s)
{
    /* A thread that woke the last task may still be in notify(). */
    while (atomic_load_explicit(&s->pushers, memory_order_acquire) != 0)
        sched_yield();
    for (unsigned i = 0; i < s->nworkers; i++) {
        chan__worker_t *w = &s->workers[i];
        chan__stack_drain(&w->stacks, &s->cold, s->stack_size);
        chan__task_drain(w);
    }
    chan__task_free_all(s);
    chan__stack_drain(&s->stacks, &s->cold, s->stack_size);
    chan__stack_pool_drain(&s->cold, s->stack_size);
    pthread_mutex_destroy(&s->task_mu);
    pthread_mutex_destroy(&s->mon_mu);
    pthread_cond_destroy(&s->mon_cv);
    pthread_mutex_destroy(&s->gmu);
    pthread_mutex_destroy(&s->idle_mu);
    pthread_cond_destroy(&s->idle_cv);
    pthread_mutex_destroy(&s->done_mu);
    pthread_mutex_destroy(&s->stack_mu);
    free(s->workers);
    free(s);
}

/* Stops the workers that were started and waits for them. */
static void sched_stop(chan_sched_t *s)
{
    chan__check(pthread_mutex_lock(&s->idle_mu));
    s->stop = 1;
    chan__check(pthread_cond_broadcast(&s->idle_cv));
    if (s->poll_sleeper && !s->poll_kicked) {
        s->poll_kicked = 1;
        chan__netpoll_kick();
    }
    chan__check(pthread_mutex_unlock(&s->idle_mu));
    for (unsigned i = 0; i < s->nworkers; i++)
        if (s->workers[i].started)
            chan__check(pthread_join(s->workers[i].thread, NULL));
}

/* chan_sched_new proper; the wrapper below keeps errno. */
static chan_sched_t *sched_new(const chan_sched_opts_t *opts)
{
    unsigned threads = opts ? opts->threads : 0;
    size_t stack = opts ? opts->stack_size : 0;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
        if (threads > MAX_WORKERS)
            threads = MAX_WORKERS;
    }
    if (threads > MAX_WORKERS)
        return NULL;
    if (stack == 0)
        stack = DEFAULT_STACK;
    size_t page = chan__page_size();
    if (stack > MAX_STACK)
        return NULL;
    stack = (stack + page - 1) / page * page; /* no overflow: MAX_STACK */

    chan_sched_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->workers = calloc(threads, sizeof *s->workers);
    if (!s->workers) {
        free(s);
        return NULL;
    }
    s->nworkers = threads;
    s->stack_size = stack;
    chan__check(pthread_mutex_init(&s->gmu, NULL));
    chan__check(pthread_mutex_init(&s->idle_mu, NULL));
    pthread_condattr_t ca;
    chan__check(pthread_condattr_init(&ca));
    chan__check(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    chan__check(pthread_cond_init(&s->idle_cv, &ca));
    pthread_condattr_destroy(&ca);
    chan__check(pthread_mutex_init(&s->done_mu, NULL));
    chan__check(pthread_mutex_init(&s->stack_mu, NULL));
    chan__check(pthread_mutex_init(&s->task_mu, NULL));
    chan__check(pthread_mutex_init(&s->mon_mu, NULL));
    chan__check(pthread_condattr_init(&ca));
    chan__check(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    chan__check(pthread_cond_init(&s->mon_cv, &ca));
    pthread_condattr_destroy(&ca);
    atomic_init(&s->all_tasks, NULL);
    atomic_init(&s->next_id, 1); /* 0 means "no task" (task.c) */
    s->stacks.max = SHARED_STACKS;
    for (unsigned i = 0; i < threads; i++) {
        chan__worker_t *w = &s->workers[i];
        w->sched = s;
        w->id = i;
        w->rng = 0x9e3779b9u * (i + 1);
        w->stacks.max = WORKER_STACKS;
        atomic_init(&w->mu, 0);
    }

    /* One stack is mapped now, so that a size that cannot be mapped is
     * refused here, not found out by a task that would never run.  It
     * waits in the shared cache for the first task, and stays with the
     * scheduler from then on (only a failed realloc of the cold pool
     * unmaps a stack early): so however long memory stays gone, tasks
     * that found no stack get this one in turn, as others finish. */
    void *first;
    if (chan__stack_new(stack, &first, 1) < 0) {
        sched_destroy(s);
        return NULL;
    }
    chan__assert(chan__stack_put(&s->stacks, first, stack));

    /* From now on every park asks whether it runs in a task.  Threads
     * that never meet a scheduler never pay for this check. */
    atomic_store_explicit(&chan__park_task_hook, chan__task_parker,
                          memory_order_release);
    atomic_store_explicit(&chan__unpark_many_hook, chan__sched_flush_ready,
                          memory_order_release);

    for (unsigned i = 0; i < threads; i++) {
        chan__worker_t *w = &s->workers[i];
        if (pthread_create(&w->thread, NULL, chan__task_worker_main, w) != 0) {
            sched_stop(s);
            sched_destroy(s);
            return NULL;
        }
        w->started = 1;
    }
    if (chan__monitor_start(s) < 0) {
        sched_stop(s);
        sched_destroy(s);
        return NULL;
    }
    return s;
}

chan_sched_t *chan_sched_new(const chan_sched_opts_t *opts)
{
    /* sysconf, calloc and pthread_create may set errno; this API leaves
     * the caller's alone.  Nothing here parks. */
    int saved_errno = chan__errno_save();
    chan_sched_t *s = sched_new(opts);
    chan__errno_restore(saved_errno);
    return s;
}

int chan_sched_wait(chan_sched_t *s)
{
    if (!s)
        return -EINVAL;
    if (chan__in_task_of(s))
        return -EDEADLK;
    /* Parks like every blocking call: a thread sleeps, a task of another
     * scheduler leaves its worker to other tasks.  A flush that brings
     * ntasks to 0 wakes every listed waiter (task.c); tasks started since
     * then are waited for too, as before. */
    for (;;) {
        if (atomic_load_explicit(&s->ntasks, memory_order_acquire) == 0)
            return 0;
        chan__check(pthread_mutex_lock(&s->done_mu));
        if (atomic_load_explicit(&s->ntasks, memory_order_acquire) == 0) {
            chan__check(pthread_mutex_unlock(&s->done_mu));
            return 0;
        }
        chan__event_wait(&s->done_waiters, &s->done_mu, CHAN_WAIT_SCHED, s);
    }
}

void chan_sched_free(chan_sched_t *s)
{
    /* From a task of s this would wait for itself: the contract calls it a
     * programming error; doing nothing beats a deadlock. */
    if (chan_sched_wait(s) != 0)
        return;
    int saved_errno = chan__errno_save();
    chan__monitor_stop(s);
    /* The joins below do hold a task's worker when called from a task of
     * another scheduler, but only until s's idle workers see stop: they
     * have nothing left to run. */
    sched_stop(s);
    sched_destroy(s);
    chan__errno_restore(saved_errno);
}

/* ---------------------------------------------------------------- tasks */

int chan_go_at(chan_sched_t *s, void (*fn)(void *arg), void *arg,
               const char *file, int line)
{
    if (!fn)
        return -EINVAL;
    if (!s) {
        s = chan_sched_current();
        if (!s)
            return -EINVAL;
    }
    return chan__task_go(s, fn, arg, file, line);
}

/* The function behind the chan_go macro of chan.h, for callers that take
 * its address or bypass the macro. */
int(chan_go)(chan_sched_t *s, void (*fn)(void *arg), void *arg)
{
    return chan_go_at(s, fn, arg, NULL, 0);
}

chan_sched_t *chan_sched_current(void)
{
    chan__worker_t *w = chan__task_worker();
    return w ? w->sched : NULL;
}

void chan_yield(void)
{
    chan__worker_t *w = chan__task_worker();
    if (!w) {
        sched_yield();
        return;
    }
    chan__task_yield(w->current);
}

int chan_sleep(int64_t ns)
{
    if (ns <= 0)
        return 0;
    /* The same code sleeps a task (parked, its worker free) or a thread. */
    (void)chan__sleep_until(chan__deadline(ns));
    return 0;
}

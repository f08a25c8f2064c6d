/*
 * task.c - a task's life: its struct (made for chan_go, cached when it
 * finishes), switching between a task and its worker, parking and waking
 * (the task side of park.h), yielding, finishing.
 *
 * Parking without a race.  A task that must wait does not publish that it
 * sleeps: it leaves CHAN_AFTER_PARK in its worker and switches to the
 * worker's context.  Only there, once every register of the task is saved,
 * does the worker move the parker EMPTY -> PARKED.  If that CAS fails, a
 * waker has already set NOTIFIED (park.h's fast path), so the worker runs
 * the task again at once.  If it succeeds, the task belongs to its future
 * waker, which moves PARKED -> NOTIFIED and makes it runnable, and the
 * worker never touches it again.  So a task is never resumed while it is
 * still being saved, and it is made runnable exactly once per park.
 *
 * Timed parks.  The task arms its timer (timer.h) before switching out.
 * When the timer fires it sets timed_out and moves PARKED -> EMPTY ("time is
 * up, nobody notified you") and makes the task runnable; a waker moves
 * PARKED -> NOTIFIED instead.  Both are CASes from PARKED, so exactly one
 * of them makes the task runnable.  The timer may fire before the worker
 * has published PARKED; then its CAS fails, and the worker must see
 * timed_out.
 * t->tlock, a spin lock around "set timed_out, try the CAS" (timer) and
 * "publish PARKED, read timed_out" (worker), makes one of them see the other.
 * After a timeout the state is EMPTY, so a late waker takes the lock-free
 * path of chan__unpark (EMPTY -> NOTIFIED) and the task finds NOTIFIED on
 * its next wait, as park.h requires (the wait returns 0 without switching).
 *
 * Lifetimes.  When the resumed task leaves a timed park it cancels its
 * timer (which waits out a fire() in progress) and takes and drops tlock
 * (which waits out the old worker's critical section, which can still be
 * running when a waker has already resumed the task elsewhere).  Only then
 * may the task go on, and eventually finish and be freed.
 *
 * Thread-local data.  A task can resume on a different thread after any
 * switch, so the worker is looked up again after every switch through
 * chan__worker_self() and never kept in a local across one.
 */
#include "internal.h"

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef CHAN_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef CHAN_TSAN
/* Declared here: older sanitizer headers lack the fiber calls. */
void *__tsan_get_current_fiber(void);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

#include "clock.h"
#include "park.h"
#include "sched/sched.h"
#include "timer.h"
#include "waitq.h"

#ifndef CHAN_SWITCH_UCONTEXT
/* The layout that sched.h describes: one line for every park and switch. */
_Static_assert(offsetof(chan__task_t, wait1) == CHAN_CACHELINE,
               "a task's parker, sched and ctx fill its first cache line");
#endif

/* ---------------------------------------------------------------- tlock */

static void tlock_acquire(_Atomic int *l)
{
    for (unsigned i = 0;; i++) {
        int free_ = 0;
        if (atomic_compare_exchange_weak_explicit(l, &free_, 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        /* The holder runs a few instructions, unless it was preempted. */
        if (i < 64)
            chan__cpu_relax();
        else
            sched_yield();
    }
}

static void tlock_release(_Atomic int *l)
{
    atomic_store_explicit(l, 0, memory_order_release);
}

/* ---------------------------------------------------------------- switch */

/* Worker side: run t until it switches back. */
static void switch_to_task(chan__worker_t *w, chan__task_t *t)
{
#ifdef CHAN_ASAN
    __sanitizer_start_switch_fiber(&w->asan_fake, t->stack,
                                   w->sched->stack_size - CHAN_STACK_RESERVED);
#endif
#ifdef CHAN_TSAN
    __tsan_switch_to_fiber(t->tsan_fiber, 0);
#endif
    chan__ctx_switch(&w->ctx, &t->ctx);
#ifdef CHAN_ASAN
    __sanitizer_finish_switch_fiber(w->asan_fake, NULL, NULL);
#endif
}

/*
 * Task side: hand t back to its worker, asking for after.  Returns when
 * some worker resumes t (never for CHAN_AFTER_EXIT).  The worker pointer
 * is dead after the switch.
 */
static void switch_to_worker(chan__task_t *t, int after)
{
    chan__worker_t *w = chan__worker_self();
    w->after = after;
#ifdef CHAN_ASAN
    /* NULL for a finished task: its fake stack frames are freed. */
    __sanitizer_start_switch_fiber(after == CHAN_AFTER_EXIT ? NULL
                                                            : &t->asan_fake,
                                   w->asan_bottom, w->asan_size);
#endif
#ifdef CHAN_TSAN
    __tsan_switch_to_fiber(w->tsan_fiber, 0);
#endif
    chan__ctx_switch(&t->ctx, &w->ctx);
#ifdef CHAN_ASAN
    __sanitizer_finish_switch_fiber(t->asan_fake, NULL, NULL);
#endif
}

/* The first frame of every task. */
static void task_main(void *arg)
{
    chan__task_t *t = arg;
#ifdef CHAN_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    t->fn(t->arg);
    switch_to_worker(t, CHAN_AFTER_EXIT);
    chan__assert(!"a finished task was resumed");
}

/* Per-thread setup of a worker (sanitizers). */
static void worker_init(chan__worker_t *w)
{
#ifdef CHAN_ASAN
    pthread_attr_t attr;
    void *lo = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &lo, &size);
        pthread_attr_destroy(&attr);
    }
    w->asan_bottom = lo;
    w->asan_size = size;
#endif
#ifdef CHAN_TSAN
    w->tsan_fiber = __tsan_get_current_fiber();
#endif
    (void)w;
}

/* ---------------------------------------------------------------- park */

static void task_timeout(chan__timer_t *timer, int64_t now)
{
    (void)now;
    chan__task_t *t = chan__container_of(timer, chan__task_t, timer);
    tlock_acquire(&t->tlock);
    t->timed_out = 1;
    int s = CHAN_PARK_PARKED;
    int won = atomic_compare_exchange_strong_explicit(
        &t->parker.state, &s, CHAN_PARK_EMPTY, memory_order_acq_rel,
        memory_order_acquire);
    tlock_release(&t->tlock);
    if (won)
        chan__sched_ready(t);
}

/*
 * Worker side of a park (see the top of the file); timed: the task armed
 * its timer (CHAN_AFTER_PARK_TIMED).  Returns 1 if the task must run again
 * at once, 0 if it now belongs to its waker or its timer.
 */
static int park_commit(chan__task_t *t, int timed)
{
    int s = CHAN_PARK_EMPTY;
    if (!timed)
        /* Failure means NOTIFIED: the wakeup came while switching out.
         * acq_rel: on success, release publishes the saved context to the
         * waker that will make the task runnable. */
        return !atomic_compare_exchange_strong_explicit(
            &t->parker.state, &s, CHAN_PARK_PARKED, memory_order_acq_rel,
            memory_order_acquire);
    int rerun;
    tlock_acquire(&t->tlock);
    if (!atomic_compare_exchange_strong_explicit(
            &t->parker.state, &s, CHAN_PARK_PARKED, memory_order_acq_rel,
            memory_order_acquire)) {
        rerun = 1;
    } else if (t->timed_out) {
        /* The timer came first and found EMPTY: the timeout is ours to
         * deliver, unless a waker got in between. */
        s = CHAN_PARK_PARKED;
        rerun = atomic_compare_exchange_strong_explicit(
            &t->parker.state, &s, CHAN_PARK_EMPTY, memory_order_acq_rel,
            memory_order_acquire);
    } else {
        rerun = 0;
    }
    tlock_release(&t->tlock);
    return rerun;
}

static int task_wait(chan__parker_t *p, int64_t deadline)
{
    chan__task_t *t = chan__container_of(p, chan__task_t, parker);
    for (;;) {
        if (atomic_load_explicit(&p->state, memory_order_acquire) ==
            CHAN_PARK_NOTIFIED)
            return 0;
        int timed = deadline != CHAN_NO_DEADLINE;
        if (timed) {
            if (chan__now() >= deadline)
                return -ETIMEDOUT;
            /* The timer is off the heap (cancelled below, or never
             * started), so nothing else reads these fields now. */
            t->timed_out = 0;
            t->timer.when = deadline;
            t->timer.period = 0;
            t->timer.fire = task_timeout;
            if (chan__timer_start(&t->timer) < 0) {
                /* No memory for the heap: poll instead of failing. */
                switch_to_worker(t, CHAN_AFTER_YIELD);
                continue;
            }
        }
        switch_to_worker(t, timed ? CHAN_AFTER_PARK_TIMED : CHAN_AFTER_PARK);
        if (timed) {
            chan__timer_cancel(&t->timer);
            tlock_acquire(&t->tlock);
            tlock_release(&t->tlock);
        }
        /* Resumed with NOTIFIED, or with EMPTY after the timer fired. */
    }
}

static void task_wake(chan__parker_t *p)
{
    chan__task_t *t = chan__container_of(p, chan__task_t, parker);
    int s = atomic_load_explicit(&p->state, memory_order_acquire);
    for (;;) {
        chan__assert(s != CHAN_PARK_NOTIFIED);
        /* acq_rel: release publishes what the waker wrote for the task
         * (the value, the chosen case) before the task can see NOTIFIED. */
        if (atomic_compare_exchange_weak_explicit(&p->state, &s,
                                                  CHAN_PARK_NOTIFIED,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire)) {
            /* From PARKED we own the task's wakeup; from EMPTY (its timer
             * made it runnable already) it finds NOTIFIED by itself. */
            if (s == CHAN_PARK_PARKED) {
                /* It is likely to run soon, on this worker. */
                chan__ctx_prefetch(&t->ctx);
                chan__sched_ready(t);
            }
            return;
        }
    }
}

static const struct chan__park_ops task_ops = { task_wait, task_wake };

chan__parker_t *chan__task_parker(void)
{
    chan__worker_t *w = chan__task_worker();
    return w ? &w->current->parker : NULL;
}

/* ---------------------------------------------------------------- structs */

enum {
    /* Finished tasks' structs a worker keeps for new tasks started on it,
     * and how many it moves to or from the scheduler's shared list at
     * once when its cache overflows or runs dry: malloc and free cost more
     * than a task's start and finish otherwise, the more so as a struct is
     * often freed by another thread than the one that allocated it. */
    WORKER_FREE_TASKS = 64,
    FREE_TASKS_BATCH = 32,
    /* Task ids a worker takes from sched->next_id at once. */
    ID_BATCH = 256,
};

/*
 * Task structs are never given back to malloc before chan_sched_free, as
 * Go never frees its goroutine structs: every one stays on the
 * scheduler's all_tasks list, so that chan_sched_dump may walk them from
 * any thread at any time, without a lock and without reading freed
 * memory.  A finished task's struct goes to its worker's cache, or beyond
 * that to the scheduler's shared list, for the next chan_go.  Its id is 0
 * while it holds no task.
 */

/* A new struct, zeroed and aligned to a cache line (struct chan__task),
 * linked into s's all_tasks; NULL if memory runs out. */
static chan__task_t *task_new(chan_sched_t *s)
{
    /* Aligned by hand: glibc's aligned_alloc leaves fragments that slow
     * later frees down. */
    int saved_errno = chan__errno_save();
    void *mem = malloc(sizeof(chan__task_t) + CHAN_CACHELINE - 1);
    chan__errno_restore(saved_errno);
    if (!mem) {
        return NULL;
    }
    chan__task_t *t = (chan__task_t *)(((uintptr_t)mem + CHAN_CACHELINE - 1) &
                                       ~(uintptr_t)(CHAN_CACHELINE - 1));
    memset(t, 0, sizeof *t);
    t->mem = mem;
    t->sched = s;
    t->parker.ops = &task_ops;
    chan__park_cache_init(&t->parker, &t->wait1);
    /* Release: a dump that finds t on the list sees it initialised. */
    t->all_next = atomic_load_explicit(&s->all_tasks, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&s->all_tasks, &t->all_next,
                                                  t, memory_order_release,
                                                  memory_order_relaxed))
        ;
    return t;
}

/* A struct for a new task of s: from w's cache if w is not NULL, else
 * from s's shared list (a batch of them into w's cache), else new. */
static chan__task_t *task_alloc(chan_sched_t *s, chan__worker_t *w)
{
    chan__task_t *t = w ? w->free_tasks : NULL;
    if (t) {
        w->free_tasks = t->next;
        w->nfree_tasks--;
        return t;
    }
    chan__check(pthread_mutex_lock(&s->task_mu));
    t = s->free_tasks;
    if (t) {
        s->free_tasks = t->next;
        for (unsigned i = 0; w && s->free_tasks && i < FREE_TASKS_BATCH; i++) {
            chan__task_t *x = s->free_tasks;
            s->free_tasks = x->next;
            x->next = w->free_tasks;
            w->free_tasks = x;
            w->nfree_tasks++;
        }
    }
    chan__check(pthread_mutex_unlock(&s->task_mu));
    return t ? t : task_new(s);
}

/* Gives finished t's struct to w's cache, moving a batch of the cache to
 * the shared list when it is full. */
static void task_release(chan__worker_t *w, chan__task_t *t)
{
    t->next = w->free_tasks;
    w->free_tasks = t;
    if (++w->nfree_tasks <= WORKER_FREE_TASKS)
        return;
    chan__task_t *first = w->free_tasks, *last = first;
    for (unsigned i = 1; i < FREE_TASKS_BATCH; i++)
        last = last->next;
    w->free_tasks = last->next;
    w->nfree_tasks -= FREE_TASKS_BATCH;
    chan_sched_t *s = w->sched;
    chan__check(pthread_mutex_lock(&s->task_mu));
    last->next = s->free_tasks;
    s->free_tasks = first;
    chan__check(pthread_mutex_unlock(&s->task_mu));
}

void chan__task_drain(chan__worker_t *w)
{
    /* The structs themselves are freed by chan__task_free_all. */
    w->free_tasks = NULL;
    w->nfree_tasks = 0;
}

void chan__task_free_all(chan_sched_t *s)
{
    chan__task_t *t = atomic_load_explicit(&s->all_tasks, memory_order_acquire);
    while (t) {
        chan__task_t *next = t->all_next;
        free(t->mem);
        t = next;
    }
    atomic_store_explicit(&s->all_tasks, NULL, memory_order_relaxed);
    s->free_tasks = NULL;
}

/* A fresh id for a task of s started on w (NULL outside s's tasks). */
static uint64_t task_id(chan_sched_t *s, chan__worker_t *w)
{
    if (!w)
        return atomic_fetch_add_explicit(&s->next_id, 1, memory_order_relaxed);
    if (w->next_id == w->id_end) {
        w->next_id = atomic_fetch_add_explicit(&s->next_id, ID_BATCH,
                                               memory_order_relaxed);
        w->id_end = w->next_id + ID_BATCH;
    }
    return w->next_id++;
}

/* ---------------------------------------------------------------- run */

/* Worker side of a task's return: free everything it had. */
static void task_finish(chan__worker_t *w, chan__task_t *t)
{
    /* No task any more, for a dump (relaxed: it only ever sees an id). */
    atomic_store_explicit(&t->id, 0, memory_order_relaxed);
    /* The TSan fiber stays with the stack. */
    chan__task_t *waiter = chan__stack_give(w, t->stack);
    if (waiter)
        chan__sched_push_local(w, waiter);
    task_release(w, t);
    /* Counted off sched->ntasks by task_flush, in a batch. */
    w->finished++;
}

/*
 * Counts the tasks that finished on w off sched->ntasks, waking
 * chan_sched_wait if none is left.  Called by w's thread whenever it runs
 * out of work: a task's return only counts it in w->finished, so that
 * starting and finishing tasks on two workers does not bounce ntasks'
 * cache line between them at every task.
 */
static void task_flush(chan__worker_t *w)
{
    size_t n = w->finished;
    if (n == 0)
        return;
    w->finished = 0;
    chan_sched_t *s = w->sched;
    /* Once ntasks is 0, chan_sched_free may proceed (it still joins this
     * thread before freeing s).  A waiter reads ntasks under done_mu, so
     * it either sees 0 or is listed before this takes the lock. */
    if (atomic_fetch_sub_explicit(&s->ntasks, n, memory_order_acq_rel) != n)
        return;
    chan__check(pthread_mutex_lock(&s->done_mu));
    chan__event_waiter_t *list = chan__event_claim_all(&s->done_waiters);
    chan__check(pthread_mutex_unlock(&s->done_mu));
    chan__event_wake_all(list);
}

/* Gives t, which has never run, the stack lo. */
static void task_set_stack(chan__task_t *t, void *lo)
{
    size_t size = t->sched->stack_size;
    t->stack = lo;
    chan__ctx_make(&t->ctx, lo, size - CHAN_STACK_RESERVED, task_main, t);
#ifdef CHAN_TSAN
    t->tsan_fiber = chan__stack_fiber(lo, size);
#endif
}

/*
 * Runs t on w until it switches back, then does what it asked.  Returns a
 * task to run at once (t itself, when a park found the wakeup already
 * there), or NULL.  Called by w's thread only.
 */
static chan__task_t *task_run(chan__worker_t *w, chan__task_t *t)
{
    if (CHAN_UNLIKELY(!t->ctx.sp)) { /* (t->stack is on a colder line) */
        int err = -ENOMEM;
        void *lo = chan__stack_take(w, &err);
        if (!lo) {
            /* No memory (or mappings) for a stack now: wait until a task
             * finishes and frees one, or a retry maps one (sched.h). */
            chan__stack_warn(w->sched, err);
            chan__stack_wait(w->sched, t);
            return NULL;
        }
        task_set_stack(t, lo);
    }
    /* Atomic stores: a dump reads current from any thread. */
    __atomic_store_n(&w->current, t, __ATOMIC_RELAXED);
    w->after = CHAN_AFTER_NONE;
    switch_to_task(w, t);
    __atomic_store_n(&w->current, NULL, __ATOMIC_RELAXED);
    switch (w->after) {
    case CHAN_AFTER_YIELD:
        chan__sched_push_local(w, t);
        return NULL;
    case CHAN_AFTER_PARK:
        return park_commit(t, 0) ? t : NULL;
    case CHAN_AFTER_PARK_TIMED:
        return park_commit(t, 1) ? t : NULL;
    case CHAN_AFTER_EXIT:
        task_finish(w, t);
        return NULL;
    default:
        chan__assert(!"a task switched back without a reason");
        return NULL;
    }
}


void *chan__task_worker_main(void *arg)
{
    chan__thread_name("chan-worker");
    chan__worker_t *w = arg;
    chan__worker_bind(w);
    worker_init(w);
    chan__task_t *t = NULL;
    for (;;) {
        if (!t)
            t = chan__sched_find(w);
        if (!t) {
            task_flush(w);
            t = chan__sched_idle(w);
        }
        if (!t)
            break;
        t = task_run(w, t);
    }
    chan__worker_bind(NULL);
    return NULL;
}

/* ---------------------------------------------------------------- start */

/* A new task of s running fn(arg), started by chan_go at file and line,
 * in a struct from w's cache (w: the worker of the calling task of s, or
 * NULL), with the stack lo if not NULL (else it gets one when it first
 * runs); NULL if memory runs out. */
static chan__task_t *task_make(chan_sched_t *s, chan__worker_t *w,
                               void (*fn)(void *arg), void *arg,
                               const char *file, int line, void *lo)
{
    chan__task_t *t = task_alloc(s, w);
    if (!t)
        return NULL;
    /* A struct from a cache still holds its last task's fields; what
     * task_new zeroed is reset here.  The fields a dump reads (id,
     * parker.state, the note) are atomics and written as such; the note's
     * seq goes on counting, so that no park of this task looks like one
     * of the last. */
    t->stack = NULL;
    t->ctx.sp = NULL;
    t->timed_out = 0;
    atomic_store_explicit(&t->tlock, 0, memory_order_relaxed);
    atomic_store_explicit(&t->parker.state, CHAN_PARK_EMPTY,
                          memory_order_relaxed);
    t->next = NULL;
    t->fn = fn;
    t->arg = arg;
#ifdef CHAN_ASAN
    t->asan_fake = NULL;
#endif
    chan__assert(t->timer.slot == 0);
    atomic_store_explicit(&t->file, file, memory_order_relaxed);
    atomic_store_explicit(&t->line, line, memory_order_relaxed);
    /* Release: a dump that reads the id sees the fields above. */
    atomic_store_explicit(&t->id, task_id(s, w), memory_order_release);
    if (lo)
        task_set_stack(t, lo);
    return t;
}

int chan__task_go(chan_sched_t *s, void (*fn)(void *arg), void *arg,
                  const char *file, int line)
{
    /*
     * Tasks normally get their stacks when they first run.  But while
     * earlier tasks wait for stacks (memory, or the kernel's mappings,
     * ran out), this one gets its stack now or is refused: queueing a
     * task that has no stack to run on, in a program that keeps starting
     * tasks, would only add to the wait, and the caller could not tell.
     * The load is a hint: a task queued while the first waiter appears
     * simply waits with it.
     */
    void *lo = NULL;
    if (CHAN_UNLIKELY(chan__taskq_len(&s->swait) != 0) &&
        chan__stack_new(s->stack_size, &lo, 1) < 0)
        return -ENOMEM;
    /* From this worker's cache when started by a task of s. */
    chan__worker_t *w = chan__in_task_of(s);
    chan__task_t *t = task_make(s, w, fn, arg, file, line, lo);
    if (!t) {
        if (lo)
            chan__stack_free(lo, s->stack_size);
        return -ENOMEM;
    }
    /* Counted before it is queued, so chan_sched_wait cannot miss it. */
    atomic_fetch_add_explicit(&s->ntasks, 1, memory_order_relaxed);
    chan__sched_spawn(s, t);
    return 0;
}

void chan__task_yield(chan__task_t *t)
{
    switch_to_worker(t, CHAN_AFTER_YIELD);
}

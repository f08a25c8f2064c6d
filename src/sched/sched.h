/*
 * sched.h - the M:N scheduler's objects, shared by its files: api.c (the
 * public API), task.c (tasks: their structs, switch, park, finish, and
 * the worker loop that runs them), sched.c (the running worker, run
 * queues, idling), stack.c (stacks and the stack policy) and dump.c
 * (task dumps).  api.c says which calls which.
 *
 * Shape.  A scheduler owns N worker threads.  Each worker runs tasks
 * (coroutines with their own stacks) one at a time: it switches to a task,
 * and the task switches back when it parks, yields or returns, leaving in
 * worker->after what the worker must do with it.  Doing that work on the
 * worker's side, after the task's registers are saved, is what makes
 * parking race-free (task.c).
 *
 * Run queues.  Each worker has a bounded local queue (a ring) and a "run
 * next" slot; the scheduler has one unbounded global queue.  A task made
 * runnable by a task of the same scheduler goes to that worker's run-next
 * slot (the waker usually blocks soon after, so the woken task runs at
 * once and on a warm cache); a new task started by a task goes to the
 * local queue; everything from outside (threads, the timer thread, other
 * schedulers) goes to the global queue.  A worker whose queues are empty
 * takes from the global queue, then steals half of another worker's local
 * queue, if that queue has held tasks without once running empty for
 * CHAN_STEAL_AGE_NS (sched.c, "When to steal").
 *
 * Idling.  A worker with nothing to do spins for a short while (it is
 * "spinning"), then registers as idle and sleeps on the idle condition
 * variable, so an idle scheduler uses no CPU.  Whoever adds work wakes one
 * idle worker, unless a worker is already spinning (it will find the work).
 * Once the program waits for descriptors, idle workers poll for them too
 * (sched.c, netpoll.c): a spinner looks without waiting before each nap,
 * and one idle worker may sleep in the poll itself instead of on the
 * condition variable, so that a task woken by I/O runs on the thread that
 * saw the event.
 * While other workers have queued tasks (typically a run-next task whose
 * worker is about to run it), a spinning worker stays spinning but naps
 * between looks: their wakeups then cost no system call, and a run-next
 * task still there after a nap (its worker is busy) gets stolen.
 *
 * Locking (all leaf locks, src/internal.h; never two at once, except that
 * a run-queue lock may be taken under the timer heap lock by a timeout):
 *   worker->mu      the worker's ring and run-next slot (a spin lock);
 *   sched->gmu      the global queue;
 *   sched->idle_mu  tokens and stop (idle_word is an atomic);
 *   sched->done_mu  the waiters of chan_sched_wait (ntasks is an atomic);
 *   sched->stack_mu the shared stack cache, the cold pool and the
 *                   stack-wait list;
 *   sched->task_mu  the free list of task structs (all_tasks is a
 *                   lock-free list that only grows);
 *   sched->mon_mu   the deadlock monitor's stop flag (dump.c).
 *
 * Lifetimes.  A task's struct is taken by chan_go and given back by the
 * worker that runs it to completion, after it has switched away for the
 * last time, to that worker's cache or the scheduler's free list for the
 * next chan_go: it is freed only by chan_sched_free, so that
 * chan_sched_dump may read any task struct at any time (task.c, dump.c).
 * Its stack is taken when it first runs (so that a queue of many tasks
 * that have not started costs no stacks) and goes back to a cache when it
 * finishes: its worker's, else the shared one, else (both full) the cold
 * pool, which gives the stack's memory back to the kernel (once a worker
 * goes idle, or the stack has waited there a while) but keeps the
 * mapping for a later task.  Stacks are unmapped by chan_sched_free (or
 * earlier only if the pool cannot grow).
 * chan_sched_new maps the first stack itself (refusing a size that
 * cannot be mapped), and that stack stays with the scheduler.
 * A task that finds no stack at all (memory, or the kernel's mappings, ran
 * out) waits in the scheduler's stack-wait list, taking no queue and no
 * CPU, until a task finishes and frees one (stack.c), or an idle worker
 * tries it again (every STACK_RETRY_MS, sched.c); the first such failure
 * is reported on standard error.  While tasks wait, chan_go maps the
 * stack of a new task at once, and fails if it cannot.
 * Workers and the scheduler live until chan_sched_free.
 */
#ifndef CHAN_SCHED_SCHED_H
#define CHAN_SCHED_SCHED_H

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "park.h"
#include "sched/stack.h"
#include "sched/switch.h"
#include "timer.h"
#include "waitq.h"

/* Entries of a worker's local ring (a power of two). */
#define CHAN_RUNQ_SIZE 256

typedef struct chan__task chan__task_t;
typedef struct chan__worker chan__worker_t;

/* What a task asks of its worker when it switches back. */
enum chan__after { CHAN_AFTER_NONE, CHAN_AFTER_YIELD, CHAN_AFTER_PARK,
                   CHAN_AFTER_PARK_TIMED, CHAN_AFTER_EXIT };

struct chan__task {
    /*
     * The first cache line holds what every park, wakeup and switch
     * touches (with the assembly context switches: parker 48 bytes, sched
     * and ctx 8 each), and the second the waiter of a blocked send or
     * receive (kept in parker.cache): with thousands of parked tasks, each
     * resumption finds the task cold in the cache, and every further line
     * costs a miss.  Tasks are allocated aligned to a line (task.c).
     */
    /* How the task sleeps; parker.ops points at task.c's wait and wake,
     * parker.cache at wait1.  parker.state follows park.h; task.c explains
     * the timed case.  chan_sched_dump reads parker.state and the note
     * (park.h) from any thread. */
    chan__parker_t parker;
    chan_sched_t *sched;          /* immutable */
    chan__ctx_t ctx;              /* saved registers while switched out;
                                     ctx.sp is NULL before the first run */
    _Alignas(CHAN_CACHELINE) chan__wait1_t wait1;

    /* The task's id, 0 while the struct holds no task: read by
     * chan_sched_dump and the deadlock monitor from any thread (dump.c). */
    _Alignas(CHAN_CACHELINE) _Atomic uint64_t id;
    chan__task_t *next;           /* link in a chan__taskq_t (the global
                                     queue, the stack-wait list) or a free
                                     list; that list's lock */
    void (*fn)(void *arg);        /* the task's function; immutable */
    void *arg;
    void *stack;                  /* low end of the stack; NULL before the
                                     first run; owned by the running worker */
    /* Timed parks (task.c).  timer is armed only while the task waits
     * with a deadline.  tlock, a spin lock, orders the worker's "publish
     * PARKED" against the timer's "time is up"; timed_out is guarded by
     * it. */
    _Atomic int tlock;
    unsigned char timed_out;      /* the timer ran for this wait; tlock */
    void *mem;                    /* what malloc returned, for free */
    chan__timer_t timer;
    /* Every task struct of the scheduler, started or cached, linked from
     * sched->all_tasks: never unlinked or freed before chan_sched_free, so
     * that a dump may walk them at any time.  Immutable once linked. */
    chan__task_t *all_next;
    /* Where chan_go was called (chan_go_at), or NULL; for the dump. */
    _Atomic(const char *) file;
    _Atomic int line;
    /* The note's seq when a dump or the monitor first saw this park, and
     * when (CLOCK_MONOTONIC ns): how long the task has been parked. */
    _Atomic unsigned seen_seq;
    _Atomic int64_t seen_at;

#ifdef CHAN_ASAN
    void *asan_fake;              /* ASan's fake stack while switched out */
#endif
#ifdef CHAN_TSAN
    void *tsan_fiber;             /* TSan's fiber: the one of its stack */
#endif
};

/*
 * A FIFO of tasks, linked through task->next: the scheduler's global run
 * queue and its stack-wait list.  The lock of its owner guards head, tail,
 * the links and every write of len; len may also be read without it, as
 * a hint (the queue is empty, or how long it was a moment ago).
 */
typedef struct chan__taskq {
    chan__task_t *head, *tail;  /* oldest, newest; NULL when empty */
    _Atomic size_t len;
} chan__taskq_t;

/* chan__taskq_len - q's length, read without its lock: a hint. */
static inline size_t chan__taskq_len(chan__taskq_t *q)
{
    return atomic_load_explicit(&q->len, memory_order_relaxed);
}

/* chan__taskq_append - append the n tasks first..last, linked through
 * next, to q.  q's lock held. */
static inline void chan__taskq_append(chan__taskq_t *q, chan__task_t *first,
                                      chan__task_t *last, size_t n)
{
    last->next = NULL;
    if (q->tail)
        q->tail->next = first;
    else
        q->head = first;
    q->tail = last;
    atomic_store_explicit(&q->len, chan__taskq_len(q) + n,
                          memory_order_relaxed);
}

/* chan__taskq_take - unlink the oldest n tasks of q (1 <= n <= its
 * length) and return the first; they stay linked to each other through
 * next, the last one's next undefined.  q's lock held. */
static inline chan__task_t *chan__taskq_take(chan__taskq_t *q, size_t n)
{
    chan__task_t *first = q->head, *last = first;
    for (size_t i = 1; i < n; i++)
        last = last->next;
    q->head = last->next;
    if (!q->head)
        q->tail = NULL;
    atomic_store_explicit(&q->len, chan__taskq_len(q) - n,
                          memory_order_relaxed);
    return first;
}

/* chan__task_drain - free the task structs cached by w (task.c). */
CHAN_INTERNAL void chan__task_drain(chan__worker_t *w);

struct chan__worker {
    chan__ctx_t ctx;              /* the worker loop while a task runs */
    chan_sched_t *sched;          /* immutable */
    /* The running task.  Written by the worker thread only, with relaxed
     * atomic stores, since chan_sched_dump reads it from anywhere. */
    chan__task_t *current;
    int after;                    /* enum chan__after; set by the task */
    unsigned id;                  /* index in sched->workers; immutable */
    pthread_t thread;
    int started;                  /* thread was created; for cleanup */

    /* Local run queue: ring[head % CHAN_RUNQ_SIZE] .. ring[(tail-1) % ...],
     * oldest first, plus runnext.  mu guards all of them; len is the
     * number of tasks in ring, plus LEN_NEXT (sched.c) while runnext holds
     * one, written under mu and read without it to skip empty victims. */
    char pad0[64];                /* keeps stealers' lines off the above */
    _Atomic int mu;               /* a spin lock (sched.c) */
    chan__task_t *ring[CHAN_RUNQ_SIZE];
    unsigned head, tail;
    chan__task_t *runnext;
    unsigned next_seq;            /* run-next puts so far; mu */
    unsigned seen_seq;            /* next_seq at a thief's last look; mu */
    _Atomic unsigned len;
    /* Times the worker's own pops left its ring empty: written by its
     * thread under mu, read by thieves without it (sched.c). */
    _Atomic unsigned drains;
    /* Tasks this worker has queued so far (its own thread writes it, idle
     * workers read it to tell a busy scheduler from a quiet one). */
    _Atomic unsigned puts;
    char pad1[64];

    unsigned tick;                /* schedules so far; worker thread only */
    unsigned runnext_streak;      /* run-next picks in a row; worker only */
    uint32_t rng;                 /* victim choice; worker thread only */
    /* The victim whose ring this worker watches before stealing from it,
     * that ring's drains then, and since when; worker thread only. */
    chan__worker_t *watch;
    unsigned watch_drains;
    int64_t watch_since;
    unsigned seen_puts;           /* others' puts at the last nap; idem */
    /* 1 while the worker polls for descriptors in idle(): tasks of its
     * scheduler that the poll makes ready go onto its own queue (sched.c,
     * chan__sched_ready); worker thread only. */
    int polling;
    chan__stack_cache_t stacks;   /* worker thread only */
    unsigned batch;               /* stacks of its next batch; idem */
    /* Finished tasks' structs, linked by next, for chan_go in a task on
     * this worker to reuse (task.c); worker thread only. */
    chan__task_t *free_tasks;
    unsigned nfree_tasks;
    /* Task ids this worker hands out without touching sched->next_id:
     * next_id .. id_end - 1; worker thread only. */
    uint64_t next_id, id_end;
    size_t finished;              /* tasks returned, not yet flushed */

#ifdef CHAN_ASAN
    void *asan_fake;
    const void *asan_bottom;      /* the worker thread's own stack */
    size_t asan_size;
#endif
#ifdef CHAN_TSAN
    void *tsan_fiber;             /* the worker thread's own fiber */
#endif
};

struct chan_sched {
    chan__worker_t *workers;      /* nworkers of them; immutable */
    unsigned nworkers;
    size_t stack_size;            /* usable bytes per stack, whole pages */

    /* The global queue, guarded by gmu. */
    pthread_mutex_t gmu;
    chan__taskq_t global;
    /* Threads inside chan__sched_push_global.  Such a thread is not a
     * worker of this scheduler, and once it has published a task that
     * task may run and return, so it may still be waking a worker after
     * the last task returned: freeing waits for it to leave. */
    _Atomic unsigned pushers;

    /* Idle workers.  A sleeper waits for a token; a waker adds one (at
     * most one per idle worker) and signals. */
    pthread_mutex_t idle_mu;
    pthread_cond_t idle_cv;
    unsigned tokens;              /* idle_mu */
    int stop;                     /* idle_mu: chan_sched_free is done */
    /* The idle worker that waits in the descriptor poll instead of on
     * idle_cv (at most one per process, netpoll.c), and whether it was
     * kicked out of it already; idle_mu. */
    chan__worker_t *poll_sleeper;
    int poll_kicked;
    /* Workers registered as idle (low 32 bits) and workers spinning,
     * looking for work (high 32 bits): one word, so that a worker moves
     * from spinning to idle in one step and an adder reads both at once
     * with one read-modify-write (sched.c, "No lost wakeups"). */
    _Atomic uint64_t idle_word;

    /* Live tasks (started, not finished), and the callers of
     * chan_sched_wait waiting for them to reach 0 (threads or tasks of
     * other schedulers, each parked on a waiter on its own stack, in any
     * order; see task_flush in task.c). */
    _Atomic size_t ntasks;
    pthread_mutex_t done_mu;
    chan__event_waiter_t *done_waiters; /* done_mu (waitq.h) */

    pthread_mutex_t stack_mu;
    chan__stack_cache_t stacks;   /* stack_mu */
    chan__stack_pool_t cold;      /* stack_mu: stacks beyond the caches */
    /* Tasks that found no stack (out of memory or of mappings), guarded
     * by stack_mu. */
    chan__taskq_t swait;
    /* 1 once a failure to map a stack was reported (stack.c). */
    _Atomic int stack_warned;

    /* Every task struct ever allocated for s, through task->all_next
     * (pushed with a release CAS, walked with acquire loads, never
     * shortened before chan_sched_destroy); the structs of finished tasks
     * that no worker cache holds, through task->next (task_mu); and the
     * next batch of task ids (task.c). */
    _Atomic(chan__task_t *) all_tasks;
    pthread_mutex_t task_mu;
    chan__task_t *free_tasks;     /* task_mu */
    _Atomic uint64_t next_id;

    /* The deadlock monitor (dump.c), started only with CHAN_DEBUG=deadlock.
     * mon_mu guards mon_stop; the rest is the monitor thread's own. */
    int mon_started;
    pthread_t mon_thread;
    pthread_mutex_t mon_mu;
    pthread_cond_t mon_cv;        /* CLOCK_MONOTONIC */
    int mon_stop;
    int mon_reported;             /* the report was written */
    unsigned long mon_progress;   /* chan__debug_progress at mon_since */
    int64_t mon_since;
};

/* ---------------------------------------------------------------- sched.c */

/*
 * chan__worker_self - the worker running the calling thread, or NULL.
 * Never inlined, and never to be kept across a switch: a task may resume
 * on another worker (see the comment at its definition).
 */
CHAN_INTERNAL chan__worker_t *chan__worker_self(void);

/* chan__worker_bind - make w (or NULL) the worker of the calling thread;
 * by the worker thread itself, as it starts and ends. */
CHAN_INTERNAL void chan__worker_bind(chan__worker_t *w);

/*
 * chan__task_worker - the worker running the calling task, or NULL when
 * the caller is no task (a plain thread, or a worker between tasks).  Not
 * to be kept across a switch, as chan__worker_self.
 */
static inline chan__worker_t *chan__task_worker(void)
{
    chan__worker_t *w = chan__worker_self();
    return w && w->current ? w : NULL;
}

/* chan__in_task_of - the worker running the calling task if that is a
 * task of s, else NULL. */
static inline chan__worker_t *chan__in_task_of(const chan_sched_t *s)
{
    chan__worker_t *w = chan__worker_self();
    return w && w->current && w->sched == s ? w : NULL;
}

/* chan__sched_find - one look at every queue w may take a task from; the
 * task, or NULL.  Called by w's thread. */
CHAN_INTERNAL chan__task_t *chan__sched_find(chan__worker_t *w);

/* chan__sched_idle - spin, then sleep, until w has a task (returned) or
 * the scheduler stops (NULL).  Called by w's thread once it found none. */
CHAN_INTERNAL chan__task_t *chan__sched_idle(chan__worker_t *w);

/*
 * chan__sched_ready - make t runnable (it is not on any queue).  From a
 * task of t's scheduler, t goes to the run-next slot; from anywhere else,
 * to the global queue.  May be called holding the timer heap lock.
 */
CHAN_INTERNAL void chan__sched_ready(chan__task_t *t);

/* chan__sched_spawn - queue a new task t of s (from chan_go). */
CHAN_INTERNAL void chan__sched_spawn(chan_sched_t *s, chan__task_t *t);

/* chan__sched_push_local - put t at the tail of w's local queue.  Called
 * by w's own thread. */
CHAN_INTERNAL void chan__sched_push_local(chan__worker_t *w, chan__task_t *t);

/* chan__sched_push_global - put t at the tail of s's global queue and wake
 * a worker.  Inside chan__unpark_many_begin/end (park.h) t joins the
 * calling thread's batch instead, which goes to the queue in one step
 * when it is full, when a task of another scheduler comes, or at
 * chan__unpark_many_end. */
CHAN_INTERNAL void chan__sched_push_global(chan_sched_t *s, chan__task_t *t);

/* chan__sched_flush_ready - queue the calling thread's batch (the hook of
 * chan__unpark_many_end). */
CHAN_INTERNAL void chan__sched_flush_ready(void);

/* ---------------------------------------------------------------- task.c */

/* chan__task_worker_main - the body of worker thread w (arg): runs tasks
 * until the scheduler stops. */
CHAN_INTERNAL void *chan__task_worker_main(void *arg);

/*
 * chan__task_go - chan_go_at with valid arguments (s not NULL): start
 * fn(arg) as a new task of s, recording file and line for the dump.
 * Returns 0 or -ENOMEM.
 */
CHAN_INTERNAL int chan__task_go(chan_sched_t *s, void (*fn)(void *arg),
                                void *arg, const char *file, int line);

/* chan__task_yield - the running task t goes to the back of its worker's
 * queue and lets the worker run another. */
CHAN_INTERNAL void chan__task_yield(chan__task_t *t);

/* The park hook installed for tasks (park.h). */
CHAN_INTERNAL chan__parker_t *chan__task_parker(void);

/* chan__task_free_all - free every task struct of s (chan_sched_free). */
CHAN_INTERNAL void chan__task_free_all(chan_sched_t *s);

/* ---------------------------------------------------------------- stack.c */

/* chan__stack_take - a stack for a new task run by w, from w's cache, the
 * shared one or the cold pool, else newly mapped; NULL with *err set to
 * the negative errno of the mapping that failed.  Called by w's thread. */
CHAN_INTERNAL void *chan__stack_take(chan__worker_t *w, int *err);

/* chan__stack_give - the stack lo of a task that finished on w goes back
 * to a cache or the cold pool.  Returns the oldest task waiting for a
 * stack, or NULL: the caller queues it on w, where it finds lo.  Called
 * by w's thread. */
CHAN_INTERNAL chan__task_t *chan__stack_give(chan__worker_t *w, void *lo);

/* chan__stack_wait - t found no stack: it waits in s's stack-wait list
 * (the top of this file). */
CHAN_INTERNAL void chan__stack_wait(chan_sched_t *s, chan__task_t *t);

/* chan__stack_trim - discard the memory of up to CHAN_STACK_DISCARD
 * stacks of s's cold pool that wait for it, without holding the stack
 * lock while the kernel does it.  Returns 1 if it discarded some, 0 if
 * none waited.  Called by idle workers (sched.c). */
CHAN_INTERNAL int chan__stack_trim(chan_sched_t *s);

/* chan__task_stack_waiter - take the oldest task of s's stack-wait list,
 * or NULL. */
CHAN_INTERNAL chan__task_t *chan__task_stack_waiter(chan_sched_t *s);

/*
 * chan__stack_warn - say once per scheduler, on standard error, that a
 * stack could not be mapped (err, a negative errno): tasks then wait, and
 * chan_go may fail, for reasons the program cannot see otherwise.  Called
 * by a worker, on its own stack.
 */
CHAN_INTERNAL void chan__stack_warn(chan_sched_t *s, int err);

/* ---------------------------------------------------------------- dump.c */

/*
 * chan__monitor_start - with CHAN_DEBUG=deadlock in the environment, start
 * s's deadlock monitor thread.  Returns 0, or -EAGAIN if the thread cannot
 * be started.  Called by chan_sched_new once the workers run.
 */
CHAN_INTERNAL int chan__monitor_start(chan_sched_t *s);

/* chan__monitor_stop - stop and join s's monitor, if it runs. */
CHAN_INTERNAL void chan__monitor_stop(chan_sched_t *s);

#endif /* CHAN_SCHED_SCHED_H */

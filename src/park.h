/*
 * park.h - how a blocked thread or task sleeps and is woken.
 *
 * Channel, select and wait group code never asks whether it runs in a plain
 * thread or in a scheduler task: it asks chan__park_self() for the caller's
 * parker, arms it, publishes a waiter that points at it, drops its locks and
 * calls chan__park_wait().  Whoever completes the operation (a peer, a
 * close) calls chan__unpark() exactly once.
 *
 * State word.  A parker goes EMPTY -> (PARKED) -> NOTIFIED:
 *   EMPTY     armed by chan__park_prepare(); nobody sleeps yet.
 *   PARKED    the owner sleeps (a thread on its condition variable, a task
 *             switched out).  Only the owner moves EMPTY -> PARKED, in
 *             park.c under the parker's mutex (threads) or in the scheduler.
 *   NOTIFIED  set by the one waker.  A waker that finds EMPTY sets it with a
 *             CAS and never touches the parker again; one that finds PARKED
 *             goes the slow way (threads: mutex, store, signal, unlock;
 *             tasks: make the task runnable).
 *
 * Lifetimes.  A thread's parker is thread-local and lives as long as the
 * thread; a task's lives in the task.  The owner returns from
 * chan__park_wait() only once the waker is done with the parker (see park.c).
 *
 * Timeouts.  chan__park_wait() returns -ETIMEDOUT with the parker still
 * armed.  The caller must then either win the race for its waiter (see
 * waitq.h, chan__sel_cancel) so that no waker will come, or, having lost it,
 * call chan__park_wait(p, CHAN_NO_DEADLINE) to take the wakeup that is
 * already on its way.  Either way the parker is not reused before that.
 */
#ifndef CHAN_PARK_H
#define CHAN_PARK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "internal.h"

enum { CHAN_PARK_EMPTY = 0, CHAN_PARK_PARKED = 1, CHAN_PARK_NOTIFIED = 2 };

/* Bytes a parker's cache holds (chan__park_cache_take). */
#define CHAN_PARK_CACHE_BYTES 64

typedef struct chan__parker chan__parker_t;

/*
 * What a parked thread or task waits on, for chan_sched_dump and the
 * deadlock report (src/sched/dump.c): the note, a few fields of the parker
 * itself.  Every blocking call writes it with chan__park_note() just
 * before it parks; the dump reads a task's note from any thread while the
 * task is PARKED.  The fields are atomics written and read with relaxed
 * order (plain moves): a dump that races with a task parking again may
 * print a mix of the two waits, but it reads nothing but these numbers,
 * so that is harmless.  The note is never cleared: it means something only
 * while the state is PARKED.
 */
enum chan__wait_kind {
    CHAN_WAIT_NONE = 0,
    CHAN_WAIT_SEND,      /* obj: the channel; a: elem size; b: capacity */
    CHAN_WAIT_RECV,      /* as SEND */
    CHAN_WAIT_SELECT,    /* a: the number of enabled cases */
    CHAN_WAIT_SLEEP,     /* chan_sleep, or a select with no case enabled */
    CHAN_WAIT_WG,        /* obj: the wait group */
    CHAN_WAIT_BLOCKING,  /* chan_blocking: fn runs on a helper thread */
    CHAN_WAIT_FD,        /* a: the descriptor; b: the poll(2) events */
    CHAN_WAIT_SCHED,     /* chan_sched_wait; obj: the scheduler waited for */
};

/*
 * How a task parker sleeps and wakes; the scheduler provides one.  wait()
 * and wake() follow the state protocol above.  wait() returns 0 once
 * NOTIFIED, or -ETIMEDOUT once deadline (absolute CLOCK_MONOTONIC ns,
 * CHAN_NO_DEADLINE for none) has passed.
 */
struct chan__park_ops {
    int  (*wait)(chan__parker_t *p, int64_t deadline);
    void (*wake)(chan__parker_t *p);
};

struct chan__parker {
    _Atomic int state;                  /* CHAN_PARK_*, see above */
    /* The note (see above): parks so far, counted by chan__park_note(),
     * which tells one park from the next so that a dump can stamp when it
     * first saw a park (dump.c). */
    _Atomic unsigned note_seq;
    const struct chan__park_ops *ops;   /* NULL: a plain thread (park.c) */
    /* The owner's cache of one (chan__park_cache_take): memory for the
     * layer above, which this file never looks inside. */
    void *cache;
    /* The rest of the note: kind (enum chan__wait_kind), whether the wait
     * has a deadline, and obj, a and b as enum chan__wait_kind says (a and
     * b saturated at UINT32_MAX).  In the parker, not beside it, because a
     * task's parker shares the one cache line that every park touches
     * anyway (sched.h): a store to another line per park shows in the
     * benchmarks. */
    _Atomic(const void *) note_obj;
    _Atomic uint32_t note_a, note_b;
    _Atomic unsigned char note_kind;
    _Atomic unsigned char note_timed;
};

/*
 * The scheduler sets this once, before its first task runs, to a function
 * that returns the running task's parker or NULL outside a task.  Until
 * then it is NULL and threads pay nothing for the scheduler.
 */
CHAN_INTERNAL extern chan__parker_t *(*_Atomic chan__park_task_hook)(void);

/*
 * chan__park_self - the parker of the calling thread or task.  Do not keep
 * it across a return to the caller's caller: a task may change threads.
 */
CHAN_INTERNAL chan__parker_t *chan__park_self(void);

/*
 * chan__park_may_spin - whether p's owner may spin-wait, polling for a
 * peer for a moment before it blocks: a plain thread may; a task must
 * not, since the peer it waits for may need the task's own worker.
 */
static inline int chan__park_may_spin(const chan__parker_t *p)
{
    return p->ops == NULL;
}

/*
 * chan__park_cache_take - take the CHAN_PARK_CACHE_BYTES of memory (aligned
 * for any pointer or integer) that p's owner keeps for the layer above,
 * until chan__park_cache_put gives them back: a cache of one, as Go's
 * acquireSudog takes a sudog from its per-P cache.  waitq.h keeps the
 * waiter of a blocked send or receive there (chan__wait1_acquire).  A
 * thread's cache is in its thread-local parker (park.c), a task's in the
 * task (sched/), so that a peer that claims the waiter touches memory of
 * the owner's that is in use anyway, not a stack page of a task parked
 * long ago.
 *
 * Only the owner takes and puts, and it holds the memory in at most one
 * blocking call at a time (a thread or a task blocks in one call at a
 * time): so the cache is full whenever it is taken, and taking need not
 * empty it, nor putting refill it.  That keeps a blocking call's cost
 * to the one load it had when the task's waiter was a field of the
 * parker.
 */
static inline void *chan__park_cache_take(chan__parker_t *p)
{
    return p->cache;
}

/* chan__park_cache_put - give m, from chan__park_cache_take, back to p's
 * cache (releaseSudog); nothing to do for a cache of one (see above). */
static inline void chan__park_cache_put(chan__parker_t *p, void *m)
{
    (void)p, (void)m;
}

/* chan__park_cache_init - fill p's cache with m, before p is used. */
static inline void chan__park_cache_init(chan__parker_t *p, void *m)
{
    p->cache = m;
}

/* chan__park_prepare - arm p (state EMPTY) before publishing a waiter. */
static inline void chan__park_prepare(chan__parker_t *p)
{
    /* Relaxed is enough: the waiter that points at p is published under a
     * channel lock, whose release orders this store before any waker's
     * access. */
    atomic_store_explicit(&p->state, CHAN_PARK_EMPTY, memory_order_relaxed);
}

/*
 * chan__park_wait - sleep until notified or until deadline.  Returns 0 when
 * notified, -ETIMEDOUT when the deadline passed first (see Timeouts above).
 * The caller holds no lock.
 */
CHAN_INTERNAL int chan__park_wait(chan__parker_t *p, int64_t deadline);

/* chan__unpark - wake p's owner.  Called once per arming, holding no lock. */
CHAN_INTERNAL void chan__unpark(chan__parker_t *p);

/*
 * Waking many at once (chan_close).  Between chan__unpark_many_begin()
 * and chan__unpark_many_end(), tasks that a plain thread wakes are made
 * runnable a batch at a time (the scheduler's queue taken once per batch,
 * sched.c) instead of one by one; every one of them is runnable when
 * chan__unpark_many_end() returns.  Threads are woken at once as always.
 * Nothing may block in between.  The scheduler sets the hook, as
 * chan__park_task_hook, before its first task runs.
 */
CHAN_INTERNAL extern CHAN_TLS int chan__unpark_many_depth;
CHAN_INTERNAL extern void (*_Atomic chan__unpark_many_hook)(void);

static inline void chan__unpark_many_begin(void)
{
    chan__unpark_many_depth++;
}

static inline void chan__unpark_many_end(void)
{
    if (--chan__unpark_many_depth == 0) {
        void (*flush)(void) = atomic_load_explicit(&chan__unpark_many_hook,
                                                   memory_order_acquire);
        if (flush)
            flush();
    }
}

/*
 * chan__park_note - record in p's note what its owner is about to wait on
 * (kind, one of enum chan__wait_kind, with obj, a and b as listed there)
 * and whether the wait has a deadline (deadline, absolute ns, or
 * CHAN_NO_DEADLINE, INT64_MAX, for none).  Call it at every blocking site,
 * before chan__park_wait() or chan__sel_wait(); a descriptor wait calls
 * chan__park_note(p, CHAN_WAIT_FD, NULL, fd, events, deadline).
 *
 * A few plain stores into the owner's parker and nothing else: it runs on
 * every park.  No clock is read; "since when" is stamped by the dump
 * (dump.c).
 */
static inline void chan__park_note(chan__parker_t *p, int kind,
                                   const void *obj, size_t a, size_t b,
                                   int64_t deadline)
{
    atomic_store_explicit(&p->note_kind, (unsigned char)kind,
                          memory_order_relaxed);
    atomic_store_explicit(&p->note_timed, deadline != INT64_MAX,
                          memory_order_relaxed);
    atomic_store_explicit(&p->note_obj, obj, memory_order_relaxed);
    atomic_store_explicit(&p->note_a, a < UINT32_MAX ? (uint32_t)a : UINT32_MAX,
                          memory_order_relaxed);
    atomic_store_explicit(&p->note_b, b < UINT32_MAX ? (uint32_t)b : UINT32_MAX,
                          memory_order_relaxed);
    atomic_store_explicit(
        &p->note_seq,
        atomic_load_explicit(&p->note_seq, memory_order_relaxed) + 1,
        memory_order_relaxed);
}

/*
 * Progress, for the deadlock report.  With CHAN_DEBUG=deadlock (dump.c),
 * chan__debug_deadlock is set once, before the first monitor starts, and
 * every channel operation that completes bumps chan__debug_progress, so
 * that a monitor can tell a process where nothing happens from one where
 * threads still pass values around.  Without it the cost is one load of a
 * read-mostly flag and a branch not taken.
 */
CHAN_INTERNAL extern _Atomic int chan__debug_deadlock;
CHAN_INTERNAL extern _Atomic unsigned long chan__debug_progress;

/* chan__progress - a channel operation has completed. */
static inline void chan__progress(void)
{
    if (CHAN_UNLIKELY(atomic_load_explicit(&chan__debug_deadlock,
                                           memory_order_relaxed)))
        atomic_fetch_add_explicit(&chan__debug_progress, 1,
                                  memory_order_relaxed);
}

#endif /* CHAN_PARK_H */

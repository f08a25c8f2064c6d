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

typedef struct chan__parker chan__parker_t;

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
    const struct chan__park_ops *ops;   /* NULL: a plain thread (park.c) */
    /* Where a blocked send or receive of the owner keeps its waiter (see
     * waitq.h), or NULL for the caller's stack.  A task's is in the task:
     * a peer that claims the waiter then touches the task's memory, not
     * the stack of a task parked long ago (a cold page). */
    struct chan__wait1 *slot;
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

/* chan__cpu_relax - a spin-wait hint to the CPU. */
static inline void chan__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

#endif /* CHAN_PARK_H */

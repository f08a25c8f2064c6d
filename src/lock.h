/*
 * lock.h - the channel lock: a short spin, then sleep in the kernel.
 *
 * A channel's critical sections are a few dozen nanoseconds (bookkeeping
 * and one memcpy), far shorter than a trip through the kernel.  glibc's
 * default mutex sleeps on the first contention, so two threads hammering
 * one channel would spend their time in futex calls; this lock spins
 * first and only then sleeps.
 *
 * State word (the three-state futex mutex of Drepper's "Futexes Are
 * Tricky"):  0 free, 1 held, 2 held and a thread may sleep on it.  An
 * unlock that finds 2 wakes one sleeper, which takes the lock as 2 again
 * (it cannot know whether others sleep too).  Acquire on lock and release
 * on unlock order the critical sections; ThreadSanitizer sees those
 * atomics, so it checks the code under this lock as it would under a
 * mutex.
 */
#ifndef CHAN_LOCK_H
#define CHAN_LOCK_H

#include <stdatomic.h>
#include <stdint.h>

#include "internal.h"

typedef struct chan__lock {
    _Atomic uint32_t state; /* 0 free, 1 held, 2 held with possible sleepers */
} chan__lock_t;

#define CHAN_LOCK_INIT { 0 }

/* Slow paths, in lock.c. */
CHAN_INTERNAL void chan__lock_slow(chan__lock_t *l);
CHAN_INTERNAL void chan__lock_wake(chan__lock_t *l);

static inline void chan__lock_init(chan__lock_t *l)
{
    atomic_init(&l->state, 0);
}

static inline void chan__lock(chan__lock_t *l)
{
    uint32_t free_ = 0;
    if (CHAN_LIKELY(atomic_compare_exchange_weak_explicit(
            &l->state, &free_, 1, memory_order_acquire, memory_order_relaxed)))
        return;
    chan__lock_slow(l);
}

static inline void chan__unlock(chan__lock_t *l)
{
    if (CHAN_UNLIKELY(atomic_exchange_explicit(&l->state, 0,
                                               memory_order_release) == 2))
        chan__lock_wake(l);
}

#endif /* CHAN_LOCK_H */

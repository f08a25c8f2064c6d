/*
 * lock.c - slow paths of the channel lock (see lock.h for the state word).
 */
#include "internal.h"

#include <stdint.h>

#include "clock.h"
#include "futex.h"
#include "lock.h"

/* Polls of the lock word before sleeping: a few microseconds, several
 * times the longest critical section, so a sleep means real contention. */
enum { LOCK_SPIN = 100 };

void chan__lock_slow(chan__lock_t *l)
{
    for (int i = 0; i < LOCK_SPIN; i++) {
        uint32_t s = atomic_load_explicit(&l->state, memory_order_relaxed);
        if (s == 0 && atomic_compare_exchange_weak_explicit(
                          &l->state, &s, 1, memory_order_acquire,
                          memory_order_relaxed))
            return;
        if (s == 2)
            break; /* others already sleep: join them */
        chan__cpu_relax();
    }
    /* Mark the lock contended; whoever held it will wake one sleeper. */
    while (atomic_exchange_explicit(&l->state, 2, memory_order_acquire) != 0)
        chan__futex_wait(&l->state, 2, CHAN_NO_DEADLINE);
}

void chan__lock_wake(chan__lock_t *l)
{
    chan__futex_wake(&l->state, 1);
}

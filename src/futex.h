/*
 * futex.h - sleeping on a 32-bit word until another thread changes it.
 *
 * The channel lock (lock.c) and the thread parker (park.c) sleep this way
 * on Linux.  Waking is always "store the new value, then wake": a waiter
 * that wakes for any reason (a wake meant for an earlier use of the same
 * word included) rechecks the word and sleeps again, so a late or spurious
 * wake is harmless, and a wake on memory that was reused is too.
 *
 * Both calls leave errno as they found it.  Without futexes (not Linux)
 * chan__futex_wait() just yields the CPU and returns, which keeps every
 * caller correct (they loop) if less frugal; park.c uses a condition
 * variable there instead.
 */
#ifndef CHAN_FUTEX_H
#define CHAN_FUTEX_H

#include <stdatomic.h>
#include <stdint.h>

#include "internal.h"

/*
 * chan__futex_wait - sleep while *addr == val, at most until deadline
 * (absolute CLOCK_MONOTONIC ns; CHAN_NO_DEADLINE for none).  Returns
 * -ETIMEDOUT if the deadline passed, 0 otherwise (woken, *addr differed,
 * or interrupted): the caller rechecks *addr either way.
 */
CHAN_INTERNAL int chan__futex_wait(_Atomic uint32_t *addr, uint32_t val,
                                   int64_t deadline);

/* chan__futex_wake - wake up to n threads sleeping on addr. */
CHAN_INTERNAL void chan__futex_wake(_Atomic uint32_t *addr, int n);

#endif /* CHAN_FUTEX_H */

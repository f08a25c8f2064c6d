/*
 * lock.c - slow paths of the channel lock (see lock.h for the state word).
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include "lock.h"
#include "park.h"

/* Polls of the lock word before sleeping: a few microseconds, several
 * times the longest critical section, so a sleep means real contention. */
enum { LOCK_SPIN = 100 };

#ifdef __linux__
/* syscall() reports failures through errno, which the library promises
 * never to change, so both calls put the caller's value back. */
static void futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
    int saved = errno;
    /* EAGAIN (the word changed) and EINTR just send us round the loop. */
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL,
            0);
    errno = saved;
}

static void futex_wake(_Atomic uint32_t *addr)
{
    int saved = errno;
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    errno = saved;
}
#else
/* Without futexes a waiter yields and polls: correct, if less frugal. */
static void futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
    (void)addr;
    (void)val;
    sched_yield();
}

static void futex_wake(_Atomic uint32_t *addr)
{
    (void)addr;
}
#endif

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
        futex_wait(&l->state, 2);
}

void chan__lock_wake(chan__lock_t *l)
{
    futex_wake(&l->state);
}

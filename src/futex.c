/*
 * futex.c - sleeping on a word (see futex.h).
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "clock.h"
#include "futex.h"

#ifdef __linux__
int chan__futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t deadline)
{
    int saved = chan__errno_save(); /* syscall() reports through errno */
    long r;
    if (deadline == CHAN_NO_DEADLINE) {
        r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val,
                    NULL, NULL, 0);
    } else {
        /* FUTEX_WAIT_BITSET takes an absolute time, on CLOCK_MONOTONIC
         * unless FUTEX_CLOCK_REALTIME is given. */
        struct timespec ts = chan__timespec(deadline);
        r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET_PRIVATE,
                    val, &ts, NULL, FUTEX_BITSET_MATCH_ANY);
    }
    int timed_out = r < 0 && errno == ETIMEDOUT;
    chan__errno_restore(saved);
    return timed_out ? -ETIMEDOUT : 0;
}

void chan__futex_wake(_Atomic uint32_t *addr, int n)
{
    int saved = chan__errno_save();
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL,
            0);
    chan__errno_restore(saved);
}
#else
int chan__futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t deadline)
{
    (void)addr;
    (void)val;
    if (deadline != CHAN_NO_DEADLINE && chan__now() >= deadline)
        return -ETIMEDOUT;
    sched_yield();
    return 0;
}

void chan__futex_wake(_Atomic uint32_t *addr, int n)
{
    (void)addr;
    (void)n;
}
#endif

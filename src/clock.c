/*
 * clock.c - monotonic time and deadlines (see clock.h).
 */
#include "internal.h"

#include "clock.h"

int64_t chan__now(void)
{
    struct timespec ts;
    chan__check(clock_gettime(CLOCK_MONOTONIC, &ts));
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t chan__deadline(int64_t timeout_ns)
{
    if (timeout_ns < 0)
        return CHAN_NO_DEADLINE;
    int64_t now = chan__now();
    if (timeout_ns > CHAN_NO_DEADLINE - now)
        return CHAN_NO_DEADLINE;
    return now + timeout_ns;
}

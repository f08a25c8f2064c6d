/*
 * clock.h - monotonic time and deadlines.
 *
 * Every wait in libchan is bounded by an absolute deadline in nanoseconds on
 * CLOCK_MONOTONIC, computed once from the caller's relative timeout, so a
 * wait interrupted and resumed (spurious wakeups, a select that loops) never
 * stretches the total time and wall-clock jumps change nothing.
 */
#ifndef CHAN_CLOCK_H
#define CHAN_CLOCK_H

#include <stdint.h>
#include <time.h>

#include "internal.h"

/* A deadline that never comes. */
#define CHAN_NO_DEADLINE INT64_MAX

/* chan__now - the CLOCK_MONOTONIC time in nanoseconds. */
CHAN_INTERNAL int64_t chan__now(void);

/*
 * chan__deadline - the absolute deadline for a relative timeout:
 * CHAN_NO_DEADLINE for a negative timeout, now + timeout_ns otherwise
 * (saturating instead of overflowing).
 */
CHAN_INTERNAL int64_t chan__deadline(int64_t timeout_ns);

/* chan__timespec - an absolute nanosecond time as a struct timespec. */
static inline struct timespec chan__timespec(int64_t ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

#endif /* CHAN_CLOCK_H */

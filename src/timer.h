/*
 * timer.h - the library's one timer thread and its min-heap of deadlines.
 *
 * Every time-driven event of the library is a chan__timer_t on one heap
 * ordered by deadline on CLOCK_MONOTONIC: chan_after and chan_tick
 * channels, and (with a scheduler) the timeouts of parked tasks and
 * chan_sleep in tasks.  The thread that serves the heap is started lazily
 * by the first chan__timer_start(); a program that never uses time pays
 * nothing for it.  Insertion and removal are O(log n).
 *
 * Progress.  However short a period, the timer thread fires each timer at
 * most once per pass over the heap, and it lets any thread waiting for the
 * heap lock have it between two firings: so a ticker that cannot keep up
 * (chan_tick(1)) drops ticks, and starting, stopping and resetting timers
 * never wait for more than one fire().  A periodic timer whose event finds
 * no room (fire() sets missed) is polled less and less often while that
 * lasts, so a ticker nobody receives from costs almost no CPU.
 *
 * Locking.  The heap lock is taken first, before any channel lock, and is
 * never taken while a channel lock is held (src/internal.h).  fire() runs on
 * the timer thread with the heap lock held: it must be short and must not
 * block, but it may lock a channel for a non-blocking send and unpark a
 * waiter, or make a task runnable.  It must not call the functions below.
 */
#ifndef CHAN_TIMER_H
#define CHAN_TIMER_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

typedef struct chan__timer chan__timer_t;

struct chan__timer {
    int64_t when;    /* absolute deadline, CLOCK_MONOTONIC ns; set before start */
    int64_t period;  /* > 0: re-armed every period after firing; else one-shot */
    /* Called on the timer thread, heap lock held, when the deadline passes;
     * now is the current CLOCK_MONOTONIC time. */
    void (*fire)(chan__timer_t *t, int64_t now);
    /* Periodic timers: 0 before each fire(), which sets it to 1 when its
     * event could not be delivered (the receiver has not taken the last
     * one).  Heap lock. */
    int missed;
    /* Periodic timers: how far the last missed firing put the next poll
     * off (period, doubling up to a limit while firings keep missing);
     * 0 after a delivered one.  Heap lock. */
    int64_t backoff;
    size_t slot;     /* heap index + 1 while pending, 0 otherwise; heap lock */
};

/*
 * chan__timer_start - put t on the heap (t->when, t->period and t->fire
 * set; t not pending).  Returns 0, or -ENOMEM if the heap cannot grow or the
 * timer thread cannot start.
 */
CHAN_INTERNAL int chan__timer_start(chan__timer_t *t);

/*
 * chan__timer_cancel - take t off the heap.  Returns 1 if it was pending
 * (a one-shot timer then never fires), 0 if it was not.  On return fire()
 * is not running for t and will not run again, so t may be freed.
 * Must not be called from fire() itself.
 */
CHAN_INTERNAL int chan__timer_cancel(chan__timer_t *t);

/*
 * chan__timer_reset - give t (t->fire set, pending or not) a new deadline
 * when and period, as one step with respect to its firing.  With the heap
 * lock held it takes t off the heap if it is pending, calls flush(t)
 * unless flush is NULL (flush may do what fire() may, such as emptying a
 * channel), and then, for a one-shot timer (period <= 0) whose deadline
 * has passed, calls fire() at once, on the calling thread; otherwise it
 * puts t back on the heap.  So no fire() of the old setting runs after
 * flush() and the new setting fires exactly as a fresh start would.
 * Returns 1 if t was pending, 0 if not, or -ENOMEM, with t left as it was,
 * if the heap cannot grow or the timer thread cannot start.  Must not be
 * called from fire().
 */
CHAN_INTERNAL int chan__timer_reset(chan__timer_t *t, int64_t when,
                                    int64_t period,
                                    void (*flush)(chan__timer_t *t));

/*
 * chan__timer_pending - 1 if any timer is on the heap (a timer channel
 * that will fire, a task's deadline), else 0.  Takes the heap lock, so
 * never call it holding a lock below it (src/internal.h).
 */
CHAN_INTERNAL int chan__timer_pending(void);

#endif /* CHAN_TIMER_H */

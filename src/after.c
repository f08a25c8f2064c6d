/*
 * after.c - timer channels: chan_after, chan_tick, chan_timer_stop and
 * chan_timer_reset, on top of the timer heap (timer.h).
 *
 * A timer channel is an ordinary capacity-1 channel of int64_t whose
 * finalize hook points at timer_finalize() and whose owner is a struct
 * timer_chan holding the heap entry.  Firing is a non-blocking send of the
 * current CLOCK_MONOTONIC time: when the previous value has not been
 * received yet, the send fails and the tick is dropped, as in Go (and the
 * heap entry is told, through missed, so that a ticker nobody receives
 * from is polled less and less often: timer.h).
 *
 * Resetting.  chan_timer_reset empties the channel and gives the entry its
 * new setting in one step under the heap lock (chan__timer_reset), so no
 * firing of the old setting can come between the two: once it returns, the
 * channel holds nothing but values of the new setting.  A stop, a reset and
 * a firing of one timer are serialized by the same lock, and each setting
 * of a one-shot timer fires at most once: it leaves the heap when it fires.
 *
 * Locking.  timer_fire() and the reset's flush run with the heap lock
 * held and make a chan_trysend or chan_tryrecv inside it, which takes the
 * channel lock below it (src/internal.h) and unparks a waiter after
 * dropping that lock.
 *
 * Lifetimes.  The struct timer_chan lives exactly as long as the channel:
 * the last chan_release() calls timer_finalize(), which takes the entry off
 * the heap (waiting out a fire() in progress, see chan__timer_cancel) and
 * frees it.  fire() never touches the channel's reference count: the
 * channel cannot be freed while its entry is pending or firing.  Stopping
 * and resetting need the caller's reference, as every channel call does.
 */
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "chan_impl.h"
#include "clock.h"
#include "timer.h"

struct timer_chan {
    chan__timer_t t;  /* the heap entry; fields guarded by the heap lock */
    chan_t *ch;       /* the channel this timer sends to; immutable */
    int ticker;       /* made by chan_tick; immutable */
};

/* A non-blocking send of now to ch; a full channel drops the value.
 * Returns 1 if the value was delivered, 0 if it was dropped. */
static int send_time(chan_t *ch, int64_t now)
{
    return chan_trysend(ch, &now) == 0;
}

/* Timer thread (or a reset that is due at once), heap lock held. */
static void timer_fire(chan__timer_t *t, int64_t now)
{
    if (!send_time(chan__container_of(t, struct timer_chan, t)->ch, now))
        t->missed = 1;
}

/* chan_timer_reset, heap lock held: drop a value not received yet. */
static void timer_flush(chan__timer_t *t)
{
    /* Only a sender blocked on the timer channel itself (a program that
     * sends to it) is woken here: its value moves into the room made. */
    (void)chan_tryrecv(chan__container_of(t, struct timer_chan, t)->ch, NULL);
}

/* The channel's last reference is gone: stop the timer and free it. */
static void timer_finalize(chan_t *ch)
{
    struct timer_chan *tc = ch->owner;
    chan__timer_cancel(&tc->t);
    free(tc);
}

/* A timer channel whose first deadline is delay_ns from now. */
static chan_t *timer_new(int64_t delay_ns, int64_t period_ns)
{
    int saved = chan__errno_save();
    struct timer_chan *tc = calloc(1, sizeof *tc);
    chan__errno_restore(saved);
    if (!tc)
        return NULL;
    chan_t *ch = chan_make(sizeof(int64_t), 1);
    if (!ch) {
        free(tc);
        return NULL;
    }
    tc->ch = ch;
    tc->ticker = period_ns > 0;
    tc->t.period = period_ns;
    tc->t.fire = timer_fire;
    /* Set before the channel is shared, as chan_impl.h asks. */
    ch->owner = tc;
    ch->finalize = timer_finalize;

    if (delay_ns <= 0) {
        /* Due already: fire here instead of a round trip through the
         * timer thread.  Only a one-shot timer gets here (a period is
         * always > 0), so the timer is done and stays off the heap. */
        (void)send_time(ch, chan__now());
        return ch;
    }
    tc->t.when = chan__deadline(delay_ns);
    if (chan__timer_start(&tc->t) < 0) {
        chan_release(ch); /* not pending: the finalizer just frees tc */
        return NULL;
    }
    return ch;
}

chan_t *chan_after(int64_t delay_ns)
{
    return timer_new(delay_ns, 0);
}

chan_t *chan_tick(int64_t period_ns)
{
    if (period_ns <= 0)
        return NULL;
    return timer_new(period_ns, period_ns);
}

int chan_timer_stop(chan_t *timer)
{
    if (!timer || timer->finalize != timer_finalize)
        return -EINVAL;
    struct timer_chan *tc = timer->owner;
    /* Pending means: a one-shot timer that has not fired, or a ticker
     * that has not been stopped. */
    return chan__timer_cancel(&tc->t) ? 0 : -EPIPE;
}

int chan_timer_reset(chan_t *timer, int64_t ns)
{
    if (!timer || timer->finalize != timer_finalize)
        return -EINVAL;
    struct timer_chan *tc = timer->owner;
    if (tc->ticker && ns <= 0)
        return -EINVAL;
    /* A one-shot timer due now or earlier fires inside the reset, as
     * chan_after fires inside the call. */
    int64_t when = ns > 0 ? chan__deadline(ns) : INT64_MIN;
    int rc = chan__timer_reset(&tc->t, when, tc->ticker ? ns : 0, timer_flush);
    if (rc < 0)
        return rc;
    return rc ? 0 : -EPIPE;
}

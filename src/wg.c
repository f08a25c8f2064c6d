/*
 * wg.c - wait groups, like Go's sync.WaitGroup.
 *
 * A counter and a list of waiters under one mutex.  A waiter is a
 * chan__sel_t on the waiting thread's or task's stack and sleeps through the
 * park interface (park.h), so a task parks instead of blocking its worker.
 *
 * Invariants (with wg->mu held):
 *   - 0 <= count.
 *   - waiters is non-empty only while count > 0: the add that brings the
 *     counter to zero takes the whole list.
 *
 * Locking.  wg->mu guards count and the waiter list.  It is a leaf lock
 * (src/internal.h): nothing else is taken under it, and waiters are
 * unparked after it is dropped.
 *
 * Lifetimes.  A waiter lives on its owner's stack until the owner returns
 * from chan__sel_wait().  The add that claims it (the sel CAS, done under
 * wg->mu, before the list is detached) reads its next link before
 * unparking it and never touches it afterwards.  Because the whole list is
 * detached at zero, the group may be reused (added to again) at once, even
 * before the old waiters have woken.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "clock.h"
#include "park.h"
#include "waitq.h"

struct wg_waiter {
    chan__sel_t sel;          /* claimed by the add that reaches zero */
    struct wg_waiter *next;   /* guarded by wg->mu while listed */
};

struct chan_wg {
    pthread_mutex_t mu;         /* see Locking above */
    int64_t count;              /* the counter; never negative */
    struct wg_waiter *waiters;  /* blocked in chan_wg_wait, any order */
};

chan_wg_t *chan_wg_new(void)
{
    chan_wg_t *wg = calloc(1, sizeof *wg);
    if (!wg)
        return NULL;
    if (pthread_mutex_init(&wg->mu, NULL) != 0) {
        free(wg);
        return NULL;
    }
    return wg;
}

void chan_wg_free(chan_wg_t *wg)
{
    if (!wg)
        return;
    chan__check(pthread_mutex_destroy(&wg->mu));
    free(wg);
}

int chan_wg_add(chan_wg_t *wg, int delta)
{
    if (!wg)
        return -EINVAL;
    chan__check(pthread_mutex_lock(&wg->mu));
    /* A counter that would go negative is a caller bug (Go panics); so is
     * one that would overflow, which takes 2^32 maximal adds. */
    if ((delta < 0 && wg->count < -(int64_t)delta) ||
        (delta > 0 && wg->count > INT64_MAX - delta)) {
        chan__check(pthread_mutex_unlock(&wg->mu));
        return -EINVAL;
    }
    wg->count += delta;
    struct wg_waiter *list = NULL;
    if (wg->count == 0 && wg->waiters) {
        list = wg->waiters;
        wg->waiters = NULL;
        for (struct wg_waiter *w = list; w; w = w->next) {
            int expect = CHAN_SEL_WAITING;
            /* A wait has no timeout, so nobody else claims the sel and
             * this CAS always wins.  acq_rel as in chan__waitq_claim. */
            chan__assert(atomic_compare_exchange_strong_explicit(
                &w->sel.state, &expect, CHAN_SEL_DONE, memory_order_acq_rel,
                memory_order_acquire));
            w->sel.fired = 0;
        }
    }
    chan__check(pthread_mutex_unlock(&wg->mu));
    while (list) {
        /* Read next first: once unparked, the waiter's frame may vanish. */
        struct wg_waiter *next = list->next;
        chan__unpark(list->sel.parker);
        list = next;
    }
    return 0;
}

int chan_wg_done(chan_wg_t *wg)
{
    return chan_wg_add(wg, -1);
}

int chan_wg_wait(chan_wg_t *wg)
{
    if (!wg)
        return -EINVAL;
    struct wg_waiter w;
    chan__check(pthread_mutex_lock(&wg->mu));
    if (wg->count == 0) {
        chan__check(pthread_mutex_unlock(&wg->mu));
        return 0;
    }
    chan__sel_init(&w.sel);
    w.next = wg->waiters;
    wg->waiters = &w;
    chan__check(pthread_mutex_unlock(&wg->mu));
    chan__assert(chan__sel_wait(&w.sel, CHAN_NO_DEADLINE) == 0);
    return 0;
}

/*
 * waitq.c - FIFO queues of waiters and the claim, sleeping on a sel, and
 * event waiters (see waitq.h for the protocol, the invariants and the
 * lifetimes).
 *
 * Locking.  The queue functions are called with the owning channel's lock
 * held; that lock guards next, prev and queued of every waiter in the
 * queue.  An event's list is guarded by the event's mutex.
 */
#include "internal.h"

#include "waitq.h"

void chan__waitq_push(chan__waitq_t *q, chan__waiter_t *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    w->queued = 1;
}

void chan__waitq_remove(chan__waitq_t *q, chan__waiter_t *w)
{
    if (!w->queued)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->next = w->prev = NULL;
    w->queued = 0;
}

chan__waiter_t *chan__waitq_claim(chan__waitq_t *q)
{
    chan__waiter_t *w;
    while ((w = q->head) != NULL) {
        chan__waitq_remove(q, w);
        if (w->sel->exclusive) {
            /* Nobody else can claim it: no other case, no timeout, and
             * every other claimer takes this channel's lock first, whose
             * release and acquire also order the owner's setup before
             * this.  A store instead of a CAS (a locked instruction). */
            atomic_store_explicit(&w->sel->state, CHAN_SEL_DONE,
                                  memory_order_relaxed);
            return w;
        }
        int expect = CHAN_SEL_WAITING;
        /* acq_rel: acquire to see the owner's setup of the waiter, release
         * so that a losing chan__sel_cancel sees that we won. */
        if (atomic_compare_exchange_strong_explicit(
                &w->sel->state, &expect, CHAN_SEL_DONE, memory_order_acq_rel,
                memory_order_acquire))
            return w;
        /* Stale: its select completed elsewhere or timed out.  Its owner will
         * find it unlinked when it relocks this channel. */
    }
    return NULL;
}

int chan__sleep_until(int64_t deadline)
{
    chan__sel_t sel;
    chan__sel_init(&sel);
    chan__park_note(sel.parker, CHAN_WAIT_SLEEP, NULL, 0, 0, deadline);
    int rc = chan__sel_wait(&sel, deadline);
    /* Nobody can claim a sel that no channel knows about. */
    chan__assert(rc == -ETIMEDOUT);
    return rc;
}

void chan__event_wait(chan__event_waiter_t **list, pthread_mutex_t *mu,
                      int kind, const void *obj)
{
    chan__event_waiter_t w;
    chan__sel_init(&w.sel);
    chan__park_note(w.sel.parker, kind, obj, 0, 0, INT64_MAX);
    w.next = *list;
    *list = &w;
    chan__check(pthread_mutex_unlock(mu));
    chan__assert(chan__sel_wait(&w.sel, INT64_MAX) == 0);
}

chan__event_waiter_t *chan__event_claim_all(chan__event_waiter_t **list)
{
    chan__event_waiter_t *all = *list;
    *list = NULL;
    for (chan__event_waiter_t *w = all; w; w = w->next) {
        int expect = CHAN_SEL_WAITING;
        /* The wait has no deadline, so nobody else claims the sel and
         * this CAS always wins.  acq_rel as in chan__waitq_claim. */
        chan__assert(atomic_compare_exchange_strong_explicit(
            &w->sel.state, &expect, CHAN_SEL_DONE, memory_order_acq_rel,
            memory_order_acquire));
        w->sel.chosen = 0;
    }
    return all;
}

void chan__event_wake_all(chan__event_waiter_t *list)
{
    while (list) {
        /* Read next first: once unparked, the waiter's frame may vanish. */
        chan__event_waiter_t *next = list->next;
        chan__unpark(list->sel.parker);
        list = next;
    }
}

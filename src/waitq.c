/*
 * waitq.c - FIFO queues of waiters and the claim (see waitq.h for the
 * protocol, the invariants and the lifetimes).
 *
 * Locking.  Every function here is called with the owning channel's lock
 * held; that lock guards next, prev and queued of every waiter in the queue.
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

/*
 * waitq.h - FIFO queues of blocked senders or receivers, and the claim that
 * decides who completes a blocked operation.
 *
 * A blocked chan_send, chan_recv or chan_select has one chan__sel_t and one
 * chan__waiter_t per channel case.  A blocked send or receive keeps both
 * in its parker's cache (park.h), in the thread's parker or in the task.
 * A select keeps its sel and its waiters on its stack, except that one of
 * more cases than it keeps there allocates the waiters (select.c).  Each waiter is
 * linked into its channel's sendq or recvq; all waiters of one select
 * share one chan__sel_t.
 *
 * The claim.  sel->state goes WAITING -> DONE exactly once, by a CAS, won by
 * whichever comes first: a peer that completes one of the cases, a
 * chan_close of one of the channels, or the owner itself giving up on a
 * timeout (chan__sel_cancel).  Only the winner writes sel->chosen and
 * sel->result and, if it is not the owner, unparks the owner.  A loser never
 * touches the waiter again except to unlink it under its channel's lock.
 *
 * Lifetimes.  A waiter stays valid while it is linked or while its owner has
 * not been unparked.  The owner, after waking, relocks every channel it
 * queued on and unlinks what is left, so a peer holding a channel lock may
 * always read a linked waiter and its sel, even a stale one.
 */
#ifndef CHAN_WAITQ_H
#define CHAN_WAITQ_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "park.h"

enum { CHAN_SEL_WAITING = 0, CHAN_SEL_DONE = 1 };

/* The blocked party: one per blocked call, shared by its waiters. */
typedef struct chan__sel {
    _Atomic int state;        /* CHAN_SEL_*; see "The claim" above */
    int chosen;               /* the case index completed; written by the claimer */
    int result;               /* 0 or -EPIPE; written by the claimer */
    /* 1: one case and no deadline, so only a claimer holding the lock of
     * that case's channel can end the wait (see chan__waitq_claim).
     * Immutable while queued. */
    int exclusive;
    chan__parker_t *parker;   /* how the owner sleeps; immutable while queued */
} chan__sel_t;

/* One case of a blocked call, linked into one channel's queue. */
typedef struct chan__waiter {
    struct chan__waiter *next;  /* guarded by the channel lock */
    struct chan__waiter *prev;  /* guarded by the channel lock */
    chan__sel_t *sel;           /* the owner's shared state; immutable */
    void *elem;                 /* send: the value; recv: destination or NULL */
    int index;                  /* the case index reported as sel->chosen */
    int queued;                 /* 1 while linked; guarded by the channel lock */
} chan__waiter_t;

/*
 * The sel and the one waiter of a blocked send or receive, kept in the
 * caller's parker's cache (park.h).  One cache line, for the peer that
 * claims it.
 */
typedef struct chan__wait1 {
    chan__sel_t sel;
    chan__waiter_t w;
} chan__wait1_t;

_Static_assert(sizeof(chan__wait1_t) <= CHAN_PARK_CACHE_BYTES &&
                   _Alignof(chan__wait1_t) <= 16,
               "a blocked send's waiter fits in its parker's cache");

/*
 * chan__wait1_acquire - the sel and waiter for a blocked send or receive
 * of p's owner, from p's cache (park.h).  Give it back with
 * chan__wait1_release once the call is done with it.
 */
static inline chan__wait1_t *chan__wait1_acquire(chan__parker_t *p)
{
    return chan__park_cache_take(p);
}

/* chan__wait1_release - the call that acquired b is done with it. */
static inline void chan__wait1_release(chan__parker_t *p, chan__wait1_t *b)
{
    chan__park_cache_put(p, b);
}

/* A FIFO of waiters, guarded by its channel's lock. */
typedef struct chan__waitq {
    chan__waiter_t *head;  /* oldest waiter, NULL if empty */
    chan__waiter_t *tail;  /* newest waiter, NULL if empty */
} chan__waitq_t;

/* chan__waitq_push - append w.  Called with the channel lock held. */
CHAN_INTERNAL void chan__waitq_push(chan__waitq_t *q, chan__waiter_t *w);

/* chan__waitq_remove - unlink w if it is still linked.  Channel lock held. */
CHAN_INTERNAL void chan__waitq_remove(chan__waitq_t *q, chan__waiter_t *w);

/*
 * chan__waitq_claim - unlink and return the oldest waiter whose sel this
 * call wins (WAITING -> DONE), dropping stale waiters on the way; NULL if
 * none is left.  Called with the channel lock held.  The caller must then
 * fill sel->chosen and sel->result and, after dropping the lock, unpark the
 * owner.
 */
CHAN_INTERNAL chan__waiter_t *chan__waitq_claim(chan__waitq_t *q);

/* chan__sel_init_for - a WAITING sel for the owner of parker p. */
static inline void chan__sel_init_for(chan__sel_t *s, chan__parker_t *p)
{
    atomic_store_explicit(&s->state, CHAN_SEL_WAITING, memory_order_relaxed);
    s->chosen = -1;
    s->result = 0;
    s->exclusive = 0;
    s->parker = p;
    chan__park_prepare(p);
}

/* chan__sel_init - a WAITING sel for the calling thread or task. */
static inline void chan__sel_init(chan__sel_t *s)
{
    chan__sel_init_for(s, chan__park_self());
}

/*
 * chan__sel_cancel - the owner's own claim, after a timeout.  Returns 1 if
 * the owner won (nobody will wake it), 0 if a peer or close won and its
 * wakeup is on the way (then wait for it with CHAN_NO_DEADLINE).
 */
static inline int chan__sel_cancel(chan__sel_t *s)
{
    int expect = CHAN_SEL_WAITING;
    /* acq_rel: on failure, acquire pairs with the winner's CAS so that the
     * owner may read what the winner wrote once it is unparked. */
    return atomic_compare_exchange_strong_explicit(
        &s->state, &expect, CHAN_SEL_DONE, memory_order_acq_rel,
        memory_order_acquire);
}

/*
 * chan__sel_wait - park until claimed or deadline.  Returns 0 when a peer or
 * close claimed the sel (chosen and result are valid), -ETIMEDOUT when the
 * owner cancelled it itself.  The caller holds no lock.
 */
static inline int chan__sel_wait(chan__sel_t *s, int64_t deadline)
{
    if (chan__park_wait(s->parker, deadline) == 0)
        return 0;
    if (chan__sel_cancel(s))
        return -ETIMEDOUT;
    /* Lost the race: the winner's unpark is coming. */
    chan__assert(chan__park_wait(s->parker, INT64_MAX) == 0);
    return 0;
}

/*
 * chan__sleep_until - park the calling thread or task until deadline
 * (absolute CLOCK_MONOTONIC ns) on a sel that no channel knows about, so
 * that only the deadline ends the wait; noted as CHAN_WAIT_SLEEP.
 * Returns -ETIMEDOUT.
 */
CHAN_INTERNAL int chan__sleep_until(int64_t deadline);

/*
 * Event waiters.  A wait without a deadline that one event ends for every
 * waiter at once (a wait group's counter reaching zero, the last task of
 * a scheduler finishing) lists a chan__event_waiter_t per waiting thread
 * or task, on its stack, under the event's mutex, in any order.  The
 * event claims the whole list under that mutex and wakes its waiters
 * after dropping it.  Nobody else can claim such a sel, so every claim
 * wins.
 */
typedef struct chan__event_waiter {
    chan__sel_t sel;                  /* claimed by the event */
    struct chan__event_waiter *next;  /* the event's mutex, while listed */
} chan__event_waiter_t;

/*
 * chan__event_wait - called with mu held, once the caller has seen that
 * the event has not happened: list a waiter for the calling thread or task
 * on *list, noted as kind on obj (enum chan__wait_kind, park.h), drop mu
 * and park until chan__event_wake_all wakes it.
 */
CHAN_INTERNAL void chan__event_wait(chan__event_waiter_t **list,
                                    pthread_mutex_t *mu, int kind,
                                    const void *obj);

/*
 * chan__event_claim_all - the event has happened: detach *list and claim
 * every waiter on it; returns the detached list for chan__event_wake_all.
 * Called with the mutex of the list held.
 */
CHAN_INTERNAL chan__event_waiter_t *
chan__event_claim_all(chan__event_waiter_t **list);

/*
 * chan__event_wake_all - wake every waiter of list, claimed by
 * chan__event_claim_all, after the mutex is dropped.  A waiter may return,
 * and its frame vanish, as soon as it is woken: nothing of it is read
 * after that.
 */
CHAN_INTERNAL void chan__event_wake_all(chan__event_waiter_t *list);

#endif /* CHAN_WAITQ_H */

/*
 * chan_impl.h - the channel object, shared by chan.c, select.c and the
 * library's other channel producers (timers, signals).
 *
 * Invariants (with ch->lock held):
 *   - 0 <= len <= cap; the buffered elements are buf[head], buf[head+1], ...
 *     modulo cap, oldest first.
 *   - len > 0 implies recvq holds no live waiter; len < cap implies sendq
 *     holds no live waiter (a buffered channel never lets a sender wait while
 *     there is room, nor a receiver while there is a value).
 *   - For an unbuffered channel at most one of sendq and recvq holds live
 *     waiters, with one exception: a single select that both sends and
 *     receives on the channel has a waiter in each.  It never pairs with
 *     itself, because a select only looks for partners (pass 1) before it
 *     queues its own waiters (pass 2).
 *   - closed implies sendq and recvq hold no live waiter: chan_close claims
 *     them all.  Stale waiters (whose select fired elsewhere or timed out)
 *     may remain in either queue until their owner unlinks them.
 *
 * Locking.  ch->lock guards len, head, closed, both queues and the links of
 * every waiter in them, and the fields of a claimed sel until its owner is
 * unparked.  Hold it for bookkeeping and one memcpy only: never across a
 * park or an unpark.  Several channel locks are taken only by chan_select,
 * in ascending address order (src/internal.h).
 */
#ifndef CHAN_IMPL_H
#define CHAN_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "internal.h"
#include "lock.h"
#include "park.h"
#include "waitq.h"

struct chan {
    /*
     * First what every operation touches, together: the lock, the buffer
     * indices, both queues and the shape.  Operations read all of it under
     * the lock anyway, so spreading it out would only fetch more lines.
     * What other threads write outside the lock (refs) gets a line of its
     * own, so that retain and release do not steal the lock's line.
     */
    chan__lock_t lock;        /* see Locking above */
    _Atomic int closed;       /* 1 once closed; written under lock */
    size_t head;              /* index of the oldest buffered element */
    _Atomic size_t len;       /* elements buffered; written under lock */
    chan__waitq_t recvq;      /* blocked receivers, FIFO */
    chan__waitq_t sendq;      /* blocked senders, FIFO */
    size_t elem_size;         /* immutable */
    size_t cap;               /* immutable */
    unsigned char *buf;       /* immutable: cap * elem_size bytes after the struct */

    _Alignas(CHAN_CACHELINE)
    _Atomic size_t refs;      /* references; the last release frees */

    /*
     * Called once, before the channel is freed by its last release, when
     * not NULL.  Timers use it to leave the timer heap.  Set before the
     * channel is shared.
     */
    void (*finalize)(chan_t *ch);
    void *owner;              /* the finalizer's data (a timer, ...) */
};

/*
 * chan__send_now - complete a send at once if possible.  Called with ch->lock
 * held.  Returns 1 when the value went to a waiting receiver (whose parker is
 * stored in *wake, to unpark after dropping the lock) or into the buffer
 * (*wake untouched); 0 when it would block; -EPIPE when ch is closed.
 */
CHAN_INTERNAL int chan__send_now(chan_t *ch, const void *elem,
                                 chan__parker_t **wake);

/*
 * chan__recv_now - complete a receive at once if possible.  Called with
 * ch->lock held.  Returns 1 with the value in elem (unless NULL), *wake set to
 * a sender to unpark after dropping the lock if one was served; 0 when it
 * would block; -EPIPE when ch is closed and drained.
 */
CHAN_INTERNAL int chan__recv_now(chan_t *ch, void *elem,
                                 chan__parker_t **wake);

/*
 * Polls of chan__watch() before giving up: with a CPU pause each (tens of
 * ns on current x86), a few microseconds, about a peer's turnaround.
 */
#define CHAN_WATCH_POLLS 64

/*
 * chan__watch - watch a buffered channel, without its lock, for a moment
 * before queueing a waiter on it.  Returns 1 as soon as the operation looks
 * possible (room to send, a value to receive, or closed), 0 if it still
 * does not after CHAN_WATCH_POLLS polls.  Called without ch->lock, by plain
 * threads only (a task must not spin: its peer may be waiting for the same
 * worker).
 *
 * Why: a thread that queues a waiter on an empty buffered channel turns
 * every later send into a hand-off (claim, copy, unpark) and keeps the
 * buffer from ever batching; watching lets a fast producer simply append,
 * and the consumer then drains several values per lock.  Only channels
 * with a capacity of two or more are watched: readiness of an unbuffered
 * channel is a waiting peer, invisible without the lock, and a buffer of
 * one cannot batch, so there the direct hand-off is cheaper.
 */
CHAN_INTERNAL int chan__watch(chan_t *ch, int is_send);

#endif /* CHAN_IMPL_H */

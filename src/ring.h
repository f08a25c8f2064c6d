/*
 * ring.h - the buffer of a buffered channel: a bounded lock-free ring of
 * sequence-numbered slots, after Dmitry Vyukov's bounded MPMC queue and the
 * array flavor of crossbeam-channel.
 *
 * Why.  A send or receive on a buffered channel that nobody waits on never
 * takes the channel lock: a sender claims a slot with one CAS on tail, a
 * receiver with one CAS on head, and tail and head live on cache lines of
 * their own, so producers and consumers do not fight over one line.  The
 * lock is left to what needs it: wait queues, close and select.
 *
 * Positions.  The low bits of head and tail are positions { lap, index }:
 * index (below one_lap, the smallest power of two above cap) is the slot;
 * lap counts trips around the ring.  The position after index cap-1 is
 * index 0 of the next lap.  Positions grow by one lap per cap operations
 * and would reach the flag bits after 2^62 operations, centuries at any
 * real rate.
 *
 * Flags, in the top bits:
 *   RING_CLOSED (tail)      the channel is closed: no send may claim a slot.
 *   RING_WAIT (head, tail)  "frozen": someone waits on the channel, or is
 *                           about to.  Set and cleared under the channel
 *                           lock (chan_impl.h).  A lock-free operation that
 *                           sees it backs off with CHAN_RING_BUSY, and one
 *                           that read the word before it was set fails its
 *                           CAS, because the word changed.  So once the lock
 *                           holder has set it, that end of the ring moves
 *                           only under the lock, and what it then sees of
 *                           that end stays true.
 *
 * Freezing levels.  Receivers wait only on an empty ring, and what must
 * not happen then is a value slipping in past them: freezing tail alone
 * (CHAN_FROZEN_TAIL) sends every sender to the lock, where it hands its
 * value to the oldest receiver.  Receivers may still take from head
 * without the lock, but there is nothing to take that a waiter should
 * have had.  Senders wait only on a full ring, and then both ends must be
 * frozen (CHAN_FROZEN_BOTH): a receive has to refill the slot it frees
 * from the oldest waiting sender, under the lock, before anyone else can
 * send into it.
 *
 * Slots.  Each slot starts with its stamp, then the element.  For the
 * position pos whose index is the slot's:
 *   stamp == pos                the slot is free for the send at pos;
 *   stamp == pos + 1            it holds the value sent at pos;
 *   stamp == pos + one_lap      the value was received; free for the send
 *                               one lap later.
 * A sender CASes tail from pos to the next position only when the stamp
 * says "free", then copies its value in and publishes it with a release
 * store of pos + 1; a receiver CASes head when the stamp says "holds", then
 * copies the value out and frees the slot with a release store.  The
 * release/acquire pairs on stamps give Go's memory model: a send happens
 * before the receive that gets its value, and the k-th receive happens
 * before the (k+cap)-th send completes.
 *
 * Between its CAS and its stamp store an operation is "in progress": a
 * receiver that finds the slot not yet filled although tail has moved past
 * it waits the few nanoseconds for the sender to finish (and symmetrically
 * for senders), yielding the CPU if the peer was preempted there.  Empty
 * and full are decided on positions: empty when tail equals head, full when
 * head is one lap behind tail.
 *
 * Elements of size 0 need no slots: their ring is only the two counters
 * (ring.c, count_send), so chan_make(0, n) costs no memory for any n.
 */
#ifndef CHAN_RING_H
#define CHAN_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define CHAN_RING_CLOSED ((size_t)1 << (sizeof(size_t) * 8 - 1))
#define CHAN_RING_WAIT   ((size_t)1 << (sizeof(size_t) * 8 - 2))
#define CHAN_RING_FLAGS  (CHAN_RING_CLOSED | CHAN_RING_WAIT)
#define CHAN_RING_POS(x) ((x) & ~CHAN_RING_FLAGS)

/* Returned by a lock-free ring operation that found RING_WAIT set. */
enum { CHAN_RING_BUSY = 2 };

/* How much of a ring is frozen (see "Freezing levels" above). */
enum { CHAN_FROZEN_NONE = 0, CHAN_FROZEN_TAIL = 1, CHAN_FROZEN_BOTH = 2 };

typedef struct chan__ring {
    /* Read-only after chan__ring_init. */
    unsigned char *slots;     /* cap slots of stride bytes */
    size_t cap;               /* slots in the ring, >= 1 */
    size_t stride;            /* bytes per slot: the stamp, then the element */
    size_t elem_size;         /* bytes per element (may be 0) */
    size_t one_lap;           /* smallest power of two > cap */
    int frozen;               /* CHAN_FROZEN_*; guarded by the chan lock */

    _Alignas(CHAN_CACHELINE)
    _Atomic size_t tail;      /* next position to send to, and flags */

    _Alignas(CHAN_CACHELINE)
    _Atomic size_t head;      /* next position to receive from, and flags */
} chan__ring_t;

/* Bytes per slot for elements of elem_size, or 0 if that overflows. */
static inline size_t chan__ring_stride(size_t elem_size)
{
    size_t a = sizeof(_Atomic size_t);
    if (elem_size > SIZE_MAX - 2 * a)
        return 0;
    return (a + elem_size + a - 1) / a * a;
}

/*
 * chan__ring_init - a ring of cap slots for elements of elem_size bytes
 * over slots, which must hold cap * chan__ring_stride(elem_size) bytes
 * aligned for size_t (nothing when elem_size is 0).
 */
CHAN_INTERNAL void chan__ring_init(chan__ring_t *r, unsigned char *slots,
                                   size_t cap, size_t elem_size);

/*
 * chan__ring_send - put a copy of elem's elem_size bytes at the tail.
 * Returns 1 when done, 0 when the ring is full, -EPIPE when it is closed,
 * and, unless locked (the caller holds the channel lock), CHAN_RING_BUSY
 * when RING_WAIT is set.  Never blocks; may wait a moment for an operation
 * in progress.
 */
CHAN_INTERNAL int chan__ring_send(chan__ring_t *r, const void *elem,
                                  int locked);

/*
 * chan__ring_recv - take the value at the head, copying it to elem unless
 * elem is NULL.  Returns 1 when done, 0 when the ring is empty, -EPIPE when
 * it is empty and closed, and CHAN_RING_BUSY as chan__ring_send.
 */
CHAN_INTERNAL int chan__ring_recv(chan__ring_t *r, void *elem, int locked);

/* chan__ring_close - set RING_CLOSED.  Channel lock held. */
CHAN_INTERNAL void chan__ring_close(chan__ring_t *r);

/*
 * chan__ring_freeze - set or clear RING_WAIT in tail and head so that the
 * ring is frozen to level (CHAN_FROZEN_*).  Channel lock held.
 */
CHAN_INTERNAL void chan__ring_freeze(chan__ring_t *r, int level);

/* chan__ring_len - the number of values buffered, a snapshot. */
CHAN_INTERNAL size_t chan__ring_len(chan__ring_t *r);

/* Whether positions head and tail make a full ring.  A head read after
 * tail may be ahead of it; that is "not full". */
static inline int chan__ring_full(chan__ring_t *r, size_t head, size_t tail)
{
    if (!r->elem_size)
        return tail - head >= r->cap && tail - head <= SIZE_MAX / 4;
    return head + r->one_lap == tail;
}

/*
 * chan__ring_ready_hint - whether a send (is_send) or a receive looks
 * possible now: room or a value, or closed.  Relaxed loads: for spinning on
 * before taking the lock, and for the lock holder's quick look before the
 * full operation; the answer is only ever "at this moment", and the ring
 * operation decides.
 */
static inline int chan__ring_ready_hint(chan__ring_t *r, int is_send)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (tail & CHAN_RING_CLOSED)
        return 1;
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    head = CHAN_RING_POS(head);
    tail = CHAN_RING_POS(tail);
    return is_send ? !chan__ring_full(r, head, tail) : head != tail;
}

#endif /* CHAN_RING_H */

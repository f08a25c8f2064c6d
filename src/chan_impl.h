/*
 * chan_impl.h - the channel object, shared by chan.c, select.c and the
 * library's other channel producers (timers, signals).
 *
 * Flavours.  A channel is one of three kinds, fixed by its capacity
 * (chan__flavor_of), as crossbeam's channels have their flavors:
 *   SYNC  capacity 0: no buffer; every operation takes the lock, and a
 *         value passes straight from a sender to a waiting receiver.
 *   ONE   capacity 1: a ring of one slot, frozen for good (below), so
 *         every operation takes the lock too.
 *   RING  capacity 2 or more: the lock-free ring (ring.h), which sends
 *         and receives use without the lock while nobody waits.
 * chan__buffered(ch) says whether ch has a ring (ONE or RING),
 * chan__lockfree(ch) whether its operations may skip the lock (RING);
 * no code tests the capacity for this itself.  Everything else (close,
 * the wait queues, the hand-off to a waiter) happens under ch->lock, as
 * in Go's runtime.
 *
 * The two meet at the ring's RING_WAIT flags ("frozen").  While a
 * buffered channel has no waiter, sends and receives that the ring can take
 * go through it without the lock; any other case takes the lock.  Before a
 * waiter is queued on a buffered channel, the lock holder freezes the ring
 * (chan__freeze_for), which makes the lock-free operations that could break
 * the rules below fail over to the lock, then looks at the ring: what it
 * sees then stays true while it holds the lock.  The ring stays frozen
 * while a queue holds a waiter and thaws when the last one leaves
 * (chan__unlock_ch; ring.h, "Freezing levels", says how much is frozen
 * when).  So every rule below holds as it would with a lock around the
 * whole channel, and blocked senders and receivers are served first come,
 * first served.
 *
 * A ONE channel stays frozen for good.  Its ring cannot batch:
 * a producer and a consumer block on nearly every other operation, and
 * freezing and thawing each time (four read-modify-writes of head and
 * tail) costs more than taking the lock for every operation, which also
 * keeps the direct hand-off to a waiting peer.
 *
 * A buffered channel with a pollfd (pollfd.c) stays frozen for good too,
 * so that every change of its readiness happens under the lock, where
 * chan__unlock_ch sets the descriptors' levels.  What chan__unlock_ch has
 * to do is one word on the lock's cache line (ch->unlock_op), which it
 * tested before pollfds existed too, so channels without one pay nothing
 * for them there.
 *
 * Invariants (with ch->lock held):
 *   - A buffered channel with a waiter in sendq is frozen at both ends; one
 *     with a waiter in recvq only, at the tail; a ONE channel, or one with
 *     a pollfd, always at both ends.
 *   - A channel's pollfd levels, as of the last chan__unlock_ch, say
 *     whether it was ready then (pollfd.c): they are set before the lock
 *     is released, after whatever changed readiness.  A waiter that goes
 *     stale without this lock (its select completed on another channel, it
 *     timed out) may leave a level up until its owner unlinks it here.
 *   - A frozen ring holding a value has no live waiter in recvq; a frozen
 *     ring with room has none in sendq (a buffered channel never lets a
 *     sender wait while there is room, nor a receiver while there is a
 *     value).
 *   - For a SYNC channel at most one of sendq and recvq holds live
 *     waiters, with one exception: a single select that both sends and
 *     receives on the channel has a waiter in each.  It never pairs with
 *     itself, because a select only looks for partners (pass 1) before it
 *     queues its own waiters (pass 2).
 *   - closed implies sendq and recvq hold no live waiter: chan_close claims
 *     them all.  Stale waiters (whose select completed elsewhere or timed out)
 *     may remain in either queue until their owner unlinks them.
 *
 * Locking.  ch->lock guards closed, the ring's frozen state, both queues
 * and the links of every waiter in them, the fields of a claimed sel
 * until its owner is unparked, and the pollfd state.  Hold it for
 * bookkeeping and one memcpy only (plus, on a channel with a pollfd, the
 * eventfd read or write that moves a level): never across a park or an
 * unpark.  Several channel locks are taken
 * only by chan_select, in ascending address order (src/internal.h).
 */
#ifndef CHAN_IMPL_H
#define CHAN_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "internal.h"
#include "lock.h"
#include "park.h"
#include "ring.h"
#include "waitq.h"

struct chan {
    /*
     * The lock and what it guards, together: whoever takes the lock reads
     * all of it.  Lock-free operations on a buffered channel touch none of
     * this line; they read the ring's own lines below.
     */
    chan__lock_t lock;        /* see Locking above */
    _Atomic int closed;       /* 1 once closed; written under lock */
    chan__waitq_t recvq;      /* blocked receivers, FIFO */
    chan__waitq_t sendq;      /* blocked senders, FIFO */
    size_t elem_size;         /* immutable */
    size_t cap;               /* the flavour (chan__flavor_of); immutable
                               * until freed ("Use after release") */
    /* CHAN_UNLOCK_*: what chan__unlock_ch does besides unlocking.  Set
     * by chan_make, changed only by chan_pollfd, under lock. */
    int unlock_op;
    /* CHAN_MAGIC_LIVE from chan_make to the last release, which leaves
     * CHAN_MAGIC_DEAD (see chan__check_live).  Past the first 32 bytes of
     * the block, where the allocator keeps its free-list links. */
    unsigned magic;

    /* Buffered channels: the values (ring.h), with head and tail on lines
     * of their own.  Unused by SYNC channels. */
    chan__ring_t ring;

    /* What other threads write outside the lock (refs) gets a line of its
     * own, so that retain and release do not steal the others. */
    _Alignas(CHAN_CACHELINE)
    _Atomic size_t refs;      /* references; the last release frees */

    /*
     * Called once, before the channel is freed by its last release, when
     * not NULL.  Timers use it to leave the timer heap.  Set before the
     * channel is shared.
     */
    void (*finalize)(chan_t *ch);
    void *owner;              /* the finalizer's data (a timer, ...) */
    void *mem;                /* what malloc returned, for free */

    /* The pollfds (pollfd.c), guarded by lock.  pollfd has bits
     * CHAN_POLLFD_IN and CHAN_POLLFD_OUT for the descriptors made, never
     * cleared; pfd[i] and plevel[i] mean something only for bit 1 << i. */
    unsigned pollfd;
    int pfd[2];               /* eventfd for POLLIN [0], POLLOUT [1] */
    unsigned char plevel[2];  /* 1 while pfd[i] is readable */
};

/* The flavours (see the top of this file). */
enum chan__flavor { CHAN_FLAVOR_SYNC, CHAN_FLAVOR_ONE, CHAN_FLAVOR_RING };

/* chan__flavor_of - the flavour of a channel of capacity cap. */
static inline enum chan__flavor chan__flavor_of(size_t cap)
{
    return cap == 0 ? CHAN_FLAVOR_SYNC
           : cap == 1 ? CHAN_FLAVOR_ONE
                      : CHAN_FLAVOR_RING;
}

/* chan__buffered - 1 if ch has a ring (ONE or RING), 0 for SYNC. */
static inline int chan__buffered(const chan_t *ch)
{
    return ch->cap != 0;
}

/*
 * chan__lockfree - 1 if sends and receives on ch may go through its ring
 * without the lock (RING), 0 if they always take the lock (SYNC, ONE).
 * Also 1 for a freed channel (its cap is SIZE_MAX: "Use after release").
 */
static inline int chan__lockfree(const chan_t *ch)
{
    return ch->cap > 1;
}

_Static_assert(offsetof(struct chan, ring) == CHAN_CACHELINE,
               "what the lock holder reads fits on the lock's line");
_Static_assert(offsetof(struct chan, magic) >= 4 * sizeof(void *),
               "the magic word stays clear of the allocator's links");

/*
 * Use after release.  A freed channel is left with magic CHAN_MAGIC_DEAD,
 * cap SIZE_MAX and a ring frozen at both ends (and not closed, even for
 * a SYNC channel, whose ring is all zeros): so it looks like a RING
 * channel (chan__lockfree), a send or receive on it, whatever it was,
 * takes the lock-free path of transfer() (chan.c), where the ring says
 * BUSY, and finds the mistake with chan__check_live before it touches
 * the lock (whose word the allocator may have overwritten).  A live
 * channel pays for that check only there, on its way from a ring that
 * could not complete to the lock; SYNC and ONE channels not at all.  Close, select and chan_pollfd check before they lock;
 * chan_retain and chan_release see a count of 0.  All this holds only
 * while the allocator has not handed the memory out again.  Under
 * AddressSanitizer, whose report on the freed memory is better, nothing
 * is poisoned or checked.
 */
#define CHAN_MAGIC_LIVE 0x6c697665u /* "live" */
#define CHAN_MAGIC_DEAD 0x64656164u /* "dead" */
#ifdef CHAN_ASAN
#define CHAN_CHECK_MAGIC 0
#else
#define CHAN_CHECK_MAGIC 1
#endif

/*
 * chan__misuse - report a mistake of the program using the library, which
 * cannot go on safely, and abort: "libchan: FN: WHAT" on standard error.
 */
CHAN_INTERNAL _Noreturn void chan__misuse(const char *fn, const char *what)
    __attribute__((cold));

/* chan__check_live - abort through chan__misuse if ch was freed.  Called
 * by the public operations before they take ch->lock. */
static inline void chan__check_live(chan_t *ch, const char *fn)
{
    if (CHAN_CHECK_MAGIC && CHAN_UNLIKELY(ch->magic != CHAN_MAGIC_LIVE))
        chan__misuse(fn, ch->magic == CHAN_MAGIC_DEAD
                             ? "channel used after its last chan_release"
                             : "not a channel, or one whose memory was reused");
}

/* Bits of chan.pollfd; index i of pfd[] and plevel[] is bit 1 << i. */
enum { CHAN_POLLFD_IN = 1, CHAN_POLLFD_OUT = 2 };

/* Values of chan.unlock_op: nothing (SYNC, ONE); thaw the ring as far
 * as its waiters allow (RING); set pollfd levels (a channel with a
 * pollfd, which never thaws). */
enum { CHAN_UNLOCK_PLAIN = 0, CHAN_UNLOCK_THAW = 1, CHAN_UNLOCK_POLLFD = 2 };

/*
 * chan__pollfd_update - set the levels of ch's pollfds to what ch is ready
 * for now.  ch->lock held; called by chan__unlock_ch on channels with a
 * pollfd.  At most one system call per descriptor whose level changes.
 */
CHAN_INTERNAL void chan__pollfd_update(chan_t *ch);

/* chan__pollfd_close - close ch's pollfds; its last release. */
CHAN_INTERNAL void chan__pollfd_close(chan_t *ch);

/*
 * chan__unlock_ch - release ch->lock, first thawing a buffered channel's
 * ring as far as its waiters allow (ring.h, "Freezing levels"), or, on a
 * channel with a pollfd, setting the pollfds' levels.  Every path that
 * takes ch->lock releases it this way.
 */
static inline void chan__unlock_ch(chan_t *ch)
{
    /* unlock_op first: it shares the lock's cache line, the ring does
     * not. */
    if (ch->unlock_op != CHAN_UNLOCK_PLAIN) {
        if (CHAN_UNLIKELY(ch->unlock_op == CHAN_UNLOCK_POLLFD)) {
            chan__pollfd_update(ch);
        } else if (ch->ring.frozen) {
            int need = ch->sendq.head   ? CHAN_FROZEN_BOTH
                       : ch->recvq.head ? CHAN_FROZEN_TAIL
                                        : CHAN_FROZEN_NONE;
            if (need < ch->ring.frozen)
                chan__ring_freeze(&ch->ring, need);
        }
    }
    chan__unlock(&ch->lock);
}

/*
 * chan__freeze_for - freeze buffered ch's ring as much as a send (is_send)
 * or receive about to wait needs, before it looks at the ring for the last
 * time.  Returns 1 if that changed the ring, 0 if it was frozen enough
 * already (then nothing lock-free can have changed it since the lock was
 * taken).  ch->lock held.
 */
static inline int chan__freeze_for(chan_t *ch, int is_send)
{
    int need = is_send ? CHAN_FROZEN_BOTH : CHAN_FROZEN_TAIL;
    if (ch->ring.frozen >= need)
        return 0;
    chan__ring_freeze(&ch->ring, need);
    return 1;
}

/*
 * chan__send_now - complete a send at once if possible.  Called with ch->lock
 * held.  Returns 1 when the value went to a waiting receiver (whose parker is
 * stored in *wake, to unpark after unlocking) or into the ring (*wake
 * untouched); 0 when it would block; -EPIPE when ch is closed.
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
 * chan__watch - watch a buffered channel's ring, without the lock, for a
 * moment before queueing a waiter on it.  Returns 1 as soon as the operation looks
 * possible (room to send, a value to receive, or closed), 0 if it still
 * does not after CHAN_WATCH_POLLS polls.  Called without ch->lock, by plain
 * threads only (a task must not spin: its peer may be waiting for the same
 * worker).
 *
 * Why: a thread that queues a waiter on a buffered channel freezes its
 * ring and turns every later operation into a locked hand-off (claim,
 * copy, unpark) until the queue is empty again; a peer usually makes the
 * ring ready within a microsecond or two, far sooner than a park and a
 * wake-up take.  Unbuffered channels are not watched: their readiness is a
 * waiting peer, invisible without the lock.
 */
CHAN_INTERNAL int chan__watch(chan_t *ch, int is_send);

#endif /* CHAN_IMPL_H */

/*
 * pollfd.c - chan_pollfd: a descriptor that a foreign event loop (epoll,
 * poll, libuv, GLib, libevent) can watch for a channel's readiness.
 *
 * Each direction gets an eventfd whose counter is 1 while the channel is
 * ready for it and 0 otherwise: readable exactly then, level-triggered.
 * The level is the channel's business alone; the user only watches it and
 * then calls chan_tryrecv or chan_trysend until -EAGAIN.
 *
 * Where the level is kept.  Readiness changes in many places: a send or a
 * receive (through the ring or handed to a waiter), a close, a waiter
 * queued or unlinked (a blocked call, a select, a timeout).  Rather than
 * hooking each of them, a channel with a pollfd is kept frozen for good
 * (chan_impl.h), so that all of them happen under ch->lock, and every
 * path releases that lock through chan__unlock_ch, which calls
 * chan__pollfd_update here: it recomputes readiness for each direction
 * and moves a level only when it changed.  So a channel costs one eventfd
 * write when it becomes ready and one read when it stops being ready, and
 * no system call while its level stays.  A channel that never had a
 * pollfd pays nothing in chan__unlock_ch (the word it tests, ch->unlock_op,
 * only gained a value) and one test of ch->pollfd in its last release.
 *
 * Readiness, under the lock.  Closed: both directions (a receive returns
 * what is left, then -EPIPE; a send -EPIPE).  Buffered: a value in the
 * ring for POLLIN, room for POLLOUT; the ring is frozen at both ends, so
 * its positions move only under the lock (an operation in progress has
 * moved its position already, and the locked operations wait for it).  A
 * waiting sender means a full ring and a waiting receiver an empty one,
 * so the ring alone decides.  Unbuffered: a live waiter in sendq (POLLIN)
 * or recvq (POLLOUT).  A waiter whose sel is no longer WAITING is stale
 * and does not count; one that goes stale later, without this channel's
 * lock, leaves the level up until its owner relocks the channel to unlink
 * it, which it always does (chan_op, select pass 3).  Such a moment of
 * "ready" with nothing to take is why the contract says: drain until
 * -EAGAIN, and expect -EAGAIN at the first try now and then.
 *
 * Locking.  Levels are moved under ch->lock, so that their order is the
 * order of the critical sections that computed them; the eventfd write or
 * read is short and never blocks (EFD_NONBLOCK).  The descriptors are made
 * outside the lock; of two callers racing for the same direction, the
 * first to take the lock installs its descriptor and the other closes its
 * own and returns the installed one.
 */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "chan_impl.h"
#include "ring.h"
#include "waitq.h"

/* Whether q holds a waiter that a peer could still claim.  Lock held. */
static int has_live(const chan__waitq_t *q)
{
    for (const chan__waiter_t *w = q->head; w; w = w->next)
        if (atomic_load_explicit(&w->sel->state, memory_order_relaxed) ==
            CHAN_SEL_WAITING)
            return 1;
    return 0;
}

/* Moves the level of ch->pfd[i] to up (0 or 1) if it is not there.  A
 * failing read or write can only come from a user who touched the
 * descriptor; the level is recorded as set anyway. */
static void set_level(chan_t *ch, int i, int up)
{
    if (ch->plevel[i] == up)
        return;
    ch->plevel[i] = (unsigned char)up;
    uint64_t v = 1;
    int saved_errno = chan__errno_save();
    ssize_t n;
    do
        n = up ? write(ch->pfd[i], &v, sizeof v) : read(ch->pfd[i], &v, sizeof v);
    while (n < 0 && errno == EINTR);
    chan__errno_restore(saved_errno);
}

void chan__pollfd_update(chan_t *ch)
{
    int in, out;
    if (atomic_load_explicit(&ch->closed, memory_order_relaxed)) {
        in = out = 1;
    } else if (chan__buffered(ch)) {
        in = chan__ring_ready_hint(&ch->ring, 0);
        out = chan__ring_ready_hint(&ch->ring, 1);
    } else {
        in = has_live(&ch->sendq);
        out = has_live(&ch->recvq);
    }
    if (ch->pollfd & CHAN_POLLFD_IN)
        set_level(ch, 0, in);
    if (ch->pollfd & CHAN_POLLFD_OUT)
        set_level(ch, 1, out);
}

void chan__pollfd_close(chan_t *ch)
{
    int saved_errno = chan__errno_save();
    for (int i = 0; i < 2; i++)
        if (ch->pollfd & (1u << i))
            close(ch->pfd[i]);
    chan__errno_restore(saved_errno);
}

int chan_pollfd(chan_t *ch, int events)
{
    if (!ch || (events != POLLIN && events != POLLOUT))
        return -EINVAL;
    int i = events == POLLIN ? 0 : 1;
    unsigned bit = 1u << i;

    chan__check_live(ch, "chan_pollfd");
    chan__lock(&ch->lock);
    int have = (ch->pollfd & bit) ? ch->pfd[i] : -1;
    chan__unlock_ch(ch);
    if (have >= 0)
        return have;

    int saved_errno = chan__errno_save();
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int err = errno;
    chan__errno_restore(saved_errno);
    if (fd < 0)
        return err == EMFILE || err == ENFILE ? -EMFILE : -ENOMEM;

    chan__lock(&ch->lock);
    if (ch->pollfd & bit) {
        /* Another caller was first: use its descriptor. */
        have = ch->pfd[i];
        chan__unlock_ch(ch);
        close(fd);
        chan__errno_restore(saved_errno);
        return have;
    }
    ch->pfd[i] = fd;
    ch->plevel[i] = 0;
    ch->pollfd |= bit;
    /* Frozen for good (chan_impl.h): from now on readiness changes only
     * under the lock.  What the ring holds now is seen by the unlock
     * below. */
    if (chan__buffered(ch))
        chan__ring_freeze(&ch->ring, CHAN_FROZEN_BOTH);
    ch->unlock_op = CHAN_UNLOCK_POLLFD;
    chan__unlock_ch(ch); /* sets the new level */
    return fd;
}

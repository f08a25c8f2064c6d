/*
 * netpoll.h - waiting for file descriptors: the process's one poller, the
 * per-descriptor state behind it, and the small backend interface that
 * hides epoll (netpoll_epoll.c) so that kqueue can follow.
 *
 * A waiter on a descriptor is one more claimable case of a chan__sel_t
 * (waitq.h): whoever settles the sel first wins, be it the poller (the
 * descriptor became ready), a channel peer (another case of a select), a
 * deadline (the owner cancels) or chan_fd_close().  So an FD case in a
 * select is a case like any other, and threads and tasks wait the same way,
 * through chan__sel_wait().
 *
 * The I/O calls (io.c) follow one pattern, Go's:
 *
 *     chan__pd_snap(pd, &snap);         the edges seen so far
 *     try the operation (read, poll, accept, ...), non-blocking;
 *     if it would block:
 *         rc = chan__pd_wait(pd, fd, dirs, &snap, deadline);
 *         0: an edge came (or may have): try again;
 *         -ETIMEDOUT, -EBADF (chan_fd_close), other: give up.
 *
 * chan__pd_wait() queues the waiter only if no edge arrived since the
 * snapshot, so an edge between the failed try and the queueing is never
 * lost: it is counted in the descriptor's per-direction edge counter,
 * which the waiter compares with its snapshot under the descriptor's lock.
 */
#ifndef CHAN_NETPOLL_H
#define CHAN_NETPOLL_H

#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>

#include "internal.h"
#include "lock.h"
#include "waitq.h"

/* Directions of readiness, as the backend reports them. */
enum { CHAN_PD_IN = 1, CHAN_PD_OUT = 2 };

/* One waiter on a descriptor: a case of a sel, on its owner's stack. */
typedef struct chan__fdwaiter {
    struct chan__fdwaiter *next;  /* pd->lock */
    struct chan__fdwaiter *prev;  /* pd->lock */
    struct chan__fdwaiter *wnext; /* the waker's private list, once claimed */
    chan__sel_t *sel;             /* the owner's shared state; immutable */
    int index;                    /* reported as sel->chosen; immutable */
    int dirs;                     /* CHAN_PD_* waited for; immutable */
    int queued;                   /* 1 while linked; pd->lock */
    int thread;                   /* the owner is a plain thread; pd->lock */
    uint32_t round;               /* the poll round when queued; pd->lock */
    /* Set by the claimer: the ready events (poll(2) bits) of the backend
     * event that claimed the waiter, if they were found after it was
     * queued, so the owner may report them without asking the kernel
     * again; 0 otherwise (then the owner polls). */
    short revents;
} chan__fdwaiter_t;

/*
 * The library's state of one descriptor number.  Allocated on first use
 * and never freed (there are at most RLIMIT_NOFILE of them).
 */
typedef struct chan__pd {
    chan__lock_t lock;            /* guards everything below but the atomics */
    /* The current registration with the backend: the backend key is
     * (fd, seq), so readiness reported for an older registration (a file
     * that was closed and whose number now names another) is ignored. */
    uint32_t seq;
    /* chan_fd_close() calls so far; a call that saw another value when it
     * started was overtaken by a close and returns -EBADF.  Written under
     * lock, read without it (a snapshot). */
    _Atomic uint32_t closes;
    /* Edges seen per direction (CHAN_PD_IN, CHAN_PD_OUT).  Written under
     * lock (release), read without it for a snapshot (acquire). */
    _Atomic uint32_t edges[2];
    chan__fdwaiter_t *head, *tail; /* FIFO of waiters; lock */
} chan__pd_t;

/* What chan__pd_wait() compares against: taken before the try. */
typedef struct chan__pd_snap {
    uint32_t edges[2];
    uint32_t closes;
} chan__pd_snap_t;

/*
 * chan__pd_get - the state of descriptor fd, allocating it (and starting
 * the poller) on first use.  Returns 0 with *out set; -EBADF for fd < 0;
 * -ENOMEM if memory or the poller thread cannot be had.
 */
CHAN_INTERNAL int chan__pd_get(int fd, chan__pd_t **out);

/* chan__pd_snap - record pd's edge counters and close count. */
static inline void chan__pd_snap(chan__pd_t *pd, chan__pd_snap_t *s)
{
    /* Acquire pairs with the poller's release increment: a try made after
     * this load sees at least the readiness that edge announced. */
    s->closes = atomic_load_explicit(&pd->closes, memory_order_acquire);
    s->edges[0] = atomic_load_explicit(&pd->edges[0], memory_order_acquire);
    s->edges[1] = atomic_load_explicit(&pd->edges[1], memory_order_acquire);
}

/*
 * chan__pd_wait - wait until fd sees an edge in one of dirs since snap, or
 * until deadline.  Returns 0 (try again; may be spurious), the ready
 * events (> 0, poll(2) bits, for every direction) that the backend found
 * after the waiter was queued, which the caller may report as they are
 * (or try again, as for 0), -ETIMEDOUT,
 * -EBADF (fd was closed with chan_fd_close since the snapshot, or is not
 * open), or the negative errno of registering fd with the backend (-EPERM
 * for a descriptor the backend cannot watch).  Holds no lock on entry or
 * return; parks the calling task or thread.
 */
CHAN_INTERNAL int chan__pd_wait(chan__pd_t *pd, int fd, int dirs,
                                const chan__pd_snap_t *snap, int64_t deadline);

/*
 * For chan_select: queue w (w->sel, w->index and w->dirs set) on fd's pd
 * unless an edge arrived since snap.  Returns 0 when queued, 1 when an
 * edge was seen (nothing queued: poll the descriptor again), or a negative
 * errno (nothing queued).  Called without locks.
 */
CHAN_INTERNAL int chan__pd_queue(chan__pd_t *pd, int fd, chan__fdwaiter_t *w,
                                 const chan__pd_snap_t *snap);

/* chan__pd_dequeue - unlink w if it is still queued.  Called without locks. */
CHAN_INTERNAL void chan__pd_dequeue(chan__pd_t *pd, chan__fdwaiter_t *w);

/*
 * chan__pd_close - what chan_fd_close does before close(2): every waiter
 * on fd is claimed with -EBADF and woken, later calls that started before
 * see the close, and fd is forgotten by the backend.
 */
CHAN_INTERNAL void chan__pd_close(int fd);

/*
 * chan__netpoll_poll - poll the backend once, waiting at most timeout_ns
 * (0: not at all; negative: until something is ready or a kick), and wake
 * every waiter whose descriptor became ready.  Returns the number of
 * events handled, or a negative errno.  Only the holder of the poll (see
 * chan__netpoll_hold) may call it.
 */
CHAN_INTERNAL int chan__netpoll_poll(int64_t timeout_ns);

/*
 * The poll, for idle scheduler workers (netpoll.c, "Who polls").  At most
 * one thread at a time calls the backend's wait: the poller thread, or a
 * worker that holds the poll.
 *
 * chan__netpoll_hold - take the poll for a worker: for one non-blocking
 * look (block 0) or for a wait with no timeout that only a descriptor or
 * chan__netpoll_kick() ends (block 1).  Returns 1 if taken (then call
 * chan__netpoll_poll and chan__netpoll_release); -1 if it may be had
 * soon (a worker's look holds it, or the poller thread does and has just
 * been asked for it: at its next event, or at once for block 1, which
 * kicks it); 0 if not (nothing was ever waited for, a worker sleeps in
 * it, or the poller thread keeps it for plain threads).  Takes no lock.
 */
CHAN_INTERNAL int chan__netpoll_hold(int block);

/* chan__netpoll_release - give back a poll taken with the same block. */
CHAN_INTERNAL void chan__netpoll_release(int block);

/* chan__netpoll_kick - end the wait of the holder of a blocking poll (or,
 * if none waits, the next wait, once).  One write(2); call it only for a
 * worker known to hold a blocking poll.  Takes no lock. */
CHAN_INTERNAL void chan__netpoll_kick(void);

/*
 * chan__fd_poll - poll(2) the n entries of p without waiting (io.c),
 * retrying on EINTR.  Returns the number ready or a negative errno.
 */
CHAN_INTERNAL int chan__fd_poll(struct pollfd *p, unsigned long n);

/* ---------------------------------------------------------------- backend */

/* One readiness event from the backend. */
typedef struct chan__pollev {
    int fd;
    uint32_t seq;   /* the registration it belongs to */
    int dirs;       /* CHAN_PD_*; errors and hangups set both */
    short revents;  /* the same as poll(2) reports it: POLLIN, POLLOUT, ... */
} chan__pollev_t;

/* chan__pollb_open - create the backend's kernel object: 0 or -errno. */
CHAN_INTERNAL int chan__pollb_open(void);

/*
 * chan__pollb_add - watch fd (both directions, edge-triggered) under key
 * (fd, seq).  Returns 1 if this registered the file fd names now (a new
 * registration), 0 if that file was registered already (under an older
 * seq, which stays the key), or a negative errno (-EBADF, -EPERM, ...).
 */
CHAN_INTERNAL int chan__pollb_add(int fd, uint32_t seq);

/* chan__pollb_kick - end the current (or next) chan__pollb_wait. */
CHAN_INTERNAL void chan__pollb_kick(void);

/* chan__pollb_del - stop watching fd; errors are ignored. */
CHAN_INTERNAL void chan__pollb_del(int fd);

/*
 * chan__pollb_wait - wait up to timeout_ns (negative: forever) for events
 * and store at most max of them.  Returns their number, 0 on a timeout,
 * an interruption or a kick alone, or a negative errno.
 */
CHAN_INTERNAL int chan__pollb_wait(chan__pollev_t *ev, int max,
                                   int64_t timeout_ns);

/* chan__pollb_forget - in a forked child: drop the parent's kernel object
 * without touching the parent's registrations.  Async-signal-safe. */
CHAN_INTERNAL void chan__pollb_forget(void);

#endif /* CHAN_NETPOLL_H */

/*
 * netpoll_epoll.c - the poller backend on Linux: one epoll instance, every
 * descriptor registered once for both directions, edge-triggered
 * (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET), keyed by (fd, seq) in the
 * event's data (netpoll.h).
 *
 * Telling a reused number from the registered file.  epoll's interest
 * list is keyed by (open file, descriptor number), and an entry leaves it
 * only when its open file is released, that is when every duplicate of it
 * is closed.  So EPOLL_CTL_ADD fails with EEXIST exactly when the number
 * still names the file registered under it, and succeeds for a new file
 * behind an old number, even while a duplicate keeps the old file (and
 * its entry) alive.  That answer, one system call, is what chan__pollb_add
 * returns; the caller then uses a new seq, and whatever the old entry
 * still reports carries the old one and is ignored.
 *
 * Kicks.  An eventfd, registered edge-triggered under a key no descriptor
 * has (UINT64_MAX), lets chan__pollb_kick() end a chan__pollb_wait() that
 * waits: each write is an edge, reported to whichever thread is in
 * epoll_wait (netpoll.c sees to it that there is at most one) and then
 * swallowed here.  The counter is never read back: edges, not its value,
 * are what wakes, and 2^64 - 1 kicks are out of reach.
 *
 * Locking.  None: epfd and kickfd are written once by chan__pollb_open
 * (under the poller's start lock, before any registration) and by the
 * child after a fork.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "netpoll.h"

#define KICK_KEY UINT64_MAX

static int epfd = -1;
static int kickfd = -1;

int chan__pollb_open(void)
{
    int saved = chan__errno_save();
    int e = 0;
    int fd = epoll_create1(EPOLL_CLOEXEC);
    int k = fd < 0 ? -1 : eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd >= 0 && k >= 0) {
        struct epoll_event ev = { 0 };
        ev.events = EPOLLIN | EPOLLET;
        ev.data.u64 = KICK_KEY;
        if (epoll_ctl(fd, EPOLL_CTL_ADD, k, &ev) < 0)
            e = errno;
    } else {
        e = errno;
    }
    if (e) {
        if (k >= 0)
            close(k);
        if (fd >= 0)
            close(fd);
    }
    chan__errno_restore(saved);
    if (e)
        return -e;
    __atomic_store_n(&kickfd, k, __ATOMIC_RELAXED);
    __atomic_store_n(&epfd, fd, __ATOMIC_RELEASE);
    return 0;
}

void chan__pollb_kick(void)
{
    uint64_t one = 1;
    int saved = chan__errno_save();
    /* Only a full counter (EAGAIN) can fail, and then an edge is pending
     * anyway. */
    (void)!write(__atomic_load_n(&kickfd, __ATOMIC_RELAXED), &one, sizeof one);
    chan__errno_restore(saved);
}

static inline int ep(void)
{
    return __atomic_load_n(&epfd, __ATOMIC_ACQUIRE);
}

int chan__pollb_add(int fd, uint32_t seq)
{
    struct epoll_event ev = { 0 };
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = (uint64_t)seq << 32 | (uint32_t)fd;
    int saved = chan__errno_save();
    int r = epoll_ctl(ep(), EPOLL_CTL_ADD, fd, &ev);
    int e = errno;
    chan__errno_restore(saved);
    if (r == 0)
        return 1;
    return e == EEXIST ? 0 : -e;
}

void chan__pollb_del(int fd)
{
    struct epoll_event ev = { 0 }; /* kernels before 2.6.9 want one */
    int saved = chan__errno_save();
    (void)epoll_ctl(ep(), EPOLL_CTL_DEL, fd, &ev);
    chan__errno_restore(saved);
}

int chan__pollb_wait(chan__pollev_t *out, int max, int64_t timeout_ns)
{
    enum { BATCH = 128 };
    struct epoll_event evs[BATCH];
    if (max > BATCH)
        max = BATCH;
    int ms = timeout_ns < 0 ? -1
             : timeout_ns >= (int64_t)INT32_MAX * 1000000
                 ? INT32_MAX
                 : (int)((timeout_ns + 999999) / 1000000);
    int saved = chan__errno_save();
    int n = epoll_wait(ep(), evs, max, ms);
    int e = errno;
    chan__errno_restore(saved);
    if (n < 0)
        return e == EINTR ? 0 : -e;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == KICK_KEY)
            continue; /* a kick: it ended the wait, nothing more */
        uint32_t m = evs[i].events;
        int dirs = 0;
        if (m & (EPOLLIN | EPOLLRDHUP | EPOLLPRI))
            dirs |= CHAN_PD_IN;
        if (m & EPOLLOUT)
            dirs |= CHAN_PD_OUT;
        if (m & (EPOLLERR | EPOLLHUP))
            dirs |= CHAN_PD_IN | CHAN_PD_OUT;
        out[k].fd = (int)(uint32_t)evs[i].data.u64;
        out[k].seq = (uint32_t)(evs[i].data.u64 >> 32);
        out[k].dirs = dirs;
        out[k].revents = (short)((m & EPOLLIN ? POLLIN : 0) |
                                 (m & EPOLLPRI ? POLLPRI : 0) |
                                 (m & EPOLLOUT ? POLLOUT : 0) |
                                 (m & EPOLLERR ? POLLERR : 0) |
                                 (m & EPOLLHUP ? POLLHUP : 0));
        k++;
    }
    return k;
}

void chan__pollb_forget(void)
{
    /* The instance is shared with the parent: closing our descriptor of
     * it leaves the parent's registrations alone (unlike EPOLL_CTL_DEL). */
    int saved = chan__errno_save();
    if (epfd >= 0)
        close(epfd);
    if (kickfd >= 0)
        close(kickfd);
    epfd = kickfd = -1;
    chan__errno_restore(saved);
}

/*
 * io.c - the public I/O calls: chan_fd_wait, chan_read, chan_write,
 * chan_accept, chan_connect, chan_fd_close.
 *
 * Each call tries its system call first, non-blocking, and waits through
 * the poller only when the kernel says EAGAIN, as Go's runtime does
 * (netpoll.h gives the pattern and why no edge is lost between the try and
 * the wait).  Waiting parks the calling task or thread (park.h), never a
 * worker thread; the deadline is computed once per call, so retries after
 * spurious wakeups never stretch it.
 *
 * O_NONBLOCK.  Sockets are read and written with MSG_DONTWAIT, which needs
 * no mode: a read or write of a socket is one system call.  For anything
 * else chan_read and chan_write put the descriptor into non-blocking mode
 * when they find it blocking, and chan_accept and chan_connect do so for
 * their socket: one F_GETFL per call, since the number may name another
 * file than at the last call, so a remembered "done" could be wrong.  A
 * remembered "is a socket" (struct rw's sock, within one call) is only a
 * guess: recv() on something else fails with ENOTSOCK and the call falls
 * back.  chan_fd_wait needs no mode at all.
 *
 * SIGPIPE.  Sockets are written with send(MSG_NOSIGNAL).  Anything else
 * (pipes, FIFOs, terminals) is written with SIGPIPE blocked in the calling
 * thread; if the write fails with EPIPE and SIGPIPE was not pending before,
 * the signal it raised is taken with a zero-timeout sigtimedwait() before
 * the old mask comes back.  Nothing between the block and the unblock can
 * park, so a task stays on one thread (one signal mask) throughout.
 *
 * errno.  Every system call here saves and restores errno around itself.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "netpoll.h"

/* Puts fd into non-blocking mode if it is not: 0 or a negative errno. */
static int nonblock(int fd)
{
    int saved = chan__errno_save();
    int rc = 0;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        rc = -errno;
    else if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        rc = -errno;
    chan__errno_restore(saved);
    return rc;
}

int chan__fd_poll(struct pollfd *p, unsigned long n)
{
    int saved = chan__errno_save();
    int r;
    do
        r = poll(p, (nfds_t)n, 0);
    while (r < 0 && errno == EINTR);
    int e = errno;
    chan__errno_restore(saved);
    return r < 0 ? -e : r;
}

/* poll(2) of fd for events without waiting: revents (> 0), 0 if not
 * ready, -EBADF if fd is not open. */
CHAN_NOINLINE static int poll_now(int fd, int events)
{
    struct pollfd p = { .fd = fd, .events = (short)events };
    int n = chan__fd_poll(&p, 1);
    if (n < 0)
        return n;
    if (n == 0)
        return 0;
    if (p.revents & POLLNVAL)
        return -EBADF;
    return p.revents;
}

static int dirs_of(int events)
{
    return (events & POLLIN ? CHAN_PD_IN : 0) |
           (events & POLLOUT ? CHAN_PD_OUT : 0);
}

int chan_fd_wait(int fd, int events, int64_t timeout_ns)
{
    events &= POLLIN | POLLOUT;
    if (!events)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    if (timeout_ns == 0) {
        int r = poll_now(fd, events);
        return r != 0 ? r : -EAGAIN;
    }
    int64_t deadline = chan__deadline(timeout_ns);
    chan__pd_t *pd;
    int rc = chan__pd_get(fd, &pd);
    if (rc < 0)
        return rc;
    for (;;) {
        chan__pd_snap_t snap;
        chan__pd_snap(pd, &snap);
        int r = poll_now(fd, events);
        if (r != 0)
            return r;
        rc = chan__pd_wait(pd, fd, dirs_of(events), &snap, deadline);
        if (rc < 0)
            return rc;
        /* Events found after the wait began are as good as a new poll. */
        if ((r = rc & (events | POLLERR | POLLHUP)) != 0)
            return r;
    }
}

/*
 * The loop of every call but chan_fd_wait: try(fd, ctx) returns a result
 * (>= 0 or a negative errno other than -EAGAIN), or -EAGAIN to wait for
 * dirs and try again.  Returns the result, -EAGAIN for a zero timeout, or
 * the error of the wait (-ETIMEDOUT, -EBADF, ...).
 */
static ssize_t retry_loop(int fd, int dirs, int64_t timeout_ns,
                          ssize_t (*try)(int fd, void *ctx), void *ctx)
{
    chan__pd_t *pd = NULL;
    int64_t deadline = 0;
    if (timeout_ns != 0) {
        int rc = chan__pd_get(fd, &pd);
        if (rc < 0)
            return rc;
        deadline = chan__deadline(timeout_ns);
    }
    for (;;) {
        chan__pd_snap_t snap;
        if (pd)
            chan__pd_snap(pd, &snap);
        ssize_t r = try(fd, ctx);
        if (r != -EAGAIN)
            return r;
        if (!pd)
            return -EAGAIN;
        int rc = chan__pd_wait(pd, fd, dirs, &snap, deadline);
        if (rc < 0)
            return rc;
    }
}

/* ------------------------------------------------------------ read */

struct rw {
    char *buf;
    size_t len;
    size_t done;    /* chan_write: bytes written so far */
    int sock;       /* -1 unknown, 1 socket, 0 not a socket */
};

/* A socket call said ENOTSOCK: fd is a pipe, a terminal or a file, read
 * and written with read(2) and write(2) from now on, once it is made
 * non-blocking.  Restores errno to saved; 0 or a negative errno. */
static int not_a_socket(struct rw *a, int fd, int saved)
{
    a->sock = 0;
    chan__errno_restore(saved);
    return nonblock(fd);
}

CHAN_NOINLINE static ssize_t try_read(int fd, void *ctx)
{
    struct rw *a = ctx;
    int saved = chan__errno_save();
    ssize_t n;
    for (;;) {
        if (a->sock != 0) {
            n = recv(fd, a->buf, a->len, MSG_DONTWAIT);
            if (n < 0 && errno == ENOTSOCK) {
                int rc = not_a_socket(a, fd, saved);
                if (rc < 0)
                    return rc;
                continue;
            }
        } else {
            n = read(fd, a->buf, a->len);
        }
        if (n >= 0 || errno != EINTR)
            break;
    }
    int e = errno;
    chan__errno_restore(saved);
    if (n >= 0)
        return n;
    return e == EWOULDBLOCK ? -EAGAIN : -e;
}

ssize_t chan_read(int fd, void *buf, size_t len, int64_t timeout_ns)
{
    if (fd < 0)
        return -EBADF;
    if ((!buf && len > 0) || len > SSIZE_MAX)
        return -EINVAL;
    struct rw a = { .buf = buf, .len = len, .sock = -1 };
    return retry_loop(fd, CHAN_PD_IN, timeout_ns, try_read, &a);
}

/* ------------------------------------------------------------ write */

/* write(2) with SIGPIPE kept away from the process (see the top). */
static ssize_t write_quiet(int fd, const char *p, size_t k, int *e)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    chan__check(pthread_sigmask(SIG_BLOCK, &pipe_set, &old));
    int was_pending = sigpending(&pending) == 0 &&
                      sigismember(&pending, SIGPIPE) == 1;
    ssize_t n = write(fd, p, k);
    *e = errno;
    if (n < 0 && *e == EPIPE && !was_pending) {
        /* Our write raised it, directed at this thread: take it back. */
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    chan__check(pthread_sigmask(SIG_SETMASK, &old, NULL));
    return n;
}

CHAN_NOINLINE static ssize_t try_write(int fd, void *ctx)
{
    struct rw *a = ctx;
    int saved = chan__errno_save();
    for (;;) {
        const char *p = a->buf + a->done;
        size_t k = a->len - a->done;
        ssize_t n;
        int e = 0;
        if (a->sock != 0) {
            n = send(fd, p, k, MSG_NOSIGNAL | MSG_DONTWAIT);
            e = errno;
            if (n < 0 && e == ENOTSOCK) {
                int rc = not_a_socket(a, fd, saved);
                if (rc < 0)
                    return rc;
                continue;
            }
            if (n >= 0)
                a->sock = 1;
        } else {
            n = write_quiet(fd, p, k, &e);
        }
        if (n >= 0) {
            a->done += (size_t)n;
            if (a->done == a->len) {
                chan__errno_restore(saved);
                return (ssize_t)a->len;
            }
            continue;
        }
        if (e == EINTR)
            continue;
        chan__errno_restore(saved);
        return e == EWOULDBLOCK ? -EAGAIN : -e;
    }
}

ssize_t chan_write(int fd, const void *buf, size_t len, int64_t timeout_ns)
{
    if (fd < 0)
        return -EBADF;
    if ((!buf && len > 0) || len > SSIZE_MAX)
        return -EINVAL;
    if (len == 0)
        return 0;
    struct rw a = { .buf = (char *)(uintptr_t)buf, .len = len, .sock = -1 };
    ssize_t r = retry_loop(fd, CHAN_PD_OUT, timeout_ns, try_write, &a);
    /* Bytes already written are reported whatever ended the call. */
    return r < 0 && a.done > 0 ? (ssize_t)a.done : r;
}

/* ------------------------------------------------------------ accept */

struct acc {
    struct sockaddr *addr;
    socklen_t *addrlen;
};

CHAN_NOINLINE static ssize_t try_accept(int fd, void *ctx)
{
    struct acc *a = ctx;
    int saved = chan__errno_save();
    int s;
    do
        s = accept4(fd, a->addr, a->addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (s < 0 && (errno == EINTR || errno == ECONNABORTED));
    int e = errno;
    chan__errno_restore(saved);
    if (s >= 0)
        return s;
    return e == EWOULDBLOCK ? -EAGAIN : -e;
}

int chan_accept(int fd, struct sockaddr *addr, socklen_t *addrlen,
                int64_t timeout_ns)
{
    if (fd < 0)
        return -EBADF;
    if (addr && !addrlen)
        return -EINVAL;
    int rc = nonblock(fd);
    if (rc < 0)
        return rc;
    struct acc a = { addr, addrlen };
    return (int)retry_loop(fd, CHAN_PD_IN, timeout_ns, try_accept, &a);
}

/* ------------------------------------------------------------ connect */

/* Whether a connect in progress has finished: 0 (connected), its error,
 * or -EAGAIN while it is still in progress. */
CHAN_NOINLINE static ssize_t try_connected(int fd, void *ctx)
{
    (void)ctx;
    int r = poll_now(fd, POLLOUT);
    if (r < 0)
        return r;
    if (r == 0)
        return -EAGAIN;
    int err = 0;
    socklen_t len = sizeof err;
    int saved = chan__errno_save();
    int g = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    int e = errno;
    chan__errno_restore(saved);
    if (g < 0)
        return -e;
    return err == EAGAIN ? -EAGAIN : -err;
}

int chan_connect(int fd, const struct sockaddr *addr, socklen_t addrlen,
                 int64_t timeout_ns)
{
    if (fd < 0)
        return -EBADF;
    if (!addr)
        return -EINVAL;
    int rc = nonblock(fd);
    if (rc < 0)
        return rc;
    int saved = chan__errno_save();
    int r = connect(fd, addr, addrlen);
    int e = errno;
    chan__errno_restore(saved);
    if (r == 0)
        return 0;
    /* EINTR: the connection goes on in the background, like EINPROGRESS. */
    if (e != EINPROGRESS && e != EINTR)
        return e == EWOULDBLOCK ? -EAGAIN : -e;
    return (int)retry_loop(fd, CHAN_PD_OUT, timeout_ns, try_connected, NULL);
}

/* ------------------------------------------------------------ close */

int chan_fd_close(int fd)
{
    if (fd < 0)
        return -EBADF;
    chan__pd_close(fd);
    int saved = chan__errno_save();
    int r = close(fd);
    int e = errno;
    chan__errno_restore(saved);
    return r == 0 ? 0 : -e;
}

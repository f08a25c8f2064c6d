/*
 * standin.c - a plain epoll echo server, one thread, no libchan: a known
 * quantity for checking the load generator and the driver script, not a
 * libchan result.
 *
 *   echo_standin
 *
 * Speaks the echo servers' protocol (bench/echo/echoload.c): listens on
 * 127.0.0.1 on a free port, prints "port N", echoes every connection with
 * a 4 KiB buffer, and exits when its stdin reaches end of file.  A
 * connection whose peer is slow to read keeps its unsent bytes and is not
 * read again until they are out.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
    int fd;
    size_t off, len;       /* buf[off..len) is still to be written */
    char buf[4096];
};

static int ep;

static void watch(int op, int fd, uint32_t events, void *ptr)
{
    struct epoll_event e = { .events = events, .data.ptr = ptr };
    if (epoll_ctl(ep, op, fd, &e) != 0) {
        perror("epoll_ctl");
        exit(1);
    }
}

static void drop(struct conn *c)
{
    close(c->fd); /* also takes it out of the epoll set */
    free(c);
}

/* Writes what c holds; returns 0 when all is out, 1 if the socket is full,
 * -1 on an error. */
static int flush(struct conn *c)
{
    while (c->off < c->len) {
        ssize_t w = write(c->fd, c->buf + c->off, c->len - c->off);
        if (w > 0)
            c->off += (size_t)w;
        else if (w < 0 && errno == EAGAIN)
            return 1;
        else if (w < 0 && errno != EINTR)
            return -1;
    }
    c->off = c->len = 0;
    return 0;
}

static void serve(struct conn *c, uint32_t events)
{
    if (c->len) { /* waiting for room */
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int f = flush(c);
        if (f < 0) {
            drop(c);
            return;
        }
        if (f > 0)
            return;
        watch(EPOLL_CTL_MOD, c->fd, EPOLLIN, c);
    }
    for (;;) {
        ssize_t r = read(c->fd, c->buf, sizeof c->buf);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            drop(c);
            return;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        c->len = (size_t)r;
        int f = flush(c);
        if (f < 0) {
            drop(c);
            return;
        }
        if (f > 0) {
            watch(EPOLL_CTL_MOD, c->fd, EPOLLOUT, c);
            return;
        }
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(ls, 4096) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) != 0) {
        perror("listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_create1");
        return 1;
    }
    /* data.ptr: NULL for the listener, &ep for stdin, else a connection. */
    watch(EPOLL_CTL_ADD, ls, EPOLLIN, NULL);
    watch(EPOLL_CTL_ADD, 0, EPOLLIN, &ep);
    printf("port %d\n", ntohs(a.sin_port));
    fflush(stdout);

    struct epoll_event ev[256];
    for (;;) {
        int n = epoll_wait(ep, ev, 256, -1);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            void *p = ev[i].data.ptr;
            if (p == &ep) {
                char b[256];
                ssize_t r = read(0, b, sizeof b);
                if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
                    return 0;
            } else if (p == NULL) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL,
                                     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    struct conn *c = malloc(sizeof *c);
                    if (!c) {
                        close(fd);
                        continue;
                    }
                    c->fd = fd;
                    c->off = c->len = 0;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    watch(EPOLL_CTL_ADD, fd, EPOLLIN, c);
                }
            } else {
                serve(p, ev[i].events);
            }
        }
    }
}

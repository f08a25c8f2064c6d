/*
 * fetch_threads.c - plain threads that fetch from a server, each waiting
 * with one chan_select for its socket, a quit channel and a timeout.
 *
 *   fetch_threads [N]      (N fetchers, default 4, at most 64)
 *
 * The program starts a small server of its own on 127.0.0.1 (a thread per
 * connection, using chan_accept, chan_read and chan_write).  A request is
 * one line: "GET k" answers k bytes and closes; "SLOW" answers nothing.
 * Fetcher i asks for 1000 * i bytes and checks every byte.  Two more ask
 * for SLOW: one with a 50 ms timeout, which expires, and one without,
 * which main cancels by closing the quit channel once the others are
 * done.  With a select there is no need for a thread per concern: one
 * call waits for the data, the cancellation and the deadline.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chan.h>

#define MS ((int64_t)1000000)

static chan_t *quit;   /* closed by main: every wait gives up */
static int port;

static char pattern(size_t i)
{
    return (char)('A' + (i * 7 + i / 26) % 26);
}

/* ------------------------------------------------------------ server */

static void *handle(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char req[64];
    size_t got = 0;
    while (got < sizeof req - 1 && !memchr(req, '\n', got)) {
        ssize_t n = chan_read(fd, req + got, sizeof req - 1 - got, 5000 * MS);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    req[got] = '\0';
    long k;
    if (sscanf(req, "GET %ld", &k) == 1 && k >= 0 && k <= 1 << 20) {
        char buf[4096];
        for (size_t off = 0; off < (size_t)k;) {
            size_t len = (size_t)k - off < sizeof buf ? (size_t)k - off : sizeof buf;
            for (size_t j = 0; j < len; j++)
                buf[j] = pattern(off + j);
            if (chan_write(fd, buf, len, 5000 * MS) != (ssize_t)len)
                break;
            off += len;
        }
    } else {
        chan_recv(quit, NULL); /* SLOW: answer nothing until the end */
    }
    chan_fd_close(fd);
    return NULL;
}

static void *server(void *arg)
{
    int l = (int)(intptr_t)arg;
    pthread_t t[80];
    int n = 0;
    for (;;) {
        int fd = chan_accept(l, NULL, NULL, CHAN_FOREVER);
        if (fd < 0)
            break; /* -EBADF: main closed the listener */
        if (n == 80 || pthread_create(&t[n], NULL, handle, (void *)(intptr_t)fd)) {
            chan_fd_close(fd);
            continue;
        }
        n++;
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    return NULL;
}

/* ------------------------------------------------------------ fetchers */

struct fetch {
    const char *request;
    int64_t timeout;      /* for each wait; CHAN_FOREVER for none */
    size_t want;          /* bytes expected */
    const char *outcome;  /* filled in */
    size_t got;
};

static void *fetcher(void *arg)
{
    struct fetch *f = arg;
    f->outcome = "connect failed";
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (fd < 0 || chan_connect(fd, (struct sockaddr *)&a, sizeof a, 5000 * MS))
        goto out;
    size_t len = strlen(f->request);
    f->outcome = "write failed";
    if (chan_write(fd, f->request, len, 5000 * MS) != (ssize_t)len)
        goto out;
    for (;;) {
        chan_case_t c[2] = { CHAN_FD_CASE(fd, POLLIN),
                             CHAN_RECV_CASE(quit, NULL) };
        int k = chan_select(c, 2, f->timeout);
        if (k == -ETIMEDOUT) {
            f->outcome = "timed out";
            break;
        }
        if (k == 1) {
            f->outcome = "cancelled by quit";
            break;
        }
        char buf[4096];
        ssize_t n = chan_read(fd, buf, sizeof buf, 0);
        if (n == -EAGAIN)
            continue;
        if (n < 0) {
            f->outcome = "read failed";
            break;
        }
        if (n == 0) {
            f->outcome = f->got == f->want ? "ok" : "short";
            break;
        }
        for (ssize_t j = 0; j < n; j++)
            if (buf[j] != pattern(f->got + (size_t)j)) {
                f->outcome = "corrupt";
                goto out;
            }
        f->got += (size_t)n;
    }
out:
    if (fd >= 0)
        close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2 || n < 1 || n > 64) {
        fprintf(stderr, "usage: fetch_threads [N]   (1 <= N <= 64)\n");
        return 2;
    }
    quit = chan_make(0, 0);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (!quit || l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) ||
        listen(l, 128) || getsockname(l, (struct sockaddr *)&a, &alen)) {
        perror("fetch_threads: listen");
        return 1;
    }
    port = ntohs(a.sin_port);
    pthread_t srv;
    if (pthread_create(&srv, NULL, server, (void *)(intptr_t)l))
        return 1;

    struct fetch f[66];
    char req[66][32];
    pthread_t t[66];
    for (int i = 0; i < n; i++) {
        snprintf(req[i], sizeof req[i], "GET %d\n", 1000 * (i + 1));
        f[i] = (struct fetch){ .request = req[i], .timeout = 5000 * MS,
                               .want = (size_t)1000 * (size_t)(i + 1) };
    }
    f[n] = (struct fetch){ .request = "SLOW\n", .timeout = 50 * MS };
    f[n + 1] = (struct fetch){ .request = "SLOW\n", .timeout = CHAN_FOREVER };
    for (int i = 0; i < n + 2; i++)
        if (pthread_create(&t[i], NULL, fetcher, &f[i]))
            return 1;
    for (int i = 0; i <= n; i++)  /* all but the one without a deadline */
        pthread_join(t[i], NULL);
    chan_close(quit);             /* cancels it, and the SLOW handlers */
    pthread_join(t[n + 1], NULL);
    chan_fd_close(l);             /* wakes the server's chan_accept */
    pthread_join(srv, NULL);

    int ok = 0;
    for (int i = 0; i < n; i++) {
        printf("fetch %d: %zu bytes %s\n", i + 1, f[i].got, f[i].outcome);
        ok += strcmp(f[i].outcome, "ok") == 0;
    }
    printf("slow, 50 ms timeout: %s\n", f[n].outcome);
    printf("slow, no timeout: %s\n", f[n + 1].outcome);
    printf("done: %d of %d fetched\n", ok, n);
    chan_release(quit);
    return ok == n && strcmp(f[n].outcome, "timed out") == 0 &&
                   strcmp(f[n + 1].outcome, "cancelled by quit") == 0
               ? 0
               : 1;
}

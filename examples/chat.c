/*
 * chat.c - a line-based chat server: tasks for the connections, a hub task
 * that fans the lines out over channels, slow clients dropped.
 *
 *   chat [--port P] [--queue N] [--sndbuf BYTES] [--write-timeout-ms MS]
 *
 * The server listens on 127.0.0.1:P (0, the default, lets the kernel
 * choose; the first line printed, "port N", says which port it got).
 *
 * The protocol, one line each way, ended by "\n" (a "\r" before it is
 * dropped):
 *
 *   server: * your name?              on connecting
 *   client: NAME                      the first line
 *   server: * you are NAME            NAME is the client's if it is 1 to 24
 *                                     letters, digits, '_' or '-', does not
 *                                     start with "guest" and is not taken;
 *                                     otherwise guestN, N the connection's
 *                                     number (1 for the first one)
 *   others: * NAME joined
 *   client: TEXT                      others: NAME: TEXT (never echoed back;
 *                                     an empty line is ignored)
 *   client: /quit                     server: * bye NAME, then end of file;
 *                                     others: * NAME left
 *   client: /anything else            server: * unknown command: /anything else
 *   (end of file, or an error)        others: * NAME left
 *   (too slow)                        others: * NAME left (too slow)
 *   (SIGINT or SIGTERM)               everyone: * server shutting down, then
 *                                     end of file
 *
 * A line carries at most 512 bytes of text; the rest of a longer one is
 * dropped.  A line cut short by the end of the connection is dropped too.
 *
 * The tasks.  One acceptor.  One hub, which alone knows who is here: it
 * selects over a join, a message and a leave channel (and the quit
 * channel), and delivers every line with chan_trysend into each client's
 * outbound channel, a buffer of N lines (--queue, default 64; at least 2,
 * so that the greeting and the reply to the name always fit).  Per
 * connection a reader task, which reads lines with chan_read and sends
 * them to the hub, and a writer task, which receives from the outbound
 * channel and writes with chan_write.  So the hub never waits for a
 * client: a client whose outbound channel is full (its socket's send
 * buffer, --sndbuf bytes (default 32768; 0 leaves the kernel's), is full
 * and N more lines wait) is dropped on the spot: the hub closes its
 * channel and shuts its socket down, which wakes its reader and its
 * writer, and tells the others.  A writer whose write stays stuck for MS
 * milliseconds (--write-timeout-ms, default 10000) drops its client too.
 *
 * The join, message and leave channels are unbuffered: a reader's send
 * returns only once the hub has taken the value, and the hub handles each
 * value before it selects again, so a reader's join, messages and leave
 * reach the hub in the order it sent them (through three buffered channels
 * a select could take a leave before the last message, whose client would
 * then be gone).
 *
 * Ownership of a struct client.  Three references, counted in refs: its
 * reader's, its writer's and the hub's.  The acceptor makes the client
 * with all three.  The reader and the writer drop theirs when they end.
 * The hub drops its own when it handles the client's leave, which the
 * reader sends, once, as its last message if its join went through; if it
 * did not, the hub never saw the client, and the reader drops the hub's
 * reference itself.  Whoever drops the last reference closes the socket
 * (chan_fd_close), releases the outbound channel and frees the struct, so
 * each happens exactly once.  Until then the socket stays open: the hub
 * and the tasks wake each other with shutdown(2), never with a close,
 * because a closed number can at once be reused by the next connection,
 * which a task still holding the old number would then read or write.
 * The outbound channel is closed once, by the hub (on a leave, or when it
 * drops the client), or by the reader if the client never joined; a
 * closed and drained channel ends the writer.  Fields marked "hub only"
 * are touched by the hub task alone.
 *
 * Shutdown.  SIGINT or SIGTERM, received through a signal channel, makes
 * main close the quit channel.  The acceptor stops and closes the
 * listener; every reader stops and leaves (a client that has not joined
 * yet just ends); the hub closes the join channel, answers each leave with
 * "* server shutting down", and returns once everyone who joined has
 * left.  The writers deliver what is queued and end.  main waits for every
 * task with a wait group, prints what it served and "bye", and exits 0.
 * A client that does not read its last lines holds this up for at most
 * the write timeout.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chan.h>

#define MS ((int64_t)1000000)

#define TEXT_MAX 512 /* bytes of text in a line, without its "\n" */
#define NAME_MAX_LEN 24
/* The longest line sent: "NAME: TEXT\n". */
#define OUT_MAX (NAME_MAX_LEN + 2 + TEXT_MAX + 1)

/* One line for a client's writer, its "\n" included. */
struct line {
    uint16_t len;
    char text[OUT_MAX];
};

/* Why a reader ended. */
enum why { LEFT_EOF, LEFT_QUIT, LEFT_SLOW, LEFT_SHUTDOWN };

struct client;

/* What a reader sends to the hub: on the join channel its name, on the
 * message channel a line, on the leave channel why it ended. */
struct event {
    struct client *c;
    enum why why;        /* leave only */
    uint16_t len;        /* bytes in text */
    char text[TEXT_MAX];
};

struct client {
    int fd;              /* the socket; open until the last reference goes */
    chan_t *out;         /* struct line, capacity queue_len: hub -> writer */
    unsigned id;         /* connection number, for guest names */
    atomic_int refs;     /* reader, writer, hub: see the top of the file */
    atomic_bool stuck;   /* set by the writer when a write timed out */
    char name[NAME_MAX_LEN + 1];   /* hub only */
    bool closed;         /* hub only: out is closed, send nothing more */
    bool announce;       /* hub only: dropped, "left (too slow)" not told yet */
    struct client *prev, *next;    /* hub only: the clients that joined */
};

/* The settings, written by main before any task starts. */
static size_t queue_len = 64;
static int sndbuf = 32768;
static int64_t write_timeout_ns = 10000 * MS;

/* Made by main before any task starts, released after they all ended. */
static chan_t *join_ch, *msg_ch, *leave_ch; /* struct event, unbuffered */
static chan_t *quit_ch;                     /* closed to shut down */
static chan_wg_t *wg;                       /* every task */

static atomic_long connections, joined, dropped, messages;

static void client_unref(struct client *c, int n)
{
    if (atomic_fetch_sub(&c->refs, n) != n)
        return;
    int rc = chan_fd_close(c->fd);
    if (rc != 0)
        fprintf(stderr, "chat: close: %s\n", strerror(-rc));
    chan_release(c->out);
    free(c);
}

/* Ends one or both directions of c's connection, leaving its descriptor
 * open (the top of the file says why).  ENOTCONN: the peer has already
 * gone, which is the end wanted. */
static void hangup(struct client *c, int how)
{
    if (shutdown(c->fd, how) != 0 && errno != ENOTCONN)
        perror("chat: shutdown");
}

/* c is too slow: end its connection now.  Its reader and writer wake up
 * from the shutdown; the close at the last reference then resets the
 * connection (SO_LINGER 0) instead of leaving the kernel to push the
 * queued bytes to a client that does not read them. */
static void cut_off(struct client *c)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
        perror("chat: SO_LINGER");
    hangup(c, SHUT_RDWR);
}

/* ------------------------------------------------------------ lines */

static void line_add(struct line *ln, const char *s, size_t n)
{
    size_t room = sizeof ln->text - 1 - ln->len; /* 1: the "\n" */
    if (n > room)
        n = room;
    memcpy(ln->text + ln->len, s, n);
    ln->len = (uint16_t)(ln->len + n);
}

static void line_adds(struct line *ln, const char *s)
{
    line_add(ln, s, strlen(s));
}

static void line_end(struct line *ln)
{
    ln->text[ln->len++] = '\n';
}

/* "* " PRE NAME POST "\n" */
static void line_notice(struct line *ln, const char *pre, const char *name,
                        const char *post)
{
    ln->len = 0;
    line_adds(ln, "* ");
    line_adds(ln, pre);
    line_adds(ln, name);
    line_adds(ln, post);
    line_end(ln);
}

/* ------------------------------------------------------------ writer */

/* Writes what the hub queued for c until the hub closes the channel (or
 * the reader does, for a client that never joined), then ends c's half
 * of the connection: the client reads the last line, then end of file. */
static void writer(void *arg)
{
    struct client *c = arg;
    struct line ln;
    int rc;
    while ((rc = chan_recv(c->out, &ln)) == 0) {
        ssize_t n = chan_write(c->fd, ln.text, ln.len, write_timeout_ns);
        if (n == ln.len)
            continue;
        /* Not reading: -ETIMEDOUT, or a part before the time ran out (an
         * error after a part is counted so too).  Or gone.  Either way
         * the reader sees the end and leaves. */
        if (n == -ETIMEDOUT || n >= 0) {
            atomic_store(&c->stuck, true);
            cut_off(c);
        } else {
            hangup(c, SHUT_RDWR);
        }
        break;
    }
    if (rc == -EPIPE)
        hangup(c, SHUT_WR);
    else if (rc != 0)
        fprintf(stderr, "chat: writer: chan_recv: %s\n", strerror(-rc));
    client_unref(c, 1);
    chan_wg_done(wg);
}

/* ------------------------------------------------------------ reader */

/* Reads c's lines and hands them to the hub until the client quits or
 * goes, or the server shuts down; then leaves (see the top of the file). */
static void reader(void *arg)
{
    struct client *c = arg;
    char buf[4096];
    struct event ev = { .c = c };
    size_t len = 0; /* bytes of the line being read, in ev.text */
    bool in = false, stop = false;
    enum why why = LEFT_EOF;
    while (!stop) {
        chan_case_t cs[2] = { CHAN_FD_CASE(c->fd, POLLIN),
                              CHAN_RECV_CASE(quit_ch, NULL) };
        int k = chan_select(cs, 2, CHAN_FOREVER);
        if (k == 1) {
            why = LEFT_SHUTDOWN;
            break;
        }
        if (k != 0 || cs[0].result < 0)
            break;
        ssize_t n = chan_read(c->fd, buf, sizeof buf, 0);
        if (n == -EAGAIN)
            continue;
        if (n <= 0)
            break; /* end of file (a line cut short by it is dropped) */
        for (ssize_t i = 0; i < n && !stop; i++) {
            if (buf[i] != '\n') {
                if (len < TEXT_MAX)
                    ev.text[len++] = buf[i];
                continue; /* beyond TEXT_MAX: dropped */
            }
            if (len > 0 && ev.text[len - 1] == '\r')
                len--;
            ev.len = (uint16_t)len;
            len = 0;
            if (!in) {
                /* -EPIPE: the hub closed the join channel, shutting down. */
                in = chan_send(join_ch, &ev) == 0;
                if (!in) {
                    why = LEFT_SHUTDOWN;
                    stop = true;
                }
            } else if (ev.len == 5 && memcmp(ev.text, "/quit", 5) == 0) {
                why = LEFT_QUIT;
                stop = true;
            } else if (ev.len > 0) {
                int rc = chan_send(msg_ch, &ev);
                if (rc != 0) { /* cannot happen: see the hub */
                    fprintf(stderr, "chat: reader: chan_send: %s\n", strerror(-rc));
                    stop = true;
                }
            }
        }
    }
    if (why == LEFT_EOF && atomic_load(&c->stuck))
        why = LEFT_SLOW; /* the writer gave up and hung up */
    if (in) {
        ev.why = why;
        int rc = chan_send(leave_ch, &ev);
        if (rc != 0) {
            /* Cannot happen: the hub serves leaves until all who joined
             * have left.  Drop its reference, as it will not. */
            fprintf(stderr, "chat: reader: chan_send: %s\n", strerror(-rc));
            client_unref(c, 1);
        }
    } else {
        chan_close(c->out);   /* the hub never saw c: end its writer */
        client_unref(c, 1);   /* and the hub's reference, never handed over */
    }
    client_unref(c, 1);
    chan_wg_done(wg);
}

/* ------------------------------------------------------------ hub */

/* The hub's own state, on its stack. */
struct hub {
    struct client *first; /* the clients that joined and have not left */
    size_t n;             /* how many */
    size_t pending;       /* how many of them have announce set */
};

static void hub_close(struct client *c)
{
    c->closed = true;
    int rc = chan_close(c->out);
    if (rc != 0)
        fprintf(stderr, "chat: chan_close: %s\n", strerror(-rc));
}

/* c's outbound channel is full: drop c, and tell the others (later, in
 * announce_drops: this may be called in the middle of a broadcast). */
static void hub_drop(struct hub *h, struct client *c)
{
    hub_close(c);
    c->announce = true;
    h->pending++;
    atomic_fetch_add(&dropped, 1);
    cut_off(c);
}

/* Queues ln for c without waiting; drops c if its channel is full. */
static void deliver(struct hub *h, struct client *c, const struct line *ln)
{
    if (c->closed)
        return;
    int rc = chan_trysend(c->out, ln);
    if (rc == 0)
        return;
    if (rc != -EAGAIN) /* cannot happen: only the hub closes out */
        fprintf(stderr, "chat: chan_trysend: %s\n", strerror(-rc));
    hub_drop(h, c);
}

static void broadcast(struct hub *h, struct client *from, const struct line *ln)
{
    for (struct client *c = h->first; c; c = c->next)
        if (c != from)
            deliver(h, c, ln);
}

/* Tells everyone about the clients dropped so far; the telling may drop
 * more, but each client is dropped once, so this ends. */
static void announce_drops(struct hub *h)
{
    while (h->pending > 0) {
        for (struct client *c = h->first; c; c = c->next) {
            if (!c->announce)
                continue;
            c->announce = false;
            h->pending--;
            struct line ln;
            line_notice(&ln, "", c->name, " left (too slow)");
            broadcast(h, c, &ln);
        }
    }
}

static bool name_ok(struct hub *h, const char *s, size_t n)
{
    if (n == 0 || n > NAME_MAX_LEN || (n >= 5 && memcmp(s, "guest", 5) == 0))
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return false;
    }
    for (struct client *c = h->first; c; c = c->next)
        if (strlen(c->name) == n && memcmp(c->name, s, n) == 0)
            return false;
    return true;
}

static void hub_join(struct hub *h, const struct event *ev)
{
    struct client *c = ev->c;
    if (name_ok(h, ev->text, ev->len)) {
        memcpy(c->name, ev->text, ev->len);
        c->name[ev->len] = '\0';
    } else {
        snprintf(c->name, sizeof c->name, "guest%u", c->id);
    }
    c->prev = NULL;
    c->next = h->first;
    if (h->first)
        h->first->prev = c;
    h->first = c;
    h->n++;
    atomic_fetch_add(&joined, 1);
    struct line ln;
    line_notice(&ln, "you are ", c->name, "");
    deliver(h, c, &ln);
    line_notice(&ln, "", c->name, " joined");
    broadcast(h, c, &ln);
}

static void hub_message(struct hub *h, const struct event *ev)
{
    struct client *c = ev->c;
    if (c->closed)
        return; /* dropped: what it still sends goes nowhere */
    struct line ln = { .len = 0 };
    if (ev->text[0] == '/') {
        line_adds(&ln, "* unknown command: ");
        line_add(&ln, ev->text, ev->len);
        line_end(&ln);
        deliver(h, c, &ln);
        return;
    }
    atomic_fetch_add(&messages, 1);
    line_adds(&ln, c->name);
    line_adds(&ln, ": ");
    line_add(&ln, ev->text, ev->len);
    line_end(&ln);
    broadcast(h, c, &ln);
}

static void hub_leave(struct hub *h, const struct event *ev)
{
    struct client *c = ev->c;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->first = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->n--;
    if (c->announce) { /* not reached: announce_drops ran after the drop */
        c->announce = false;
        h->pending--;
    }
    if (!c->closed) {
        struct line ln;
        /* A last word to c itself: if its channel is full it misses it
         * (it is leaving anyway); no drop, c is no longer in the list. */
        if (ev->why == LEFT_QUIT || ev->why == LEFT_SHUTDOWN) {
            if (ev->why == LEFT_QUIT)
                line_notice(&ln, "bye ", c->name, "");
            else
                line_notice(&ln, "server shutting down", "", "");
            int rc = chan_trysend(c->out, &ln);
            if (rc != 0 && rc != -EAGAIN)
                fprintf(stderr, "chat: chan_trysend: %s\n", strerror(-rc));
        }
        hub_close(c);
        /* At shutdown everyone gets the same notice instead. */
        if (ev->why != LEFT_SHUTDOWN) {
            if (ev->why == LEFT_SLOW)
                atomic_fetch_add(&dropped, 1);
            line_notice(&ln, "", c->name,
                        ev->why == LEFT_SLOW ? " left (too slow)" : " left");
            broadcast(h, NULL, &ln);
        }
    }
    client_unref(c, 1);
}

static void hub(void *arg)
{
    (void)arg;
    struct hub h = { .first = NULL };
    chan_t *join = join_ch, *quit = quit_ch; /* NULL once quit is closed */
    while (quit || h.n > 0) {
        struct event ev;
        chan_case_t cs[4] = {
            CHAN_RECV_CASE(join, &ev), CHAN_RECV_CASE(msg_ch, &ev),
            CHAN_RECV_CASE(leave_ch, &ev), CHAN_RECV_CASE(quit, NULL),
        };
        int k = chan_select(cs, 4, CHAN_FOREVER);
        if (k < 0 || (k < 3 && cs[k].result != 0)) {
            /* Cannot happen: valid cases, and only the hub closes join,
             * then stops receiving from it. */
            fprintf(stderr, "chat: hub: chan_select: %s\n",
                    strerror(-(k < 0 ? k : cs[k].result)));
            abort();
        }
        if (k == 0)
            hub_join(&h, &ev);
        else if (k == 1)
            hub_message(&h, &ev);
        else if (k == 2)
            hub_leave(&h, &ev);
        else {
            /* Shutting down: no more joins (a reader still trying gets
             * -EPIPE); the readers leave by themselves. */
            quit = NULL;
            chan_close(join_ch);
            join = NULL;
        }
        announce_drops(&h);
    }
    chan_wg_done(wg);
}

/* ------------------------------------------------------------ acceptor */

static void start_client(int fd, unsigned id)
{
    if (sndbuf > 0 &&
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) != 0)
        perror("chat: SO_SNDBUF"); /* the kernel's size is still fine */
    struct client *c = calloc(1, sizeof *c);
    chan_t *out = chan_make(sizeof(struct line), queue_len);
    struct line ln = { .len = 0 };
    line_notice(&ln, "your name?", "", "");
    if (!c || !out || chan_trysend(out, &ln) != 0) {
        fprintf(stderr, "chat: out of memory: connection %u closed\n", id);
        free(c);
        chan_release(out);
        chan_fd_close(fd);
        return;
    }
    c->fd = fd;
    c->out = out;
    c->id = id;
    atomic_init(&c->refs, 3);
    atomic_init(&c->stuck, false);
    chan_wg_add(wg, 2);
    if (chan_go(NULL, writer, c) != 0) {
        fprintf(stderr, "chat: cannot start a task: connection %u closed\n", id);
        chan_wg_add(wg, -2);
        chan_release(out);
        chan_fd_close(fd);
        free(c);
        return;
    }
    if (chan_go(NULL, reader, c) != 0) {
        fprintf(stderr, "chat: cannot start a task: connection %u closed\n", id);
        chan_wg_done(wg);
        chan_close(out);     /* the writer ends, dropping its reference */
        client_unref(c, 2);  /* the reader's and the hub's */
    }
}

/* Accepts connections until the quit channel is closed, then closes the
 * listener (it is the only task that uses it). */
static void acceptor(void *arg)
{
    int l = (int)(intptr_t)arg;
    unsigned id = 0;
    for (;;) {
        chan_case_t cs[2] = { CHAN_FD_CASE(l, POLLIN),
                              CHAN_RECV_CASE(quit_ch, NULL) };
        int k = chan_select(cs, 2, CHAN_FOREVER);
        if (k != 0)
            break;
        int fd = cs[0].result < 0 ? cs[0].result : chan_accept(l, NULL, NULL, 0);
        if (fd == -EAGAIN || fd == -ECONNABORTED || fd == -EINTR ||
            fd == -EPROTO)
            continue; /* taken back by the client before accept, ... */
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            /* Out of descriptors or memory: the pending connection stays
             * ready, so wait a little (or for quit) before trying again. */
            fprintf(stderr, "chat: accept: %s\n", strerror(-fd));
            chan_case_t q = CHAN_RECV_CASE(quit_ch, NULL);
            if (chan_select(&q, 1, 100 * MS) == 0)
                break;
            continue;
        }
        if (fd < 0) {
            fprintf(stderr, "chat: accept: %s; no more connections\n",
                    strerror(-fd));
            break;
        }
        atomic_fetch_add(&connections, 1);
        start_client(fd, ++id);
    }
    int rc = chan_fd_close(l);
    if (rc != 0)
        fprintf(stderr, "chat: close: %s\n", strerror(-rc));
    chan_wg_done(wg);
}

/* ------------------------------------------------------------ main */

static int usage(void)
{
    fprintf(stderr, "usage: chat [--port P] [--queue N] [--sndbuf BYTES] "
                    "[--write-timeout-ms MS]\n");
    return 2;
}

/* s as a number in lo..hi, or -1. */
static long number(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi)
        return -1;
    return v;
}

int main(int argc, char **argv)
{
    long port = 0, queue = (long)queue_len, buf = sndbuf, wt = 10000;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            return usage();
        const char *v = argv[i + 1];
        if (strcmp(argv[i], "--port") == 0)
            port = number(v, 0, 65535);
        else if (strcmp(argv[i], "--queue") == 0)
            queue = number(v, 2, 65536);
        else if (strcmp(argv[i], "--sndbuf") == 0)
            buf = number(v, 0, 64L << 20);
        else if (strcmp(argv[i], "--write-timeout-ms") == 0)
            wt = number(v, 1, INT32_MAX);
        else
            return usage();
        if (port < 0 || queue < 0 || buf < 0 || wt < 0)
            return usage();
    }
    queue_len = (size_t)queue;
    sndbuf = (int)buf;
    write_timeout_ns = wt * MS;

    /* The signals first, so that none arrives before it is watched. */
    chan_t *sig = chan_make(sizeof(int), 2);
    if (!sig || chan_signal_notify(sig, SIGINT) != 0 ||
        chan_signal_notify(sig, SIGTERM) != 0) {
        fprintf(stderr, "chat: cannot watch signals\n");
        return 1;
    }

    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    socklen_t alen = sizeof a;
    int one = 1;
    if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 128) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0) {
        perror("chat: listen");
        return 1;
    }
    printf("port %d\n", ntohs(a.sin_port));
    fflush(stdout);

    /* Every connection is a descriptor: allow as many as the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            perror("chat: setrlimit"); /* the soft limit still works */
    }

    join_ch = chan_make(sizeof(struct event), 0);
    msg_ch = chan_make(sizeof(struct event), 0);
    leave_ch = chan_make(sizeof(struct event), 0);
    quit_ch = chan_make(0, 0);
    wg = chan_wg_new();
    chan_sched_opts_t o = { .threads = 2 };
    chan_sched_t *s = chan_sched_new(&o);
    if (!join_ch || !msg_ch || !leave_ch || !quit_ch || !wg || !s) {
        fprintf(stderr, "chat: out of memory\n");
        return 1;
    }
    chan_wg_add(wg, 2);
    if (chan_go(s, hub, NULL) != 0 ||
        chan_go(s, acceptor, (void *)(intptr_t)l) != 0) {
        fprintf(stderr, "chat: cannot start a task\n");
        return 1;
    }

    /* Wait for the signal, waking now and then: a build with
     * ThreadSanitizer runs a signal handler only once the thread it
     * interrupted leaves its wait, and this thread may be that one. */
    int signo = 0, k;
    do
        k = chan_timedrecv(sig, &signo, 100 * MS);
    while (k == -ETIMEDOUT);
    if (k != 0) {
        fprintf(stderr, "chat: chan_timedrecv: %s\n", strerror(-k));
        return 1;
    }
    printf("received %s: shutting down\n", signo == SIGINT ? "SIGINT" : "SIGTERM");
    fflush(stdout);
    chan_close(quit_ch);
    chan_wg_wait(wg);
    printf("served %ld connections: %ld joined, %ld dropped as too slow, "
           "%ld messages\n",
           atomic_load(&connections), atomic_load(&joined),
           atomic_load(&dropped), atomic_load(&messages));
    printf("bye\n");
    chan_sched_free(s);
    chan_wg_free(wg);
    chan_signal_stop(sig);
    chan_release(sig);
    chan_release(join_ch);
    chan_release(msg_ch);
    chan_release(leave_ch);
    chan_release(quit_ch);
    return 0;
}

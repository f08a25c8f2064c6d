/*
 * chat_client.c - drives examples/chat over real sockets and checks every
 * line it sends back (tests/examples.sh starts the server and runs this).
 *
 *   chat_client PORT SERVER_PID all   the whole protocol, then SIGTERM
 *   chat_client PORT SERVER_PID int   one client, then SIGINT
 *   chat_client PORT SERVER_PID stuck a client whose writes time out
 *
 * Plain libc: blocking sockets, every wait through poll() with a generous
 * deadline, so a server that loses, repeats, reorders or holds back a line
 * fails a check instead of hanging.  Each expected line is compared whole,
 * in the order it must come, on every connection that must get it, so a
 * duplicate or a line that should not be there shows up as a mismatch.
 *
 * The checks (mode all; the server runs with a small --queue and
 * --sndbuf, see tests/examples.sh):
 *   1. alice and bob each send 50 lines at once: each gets the other's,
 *      exactly once and in order, prefixed "NAME: ", never its own.
 *   2. guest names (an empty, a taken, a reserved name), a line longer
 *      than 512 bytes (cut, the rest dropped), an unknown command, /quit.
 *   3. a client that goes in the middle of a line (the part is dropped,
 *      the others see it leave), and one that goes in the middle of its
 *      name (nobody sees anything).
 *   4. a client that never reads, with a small receive buffer: alice
 *      floods until the server drops it; bob, reading, gets every line in
 *      order meanwhile and the drop notice once, and alice and bob go on
 *      chatting afterwards.
 *   5. SIGTERM with alice, bob and a client that has not joined still
 *      connected: each is told (those who joined) and sees end of file.
 * Mode stuck (a long --queue, a short --write-timeout-ms): a client that
 * never reads is dropped by its writer's timeout, the queue far from full.
 * At the end it prints "want: " and the summary line the server must
 * print, from its own count of connections, joins, drops and messages.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Per wait; generous for sanitizer builds and emulation. */
#define WAIT_MS 30000

struct conn {
    const char *who;
    int fd;
    char name[64];     /* the name the server gave */
    char buf[8192];    /* received, not yet taken as lines */
    size_t len;
};

static int port;
static long n_connections, n_joined, n_dropped, n_messages;

/* The clients that joined and have not left: each gets every notice. */
static struct conn *members[8];
static size_t n_members;

__attribute__((noreturn, format(printf, 1, 2)))
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "chat_client: FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits for events on k until the deadline; fails on timeout. */
static void wait_for(struct conn *k, short events, long long deadline,
                     const char *what)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            fail("%s: no %s within %d ms", k->who, what, WAIT_MS);
        struct pollfd p = { .fd = k->fd, .events = events };
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return;
        if (n < 0 && errno != EINTR)
            fail("%s: poll: %s", k->who, strerror(errno));
    }
}

static void conn_open(struct conn *k, const char *who, int rcvbuf)
{
    memset(k, 0, sizeof *k);
    k->who = who;
    k->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (k->fd < 0)
        fail("%s: socket: %s", who, strerror(errno));
    /* Before connecting, so that the window offered is small from the
     * start. */
    if (rcvbuf > 0 &&
        setsockopt(k->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0)
        fail("%s: SO_RCVBUF: %s", who, strerror(errno));
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(k->fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail("%s: connect: %s", who, strerror(errno));
    if (fcntl(k->fd, F_SETFL, fcntl(k->fd, F_GETFL) | O_NONBLOCK) != 0)
        fail("%s: fcntl: %s", who, strerror(errno));
    n_connections++;
}

static void conn_close(struct conn *k)
{
    if (close(k->fd) != 0)
        fail("%s: close: %s", k->who, strerror(errno));
    k->fd = -1;
}

static void send_raw(struct conn *k, const char *s, size_t n)
{
    long long deadline = now_ms() + WAIT_MS;
    while (n > 0) {
        ssize_t w = send(k->fd, s, n, MSG_NOSIGNAL);
        if (w > 0) {
            s += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            wait_for(k, POLLOUT, deadline, "room to send");
        } else if (w < 0 && errno != EINTR) {
            fail("%s: send: %s", k->who, strerror(errno));
        }
    }
}

static void send_line(struct conn *k, const char *s)
{
    send_raw(k, s, strlen(s));
    send_raw(k, "\n", 1);
}

/* A chat line from k: the server relays it to the others. */
static void say(struct conn *k, const char *s)
{
    send_line(k, s);
    n_messages++;
}

/*
 * The next line from k, without its "\n", in line (cap bytes); returns
 * its length, or -1 at end of file or for a connection reset.  Fails on
 * timeout, and for a line longer than cap - 1.
 */
static long read_line(struct conn *k, char *line, size_t cap)
{
    long long deadline = now_ms() + WAIT_MS;
    for (;;) {
        char *nl = memchr(k->buf, '\n', k->len);
        if (nl) {
            size_t n = (size_t)(nl - k->buf);
            if (n >= cap)
                fail("%s: a line of %zu bytes", k->who, n);
            memcpy(line, k->buf, n);
            line[n] = '\0';
            k->len -= n + 1;
            memmove(k->buf, nl + 1, k->len);
            return (long)n;
        }
        if (k->len == sizeof k->buf)
            fail("%s: no end of line in %zu bytes", k->who, k->len);
        ssize_t r = recv(k->fd, k->buf + k->len, sizeof k->buf - k->len, 0);
        if (r > 0) {
            k->len += (size_t)r;
        } else if (r == 0 || (r < 0 && errno == ECONNRESET)) {
            if (k->len > 0)
                fail("%s: end of file after a part line", k->who);
            return -1;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            wait_for(k, POLLIN, deadline, "line");
        } else if (errno != EINTR) {
            fail("%s: recv: %s", k->who, strerror(errno));
        }
    }
}

static void expect(struct conn *k, const char *want)
{
    char got[1024];
    if (read_line(k, got, sizeof got) < 0)
        fail("%s: end of file, want '%s'", k->who, want);
    if (strcmp(got, want) != 0)
        fail("%s: got '%.200s', want '%.200s'", k->who, got, want);
}

/* The line "* " fmt..., on k. */
__attribute__((format(printf, 2, 3)))
static void expect_f(struct conn *k, const char *fmt, ...)
{
    char want[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    expect(k, want);
}

static void expect_eof(struct conn *k)
{
    char got[1024];
    if (read_line(k, got, sizeof got) >= 0)
        fail("%s: got '%.200s', want end of file", k->who, got);
}

/* Every member but from gets the line want. */
static void others_expect(struct conn *from, const char *want)
{
    for (size_t i = 0; i < n_members; i++)
        if (members[i] != from)
            expect(members[i], want);
}

static void member_remove(struct conn *k)
{
    for (size_t i = 0; i < n_members; i++)
        if (members[i] == k) {
            members[i] = members[--n_members];
            return;
        }
    fail("%s: not a member", k->who);
}

/* Connects and joins with the first line name_line; want is the name the
 * server must give.  The members see k join. */
static void join(struct conn *k, const char *who, const char *name_line,
                 const char *want, int rcvbuf)
{
    conn_open(k, who, rcvbuf);
    expect(k, "* your name?");
    send_line(k, name_line);
    expect_f(k, "* you are %s", want);
    snprintf(k->name, sizeof k->name, "%s", want);
    char line[128];
    snprintf(line, sizeof line, "* %s joined", want);
    others_expect(k, line);
    if (n_members == sizeof members / sizeof members[0])
        fail("too many members");
    members[n_members++] = k;
    n_joined++;
}

/* /quit: a goodbye, end of file, and the others see k leave. */
static void quit(struct conn *k)
{
    send_line(k, "/quit");
    expect_f(k, "* bye %s", k->name);
    expect_eof(k);
    conn_close(k);
    member_remove(k);
    char line[128];
    snprintf(line, sizeof line, "* %s left", k->name);
    others_expect(NULL, line);
}

static void terminate(pid_t pid, int signo)
{
    if (kill(pid, signo) != 0)
        fail("kill %ld: %s", (long)pid, strerror(errno));
}

static void print_want(void)
{
    printf("want: served %ld connections: %ld joined, %ld dropped as too "
           "slow, %ld messages\n",
           n_connections, n_joined, n_dropped, n_messages);
}

/* ------------------------------------------------------------ checks */

static struct conn alice, bob;

static void check_order(void)
{
    char line[64], want[64];
    for (int i = 0; i < 50; i++) {
        snprintf(line, sizeof line, "a%d", i);
        say(&alice, line);
        snprintf(line, sizeof line, "b%d", i);
        say(&bob, line);
    }
    for (int i = 0; i < 50; i++) {
        snprintf(want, sizeof want, "alice: a%d", i);
        expect(&bob, want);
        snprintf(want, sizeof want, "bob: b%d", i);
        expect(&alice, want);
    }
    /* Nothing more in between: the next line must be this one. */
    say(&alice, "sync from alice");
    expect(&bob, "alice: sync from alice");
    say(&bob, "sync from bob");
    expect(&alice, "bob: sync from bob");
    printf("ok: 50 + 50 lines exactly once, in order\n");
}

static void check_names_and_lines(void)
{
    static struct conn g, h, r;
    /* Connection numbers so far: alice 1, bob 2. */
    join(&g, "guest", "", "guest3", 0);
    join(&h, "alice again", "alice", "guest4", 0);
    join(&r, "reserved", "guest1", "guest5", 0);

    char big[1001], want[600];
    memset(big, 'x', 1000);
    big[1000] = '\0';
    say(&g, big);
    snprintf(want, sizeof want, "guest3: %.512s", big);
    others_expect(&g, want);
    say(&g, "after the long one");
    others_expect(&g, "guest3: after the long one");

    send_line(&g, "/frob it");
    expect(&g, "* unknown command: /frob it");
    send_line(&g, "");           /* ignored */
    send_line(&bob, "with CRLF\r");
    n_messages++;
    others_expect(&bob, "bob: with CRLF");

    quit(&h);
    quit(&r);
    quit(&g);
    printf("ok: guest names, long lines, commands, /quit\n");
}

static void check_cut_short(void)
{
    static struct conn c, e;
    join(&c, "carol", "carol", "carol", 0);
    send_raw(&c, "half a li", 9);
    conn_close(&c);
    member_remove(&c);
    others_expect(NULL, "* carol left");

    conn_open(&e, "eve", 0);
    expect(&e, "* your name?");
    send_raw(&e, "ev", 2);
    conn_close(&e);
    /* Had "ev" joined, bob would see "* ev joined" first. */
    say(&alice, "ping");
    expect(&bob, "alice: ping");
    say(&bob, "pong");
    expect(&alice, "bob: pong");
    printf("ok: connections cut in the middle of a line\n");
}

static void check_slow(void)
{
    static struct conn s;
    join(&s, "slow", "slow", "slow", 2048); /* then never reads */

    char text[400], want[450], got[1024];
    memset(text, 'y', sizeof text);
    bool dropped = false;
    int sent = 0;
    /* In batches well below the queue, so that bob keeps up; 4000 lines
     * of 400 bytes are many times what the slow one can hold back. */
    while (!dropped && sent < 4000) {
        for (int j = 0; j < 4; j++) {
            int n = snprintf(text, sizeof text, "m%d ", sent + j);
            text[n] = 'y';
            text[sizeof text - 1] = '\0';
            say(&alice, text);
        }
        for (int j = 0; j < 4; j++, sent++) {
            int n = snprintf(text, sizeof text, "m%d ", sent);
            text[n] = 'y';
            snprintf(want, sizeof want, "alice: %s", text);
            if (read_line(&bob, got, sizeof got) < 0)
                fail("bob: end of file during the flood");
            if (!dropped && strcmp(got, "* slow left (too slow)") == 0) {
                dropped = true;
                if (read_line(&bob, got, sizeof got) < 0)
                    fail("bob: end of file during the flood");
            }
            if (strcmp(got, want) != 0)
                fail("bob: got '%.60s...', want '%.60s...'", got, want);
        }
    }
    if (!dropped)
        fail("slow: not dropped after %d lines of %zu bytes", sent,
             sizeof text);
    n_dropped++;
    member_remove(&s);
    expect(&alice, "* slow left (too slow)");
    say(&alice, "still here");
    expect(&bob, "alice: still here");
    say(&bob, "me too");
    expect(&alice, "bob: me too");

    /* The slow one: whatever got through, then its end. */
    long long deadline = now_ms() + WAIT_MS;
    for (;;) {
        ssize_t r = recv(s.fd, s.buf, sizeof s.buf, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            break;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            wait_for(&s, POLLIN, deadline, "end of file");
        else if (r < 0 && errno != EINTR)
            fail("slow: recv: %s", strerror(errno));
    }
    conn_close(&s);
    printf("ok: the slow client dropped after %d lines, the others went on\n",
           sent);
}

/* Mode stuck (the server runs with a queue far longer than the lines sent
 * here and a short write timeout): the slow client fills its socket, its
 * writer's write times out, and that drops it. */
static void check_stuck(void)
{
    static struct conn s;
    join(&s, "stuck", "stuck", "stuck", 2048); /* then never reads */
    char text[400], want[450];
    memset(text, 'z', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    /* 200 lines of 400 bytes: more than the sockets hold, fewer than the
     * queue. */
    for (int i = 0; i < 200; i += 4) {
        for (int j = 0; j < 4; j++)
            say(&alice, text);
        snprintf(want, sizeof want, "alice: %s", text);
        for (int j = 0; j < 4; j++)
            expect(&bob, want);
    }
    n_dropped++;
    member_remove(&s);
    others_expect(NULL, "* stuck left (too slow)");
    say(&bob, "still here");
    expect(&alice, "bob: still here");
    conn_close(&s);
    printf("ok: the stuck client dropped by its write timeout\n");
}

static void check_shutdown(pid_t pid)
{
    static struct conn u;
    conn_open(&u, "unnamed", 0);
    expect(&u, "* your name?"); /* so its tasks run: it is accepted */
    terminate(pid, SIGTERM);
    expect(&alice, "* server shutting down");
    expect_eof(&alice);
    expect(&bob, "* server shutting down");
    expect_eof(&bob);
    expect_eof(&u);
    conn_close(&alice);
    conn_close(&bob);
    conn_close(&u);
    printf("ok: SIGTERM: told, then end of file\n");
}

int main(int argc, char **argv)
{
    if (argc != 4 || (port = atoi(argv[1])) <= 0 || port > 65535 ||
        atol(argv[2]) <= 0 ||
        (strcmp(argv[3], "all") != 0 && strcmp(argv[3], "int") != 0 &&
         strcmp(argv[3], "stuck") != 0)) {
        fprintf(stderr, "usage: chat_client PORT SERVER_PID all|int|stuck\n");
        return 2;
    }
    pid_t pid = (pid_t)atol(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    join(&alice, "alice", "alice", "alice", 0);
    if (strcmp(argv[3], "int") == 0) {
        terminate(pid, SIGINT);
        expect(&alice, "* server shutting down");
        expect_eof(&alice);
        conn_close(&alice);
        printf("ok: SIGINT: told, then end of file\n");
        print_want();
        return 0;
    }
    join(&bob, "bob", "bob", "bob", 0);
    if (strcmp(argv[3], "stuck") == 0) {
        check_stuck();
        check_shutdown(pid);
        print_want();
        return 0;
    }
    check_order();
    check_names_and_lines();
    check_cut_short();
    check_slow();
    check_shutdown(pid);
    print_want();
    return 0;
}

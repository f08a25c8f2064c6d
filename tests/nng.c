/*
 * nng.c - tests of libchan-nng, the bridges between channels and nng
 * sockets (include/chan_nng.h), over inproc://, ipc:// and
 * tcp://127.0.0.1 on ports the system picks (listen on port 0).
 */
#include "util.h"

#include <chan_nng.h>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>

TestSuite(nng, .timeout = 120);

#ifdef __SANITIZE_ADDRESS__
/* AddressSanitizer keeps freed memory in a quarantine (256 MB by
 * default), which the backpressure test would count as resident growth. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "quarantine_size_mb=1";
}
#endif

#if UNDER_TSAN
/* nng itself is not built with ThreadSanitizer, so the atomics by which
 * it shares a message between its threads (pub hands one message to
 * every subscriber's connection) are invisible, and the C library calls
 * it makes on that memory (free, sendmsg) look like races.  Ignore races
 * with nng in either stack; that also covers on_pipe, which nng calls
 * (it touches only atomics and channels), but not the bridge's threads
 * and the tests, which TSan checks in full. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:libnng.so\n";
}
#endif

#define SEC ((int64_t)1000000000)

enum transport { INPROC, IPC, TCP };

/* A listener URL of the given transport, unique in the machine. */
static void listen_url(char *buf, size_t len, enum transport t)
{
    static int n;
    switch (t) {
    case INPROC:
        snprintf(buf, len, "inproc://libchan-test-%d-%d", (int)getpid(), n++);
        break;
    case IPC:
        snprintf(buf, len, "ipc:///tmp/libchan-test-%d-%d.ipc", (int)getpid(),
                 n++);
        break;
    case TCP:
        snprintf(buf, len, "tcp://127.0.0.1:0");
        break;
    }
}

/* The URL a dialer uses to reach listener l, opened on url. */
static void dial_url(char *buf, size_t len, const char *url, chan_nng_t *l)
{
    if (strncmp(url, "tcp://", 6) == 0) {
        int port = chan_nng_port(l);
        cr_assert_gt(port, 0);
        snprintf(buf, len, "tcp://127.0.0.1:%d", port);
    } else {
        snprintf(buf, len, "%s", url);
    }
}

/* Opens a listener of proto lp and a dialer of proto dp on transport t. */
static void connect2(enum transport t, chan_nng_t **l, enum chan_nng_proto lp,
                     chan_t *lout, chan_t *lin, chan_nng_t **d,
                     enum chan_nng_proto dp, chan_t *dout, chan_t *din,
                     size_t esize, char *url_out, size_t url_len)
{
    char url[128];
    listen_url(url, sizeof url, t);
    cr_assert_eq(chan_nng_open(l, lp, CHAN_NNG_LISTEN, url, esize, lout, lin,
                               NULL), 0);
    dial_url(url_out, url_len, url, *l);
    cr_assert_eq(chan_nng_open(d, dp, CHAN_NNG_DIAL, url_out, esize, dout, din,
                               NULL), 0);
}

struct producer {
    chan_t *ch;
    long n;
    atomic_long sent;
    int last_rc;
};

/* Sends 0..n-1 on ch, then closes it. */
static void *produce(void *arg)
{
    struct producer *p = arg;
    for (long i = 0; i < p->n; i++) {
        int rc = chan_send(p->ch, &i);
        if (rc != 0) {
            p->last_rc = rc;
            return NULL;
        }
        atomic_store(&p->sent, i + 1);
    }
    p->last_rc = chan_close(p->ch);
    return NULL;
}

/* ------------------------------------------------------------ push/pull */

static void push_pull_in_order(enum transport t)
{
    long n = test_scaled(20000, 100);
    chan_t *out = chan_make(sizeof(long), 64);
    chan_t *in = chan_make(sizeof(long), 64);
    chan_nng_t *push, *pull;
    char url[128];
    connect2(t, &push, CHAN_NNG_PUSH, out, NULL, &pull, CHAN_NNG_PULL, NULL,
             in, sizeof(long), url, sizeof url);

    struct producer p = { .ch = out, .n = n };
    pthread_t th = test_thread_start(produce, &p);
    long v;
    for (long i = 0; i < n; i++) {
        cr_assert_eq(chan_recv(in, &v), 0, "value %ld", i);
        cr_assert_eq(v, i);
    }
    /* The end of stream closes in after the last value. */
    cr_assert_eq(chan_recv(in, &v), -EPIPE);
    test_thread_join(th);
    cr_assert_eq(p.last_rc, 0);
    cr_assert_eq(chan_nng_wait(pull, 10 * SEC), 0);
    cr_assert_eq(chan_nng_wait(push, 10 * SEC), 0);
    cr_assert_eq(chan_nng_close(push), 0);
    cr_assert_eq(chan_nng_close(pull), 0);
    chan_release(out);
    chan_release(in);
}

Test(nng, push_pull_every_value_once_in_order_inproc) { push_pull_in_order(INPROC); }
Test(nng, push_pull_every_value_once_in_order_ipc) { push_pull_in_order(IPC); }
Test(nng, push_pull_every_value_once_in_order_tcp) { push_pull_in_order(TCP); }

struct consumer {
    chan_t *in;
    long n;          /* values expected over all consumers */
    atomic_int *seen;
    long got;
    int ordered;     /* 1 while every value exceeded the one before */
};

static void *consume(void *arg)
{
    struct consumer *c = arg;
    long v, prev = -1;
    c->ordered = 1;
    while (chan_recv(c->in, &v) == 0) {
        if (v < 0 || v >= c->n)
            abort();
        atomic_fetch_add(&c->seen[v], 1);
        if (v <= prev)
            c->ordered = 0;
        prev = v;
        c->got++;
    }
    return NULL;
}

static void two_pullers(enum transport t)
{
    long n = test_scaled(20000, 200);
    char url[128], durl[128];
    listen_url(url, sizeof url, t);
    chan_t *out = chan_make(sizeof(long), 64);
    chan_nng_t *push, *pull[2];
    chan_t *in[2];
    cr_assert_eq(chan_nng_open(&push, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, url,
                               sizeof(long), out, NULL, NULL), 0);
    dial_url(durl, sizeof durl, url, push);
    for (int i = 0; i < 2; i++) {
        in[i] = chan_make(sizeof(long), 16);
        cr_assert_eq(chan_nng_open(&pull[i], CHAN_NNG_PULL, CHAN_NNG_DIAL, durl,
                                   sizeof(long), NULL, in[i], NULL), 0);
    }
    cr_assert_eq(chan_nng_wait_peers(push, 2, 10 * SEC), 0);
    cr_assert_eq(chan_nng_peers(push), 2);

    atomic_int *seen = calloc((size_t)n, sizeof *seen);
    struct consumer c[2];
    pthread_t ct[2];
    for (int i = 0; i < 2; i++) {
        c[i] = (struct consumer){ .in = in[i], .n = n, .seen = seen };
        ct[i] = test_thread_start(consume, &c[i]);
    }
    struct producer p = { .ch = out, .n = n };
    pthread_t pt = test_thread_start(produce, &p);
    test_thread_join(pt);
    /* Both consumers' loops end: each puller got an end of stream. */
    for (int i = 0; i < 2; i++)
        test_thread_join(ct[i]);
    cr_assert_eq(p.last_rc, 0);
    for (long v = 0; v < n; v++)
        cr_assert_eq(atomic_load(&seen[v]), 1, "value %ld seen %d times", v,
                     atomic_load(&seen[v]));
    cr_assert_eq(c[0].got + c[1].got, n);
    cr_assert_gt(c[0].got, 0, "the first puller got nothing");
    cr_assert_gt(c[1].got, 0, "the second puller got nothing");
    cr_assert(c[0].ordered && c[1].ordered);
    cr_assert_eq(chan_nng_wait(push, 10 * SEC), 0);
    cr_assert_eq(chan_nng_close(push), 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(chan_nng_wait(pull[i], 10 * SEC), 0);
        cr_assert_eq(chan_nng_close(pull[i]), 0);
        chan_release(in[i]);
    }
    chan_release(out);
    free(seen);
}

Test(nng, two_pullers_lose_and_duplicate_nothing_tcp) { two_pullers(TCP); }
Test(nng, two_pullers_lose_and_duplicate_nothing_ipc) { two_pullers(IPC); }

/* The kind byte of the next message a raw nng socket receives (1 data,
 * 2 end of stream), -ETIMEDOUT if none comes within timeout_ms. */
static int raw_kind(nng_socket s, int timeout_ms)
{
    cr_assert_eq(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, timeout_ms), 0);
    nng_msg *m;
    int rv = nng_recvmsg(s, &m, 0);
    if (rv == NNG_ETIMEDOUT)
        return -ETIMEDOUT;
    cr_assert_eq(rv, 0, "nng_recvmsg: %s", nng_strerror(rv));
    const uint8_t *p = nng_msg_body(m);
    cr_assert_geq(nng_msg_len(m), 8);
    cr_assert(p[0] == 0x63 && p[1] == 0x6e && p[2] == 1);
    int k = p[3];
    nng_msg_free(m);
    return k;
}

/*
 * Push sends its end of stream to one puller at a time: the next only once
 * a puller has left.  A puller that has its end of stream gets nothing more
 * while it disconnects (with nng 1.5 a connection closed by its receiver
 * while a message arrives can hang every later close in the process).
 */
Test(nng, push_sends_one_end_of_stream_per_puller_that_leaves)
{
    chan_t *out = chan_make(sizeof(long), 4);
    char url[128];
    chan_nng_t *push;
    cr_assert_eq(chan_nng_open(&push, CHAN_NNG_PUSH, CHAN_NNG_LISTEN,
                               "tcp://127.0.0.1:0", sizeof(long), out, NULL,
                               NULL), 0);
    dial_url(url, sizeof url, "tcp://", push);
    nng_socket a, b;
    cr_assert_eq(nng_pull0_open(&a), 0);
    cr_assert_eq(nng_dial(a, url, NULL, 0), 0);
    cr_assert_eq(chan_nng_wait_peers(push, 1, 10 * SEC), 0);
    long v = 7;
    cr_assert_eq(chan_send(out, &v), 0);
    cr_assert_eq(chan_close(out), 0);
    cr_assert_eq(raw_kind(a, 10000), 1);
    cr_assert_eq(raw_kind(a, 10000), 2);
    /* A second puller joins while the first, which has its end of stream,
     * stays connected: nobody gets another one meanwhile. */
    cr_assert_eq(nng_pull0_open(&b), 0);
    cr_assert_eq(nng_dial(b, url, NULL, 0), 0);
    cr_assert_eq(chan_nng_wait_peers(push, 2, 10 * SEC), 0);
    cr_assert_eq(raw_kind(a, 300), -ETIMEDOUT,
                 "a second end of stream to a puller that has one");
    cr_assert_eq(raw_kind(b, 300), -ETIMEDOUT,
                 "an end of stream before a puller left");
    cr_assert_eq(chan_nng_wait(push, 0), -EAGAIN);
    /* The first leaves: the second gets its end of stream, leaves, and the
     * push bridge has finished. */
    cr_assert_eq(nng_close(a), 0);
    cr_assert_eq(raw_kind(b, 10000), 2);
    cr_assert_eq(nng_close(b), 0);
    cr_assert_eq(chan_nng_wait(push, 10 * SEC), 0);
    cr_assert_eq(chan_nng_close(push), 0);
    chan_release(out);
}

/* Two pushers feed one puller that waits for both ends of stream. */
Test(nng, pull_waits_for_the_end_of_every_stream)
{
    long n = test_scaled(5000, 100);
    char lurl[128], url[128];
    /* tcp: an ipc listener of nng 1.5.2 that has closed a connection now
     * and then leaves the next one it accepts unread (see README). */
    listen_url(lurl, sizeof lurl, TCP);
    chan_t *in = chan_make(sizeof(long), 16);
    chan_nng_t *pull, *push[2];
    chan_t *out[2];
    chan_nng_opts_t o = { .streams = 2 };
    cr_assert_eq(chan_nng_open2(&pull, CHAN_NNG_PULL, CHAN_NNG_LISTEN, lurl,
                                sizeof(long), NULL, in, &o), 0);
    dial_url(url, sizeof url, lurl, pull);
    struct producer p[2];
    pthread_t pt[2];
    for (int i = 0; i < 2; i++) {
        out[i] = chan_make(sizeof(long), 16);
        cr_assert_eq(chan_nng_open(&push[i], CHAN_NNG_PUSH, CHAN_NNG_DIAL, url,
                                   sizeof(long), out[i], NULL, NULL), 0);
        p[i] = (struct producer){ .ch = out[i], .n = n };
    }
    /* The first stream ends (its pusher disconnected) before the second
     * begins: the puller's input must stay open for the second. */
    pt[0] = test_thread_start(produce, &p[0]);
    long v, sum = 0, count = 0;
    for (long i = 0; i < n; i++) {
        cr_assert_eq(chan_recv(in, &v), 0);
        cr_assert_eq(v, i);
    }
    cr_assert_eq(chan_nng_wait(push[0], 10 * SEC), 0);
    test_thread_join(pt[0]);
    pt[1] = test_thread_start(produce, &p[1]);
    while (chan_recv(in, &v) == 0) {
        sum += v;
        count++;
    }
    test_thread_join(pt[1]);
    cr_assert_eq(count, n);
    cr_assert_eq(sum, n * (n - 1) / 2);
    cr_assert_eq(chan_nng_wait(pull, 10 * SEC), 0);
    cr_assert_eq(chan_nng_wait(push[1], 10 * SEC), 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(chan_nng_close(push[i]), 0);
        chan_release(out[i]);
    }
    cr_assert_eq(chan_nng_close(pull), 0);
    chan_release(in);
}

/* A pusher that connects only after another one finished its stream is
 * not a lost peer: the puller waits for its stream too. */
Test(nng, a_pusher_that_connects_late_is_not_a_lost_one)
{
    long n = test_scaled(1000, 100);
    char lurl[128], url[128];
    listen_url(lurl, sizeof lurl, TCP); /* see the test above */
    chan_t *in = chan_make(sizeof(long), 16);
    chan_t *err = chan_make(sizeof(int), 4);
    chan_nng_t *pull, *push[2];
    chan_t *out[2];
    chan_nng_opts_t o = { .err = err, .streams = 2 };
    cr_assert_eq(chan_nng_open2(&pull, CHAN_NNG_PULL, CHAN_NNG_LISTEN, lurl,
                                sizeof(long), NULL, in, &o), 0);
    dial_url(url, sizeof url, lurl, pull);
    long v, count = 0;
    for (int i = 0; i < 2; i++) {
        out[i] = chan_make(sizeof(long), 16);
        cr_assert_eq(chan_nng_open(&push[i], CHAN_NNG_PUSH, CHAN_NNG_DIAL, url,
                                   sizeof(long), out[i], NULL, NULL), 0);
        struct producer p = { .ch = out[i], .n = n };
        pthread_t t = test_thread_start(produce, &p);
        for (long k = 0; k < n; k++) {
            cr_assert_eq(chan_recv(in, &v), 0, "stream %d value %ld", i, k);
            count++;
        }
        test_thread_join(t);
        cr_assert_eq(p.last_rc, 0);
        cr_assert_eq(chan_nng_wait(push[i], 10 * SEC), 0);
        if (i == 0) {
            /* No pusher is connected now, for well over the time after
             * which a peer that left too soon counts as lost. */
            test_sleep_ns(500 * TEST_MS);
            cr_assert_eq(chan_nng_wait(pull, 0), -EAGAIN);
            cr_assert_eq(chan_tryrecv(err, &v), -EAGAIN, "an error reported");
        }
    }
    cr_assert_eq(chan_recv(in, &v), -EPIPE);
    cr_assert_eq(count, 2 * n);
    cr_assert_eq(chan_nng_wait(pull, 0), 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(chan_nng_close(push[i]), 0);
        chan_release(out[i]);
    }
    cr_assert_eq(chan_nng_close(pull), 0);
    chan_release(in);
    chan_release(err);
}

/* Once a pull bridge has closed in at the end of its stream, it has
 * finished: chan_nng_wait() with no timeout says so at once. */
Test(nng, a_pull_bridge_has_finished_when_in_is_closed)
{
    int rounds = (int)test_scaled(30, 5);
    for (int r = 0; r < rounds; r++) {
        chan_t *out = chan_make(sizeof(long), 4);
        chan_t *in = chan_make(sizeof(long), 4);
        chan_nng_t *push, *pull;
        char url[128];
        connect2(INPROC, &push, CHAN_NNG_PUSH, out, NULL, &pull, CHAN_NNG_PULL,
                 NULL, in, sizeof(long), url, sizeof url);
        long v = r;
        cr_assert_eq(chan_send(out, &v), 0);
        cr_assert_eq(chan_close(out), 0);
        cr_assert_eq(chan_recv(in, &v), 0);
        cr_assert_eq(v, r);
        cr_assert_eq(chan_recv(in, &v), -EPIPE);
        cr_assert_eq(chan_nng_wait(pull, 0), 0, "round %d", r);
        cr_assert_eq(chan_nng_wait(push, 10 * SEC), 0);
        cr_assert_eq(chan_nng_close(push), 0);
        cr_assert_eq(chan_nng_close(pull), 0);
        chan_release(out);
        chan_release(in);
    }
}

/* ------------------------------------------------------------ format */

Test(nng, elem_size_mismatch_is_refused_before_any_value)
{
    chan_t *out = chan_make(sizeof(long), 4);
    chan_t *in = chan_make(sizeof(int), 4);
    chan_t *err = chan_make(sizeof(int), 4);
    char url[128], durl[128];
    listen_url(url, sizeof url, TCP);
    chan_nng_t *push, *pull;
    cr_assert_eq(chan_nng_open(&pull, CHAN_NNG_PULL, CHAN_NNG_LISTEN, url,
                               sizeof(int), NULL, in, err), 0);
    dial_url(durl, sizeof durl, url, pull);
    cr_assert_eq(chan_nng_open(&push, CHAN_NNG_PUSH, CHAN_NNG_DIAL, durl,
                               sizeof(long), out, NULL, NULL), 0);
    long v = 42;
    cr_assert_eq(chan_send(out, &v), 0);
    int iv;
    cr_assert_eq(chan_recv(in, &iv), -EPIPE, "a value of the wrong size came through");
    cr_assert_eq(chan_nng_wait(pull, 10 * SEC), -EMSGSIZE);
    int e = 0;
    cr_assert_eq(chan_timedrecv(err, &e, 10 * SEC), 0);
    cr_assert_eq(e, -EMSGSIZE);
    cr_assert_eq(chan_nng_close(pull), -EMSGSIZE);
    cr_assert_eq(chan_nng_close(push), 0);
    chan_release(out);
    chan_release(in);
    chan_release(err);
}

Test(nng, foreign_message_is_refused)
{
    chan_t *in = chan_make(sizeof(long), 4);
    char url[128];
    listen_url(url, sizeof url, INPROC);
    chan_nng_t *pull;
    cr_assert_eq(chan_nng_open(&pull, CHAN_NNG_PULL, CHAN_NNG_LISTEN, url,
                               sizeof(long), NULL, in, NULL), 0);
    nng_socket s;
    cr_assert_eq(nng_push0_open(&s), 0);
    cr_assert_eq(nng_dial(s, url, NULL, 0), 0);
    /* Sixteen bytes: a long's size plus a header's, but not the header. */
    cr_assert_eq(nng_send(s, "not a libchan message", 16, 0), 0);
    long v;
    cr_assert_eq(chan_recv(in, &v), -EPIPE);
    cr_assert_eq(chan_nng_wait(pull, 10 * SEC), -EPROTO);
    cr_assert_eq(chan_nng_close(pull), -EPROTO);
    nng_close(s);
    chan_release(in);
}

/* ------------------------------------------------------------ pair, pub/sub */

struct side {
    chan_t *out, *in;
    long n;
    long got;
    int ok;
};

/* Sends n values on out while receiving the peer's n values from in. */
static void *pair_side(void *arg)
{
    struct side *s = arg;
    struct producer p = { .ch = s->out, .n = s->n };
    pthread_t t;
    if (pthread_create(&t, NULL, produce, &p) != 0)
        abort();
    long v;
    s->ok = 1;
    while (chan_recv(s->in, &v) == 0) {
        if (v != s->got)
            s->ok = 0;
        s->got++;
    }
    pthread_join(t, NULL);
    if (p.last_rc != 0)
        s->ok = 0;
    return NULL;
}

static void pair_both_ways(enum transport t)
{
    long n = test_scaled(5000, 100);
    struct side a = { chan_make(sizeof(long), 8), chan_make(sizeof(long), 8), n, 0, 0 };
    struct side b = { chan_make(sizeof(long), 8), chan_make(sizeof(long), 8), n, 0, 0 };
    chan_nng_t *ba, *bb;
    char url[128];
    connect2(t, &ba, CHAN_NNG_PAIR, a.out, a.in, &bb, CHAN_NNG_PAIR, b.out,
             b.in, sizeof(long), url, sizeof url);
    pthread_t ta = test_thread_start(pair_side, &a);
    pthread_t tb = test_thread_start(pair_side, &b);
    test_thread_join(ta);
    test_thread_join(tb);
    cr_assert(a.ok && b.ok);
    cr_assert_eq(a.got, n);
    cr_assert_eq(b.got, n);
    cr_assert_eq(chan_nng_wait(ba, 10 * SEC), 0);
    cr_assert_eq(chan_nng_wait(bb, 10 * SEC), 0);
    cr_assert_eq(chan_nng_close(ba), 0);
    cr_assert_eq(chan_nng_close(bb), 0);
    chan_release(a.out);
    chan_release(a.in);
    chan_release(b.out);
    chan_release(b.in);
}

Test(nng, pair_carries_both_directions_and_both_ends_inproc) { pair_both_ways(INPROC); }
Test(nng, pair_carries_both_directions_and_both_ends_tcp) { pair_both_ways(TCP); }

Test(nng, pub_reaches_every_subscriber_and_ends_them)
{
    char url[128], durl[128];
    listen_url(url, sizeof url, TCP);
    chan_t *out = chan_make(sizeof(long), 1);
    chan_nng_t *pub, *sub[2];
    chan_t *in[2];
    cr_assert_eq(chan_nng_open(&pub, CHAN_NNG_PUB, CHAN_NNG_LISTEN, url,
                               sizeof(long), out, NULL, NULL), 0);
    dial_url(durl, sizeof durl, url, pub);
    for (int i = 0; i < 2; i++) {
        in[i] = chan_make(sizeof(long), 4);
        cr_assert_eq(chan_nng_open(&sub[i], CHAN_NNG_SUB, CHAN_NNG_DIAL, durl,
                                   sizeof(long), NULL, in[i], NULL), 0);
    }
    cr_assert_eq(chan_nng_wait_peers(pub, 2, 10 * SEC), 0);
    /* In lock step, so that nothing overflows nng's buffers (pub/sub drops
     * what does not fit). */
    for (long v = 0; v < 50; v++) {
        cr_assert_eq(chan_send(out, &v), 0);
        for (int i = 0; i < 2; i++) {
            long w;
            cr_assert_eq(chan_timedrecv(in[i], &w, 10 * SEC), 0);
            cr_assert_eq(w, v);
        }
    }
    cr_assert_eq(chan_close(out), 0);
    for (int i = 0; i < 2; i++) {
        long w;
        cr_assert_eq(chan_timedrecv(in[i], &w, 10 * SEC), -EPIPE);
        cr_assert_eq(chan_nng_wait(sub[i], 10 * SEC), 0);
        cr_assert_eq(chan_nng_close(sub[i]), 0);
        chan_release(in[i]);
    }
    cr_assert_eq(chan_nng_wait(pub, 10 * SEC), 0);
    cr_assert_eq(chan_nng_close(pub), 0);
    chan_release(out);
}

/* ------------------------------------------------------------ lost peers */

/*
 * The peer of the lost-peer tests is another process: the test executes
 * itself again with LIBCHAN_NNG_PEER set, and this constructor runs the
 * peer instead of the tests.  (A fresh image, not a plain fork: nng's
 * state does not survive a fork.)  LIBCHAN_NNG_PEER is "PROTO SEND URL":
 * the peer dials URL with a bridge of PROTO, sends SEND values (0, 1, ...)
 * if it has an out channel, receives one value if it has an in channel,
 * writes one byte to its standard output, and waits to be killed.
 */
__attribute__((constructor)) static void peer_main(void)
{
    const char *spec = getenv("LIBCHAN_NNG_PEER");
    if (spec == NULL)
        return;
    int proto;
    long send;
    char url[128];
    if (sscanf(spec, "%d %ld %127s", &proto, &send, url) != 3)
        _exit(2);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    bool has_out = proto != CHAN_NNG_PULL;
    bool has_in = proto != CHAN_NNG_PUSH;
    chan_t *out = has_out ? chan_make(sizeof(long), 16) : NULL;
    chan_t *in = has_in ? chan_make(sizeof(long), 16) : NULL;
    chan_nng_t *b;
    if (chan_nng_open(&b, proto, CHAN_NNG_DIAL, url, sizeof(long), out, in,
                      NULL) != 0)
        _exit(3);
    for (long i = 0; has_out && i < send; i++)
        if (chan_send(out, &i) != 0)
            _exit(4);
    long v;
    if (has_in && chan_recv(in, &v) != 0)
        _exit(5);
    if (write(1, "r", 1) != 1)
        _exit(6);
    for (;;)
        pause();
}

/* Starts the peer; *ready_fd becomes readable once it is ready. */
static pid_t spawn_peer(int *ready_fd, enum chan_nng_proto proto, long send,
                        const char *url)
{
    char spec[192];
    snprintf(spec, sizeof spec, "%d %ld %s", (int)proto, send, url);
    int rp[2];
    cr_assert_eq(pipe(rp), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(rp[1], 1);
        close(rp[0]);
        close(rp[1]);
        setenv("LIBCHAN_NNG_PEER", spec, 1);
        char *argv[] = { "nng-peer", NULL };
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(rp[1]);
    *ready_fd = rp[0];
    return pid;
}

static void kill_peer(pid_t pid)
{
    int st;
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
              "the peer ended on its own (status %d)", st);
}

static void wait_ready(int fd)
{
    char c;
    cr_assert_eq(read(fd, &c, 1), 1, "the peer failed before it was ready");
    close(fd);
}

Test(nng, killed_pair_peer_is_reported)
{
    int ready_fd;
    char url[128], durl[128];
    listen_url(url, sizeof url, TCP);
    chan_t *out = chan_make(sizeof(long), 16);
    chan_t *in = chan_make(sizeof(long), 16);
    chan_t *err = chan_make(sizeof(int), 4);
    chan_nng_t *b;
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PAIR, CHAN_NNG_LISTEN, url,
                               sizeof(long), out, in, err), 0);
    dial_url(durl, sizeof durl, url, b);
    pid_t pid = spawn_peer(&ready_fd, CHAN_NNG_PAIR, 3, durl);
    long v = 7;
    cr_assert_eq(chan_send(out, &v), 0);
    for (long i = 0; i < 3; i++) {
        cr_assert_eq(chan_recv(in, &v), 0);
        cr_assert_eq(v, i);
    }
    wait_ready(ready_fd);
    kill_peer(pid);
    /* The loss closes in (after the values before it) and out, and is
     * reported on err and by chan_nng_wait. */
    cr_assert_eq(chan_timedrecv(in, &v, 30 * SEC), -EPIPE);
    int e = 0;
    cr_assert_eq(chan_timedrecv(err, &e, 30 * SEC), 0);
    cr_assert_eq(e, -ECONNRESET);
    cr_assert_eq(chan_nng_wait(b, 30 * SEC), -ECONNRESET);
    cr_assert_eq(chan_send(out, &v), -EPIPE);
    cr_assert_eq(chan_nng_close(b), -ECONNRESET);
    chan_release(out);
    chan_release(in);
    chan_release(err);
}

Test(nng, killed_pusher_is_reported_by_the_puller)
{
    int ready_fd;
    char url[128];
    listen_url(url, sizeof url, IPC);
    chan_t *in = chan_make(sizeof(long), 16);
    chan_nng_t *b;
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PULL, CHAN_NNG_LISTEN, url,
                               sizeof(long), NULL, in, NULL), 0);
    pid_t pid = spawn_peer(&ready_fd, CHAN_NNG_PUSH, 3, url);
    long v;
    for (long i = 0; i < 3; i++) {
        cr_assert_eq(chan_recv(in, &v), 0);
        cr_assert_eq(v, i);
    }
    wait_ready(ready_fd);
    cr_assert_eq(chan_nng_wait(b, 0), -EAGAIN);
    kill_peer(pid);
    cr_assert_eq(chan_timedrecv(in, &v, 30 * SEC), -EPIPE);
    cr_assert_eq(chan_nng_wait(b, 30 * SEC), -ECONNRESET);
    cr_assert_eq(chan_nng_close(b), -ECONNRESET);
    chan_release(in);
}

Test(nng, killed_puller_is_reported_by_the_pusher)
{
    int ready_fd;
    char url[128], durl[128];
    listen_url(url, sizeof url, TCP);
    chan_t *out = chan_make(sizeof(long), 16);
    chan_t *err = chan_make(sizeof(int), 4);
    chan_nng_t *b;
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, url,
                               sizeof(long), out, NULL, err), 0);
    dial_url(durl, sizeof durl, url, b);
    pid_t pid = spawn_peer(&ready_fd, CHAN_NNG_PULL, 0, durl);
    long v = 1;
    cr_assert_eq(chan_send(out, &v), 0);
    wait_ready(ready_fd);
    int e = 0;
    cr_assert_eq(chan_tryrecv(err, &e), -EAGAIN);
    kill_peer(pid);
    cr_assert_eq(chan_timedrecv(err, &e, 30 * SEC), 0);
    cr_assert_eq(e, -ECONNRESET);
    /* Push goes on: the stream is not over, other pullers may come. */
    cr_assert_eq(chan_nng_wait(b, 0), -EAGAIN);
    cr_assert_eq(chan_nng_close(b), 0);
    chan_release(out);
    chan_release(err);
}

/* ------------------------------------------------------------ backpressure */

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert_not_null(f);
    long size, rss;
    cr_assert_eq(fscanf(f, "%ld %ld", &size, &rss), 2);
    fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

/* 64-byte values: without backpressure 10^6 of them would take more than
 * 64 MB in messages alone. */
struct val {
    long seq;
    char pad[56];
};

struct big_producer {
    chan_t *ch;
    long n;
    atomic_long sent;
    int rc;
};

static void *produce_big(void *arg)
{
    struct big_producer *p = arg;
    struct val v;
    memset(&v, 0x5a, sizeof v);
    for (long i = 0; i < p->n; i++) {
        v.seq = i;
        int rc = chan_send(p->ch, &v);
        if (rc != 0) {
            p->rc = rc;
            return NULL;
        }
        atomic_store(&p->sent, i + 1);
    }
    p->rc = chan_close(p->ch);
    return NULL;
}

Test(nng, backpressure_bounds_memory_against_a_stalled_consumer)
{
    const long n = 1000000;
    chan_t *out = chan_make(sizeof(struct val), 16);
    chan_t *in = chan_make(sizeof(struct val), 16);
    chan_nng_t *push, *pull;
    char url[128];
    connect2(TCP, &push, CHAN_NNG_PUSH, out, NULL, &pull, CHAN_NNG_PULL, NULL,
             in, sizeof(struct val), url, sizeof url);
    long before = rss_bytes();

    struct big_producer p = { .ch = out, .n = n };
    pthread_t t = test_thread_start(produce_big, &p);
    /* Nobody receives from in: the producer must come to a stop.  Wait
     * until its count has not moved for half a second. */
    long last = -1;
    int still = 0;
    while (still < 10) {
        test_sleep_ns(50 * TEST_MS);
        long now = atomic_load(&p.sent);
        cr_assert_lt(now, n, "the producer sent everything to a stalled consumer");
        still = now == last ? still + 1 : 0;
        last = now;
    }
    long grown = rss_bytes() - before;
    cr_log_info("stalled after %ld values, resident memory grew by %ld kB",
                last, grown / 1024);
    cr_assert_lt(grown, 16L << 20, "resident memory grew by %ld bytes", grown);

    /* Now the consumer catches up: every value, in order, then the end. */
    long m = test_scaled(n, 100000);
    if (m > n)
        m = n;
    struct val v;
    for (long i = 0; i < m; i++) {
        cr_assert_eq(chan_recv(in, &v), 0, "value %ld", i);
        cr_assert_eq(v.seq, i);
    }
    if (m == n) {
        cr_assert_eq(chan_recv(in, &v), -EPIPE);
        test_thread_join(t);
        cr_assert_eq(p.rc, 0);
        cr_assert_eq(chan_nng_wait(push, 10 * SEC), 0);
    } else {
        /* A shortened run (CHAN_TEST_SCALE < 1): stop the producer. */
        chan_close(out);
        test_thread_join(t);
        cr_assert_eq(p.rc, -EPIPE);
    }
    cr_assert_eq(chan_nng_close(push), 0);
    cr_assert_eq(chan_nng_close(pull), 0);
    chan_release(out);
    chan_release(in);
}

/* ------------------------------------------------------------ tasks */

struct task_env {
    char url[128];
    long n;
    long sum;
    int rc_push, rc_pull;
};

static void task_push(void *arg)
{
    struct task_env *e = arg;
    chan_t *out = chan_make(sizeof(long), 4);
    chan_nng_t *b;
    e->rc_push = chan_nng_open(&b, CHAN_NNG_PUSH, CHAN_NNG_DIAL, e->url,
                               sizeof(long), out, NULL, NULL);
    if (e->rc_push != 0)
        return;
    for (long i = 1; i <= e->n; i++)
        if (chan_send(out, &i) != 0)
            e->rc_push = -1000;
    chan_close(out);
    int rc = chan_nng_wait(b, 30 * SEC);
    if (e->rc_push == 0)
        e->rc_push = rc;
    rc = chan_nng_close(b);
    if (e->rc_push == 0)
        e->rc_push = rc;
    chan_release(out);
}

static void task_pull(void *arg)
{
    struct task_env *e = arg;
    chan_t *in = chan_make(sizeof(long), 4);
    chan_nng_t *b;
    e->rc_pull = chan_nng_open(&b, CHAN_NNG_PULL, CHAN_NNG_LISTEN, e->url,
                               sizeof(long), NULL, in, NULL);
    if (e->rc_pull != 0)
        return;
    /* The pusher starts only now that the listener is there. */
    if (chan_go(NULL, task_push, e) != 0) {
        e->rc_pull = -1000;
        chan_nng_close(b);
        chan_release(in);
        return;
    }
    long v;
    while (chan_recv(in, &v) == 0)
        e->sum += v;
    e->rc_pull = chan_nng_wait(b, 30 * SEC);
    int rc = chan_nng_close(b);
    if (e->rc_pull == 0)
        e->rc_pull = rc;
    chan_release(in);
}

/* Both ends in tasks of a scheduler with one worker: a bridge that held
 * the worker would starve the other task. */
Test(nng, bridges_work_from_tasks_without_holding_a_worker)
{
    struct task_env e = { .n = test_scaled(2000, 100) };
    listen_url(e.url, sizeof e.url, INPROC);
    chan_sched_opts_t o = { .threads = 1 };
    chan_sched_t *s = chan_sched_new(&o);
    cr_assert_not_null(s);
    cr_assert_eq(chan_go(s, task_pull, &e), 0);
    cr_assert_eq(chan_sched_wait(s), 0);
    chan_sched_free(s);
    cr_assert_eq(e.rc_pull, 0);
    cr_assert_eq(e.rc_push, 0);
    cr_assert_eq(e.sum, e.n * (e.n + 1) / 2);
}

/* ------------------------------------------------------------ bad input */

Test(nng, bad_arguments_are_refused)
{
    chan_t *c = chan_make(sizeof(long), 1);
    chan_t *notint = chan_make(sizeof(long), 1);
    chan_nng_t *b = (chan_nng_t *)0x1;
    const char *u = "inproc://libchan-test-bad";
    cr_assert_eq(chan_nng_open(NULL, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, u, 8, c, NULL, NULL), -EINVAL);
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, NULL, 8, c, NULL, NULL), -EINVAL);
    cr_assert_eq(chan_nng_open(&b, 0, CHAN_NNG_LISTEN, u, 8, c, NULL, NULL), -EINVAL);
    cr_assert_eq(chan_nng_open(&b, 6, CHAN_NNG_LISTEN, u, 8, c, NULL, NULL), -EINVAL);
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PUSH, 0, u, 8, c, NULL, NULL), -EINVAL);
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, u, 8, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, u, 8, c, c, NULL), -EINVAL);
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PULL, CHAN_NNG_LISTEN, u, 8, c, NULL, NULL), -EINVAL);
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PAIR, CHAN_NNG_LISTEN, u, 8, c, NULL, NULL), -EINVAL);
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, u,
                               (size_t)UINT32_MAX + 1, c, NULL, NULL), -EINVAL);
    chan_nng_opts_t o = { .streams = 2 };
    cr_assert_eq(chan_nng_open2(&b, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, u, 8, c, NULL, &o), -EINVAL);
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, "nosuch://x", 8, c, NULL, NULL), -ENOTSUP);
    cr_assert_eq(b, (chan_nng_t *)0x1, "*bp was written on failure");
    cr_assert_eq(chan_nng_wait(NULL, 0), -EINVAL);
    cr_assert_eq(chan_nng_peers(NULL), -EINVAL);
    cr_assert_eq(chan_nng_wait_peers(NULL, 1, 0), -EINVAL);
    cr_assert_eq(chan_nng_port(NULL), -EINVAL);
    cr_assert_eq(chan_nng_close(NULL), -EINVAL);
    (void)notint;
    chan_release(c);
    chan_release(notint);
}

Test(nng, channel_sizes_are_checked)
{
    chan_t *c = chan_make(sizeof(long), 1);
    chan_t *notint = chan_make(sizeof(long), 1);
    chan_t *in = chan_make(sizeof(long), 1);
    chan_nng_t *b = (chan_nng_t *)0x1;
    const char *u = "inproc://libchan-test-sizes";
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, u, 4, c, NULL, NULL), -EINVAL);
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PULL, CHAN_NNG_LISTEN, u, 4, NULL, in, NULL), -EINVAL);
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, u, 8, c, NULL, notint), -EINVAL);
    cr_assert_eq(b, (chan_nng_t *)0x1, "*bp is untouched on failure");
    /* The right sizes are taken. */
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, u, 8, c, NULL, NULL), 0);
    cr_assert_eq(chan_nng_close(b), 0);
    chan_release(c);
    chan_release(notint);
    chan_release(in);
}

Test(nng, a_taken_address_is_reported)
{
    chan_t *c = chan_make(sizeof(long), 1);
    chan_nng_t *a, *b = NULL;
    cr_assert_eq(chan_nng_open(&a, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, "tcp://127.0.0.1:0",
                               8, c, NULL, NULL), 0);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", chan_nng_port(a));
    cr_assert_eq(chan_nng_open(&b, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, url, 8, c, NULL, NULL),
                 -EADDRINUSE);
    cr_assert_null(b);
    cr_assert_eq(chan_nng_close(a), 0);
    chan_release(c);
}

Test(nng, peers_are_counted_and_waited_for)
{
    chan_t *out = chan_make(sizeof(long), 1);
    chan_t *in = chan_make(sizeof(long), 1);
    char url[128];
    listen_url(url, sizeof url, INPROC);
    chan_nng_t *push, *pull;
    cr_assert_eq(chan_nng_open(&push, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, url, 8, out, NULL, NULL), 0);
    cr_assert_eq(chan_nng_port(push), -ENOTSUP);
    cr_assert_eq(chan_nng_peers(push), 0);
    cr_assert_eq(chan_nng_wait_peers(push, 1, 0), -EAGAIN);
    cr_assert_eq(chan_nng_wait_peers(push, 1, 20 * TEST_MS), -ETIMEDOUT);
    cr_assert_eq(chan_nng_wait_peers(push, 0, 0), 0);
    cr_assert_eq(chan_nng_open(&pull, CHAN_NNG_PULL, CHAN_NNG_DIAL, url, 8, NULL, in, NULL), 0);
    cr_assert_eq(chan_nng_port(pull), -ENOTSUP);
    cr_assert_eq(chan_nng_wait_peers(push, 1, 10 * SEC), 0);
    cr_assert_eq(chan_nng_wait_peers(pull, 1, 10 * SEC), 0);
    cr_assert_eq(chan_nng_peers(push), 1);
    /* Nothing ended: closing stops the bridges, and closes in. */
    cr_assert_eq(chan_nng_wait(push, 0), -EAGAIN);
    cr_assert_eq(chan_nng_wait(pull, 10 * TEST_MS), -ETIMEDOUT);
    cr_assert_eq(chan_nng_close(pull), 0);
    long v;
    cr_assert_eq(chan_recv(in, &v), -EPIPE);
    cr_assert_eq(chan_nng_close(push), 0);
    chan_release(out);
    chan_release(in);
}

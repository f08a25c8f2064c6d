/*
 * stress.c - many threads hammering channels and selects, with exact
 * accounting: every value sent successfully arrives exactly once, no value
 * that was not sent arrives at all, and values from one sender on one
 * channel arrive in the order sent.
 *
 *  - 8 producers and 8 consumers pass 100,000 values (times
 *    CHAN_TEST_SCALE) through a buffered channel, an unbuffered channel, and
 *    through selects over several channels plus a quit channel;
 *  - a mix in the style of Go's TestSelectStress: plain senders and
 *    receivers on each of four channels, racing one select that sends on
 *    all four and one that receives on all four;
 *  - timed sends and receives with tiny timeouts racing each other, where a
 *    timeout must never lose or duplicate a value;
 *  - closes racing selects that send and receive;
 *  - the ring of a buffered channel at odd capacities and element sizes
 *    (every byte checked), and with elements of size 0.
 *
 * The checks run on the test thread after joining: worker threads only
 * count (Criterion assertions belong to the test's own thread).
 */
#include <sched.h>

#include "util.h"

TestSuite(stress, .timeout = TEST_TIMEOUT_S);

enum { PRODUCERS = 8, CONSUMERS = 8 };

/* ------------------------------------------------------------------ */
/* Shared accounting                                                  */

struct ledger {
    uint32_t n;                    /* values 0 .. n-1 */
    _Atomic unsigned char *count;  /* arrivals per value */
    atomic_long received;          /* arrivals in total */
    atomic_long errors;            /* unexpected return codes */
    atomic_long bad_values;        /* out of range */
    atomic_long misordered;        /* one sender's values out of order */
    atomic_long errno_changed;     /* workers whose errno the library wrote */
};

/* The library never writes errno; workers check that it keeps this. */
#define ERRNO_MARK 4242

static void ledger_init(struct ledger *l, uint32_t n)
{
    l->n = n;
    l->count = calloc(n, sizeof *l->count);
    cr_assert_not_null(l->count);
    atomic_init(&l->received, 0);
    atomic_init(&l->errors, 0);
    atomic_init(&l->bad_values, 0);
    atomic_init(&l->misordered, 0);
    atomic_init(&l->errno_changed, 0);
}

/* Called at the end of a worker that set errno = ERRNO_MARK first. */
static void ledger_check_errno(struct ledger *l)
{
    if (errno != ERRNO_MARK)
        atomic_fetch_add(&l->errno_changed, 1);
}

/* Records one arrival; returns the number of arrivals so far. */
static long ledger_arrive(struct ledger *l, uint32_t v)
{
    if (v >= l->n) {
        atomic_fetch_add(&l->bad_values, 1);
        return atomic_load(&l->received);
    }
    atomic_fetch_add_explicit(&l->count[v], 1, memory_order_relaxed);
    return atomic_fetch_add(&l->received, 1) + 1;
}

/* Checks that every value arrived exactly once.  Frees first, so that a
 * failed check is not followed by a leak report. */
static void ledger_check_all(struct ledger *l, const char *what)
{
    uint32_t bad = l->n;
    unsigned times = 0;
    for (uint32_t v = 0; v < l->n && bad == l->n; v++)
        if (l->count[v] != 1) {
            bad = v;
            times = l->count[v];
        }
    free((void *)l->count);
    cr_assert_eq(atomic_load(&l->errors), 0, "%s: unexpected return codes",
                 what);
    cr_assert_eq(atomic_load(&l->bad_values), 0, "%s: values never sent",
                 what);
    cr_assert_eq(atomic_load(&l->misordered), 0,
                 "%s: one sender's values arrived out of order", what);
    cr_assert_eq(atomic_load(&l->errno_changed), 0,
                 "%s: the library changed errno in %ld threads", what,
                 atomic_load(&l->errno_changed));
    cr_assert_eq(bad, l->n, "%s: value %u arrived %u times", what, bad, times);
    cr_assert_eq(atomic_load(&l->received), (long)l->n, "%s", what);
}

/* Per-receiver memory of the last value seen from each producer on each
 * channel: a channel is FIFO, so these only grow. */
enum { MAX_CHANS = 4 };
struct order {
    int64_t last[MAX_CHANS][PRODUCERS];
};

static void order_init(struct order *o)
{
    for (int c = 0; c < MAX_CHANS; c++)
        for (int p = 0; p < PRODUCERS; p++)
            o->last[c][p] = -1;
}

static void order_see(struct order *o, struct ledger *l, int chan_index,
                      uint32_t v)
{
    int p = (int)(v % PRODUCERS);
    if ((int64_t)v <= o->last[chan_index][p])
        atomic_fetch_add(&l->misordered, 1);
    o->last[chan_index][p] = v;
}

/* ------------------------------------------------------------------ */
/* 8 producers, 8 consumers, one channel                              */

struct pc_arg {
    chan_t *ch;
    struct ledger *l;
    int id;
};

/* Producer id sends id, id + PRODUCERS, id + 2 * PRODUCERS, ... */
static void *pc_producer(void *arg)
{
    struct pc_arg *a = arg;
    errno = ERRNO_MARK;
    for (uint32_t v = (uint32_t)a->id; v < a->l->n; v += PRODUCERS)
        if (chan_send(a->ch, &v) != 0)
            atomic_fetch_add(&a->l->errors, 1);
    ledger_check_errno(a->l);
    return NULL;
}

static void *pc_consumer(void *arg)
{
    struct pc_arg *a = arg;
    struct order o;
    order_init(&o);
    uint32_t v;
    int rc;
    errno = ERRNO_MARK;
    while ((rc = chan_recv(a->ch, &v)) == 0) {
        order_see(&o, a->l, 0, v);
        ledger_arrive(a->l, v);
    }
    if (rc != -EPIPE)
        atomic_fetch_add(&a->l->errors, 1);
    ledger_check_errno(a->l);
    return NULL;
}

static void run_producers_consumers(size_t capacity)
{
    struct ledger l;
    ledger_init(&l, (uint32_t)test_scaled(100000, 1000));
    chan_t *ch = chan_make(sizeof(uint32_t), capacity);
    cr_assert_not_null(ch);
    struct pc_arg pa[PRODUCERS], ca[CONSUMERS];
    pthread_t pt[PRODUCERS], ct[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        ca[i] = (struct pc_arg){ ch, &l, i };
        ct[i] = test_thread_start(pc_consumer, &ca[i]);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pa[i] = (struct pc_arg){ ch, &l, i };
        pt[i] = test_thread_start(pc_producer, &pa[i]);
    }
    for (int i = 0; i < PRODUCERS; i++)
        test_thread_join(pt[i]);
    cr_assert_eq(chan_close(ch), 0);
    for (int i = 0; i < CONSUMERS; i++)
        test_thread_join(ct[i]);
    cr_assert_eq(chan_len(ch), 0);
    chan_release(ch);
    ledger_check_all(&l, capacity ? "buffered" : "unbuffered");
}

Test(stress, producers_consumers_buffered)
{
    run_producers_consumers(64);
}

/*
 * One producer, one consumer, exact order: with a single sender every
 * value must arrive in the order sent.  A plain-thread waiter first
 * watches a buffered channel without its lock, so this races the buffer,
 * the watch and the wait queues against each other at several capacities;
 * a waiter queued beside buffered values would be handed a later value
 * before the buffered ones.
 */
struct spsc {
    chan_t *ch;
    uint32_t n;
};

static void *spsc_producer(void *arg)
{
    struct spsc *sp = arg;
    for (uint32_t v = 0; v < sp->n; v++)
        cr_assert_eq(chan_send(sp->ch, &v), 0);
    cr_assert_eq(chan_close(sp->ch), 0);
    return NULL;
}

Test(stress, single_producer_order_is_kept)
{
    static const size_t caps[] = { 1, 4, 1024 };
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        struct spsc sp = { chan_make(sizeof(uint32_t), caps[k]),
                           (uint32_t)test_scaled(200000, 1000) };
        cr_assert_not_null(sp.ch);
        pthread_t t = test_thread_start(spsc_producer, &sp);
        uint32_t v, want = 0;
        while (chan_recv(sp.ch, &v) == 0) {
            cr_assert_eq(v, want, "capacity %zu: got %u, want %u", caps[k],
                         v, want);
            want++;
        }
        cr_assert_eq(want, sp.n, "capacity %zu: %u of %u arrived", caps[k],
                     want, sp.n);
        test_thread_join(t);
        chan_release(sp.ch);
    }
}

/*
 * The ring of a buffered channel at several shapes: capacities that are and
 * are not powers of two (so positions wrap laps at odd places), elements of
 * odd sizes whose every byte is checked, and a mix of blocking, try and
 * timed calls, so that lock-free operations race waiters that freeze and
 * thaw the ring.
 */
struct shape_arg {
    chan_t *ch;
    struct ledger *l;
    size_t size;    /* element size, >= sizeof(uint32_t) */
    int id;
};

/* The element for v: v itself, then bytes that depend on v and position. */
static void shape_fill(unsigned char *e, size_t size, uint32_t v)
{
    memcpy(e, &v, sizeof v);
    for (size_t i = sizeof v; i < size; i++)
        e[i] = (unsigned char)(v * 31u + i);
}

static int shape_ok(const unsigned char *e, size_t size, uint32_t *v)
{
    memcpy(v, e, sizeof *v);
    for (size_t i = sizeof *v; i < size; i++)
        if (e[i] != (unsigned char)(*v * 31u + i))
            return 0;
    return 1;
}

/* One send (is_send) or receive of e: the blocking, try or timed call by
 * turns (k), the last two retried until they go through. */
static int shape_op(chan_t *ch, int is_send, unsigned char *e, unsigned k)
{
    int rc;
    switch (k % 3) {
    case 0:
        return is_send ? chan_send(ch, e) : chan_recv(ch, e);
    case 1:
        while ((rc = is_send ? chan_trysend(ch, e) : chan_tryrecv(ch, e)) ==
               -EAGAIN)
            sched_yield();
        return rc;
    default:
        while ((rc = is_send ? chan_timedsend(ch, e, 2000)
                             : chan_timedrecv(ch, e, 2000)) == -ETIMEDOUT)
            ;
        return rc;
    }
}

static void *shape_producer(void *arg)
{
    struct shape_arg *a = arg;
    unsigned char e[128];
    errno = ERRNO_MARK;
    unsigned k = 0;
    for (uint32_t v = (uint32_t)a->id; v < a->l->n; v += PRODUCERS, k++) {
        shape_fill(e, a->size, v);
        if (shape_op(a->ch, 1, e, k) != 0)
            atomic_fetch_add(&a->l->errors, 1);
    }
    ledger_check_errno(a->l);
    return NULL;
}

static void *shape_consumer(void *arg)
{
    struct shape_arg *a = arg;
    struct order o;
    order_init(&o);
    unsigned char e[128];
    errno = ERRNO_MARK;
    for (unsigned k = 0;; k++) {
        int rc = shape_op(a->ch, 0, e, k);
        if (rc == -EPIPE)
            break;
        uint32_t v;
        if (rc != 0 || !shape_ok(e, a->size, &v)) {
            atomic_fetch_add(&a->l->errors, 1);
            continue;
        }
        order_see(&o, a->l, 0, v);
        ledger_arrive(a->l, v);
    }
    ledger_check_errno(a->l);
    return NULL;
}

Test(stress, ring_shapes)
{
    static const size_t caps[] = { 1, 3, 5, 64 };
    static const size_t sizes[] = { 4, 7, 24, 100 };
    for (size_t ci = 0; ci < sizeof caps / sizeof caps[0]; ci++) {
        size_t size = sizes[ci];
        struct ledger l;
        ledger_init(&l, (uint32_t)test_scaled(40000, 1000));
        chan_t *ch = chan_make(size, caps[ci]);
        cr_assert_not_null(ch);
        struct shape_arg pa[PRODUCERS], ca[CONSUMERS];
        pthread_t pt[PRODUCERS], ct[CONSUMERS];
        for (int i = 0; i < CONSUMERS; i++) {
            ca[i] = (struct shape_arg){ ch, &l, size, i };
            ct[i] = test_thread_start(shape_consumer, &ca[i]);
        }
        for (int i = 0; i < PRODUCERS; i++) {
            pa[i] = (struct shape_arg){ ch, &l, size, i };
            pt[i] = test_thread_start(shape_producer, &pa[i]);
        }
        for (int i = 0; i < PRODUCERS; i++)
            test_thread_join(pt[i]);
        cr_assert_eq(chan_close(ch), 0);
        for (int i = 0; i < CONSUMERS; i++)
            test_thread_join(ct[i]);
        cr_assert_eq(chan_len(ch), 0);
        chan_release(ch);
        char what[64];
        snprintf(what, sizeof what, "capacity %zu, %zu-byte elements",
                 caps[ci], size);
        ledger_check_all(&l, what);
    }
}

/*
 * Elements of size 0: the ring is two counters.  Exactly as many receives
 * succeed as sends did, none after the channel is closed and drained, and
 * the count never goes above the capacity.
 */
struct zero_arg {
    chan_t *ch;
    long n;                /* sends per producer */
    atomic_long *received;
    atomic_long *errors;
};

static void *zero_producer(void *arg)
{
    struct zero_arg *a = arg;
    for (long i = 0; i < a->n; i++) {
        int rc;
        if (i % 2)
            rc = chan_send(a->ch, NULL);
        else
            while ((rc = chan_trysend(a->ch, NULL)) == -EAGAIN)
                sched_yield();
        if (rc != 0)
            atomic_fetch_add(a->errors, 1);
        if (chan_len(a->ch) > chan_cap(a->ch))
            atomic_fetch_add(a->errors, 1);
    }
    return NULL;
}

static void *zero_consumer(void *arg)
{
    struct zero_arg *a = arg;
    int rc;
    for (long k = 0;; k++) {
        if (k % 2)
            rc = chan_recv(a->ch, NULL);
        else
            while ((rc = chan_tryrecv(a->ch, NULL)) == -EAGAIN)
                sched_yield();
        if (rc != 0)
            break;
        atomic_fetch_add(a->received, 1);
    }
    if (rc != -EPIPE)
        atomic_fetch_add(a->errors, 1);
    return NULL;
}

Test(stress, zero_size_elements)
{
    static const size_t caps[] = { 1, 7 };
    for (size_t ci = 0; ci < 2; ci++) {
        atomic_long received = 0, errors = 0;
        long n = test_scaled(20000, 500);
        chan_t *ch = chan_make(0, caps[ci]);
        cr_assert_not_null(ch);
        struct zero_arg a = { ch, n, &received, &errors };
        pthread_t pt[4], ct[4];
        for (int i = 0; i < 4; i++)
            ct[i] = test_thread_start(zero_consumer, &a);
        for (int i = 0; i < 4; i++)
            pt[i] = test_thread_start(zero_producer, &a);
        for (int i = 0; i < 4; i++)
            test_thread_join(pt[i]);
        cr_assert_eq(chan_close(ch), 0);
        for (int i = 0; i < 4; i++)
            test_thread_join(ct[i]);
        cr_assert_eq(atomic_load(&errors), 0, "capacity %zu", caps[ci]);
        cr_assert_eq(atomic_load(&received), 4 * n, "capacity %zu", caps[ci]);
        cr_assert_eq(chan_len(ch), 0);
        chan_release(ch);
    }
}

Test(stress, producers_consumers_unbuffered)
{
    run_producers_consumers(0);
}

/* ------------------------------------------------------------------ */
/* 8 producers, 8 consumers, selects over several channels and quit   */

struct sel_arg {
    chan_t **data;      /* MAX_CHANS data channels */
    chan_t *quit;       /* closed once every value has arrived */
    struct ledger *l;
    int id;
};

static void *sel_producer(void *arg)
{
    struct sel_arg *a = arg;
    errno = ERRNO_MARK;
    for (uint32_t v = (uint32_t)a->id; v < a->l->n; v += PRODUCERS) {
        chan_case_t cases[MAX_CHANS + 1];
        for (int k = 0; k < MAX_CHANS; k++)
            cases[k] = CHAN_SEND_CASE(a->data[k], &v);
        cases[MAX_CHANS] = CHAN_RECV_CASE(a->quit, NULL);
        int rc = chan_select(cases, MAX_CHANS + 1, CHAN_FOREVER);
        if (rc < 0 || rc == MAX_CHANS || cases[rc].result != 0) {
            /* quit closes only after every value arrived, which cannot
             * happen while this one is still unsent. */
            atomic_fetch_add(&a->l->errors, 1);
            return NULL;
        }
    }
    ledger_check_errno(a->l);
    return NULL;
}

static void *sel_consumer(void *arg)
{
    struct sel_arg *a = arg;
    struct order o;
    order_init(&o);
    errno = ERRNO_MARK;
    for (;;) {
        uint32_t v;
        chan_case_t cases[MAX_CHANS + 1];
        for (int k = 0; k < MAX_CHANS; k++)
            cases[k] = CHAN_RECV_CASE(a->data[k], &v);
        cases[MAX_CHANS] = CHAN_RECV_CASE(a->quit, NULL);
        int rc = chan_select(cases, MAX_CHANS + 1, CHAN_FOREVER);
        if (rc == MAX_CHANS && cases[rc].result == -EPIPE) {
            ledger_check_errno(a->l);
            return NULL;
        }
        if (rc < 0 || rc > MAX_CHANS || cases[rc].result != 0) {
            atomic_fetch_add(&a->l->errors, 1);
            return NULL;
        }
        order_see(&o, a->l, rc, v);
        if (ledger_arrive(a->l, v) == (long)a->l->n &&
            chan_close(a->quit) != 0)
            atomic_fetch_add(&a->l->errors, 1);
    }
}

Test(stress, producers_consumers_select)
{
    static const size_t caps[MAX_CHANS] = { 0, 0, 4, 16 };
    struct ledger l;
    ledger_init(&l, (uint32_t)test_scaled(100000, 1000));
    chan_t *data[MAX_CHANS];
    for (int k = 0; k < MAX_CHANS; k++)
        data[k] = chan_make(sizeof(uint32_t), caps[k]);
    chan_t *quit = chan_make(0, 0);
    struct sel_arg pa[PRODUCERS], ca[CONSUMERS];
    pthread_t pt[PRODUCERS], ct[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        ca[i] = (struct sel_arg){ data, quit, &l, i };
        ct[i] = test_thread_start(sel_consumer, &ca[i]);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pa[i] = (struct sel_arg){ data, quit, &l, i };
        pt[i] = test_thread_start(sel_producer, &pa[i]);
    }
    for (int i = 0; i < PRODUCERS; i++)
        test_thread_join(pt[i]);
    for (int i = 0; i < CONSUMERS; i++)
        test_thread_join(ct[i]);
    cr_assert_eq(chan_close(quit), -EPIPE, "quit was never closed");
    for (int k = 0; k < MAX_CHANS; k++) {
        cr_assert_eq(chan_tryrecv(data[k], NULL), -EAGAIN,
                     "channel %d still holds a value", k);
        cr_assert_eq(chan_close(data[k]), 0);
        chan_release(data[k]);
    }
    chan_release(quit);
    ledger_check_all(&l, "select");
}

/* ------------------------------------------------------------------ */
/* Go's TestSelectStress, with accounting                             */

/*
 * Four channels (two unbuffered, capacities 2 and 3).  On each channel k a
 * plain sender sends N values and a plain receiver receives N values; one
 * select-sender sends N values on every channel from a single select, and
 * one select-receiver receives N values from every channel, dropping a
 * channel from its select once it has had N from it.  All interact
 * chaotically, yet the construct cannot deadlock: each channel sees 2N
 * sends and 2N receives.
 *
 * Values: plain sender k sends k*N + i; the select-sender sends
 * 4N + k*N + i on channel k, so a value names its channel and its source.
 */
struct mix {
    chan_t *c[4];
    uint32_t n;
    struct ledger l;
    atomic_long wrong_channel;
};

struct mix_arg {
    struct mix *m;
    int k;
};

static void mix_arrive(struct mix *m, int k, uint32_t v, struct order *o)
{
    if (v < 8 * m->n && (v / m->n) % 4 != (uint32_t)k)
        atomic_fetch_add(&m->wrong_channel, 1);
    /* Order per source: source 0..3 plain, 4 the select-sender. */
    int src = v < 4 * m->n ? 0 : 1;
    if ((int64_t)v <= o->last[k][src])
        atomic_fetch_add(&m->l.misordered, 1);
    o->last[k][src] = v;
    ledger_arrive(&m->l, v);
}

static void *mix_sender(void *arg)
{
    struct mix_arg *a = arg;
    struct mix *m = a->m;
    for (uint32_t i = 0; i < m->n; i++) {
        uint32_t v = (uint32_t)a->k * m->n + i;
        if (chan_send(m->c[a->k], &v) != 0)
            atomic_fetch_add(&m->l.errors, 1);
    }
    return NULL;
}

static void *mix_receiver(void *arg)
{
    struct mix_arg *a = arg;
    struct mix *m = a->m;
    struct order o;
    order_init(&o);
    for (uint32_t i = 0; i < m->n; i++) {
        uint32_t v;
        if (chan_recv(m->c[a->k], &v) != 0)
            atomic_fetch_add(&m->l.errors, 1);
        else
            mix_arrive(m, a->k, v, &o);
    }
    return NULL;
}

static void *mix_select_sender(void *arg)
{
    struct mix *m = arg;
    uint32_t sent[4] = { 0 }, vals[4];
    chan_case_t cases[4];
    for (int k = 0; k < 4; k++) {
        vals[k] = 4 * m->n + (uint32_t)k * m->n;
        cases[k] = CHAN_SEND_CASE(m->c[k], &vals[k]);
    }
    for (uint32_t i = 0; i < 4 * m->n; i++) {
        int k = chan_select(cases, 4, CHAN_FOREVER);
        if (k < 0 || k > 3 || cases[k].result != 0) {
            atomic_fetch_add(&m->l.errors, 1);
            return NULL;
        }
        vals[k]++;
        if (++sent[k] == m->n)
            cases[k].ch = NULL;
    }
    return NULL;
}

static void *mix_select_receiver(void *arg)
{
    struct mix *m = arg;
    struct order o;
    order_init(&o);
    uint32_t got[4] = { 0 }, v;
    chan_case_t cases[4];
    for (int k = 0; k < 4; k++)
        cases[k] = CHAN_RECV_CASE(m->c[k], &v);
    for (uint32_t i = 0; i < 4 * m->n; i++) {
        int k = chan_select(cases, 4, CHAN_FOREVER);
        if (k < 0 || k > 3 || cases[k].result != 0) {
            atomic_fetch_add(&m->l.errors, 1);
            return NULL;
        }
        mix_arrive(m, k, v, &o);
        if (++got[k] == m->n)
            cases[k].ch = NULL;
    }
    return NULL;
}

Test(stress, select_stress_mix)
{
    static const size_t caps[4] = { 0, 0, 2, 3 };
    struct mix m;
    m.n = (uint32_t)test_scaled(10000, 100);
    ledger_init(&m.l, 8 * m.n);
    atomic_init(&m.wrong_channel, 0);
    for (int k = 0; k < 4; k++)
        m.c[k] = chan_make(sizeof(uint32_t), caps[k]);
    struct mix_arg args[4];
    pthread_t t[10];
    for (int k = 0; k < 4; k++) {
        args[k] = (struct mix_arg){ &m, k };
        t[2 * k] = test_thread_start(mix_sender, &args[k]);
        t[2 * k + 1] = test_thread_start(mix_receiver, &args[k]);
    }
    t[8] = test_thread_start(mix_select_sender, &m);
    t[9] = test_thread_start(mix_select_receiver, &m);
    for (int i = 0; i < 10; i++)
        test_thread_join(t[i]);
    cr_assert_eq(atomic_load(&m.wrong_channel), 0,
                 "a value arrived on another channel than it was sent on");
    for (int k = 0; k < 4; k++) {
        cr_assert_eq(chan_tryrecv(m.c[k], NULL), -EAGAIN);
        chan_release(m.c[k]);
    }
    ledger_check_all(&m.l, "select stress mix");
}

/* ------------------------------------------------------------------ */
/* Timeouts racing hand-offs                                          */

/*
 * Senders offer each value once with a tiny timeout; receivers take with
 * tiny timeouts (plain timed receives and timed selects).  A send that
 * returned 0 must have delivered its value exactly once; a send that
 * returned -ETIMEDOUT must not have delivered it at all.
 */
enum { TO_SENDERS = 3, TO_RECEIVERS = 3 };

struct race {
    chan_t *ch;
    uint32_t per_sender;
    struct ledger l;
    int *status;            /* per value: the send's result */
    atomic_long sent, timed_out, recv_timeouts;
};

struct race_arg {
    struct race *r;
    int id;
};

static int64_t tiny_timeout(uint32_t *rng)
{
    /* Half of them 1 ns (expired by the time the waiter is queued, so
     * the claim races the cancel), the rest up to 20 us. */
    uint32_t x = test_rand(rng);
    return (x & 1) == 0 ? 1 : (int64_t)(x % 20000) + 1;
}

static void *race_sender(void *arg)
{
    struct race_arg *a = arg;
    struct race *r = a->r;
    uint32_t rng = 0x1234567u * (uint32_t)(a->id + 1);
    for (uint32_t i = 0; i < r->per_sender; i++) {
        uint32_t v = (uint32_t)a->id * r->per_sender + i;
        int64_t t = tiny_timeout(&rng);
        int rc;
        if (test_rand(&rng) % 3 == 0) {
            chan_case_t c[] = { CHAN_SEND_CASE(r->ch, &v) };
            rc = chan_select(c, 1, t);
            if (rc == 0)
                rc = c[0].result;
        } else {
            rc = chan_timedsend(r->ch, &v, t);
        }
        r->status[v] = rc;
        if (test_rand(&rng) % 3 == 0)
            test_sleep_ns(test_rand(&rng) % 100000);
        if (rc == 0)
            atomic_fetch_add(&r->sent, 1);
        else if (rc == -ETIMEDOUT)
            atomic_fetch_add(&r->timed_out, 1);
        else
            atomic_fetch_add(&r->l.errors, 1);
    }
    return NULL;
}

static void *race_receiver(void *arg)
{
    struct race_arg *a = arg;
    struct race *r = a->r;
    uint32_t rng = 0x7654321u * (uint32_t)(a->id + 1);
    for (;;) {
        uint32_t v;
        int64_t t = tiny_timeout(&rng);
        int rc;
        if (test_rand(&rng) % 3 == 0) {
            chan_case_t c[] = { CHAN_RECV_CASE(r->ch, &v) };
            rc = chan_select(c, 1, t);
            if (rc == 0)
                rc = c[0].result;
        } else {
            rc = chan_timedrecv(r->ch, &v, t);
        }
        if (rc == 0)
            ledger_arrive(&r->l, v);
        else if (rc == -ETIMEDOUT)
            atomic_fetch_add(&r->recv_timeouts, 1);
        else if (rc == -EPIPE)
            return NULL;
        else
            atomic_fetch_add(&r->l.errors, 1);
        /* Pause now and then, so that senders also find nobody there. */
        if (test_rand(&rng) % 3 == 0)
            test_sleep_ns(test_rand(&rng) % 100000);
    }
}

static void run_timeout_race(size_t capacity)
{
    struct race r;
    r.per_sender = (uint32_t)test_scaled(10000, 50);
    uint32_t n = TO_SENDERS * r.per_sender;
    ledger_init(&r.l, n);
    r.status = calloc(n, sizeof *r.status);
    cr_assert_not_null(r.status);
    atomic_init(&r.sent, 0);
    atomic_init(&r.timed_out, 0);
    atomic_init(&r.recv_timeouts, 0);
    r.ch = chan_make(sizeof(uint32_t), capacity);
    struct race_arg sa[TO_SENDERS], ra[TO_RECEIVERS];
    pthread_t st[TO_SENDERS], rt[TO_RECEIVERS];
    for (int i = 0; i < TO_RECEIVERS; i++) {
        ra[i] = (struct race_arg){ &r, i };
        rt[i] = test_thread_start(race_receiver, &ra[i]);
    }
    for (int i = 0; i < TO_SENDERS; i++) {
        sa[i] = (struct race_arg){ &r, i };
        st[i] = test_thread_start(race_sender, &sa[i]);
    }
    for (int i = 0; i < TO_SENDERS; i++)
        test_thread_join(st[i]);
    cr_assert_eq(chan_close(r.ch), 0);
    for (int i = 0; i < TO_RECEIVERS; i++)
        test_thread_join(rt[i]);

    cr_log_info("capacity %zu: %ld sent, %ld send timeouts, %ld receive "
                "timeouts",
                capacity, atomic_load(&r.sent), atomic_load(&r.timed_out),
                atomic_load(&r.recv_timeouts));
    /* A send that returned 0 delivered its value once; any other result
     * means it was never delivered. */
    uint32_t bad = n;
    int bad_status = 0;
    unsigned bad_times = 0;
    for (uint32_t v = 0; v < n && bad == n; v++)
        if (r.l.count[v] != (r.status[v] == 0 ? 1 : 0)) {
            bad = v;
            bad_status = r.status[v];
            bad_times = r.l.count[v];
        }
    chan_release(r.ch);
    free(r.status);
    free((void *)r.l.count);
    cr_assert_eq(atomic_load(&r.l.errors), 0, "unexpected return codes");
    cr_assert_eq(atomic_load(&r.l.bad_values), 0);
    cr_assert_eq(bad, n, "value %u: the send returned %d, it arrived %u times",
                 bad, bad_status, bad_times);
    cr_assert_eq(atomic_load(&r.l.received), atomic_load(&r.sent));
}

Test(stress, timeouts_race_handoffs_unbuffered)
{
    run_timeout_race(0);
}

Test(stress, timeouts_race_handoffs_buffered)
{
    run_timeout_race(2);
}

/* ------------------------------------------------------------------ */
/* Closes racing selects                                              */

/*
 * Each round: senders loop over a select that sends on an unbuffered and a
 * buffered channel, receivers over a select that receives from both (and
 * one of them also offers to send, so a select sending and receiving on one
 * channel races the close too); some selects have tiny timeouts.  The test thread closes both channels at a
 * random point.  A case that reports -EPIPE is dropped from its select;
 * a thread stops when all its cases are gone.  Every value whose send
 * reported 0 must arrive exactly once, every other value never.
 */
enum { CR_SENDERS = 2, CR_RECEIVERS = 3, CR_MAXV = 1 << 15 };

struct close_round {
    chan_t *a, *b;
    struct ledger l;                 /* values s * CR_MAXV + i */
    unsigned char *sent;             /* per value: its send returned 0 */
    atomic_long progress;            /* values received this round */
};

struct cr_arg {
    struct close_round *r;
    int id;
};

/* Mostly no limit; one select in four gives up within 20 us, so that
 * timeouts race the closes and the hand-offs too. */
static int64_t cr_timeout(uint32_t *rng)
{
    uint32_t x = test_rand(rng);
    return x % 4 ? CHAN_FOREVER : (int64_t)(x % 20000) + 1;
}

static void *cr_sender(void *arg)
{
    struct cr_arg *ca = arg;
    struct close_round *r = ca->r;
    chan_case_t cases[2];
    uint32_t v = (uint32_t)ca->id * CR_MAXV;
    cases[0] = CHAN_SEND_CASE(r->a, &v);
    cases[1] = CHAN_SEND_CASE(r->b, &v);
    int live = 2;
    uint32_t rng = 0x5e4d3c2bu * (uint32_t)(ca->id + 1);
    while (live > 0 && v < (uint32_t)(ca->id + 1) * CR_MAXV) {
        int k = chan_select(cases, 2, cr_timeout(&rng));
        if (k == -ETIMEDOUT)
            continue; /* nothing was sent: offer v again */
        if (k < 0 || k > 1) {
            atomic_fetch_add(&r->l.errors, 1);
            return NULL;
        }
        if (cases[k].result == 0) {
            r->sent[v] = 1;
            v++;
        } else if (cases[k].result == -EPIPE) {
            cases[k].ch = NULL;
            live--;
        } else {
            atomic_fetch_add(&r->l.errors, 1);
            return NULL;
        }
    }
    return NULL;
}

static void *cr_receiver(void *arg)
{
    struct cr_arg *ca = arg;
    struct close_round *r = ca->r;
    uint32_t v, mine = (uint32_t)(CR_SENDERS + ca->id) * CR_MAXV;
    chan_case_t cases[3];
    cases[0] = CHAN_RECV_CASE(r->a, &v);
    cases[1] = CHAN_RECV_CASE(r->b, &v);
    /* Receiver 0 also offers its own values on a: it must never take
     * them back itself. */
    cases[2] = CHAN_SEND_CASE(ca->id == 0 ? r->a : NULL, &mine);
    int live = ca->id == 0 ? 3 : 2;
    uint32_t rng = 0x1b2c3d4eu * (uint32_t)(ca->id + 1);
    while (live > 0) {
        int k = chan_select(cases, 3, cr_timeout(&rng));
        if (k == -ETIMEDOUT)
            continue;
        if (k < 0 || k > 2) {
            atomic_fetch_add(&r->l.errors, 1);
            return NULL;
        }
        if (cases[k].result == -EPIPE) {
            cases[k].ch = NULL;
            live--;
        } else if (cases[k].result != 0) {
            atomic_fetch_add(&r->l.errors, 1);
            return NULL;
        } else if (k == 2) {
            r->sent[mine] = 1;
            if (++mine == (uint32_t)(CR_SENDERS + 1) * CR_MAXV) {
                cases[2].ch = NULL;
                live--;
            }
        } else {
            ledger_arrive(&r->l, v);
            atomic_fetch_add(&r->progress, 1);
        }
    }
    return NULL;
}

Test(stress, closes_race_selects)
{
    int rounds = (int)test_scaled(150, 10);
    uint32_t rng = 0xc105e5u;
    uint32_t nvals = (CR_SENDERS + 1) * CR_MAXV;
    struct close_round r;
    r.sent = malloc(nvals);
    cr_assert_not_null(r.sent);
    long total = 0;
    for (int round = 0; round < rounds; round++) {
        ledger_init(&r.l, nvals);
        memset(r.sent, 0, nvals);
        atomic_init(&r.progress, 0);
        r.a = chan_make(sizeof(uint32_t), 0);
        r.b = chan_make(sizeof(uint32_t), 2);
        struct cr_arg sa[CR_SENDERS], ra[CR_RECEIVERS];
        pthread_t st[CR_SENDERS], rt[CR_RECEIVERS];
        for (int i = 0; i < CR_RECEIVERS; i++) {
            ra[i] = (struct cr_arg){ &r, i };
            rt[i] = test_thread_start(cr_receiver, &ra[i]);
        }
        for (int i = 0; i < CR_SENDERS; i++) {
            sa[i] = (struct cr_arg){ &r, i };
            st[i] = test_thread_start(cr_sender, &sa[i]);
        }
        /* Close after a random amount of traffic (sometimes none). */
        long target = (long)(test_rand(&rng) % 64);
        int64_t give_up = test_now_ns() + 5000 * TEST_MS;
        while (atomic_load(&r.progress) < target && test_now_ns() < give_up)
            sched_yield();
        int first_b = test_rand(&rng) & 1;
        cr_assert_eq(chan_close(first_b ? r.b : r.a), 0);
        if (test_rand(&rng) & 1)
            sched_yield();
        cr_assert_eq(chan_close(first_b ? r.a : r.b), 0);
        for (int i = 0; i < CR_SENDERS; i++)
            test_thread_join(st[i]);
        for (int i = 0; i < CR_RECEIVERS; i++)
            test_thread_join(rt[i]);

        uint32_t bad = nvals;
        for (uint32_t v = 0; v < nvals && bad == nvals; v++)
            if (r.l.count[v] != r.sent[v])
                bad = v;
        unsigned bad_sent = bad < nvals ? r.sent[bad] : 0;
        unsigned bad_times = bad < nvals ? r.l.count[bad] : 0;
        total += atomic_load(&r.l.received);
        chan_release(r.a);
        chan_release(r.b);
        free((void *)r.l.count);
        if (bad < nvals || atomic_load(&r.l.errors) ||
            atomic_load(&r.l.bad_values))
            free(r.sent);
        cr_assert_eq(atomic_load(&r.l.errors), 0, "round %d: bad results",
                     round);
        cr_assert_eq(atomic_load(&r.l.bad_values), 0);
        cr_assert_eq(bad, nvals,
                     "round %d: value %u sent %u times, arrived %u times",
                     round, bad, bad_sent, bad_times);
    }
    free(r.sent);
    cr_log_info("%d rounds, %ld values delivered", rounds, total);
}

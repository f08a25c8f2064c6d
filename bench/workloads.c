/*
 * workloads.c - what the benchmarks measure.  Every element is an int64_t
 * copied by the library; every run checks what it received (order, sums,
 * hop counts, return codes) and exits 1 on a mismatch.
 *
 *   w1            unbuffered ping-pong between two bodies, ns per round trip
 *   w2c1024/w2c1  one producer, one consumer, capacity 1024 / 1, ns per message
 *   w3            4 producers, 4 consumers, one channel of capacity 1024
 *   w4            4 producers on 4 channels (capacity 1024), one consumer
 *                 selecting over the 4, ns per message
 *   w5            a ring of bodies linked by unbuffered channels passing one
 *                 token, ns per hop (also ring-spawn: ns to start one body)
 *   sel1/4/16/64  one body: chan_select over 1/4/16/64 receive cases of which
 *                 exactly one is ready, then chan_send of the token to the
 *                 next channel (capacity 1, so it never blocks); ns per
 *                 select + send
 *   sel1000/sel100000  the same over 1000 / 100,000 channels, listed in
 *                 an order other than their addresses'
 *   fanin1000/fanin64  1000 / 64 producers sending on one unbuffered
 *                 channel to one consumer, ns per message
 *   bcast         o->bcast bodies blocked in chan_recv on one channel: ns
 *                 from its chan_close until all of them have returned from
 *                 chan_recv (a wait group says so), per body
 *   sendrecv      one body: chan_send then chan_recv on a capacity-1
 *                 channel (the blocking calls' uncontended path), ns per pair
 *   try-pair      the same with chan_trysend and chan_tryrecv
 *   tryrecv-empty chan_tryrecv on an empty channel (-EAGAIN), ns per call
 *   trysend-full  chan_trysend on a full channel (-EAGAIN), ns per call
 *   make/make1024 chan_make(8, 0 / 1024) + chan_release, ns per pair
 *   idle          a body blocked in chan_recv for o->idle seconds: CPU ns of
 *                 its thread (idle-thread) and of the whole process
 *                 (idle-proc) per second blocked
 *
 * Bodies are started with the runner (workloads.h), so that the same code
 * measures threads and tasks; the main thread times go() ... wait(), as a
 * Go program would time `go` statements and a WaitGroup.
 */
#include <chan.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "workloads.h"

/* The runner and options of the workload being measured. */
static struct bench_runner *runner;
static const struct bench_opts *opts;

static chan_t *mk(size_t elem_size, size_t cap)
{
    chan_t *c = chan_make(elem_size, cap);
    if (!c)
        bench_die("chan_make", -ENOMEM);
    return c;
}

static void send64(chan_t *c, int64_t v)
{
    int rc = chan_send(c, &v);
    if (rc != 0)
        bench_die("chan_send", rc);
}

static int64_t recv64(chan_t *c)
{
    int64_t v;
    int rc = chan_recv(c, &v);
    if (rc != 0)
        bench_die("chan_recv", rc);
    return v;
}

static void go(void (*fn)(void *), void *arg, size_t stack_hint)
{
    int rc = runner->go(runner, fn, arg, stack_hint);
    if (rc != 0)
        bench_die("starting a body", rc);
}

static void wait_all(void)
{
    int rc = runner->wait(runner);
    if (rc != 0)
        bench_die("waiting for the bodies", rc);
}

/* 0 + 1 + ... + (n - 1), modulo 2^64 like the sums it is compared with. */
static uint64_t tri(long n)
{
    uint64_t u = (uint64_t)n;
    return u % 2 ? u * ((u - 1) / 2) : (u / 2) * (u - 1);
}

/* ---------------------------------------------------------------- w1 */

struct w1 {
    chan_t *ping, *pong;
    long n;
    long bad; /* round trips that came back with the wrong value */
};

static void w1_echo(void *p)
{
    struct w1 *s = p;
    for (long i = 0; i < s->n; i++)
        send64(s->pong, recv64(s->ping));
}

static void w1_client(void *p)
{
    struct w1 *s = p;
    long bad = 0;
    for (long i = 0; i < s->n; i++) {
        send64(s->ping, i);
        bad += recv64(s->pong) != i;
    }
    s->bad = bad;
}

static double run_w1(void *ctx, long n)
{
    (void)ctx;
    struct w1 s = {mk(sizeof(int64_t), 0), mk(sizeof(int64_t), 0), n, 0};
    double t0 = bench_now();
    go(w1_echo, &s, 0);
    go(w1_client, &s, 0);
    wait_all();
    double t = bench_now() - t0;
    bench_check(s.bad == 0, "w1", "a round trip returned another value");
    chan_release(s.ping);
    chan_release(s.pong);
    return t;
}

/* ---------------------------------------------------------- w2 and w3 */

#define PC_MAX 4

/*
 * np producers and np consumers on one channel.  Producer p sends
 * k * np + p for k = 0 .. per-1; each consumer receives per values.  A
 * lone consumer must see each producer's values consecutively; several
 * consumers must each see them in increasing order (a FIFO channel never
 * reorders one sender's values).
 */
struct pc {
    chan_t *ch;
    int np;
    long per;
    _Atomic uint64_t sum;
    atomic_long bad;
};

struct pc_arg {
    struct pc *s;
    int id;
};

static void pc_prod(void *p)
{
    struct pc_arg *a = p;
    struct pc *s = a->s;
    for (long k = 0; k < s->per; k++)
        send64(s->ch, k * s->np + a->id);
}

static void pc_cons(void *p)
{
    struct pc *s = p;
    int64_t last[PC_MAX];
    uint64_t sum = 0;
    long bad = 0;
    for (int i = 0; i < s->np; i++)
        last[i] = -1;
    for (long i = 0; i < s->per; i++) {
        int64_t v = recv64(s->ch);
        int64_t id = v % s->np, k = v / s->np;
        if (v < 0) {
            bad++;
            continue;
        }
        if (s->np == 1 ? k != last[id] + 1 : k <= last[id])
            bad++;
        last[id] = k;
        sum += (uint64_t)v;
    }
    atomic_fetch_add(&s->sum, sum);
    atomic_fetch_add(&s->bad, bad);
}

static double run_pc(const char *wl, size_t cap, int np, long n)
{
    struct pc s = {.ch = mk(sizeof(int64_t), cap), .np = np, .per = n / np};
    struct pc_arg a[PC_MAX];
    atomic_init(&s.sum, 0);
    atomic_init(&s.bad, 0);
    double t0 = bench_now();
    for (int i = 0; i < np; i++) {
        a[i] = (struct pc_arg){&s, i};
        go(pc_prod, &a[i], 0);
    }
    for (int i = 0; i < np; i++)
        go(pc_cons, &s, 0);
    wait_all();
    double t = bench_now() - t0;
    uint64_t unp = (uint64_t)np;
    bench_check(atomic_load(&s.bad) == 0, wl, "values out of order");
    bench_check(atomic_load(&s.sum) == unp * unp * tri(s.per) + (uint64_t)s.per * tri(np),
                wl, "checksum");
    bench_check(chan_len(s.ch) == 0, wl, "values left in the channel");
    chan_release(s.ch);
    return t;
}

static double run_w2c1024(void *ctx, long n)
{
    (void)ctx;
    return run_pc("w2c1024", 1024, 1, n);
}

static double run_w2c1(void *ctx, long n)
{
    (void)ctx;
    return run_pc("w2c1", 1, 1, n);
}

static double run_w3(void *ctx, long n)
{
    (void)ctx;
    return run_pc("w3", 1024, 4, n);
}

/* ---------------------------------------------------------------- w4 */

struct w4 {
    chan_t *ch[4];
    long per;
    uint64_t sum;
    long bad;
};

struct w4_arg {
    struct w4 *s;
    int id;
};

static void w4_prod(void *p)
{
    struct w4_arg *a = p;
    for (long k = 0; k < a->s->per; k++)
        send64(a->s->ch[a->id], k);
}

static void w4_cons(void *p)
{
    struct w4 *s = p;
    int64_t v = 0, next[4] = {0, 0, 0, 0};
    /* Only the chosen case's result is written, so the array is reused. */
    chan_case_t cases[4] = {
        CHAN_RECV_CASE(s->ch[0], &v), CHAN_RECV_CASE(s->ch[1], &v),
        CHAN_RECV_CASE(s->ch[2], &v), CHAN_RECV_CASE(s->ch[3], &v),
    };
    uint64_t sum = 0;
    long bad = 0;
    for (long i = 0; i < 4 * s->per; i++) {
        int k = chan_select(cases, 4, CHAN_FOREVER);
        if (k < 0)
            bench_die("chan_select", k);
        if (k > 3 || cases[k].result != 0)
            bench_die("chan_select: unexpected case or result", -EINVAL);
        bad += v != next[k]++;
        sum += (uint64_t)v;
    }
    s->sum = sum;
    s->bad = bad;
}

static double run_w4(void *ctx, long n)
{
    (void)ctx;
    struct w4 s = {.per = n / 4};
    struct w4_arg a[4];
    for (int i = 0; i < 4; i++) {
        s.ch[i] = mk(sizeof(int64_t), 1024);
        a[i] = (struct w4_arg){&s, i};
    }
    double t0 = bench_now();
    for (int i = 0; i < 4; i++)
        go(w4_prod, &a[i], 0);
    go(w4_cons, &s, 0);
    wait_all();
    double t = bench_now() - t0;
    bench_check(s.bad == 0, "w4", "values out of order");
    bench_check(s.sum == 4 * tri(s.per), "w4", "checksum");
    for (int i = 0; i < 4; i++)
        chan_release(s.ch[i]);
    return t;
}

/* ---------------------------------------------------------------- w5 */

/*
 * Body i receives the token from ring.ch[i] and passes it, decremented, to
 * ring.ch[(i + 1) % size]; the body that receives 0 records its index and
 * signals `done`.  A token sent with value n therefore stops at body
 * n % size after n hops.  The ring is built once and measured many times;
 * closing every channel at the end makes each body return.
 */
static struct {
    long size;
    chan_t **ch;
    chan_t *done;  /* unbuffered, elem_size 0 (Go's chan struct{}) */
    chan_t *ready; /* capacity 1: the last body to start says so */
    atomic_long started;
    atomic_long last; /* index of the body that got the token at 0 */
} ring;

static void ring_body(void *p)
{
    long i = (long)(intptr_t)p;
    chan_t *in = ring.ch[i], *out = ring.ch[(i + 1) % ring.size];
    int rc;
    if (atomic_fetch_add(&ring.started, 1) + 1 == ring.size &&
        (rc = chan_send(ring.ready, NULL)) != 0)
        bench_die("chan_send(ready)", rc);
    for (;;) {
        int64_t v;
        if ((rc = chan_recv(in, &v)) == -EPIPE)
            return;
        if (rc != 0)
            bench_die("chan_recv(ring)", rc);
        if (v == 0) {
            atomic_store_explicit(&ring.last, i, memory_order_relaxed);
            rc = chan_send(ring.done, NULL);
        } else {
            rc = chan_send(out, &(int64_t){v - 1});
        }
        if (rc == -EPIPE)
            return;
        if (rc != 0)
            bench_die("chan_send(ring)", rc);
    }
}

static double run_w5(void *ctx, long n)
{
    (void)ctx;
    atomic_store(&ring.last, -1);
    double t0 = bench_now();
    send64(ring.ch[0], n);
    int rc = chan_recv(ring.done, NULL);
    double t = bench_now() - t0;
    if (rc != 0)
        bench_die("chan_recv(done)", rc);
    /* chan_recv(done) synchronizes with the body's send after its store. */
    bench_check(atomic_load_explicit(&ring.last, memory_order_relaxed) == n % ring.size,
                "w5", "hop count");
    return t;
}

static void wl_w5(void)
{
    ring.size = opts->ring;
    ring.ch = calloc((size_t)ring.size, sizeof *ring.ch);
    if (!ring.ch)
        bench_die("calloc", -ENOMEM);
    for (long i = 0; i < ring.size; i++)
        ring.ch[i] = mk(sizeof(int64_t), 0);
    ring.done = mk(0, 0);
    ring.ready = mk(0, 1);
    atomic_init(&ring.started, 0);
    atomic_init(&ring.last, -1);

    double t0 = bench_now();
    for (long i = 0; i < ring.size; i++)
        go(ring_body, (void *)(intptr_t)i, opts->ring_stack);
    int rc = chan_recv(ring.ready, NULL);
    if (rc != 0)
        bench_die("chan_recv(ready)", rc);
    double spawn = (bench_now() - t0) * 1e9 / (double)ring.size;
    bench_report(runner->impl, "ring-spawn", "ns/body", &spawn, 1, ring.size);

    bench_measure(runner->impl, "w5", "ns/hop", run_w5, NULL, ring.size, opts);

    for (long i = 0; i < ring.size; i++)
        chan_close(ring.ch[i]);
    chan_close(ring.done);
    wait_all();
    for (long i = 0; i < ring.size; i++)
        chan_release(ring.ch[i]);
    chan_release(ring.done);
    chan_release(ring.ready);
    free(ring.ch);
}

/* ------------------------------------------------- one-body micro loops */

/*
 * A micro benchmark is one body running a loop of n operations; the main
 * thread starts it and waits, so a task runner measures it inside a task.
 */
struct micro {
    void (*loop)(struct micro *m);
    const char *wl;
    long n;
    int nch;          /* channels in use */
    size_t cap;       /* their capacity (make: of the channels made) */
    chan_t *ch[64];
    long bad;         /* operations that returned something unexpected */
};

static void micro_body(void *p)
{
    struct micro *m = p;
    m->loop(m);
}

static double run_micro_body(void *ctx, long n)
{
    struct micro *m = ctx;
    m->n = n;
    m->bad = 0;
    double t0 = bench_now();
    go(micro_body, m, 0);
    wait_all();
    double t = bench_now() - t0;
    bench_check(m->bad == 0, m->wl, "unexpected results");
    return t;
}

/* The token goes round ch[0..nch-1]; exactly one channel holds it. */
static void sel_loop(struct micro *m)
{
    int64_t v = -1;
    chan_case_t cases[64];
    for (int i = 0; i < m->nch; i++)
        cases[i] = CHAN_RECV_CASE(m->ch[i], &v);
    send64(m->ch[0], 0);
    int pos = 0;
    long bad = 0;
    for (long i = 0; i < m->n; i++) {
        int k = chan_select(cases, (size_t)m->nch, CHAN_FOREVER);
        if (k < 0)
            bench_die("chan_select", k);
        if (k >= m->nch)
            bench_die("chan_select: case index out of range", -EINVAL);
        bad += k != pos || cases[k].result != 0 || v != i;
        pos = (k + 1) % m->nch;
        send64(m->ch[pos], v + 1);
    }
    bad += recv64(m->ch[pos]) != m->n;
    m->bad = bad;
}

/*
 * sel1000, sel100000: sel_loop over more channels than struct micro
 * holds.  The cases are in a fixed pseudo-random order of the channels,
 * so that their lock order (by address) is not the case order, as in a
 * program whose channels were not made in the order it lists them.
 */
struct selbig {
    const char *wl;
    long n;
    int nch;
    chan_t **ch;        /* ch[i] is the channel of case i */
    chan_case_t *cases;
    int64_t v;          /* every case receives here */
    long bad;
};

static void selbig_body(void *p)
{
    struct selbig *s = p;
    send64(s->ch[0], 0);
    int pos = 0;
    long bad = 0;
    for (long i = 0; i < s->n; i++) {
        int k = chan_select(s->cases, (size_t)s->nch, CHAN_FOREVER);
        if (k < 0)
            bench_die("chan_select", k);
        if (k >= s->nch)
            bench_die("chan_select: case index out of range", -EINVAL);
        bad += k != pos || s->cases[k].result != 0 || s->v != i;
        pos = (k + 1) % s->nch;
        send64(s->ch[pos], s->v + 1);
    }
    bad += recv64(s->ch[pos]) != s->n;
    s->bad = bad;
}

static double run_selbig(void *ctx, long n)
{
    struct selbig *s = ctx;
    s->n = n;
    s->bad = 0;
    double t0 = bench_now();
    go(selbig_body, s, 0);
    wait_all();
    double t = bench_now() - t0;
    bench_check(s->bad == 0, s->wl, "unexpected results");
    return t;
}

static void wl_selbig(const char *wl, int nch)
{
    struct selbig s = {.wl = wl, .nch = nch};
    s.ch = calloc((size_t)nch, sizeof *s.ch);
    s.cases = calloc((size_t)nch, sizeof *s.cases);
    if (!s.ch || !s.cases)
        bench_die("calloc", -ENOMEM);
    for (int i = 0; i < nch; i++)
        s.ch[i] = mk(sizeof(int64_t), 1);
    /* Fisher-Yates with a fixed xorshift32, the same as bench/go. */
    uint32_t x = 2463534242u;
    for (int i = nch - 1; i > 0; i--) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        int j = (int)(x % (uint32_t)(i + 1));
        chan_t *t = s.ch[i];
        s.ch[i] = s.ch[j];
        s.ch[j] = t;
    }
    for (int i = 0; i < nch; i++)
        s.cases[i] = CHAN_RECV_CASE(s.ch[i], &s.v);
    bench_measure(runner->impl, wl, "ns/op", run_selbig, &s, 4, opts);
    for (int i = 0; i < nch; i++) {
        bench_check(chan_len(s.ch[i]) == 0, wl, "values left in a channel");
        chan_release(s.ch[i]);
    }
    free(s.ch);
    free(s.cases);
}

static void sendrecv_loop(struct micro *m)
{
    long bad = 0;
    for (long i = 0; i < m->n; i++) {
        send64(m->ch[0], i);
        bad += recv64(m->ch[0]) != i;
    }
    m->bad = bad;
}

static void trypair_loop(struct micro *m)
{
    long bad = 0;
    for (long i = 0; i < m->n; i++) {
        int64_t v = i, w = -1;
        bad += chan_trysend(m->ch[0], &v) != 0;
        bad += chan_tryrecv(m->ch[0], &w) != 0 || w != i;
    }
    m->bad = bad;
}

static void tryrecv_empty_loop(struct micro *m)
{
    long bad = 0;
    int64_t v = 7;
    for (long i = 0; i < m->n; i++)
        bad += chan_tryrecv(m->ch[0], &v) != -EAGAIN;
    bad += v != 7; /* a failed receive leaves elem untouched */
    m->bad = bad;
}

/* ch[0] holds one value, 42, put there by wl_micro(). */
static void trysend_full_loop(struct micro *m)
{
    long bad = 0;
    for (long i = 0; i < m->n; i++)
        bad += chan_trysend(m->ch[0], &(int64_t){i}) != -EAGAIN;
    bad += chan_len(m->ch[0]) != 1;
    m->bad = bad;
}

static void make_loop(struct micro *m)
{
    for (long i = 0; i < m->n; i++) {
        chan_t *c = chan_make(sizeof(int64_t), m->cap);
        if (!c)
            bench_die("chan_make", -ENOMEM);
        chan_release(c);
    }
}

static void wl_micro(const char *wl, const char *unit, void (*loop)(struct micro *),
                     int nch, size_t cap)
{
    struct micro m = {.loop = loop, .wl = wl, .nch = nch, .cap = cap};
    for (int i = 0; i < nch; i++)
        m.ch[i] = mk(sizeof(int64_t), cap);
    if (loop == trysend_full_loop)
        send64(m.ch[0], 42);
    bench_measure(runner->impl, wl, unit, run_micro_body, &m, 1024, opts);
    if (loop == trysend_full_loop)
        bench_check(recv64(m.ch[0]) == 42, wl, "the buffered value changed");
    for (int i = 0; i < nch; i++) {
        bench_check(chan_len(m.ch[i]) == 0, wl, "values left in a channel");
        chan_release(m.ch[i]);
    }
}

/* -------------------------------------------------------------- idle */

struct idle {
    chan_t *ch, *started;
    int64_t thread_ns; /* CPU used by the body while blocked */
    int64_t got;
};

static void idle_body(void *p)
{
    struct idle *s = p;
    int rc = chan_send(s->started, NULL);
    if (rc != 0)
        bench_die("chan_send(started)", rc);
    int64_t c0 = bench_thread_cpu_ns();
    s->got = recv64(s->ch);
    s->thread_ns = bench_thread_cpu_ns() - c0;
}

/*
 * The body says it has started, then blocks in chan_recv; the main thread
 * sleeps opts->idle seconds and sends.  idle-thread is the CPU the body's
 * thread used from just before chan_recv to just after; idle-proc is the
 * CPU the whole process used while the main thread slept (the blocked
 * body, the sleeping main thread and any thread the library runs).  Both
 * are per second blocked; the target is under 5 ms (5e6 ns) per second.
 */
static void wl_idle(void)
{
    int reps = opts->reps;
    double *tv = calloc((size_t)reps, sizeof *tv);
    double *pv = calloc((size_t)reps, sizeof *pv);
    if (!tv || !pv)
        bench_die("calloc", -ENOMEM);
    for (int r = 0; r < reps; r++) {
        struct idle s = {mk(sizeof(int64_t), 0), mk(0, 1), -1, 0};
        go(idle_body, &s, 0);
        int rc = chan_recv(s.started, NULL);
        if (rc != 0)
            bench_die("chan_recv(started)", rc);
        int64_t p0 = bench_process_cpu_ns();
        bench_sleep(opts->idle);
        int64_t p1 = bench_process_cpu_ns();
        send64(s.ch, 4242);
        wait_all();
        bench_check(s.got == 4242, "idle", "received value");
        tv[r] = (double)s.thread_ns / opts->idle;
        pv[r] = (double)(p1 - p0) / opts->idle;
        chan_release(s.ch);
        chan_release(s.started);
    }
    if (runner->own_thread)
        bench_report(runner->impl, "idle-thread", "cpu-ns/s", tv, reps, 1);
    bench_report(runner->impl, "idle-proc", "cpu-ns/s", pv, reps, 1);
    free(tv);
    free(pv);
}


/* ------------------------------------------------------------- fan-in */

/*
 * np producers send 0 .. n-1 between them on one unbuffered channel
 * (producer p the values congruent to p modulo np, in increasing order),
 * one consumer receives all n.  The consumer checks that each producer's
 * values arrive in order and sums them.  Unbuffered, as in the merge of
 * Go's pipeline pattern: every message is a hand-off from a parked
 * sender, so the consumer wakes one producer per message.
 */
struct fanin {
    chan_t *ch;
    int np;
    long n;
    uint64_t sum;
    long bad;
};

struct fanin_arg {
    struct fanin *s;
    int id;
};

static void fanin_prod(void *p)
{
    struct fanin_arg *a = p;
    for (long v = a->id; v < a->s->n; v += a->s->np)
        send64(a->s->ch, v);
}

static void fanin_cons(void *p)
{
    struct fanin *s = p;
    int64_t *next = malloc((size_t)s->np * sizeof *next);
    if (!next)
        bench_die("malloc", -ENOMEM);
    for (int i = 0; i < s->np; i++)
        next[i] = i;
    uint64_t sum = 0;
    long bad = 0;
    for (long i = 0; i < s->n; i++) {
        int64_t v = recv64(s->ch);
        if (v < 0 || v >= s->n) {
            bad++;
            continue;
        }
        bad += v != next[v % s->np];
        next[v % s->np] = v + s->np;
        sum += (uint64_t)v;
    }
    free(next);
    s->sum = sum;
    s->bad = bad;
}

struct fanin_cfg {
    const char *wl;
    int np;
};

static double run_fanin(void *ctx, long n)
{
    const struct fanin_cfg *cfg = ctx;
    const char *wl = cfg->wl;
    int np = cfg->np;
    struct fanin s = {.ch = mk(sizeof(int64_t), 0), .np = np, .n = n};
    struct fanin_arg *a = calloc((size_t)np, sizeof *a);
    if (!a)
        bench_die("calloc", -ENOMEM);
    double t0 = bench_now();
    for (int i = 0; i < np; i++) {
        a[i] = (struct fanin_arg){&s, i};
        go(fanin_prod, &a[i], 64 * 1024);
    }
    go(fanin_cons, &s, 0);
    wait_all();
    double t = bench_now() - t0;
    bench_check(s.bad == 0, wl, "values out of order");
    bench_check(s.sum == tri(n), wl, "checksum");
    bench_check(chan_len(s.ch) == 0, wl, "values left in the channel");
    free(a);
    chan_release(s.ch);
    return t;
}

/* ---------------------------------------------------------- broadcast */

/*
 * o->bcast bodies block receiving from one channel; once all of them
 * have counted themselves (and a moment more, to let the last ones
 * park), the main thread closes the channel and waits on a wait group
 * that every body leaves once its chan_recv has returned -EPIPE (Go: the
 * same with close and a sync.WaitGroup).  One close per run, so every run
 * starts the bodies anew, untimed; the result is the time from chan_close
 * to the end of chan_wg_wait, per body.
 */
struct bcast {
    chan_t *gate;  /* elem_size 0, unbuffered: closed to release them all */
    chan_t *ready; /* capacity 1: the last body to count itself says so */
    chan_wg_t *wg;
    long n;
    atomic_long counted;
    atomic_long bad; /* receives that returned something but -EPIPE */
};

static void bcast_body(void *p)
{
    struct bcast *s = p;
    int rc;
    if (atomic_fetch_add(&s->counted, 1) + 1 == s->n &&
        (rc = chan_send(s->ready, NULL)) != 0)
        bench_die("chan_send(ready)", rc);
    if (chan_recv(s->gate, NULL) != -EPIPE)
        atomic_fetch_add(&s->bad, 1);
    if ((rc = chan_wg_done(s->wg)) != 0)
        bench_die("chan_wg_done", rc);
}

static void wl_bcast(void)
{
    long n = opts->bcast;
    if (n > INT32_MAX)
        bench_die("bcast: too many bodies", -EINVAL);
    int reps = opts->reps;
    double *vals = calloc((size_t)reps, sizeof *vals);
    if (!vals)
        bench_die("calloc", -ENOMEM);
    /* One warm-up run, unreported: it grows the stack caches and the
     * allocator as calibration does for the other workloads. */
    for (int r = -1; r < reps; r++) {
        struct bcast s = {.gate = mk(0, 0), .ready = mk(0, 1), .wg = chan_wg_new(), .n = n};
        if (!s.wg)
            bench_die("chan_wg_new", -ENOMEM);
        atomic_init(&s.counted, 0);
        atomic_init(&s.bad, 0);
        int rc = chan_wg_add(s.wg, (int)n);
        if (rc != 0)
            bench_die("chan_wg_add", rc);
        for (long i = 0; i < n; i++)
            go(bcast_body, &s, 64 * 1024);
        if ((rc = chan_recv(s.ready, NULL)) != 0)
            bench_die("chan_recv(ready)", rc);
        /* The last bodies counted themselves just before blocking. */
        bench_sleep(0.02);
        double t0 = bench_now();
        if ((rc = chan_close(s.gate)) != 0)
            bench_die("chan_close", rc);
        if ((rc = chan_wg_wait(s.wg)) != 0)
            bench_die("chan_wg_wait", rc);
        double t = bench_now() - t0;
        wait_all();
        bench_check(atomic_load(&s.bad) == 0, "bcast", "a receive did not see the close");
        if (r >= 0)
            vals[r] = t * 1e9 / (double)n;
        chan_wg_free(s.wg);
        chan_release(s.gate);
        chan_release(s.ready);
    }
    bench_report(runner->impl, "bcast", "ns/body", vals, reps, n);
    free(vals);
}

/* ---------------------------------------------------------------- table */

/* ---- spawn: one body starts bodies that only count themselves, in
 * batches it waits for with a wait group (Go: `go f()` in a goroutine,
 * and a sync.WaitGroup) ---- */

enum { SPAWN_BATCH = 64 };

struct spawner {
    long n;
    chan_wg_t *wg;
    atomic_long ran;
};

static void spawn_child(void *p)
{
    struct spawner *s = p;
    atomic_fetch_add_explicit(&s->ran, 1, memory_order_relaxed);
    int rc = chan_wg_done(s->wg);
    if (rc != 0)
        bench_die("chan_wg_done", rc);
}

static void spawner_body(void *p)
{
    struct spawner *s = p;
    for (long i = 0; i < s->n; i += SPAWN_BATCH) {
        int k = s->n - i < SPAWN_BATCH ? (int)(s->n - i) : SPAWN_BATCH;
        int rc = chan_wg_add(s->wg, k);
        for (int j = 0; j < k && rc == 0; j++)
            rc = runner->go_inner(runner, spawn_child, s);
        if (rc != 0)
            bench_die("starting a body from a body", rc);
        if ((rc = chan_wg_wait(s->wg)) != 0)
            bench_die("chan_wg_wait", rc);
    }
}

static double run_spawn(void *ctx, long n)
{
    (void)ctx;
    struct spawner s = {n, chan_wg_new(), 0};
    if (!s.wg)
        bench_die("chan_wg_new", -ENOMEM);
    double t0 = bench_now();
    go(spawner_body, &s, 0);
    wait_all();
    double t = bench_now() - t0;
    bench_check(atomic_load(&s.ran) == n, "spawn", "bodies run");
    chan_wg_free(s.wg);
    return t;
}

/* ---- yield: two bodies calling chan_yield() (Go: runtime.Gosched()) ---- */

struct yielder {
    long n;
};

static void yield_body(void *p)
{
    struct yielder *y = p;
    for (long i = 0; i < y->n; i++)
        chan_yield();
}

static double run_yield(void *ctx, long n)
{
    (void)ctx;
    struct yielder y = {n};
    double t0 = bench_now();
    go(yield_body, &y, 0);
    go(yield_body, &y, 0);
    wait_all();
    return bench_now() - t0;
}

static void wl_w1(void) { bench_measure(runner->impl, "w1", "ns/rt", run_w1, NULL, 1024, opts); }
static void wl_w2c1024(void) { bench_measure(runner->impl, "w2c1024", "ns/msg", run_w2c1024, NULL, 1024, opts); }
static void wl_w2c1(void) { bench_measure(runner->impl, "w2c1", "ns/msg", run_w2c1, NULL, 1024, opts); }
static void wl_w3(void) { bench_measure(runner->impl, "w3", "ns/msg", run_w3, NULL, 1024, opts); }
static void wl_w4(void) { bench_measure(runner->impl, "w4", "ns/msg", run_w4, NULL, 1024, opts); }
static void wl_sel1(void) { wl_micro("sel1", "ns/op", sel_loop, 1, 1); }
static void wl_sel4(void) { wl_micro("sel4", "ns/op", sel_loop, 4, 1); }
static void wl_sel16(void) { wl_micro("sel16", "ns/op", sel_loop, 16, 1); }
static void wl_sel64(void) { wl_micro("sel64", "ns/op", sel_loop, 64, 1); }
static void wl_sel1000(void) { wl_selbig("sel1000", 1000); }
static void wl_sel100000(void) { wl_selbig("sel100000", 100000); }
static void wl_sendrecv(void) { wl_micro("sendrecv", "ns/op", sendrecv_loop, 1, 1); }
static void wl_trypair(void) { wl_micro("try-pair", "ns/op", trypair_loop, 1, 1); }
static void wl_tryrecv_empty(void) { wl_micro("tryrecv-empty", "ns/op", tryrecv_empty_loop, 1, 1); }
static void wl_trysend_full(void) { wl_micro("trysend-full", "ns/op", trysend_full_loop, 1, 1); }
static void wl_spawn(void) { bench_measure(runner->impl, "spawn", "ns/body", run_spawn, NULL, 1024, opts); }
static void wl_yield(void) { bench_measure(runner->impl, "yield", "ns/yield", run_yield, NULL, 1024, opts); }
static void wl_fanin(const char *wl, int np)
{
    struct fanin_cfg cfg = {wl, np};
    bench_measure(runner->impl, wl, "ns/msg", run_fanin, &cfg, 4L * np, opts);
}
static void wl_fanin1000(void) { wl_fanin("fanin1000", 1000); }
static void wl_fanin64(void) { wl_fanin("fanin64", 64); }
static void wl_make(void) { wl_micro("make", "ns/op", make_loop, 0, 0); }
static void wl_make1024(void) { wl_micro("make1024", "ns/op", make_loop, 0, 1024); }

static const struct {
    const char *name;
    void (*fn)(void);
} table[] = {
    {"w1", wl_w1},
    {"w2c1024", wl_w2c1024},
    {"w2c1", wl_w2c1},
    {"w3", wl_w3},
    {"w4", wl_w4},
    {"w5", wl_w5},
    {"spawn", wl_spawn},
    {"yield", wl_yield},
    {"sel1", wl_sel1},
    {"sel4", wl_sel4},
    {"sel16", wl_sel16},
    {"sel64", wl_sel64},
    {"sel1000", wl_sel1000},
    {"sel100000", wl_sel100000},
    {"sendrecv", wl_sendrecv},
    {"try-pair", wl_trypair},
    {"tryrecv-empty", wl_tryrecv_empty},
    {"trysend-full", wl_trysend_full},
    {"make", wl_make},
    {"make1024", wl_make1024},
    {"fanin1000", wl_fanin1000},
    {"fanin64", wl_fanin64},
    {"bcast", wl_bcast},
    {"idle", wl_idle},
};

const char *bench_workload_name(size_t i)
{
    return i < sizeof table / sizeof table[0] ? table[i].name : NULL;
}

int bench_workload_run(const char *name, struct bench_runner *r,
                       const struct bench_opts *o)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(name, table[i].name) == 0) {
            runner = r;
            opts = o;
            table[i].fn();
            return 0;
        }
    }
    return -ENOENT;
}

/*
 * select.c - tests of chan_select: each kind of case when ready, disabled
 * cases, one channel in several cases, a select that sends and receives on
 * one unbuffered channel (it must never pair with itself), fairness among
 * ready cases, timeouts, wakeups by peers and by close, what is written to
 * the cases, empty selects and bad input.
 *
 * As in chan.c, a helper thread posts a semaphore right before its select
 * and the test waits until that thread is asleep (test_wait_blocked) before
 * acting; sleeps appear only in the timeout tests.
 */
#include "util.h"
#include <sched.h>

TestSuite(select, .timeout = TEST_TIMEOUT_S);

#define SENTINEL (-12345)
#define RESULT_UNTOUCHED 777
#define SLACK_NS (2000 * TEST_MS)

static void check_on_time(int64_t elapsed, int64_t asked)
{
    cr_assert_geq(elapsed, asked, "returned after %lld ns, asked for %lld",
                  (long long)elapsed, (long long)asked);
    cr_assert_lt(elapsed, asked + SLACK_NS, "returned after %lld ns, asked %lld",
                 (long long)elapsed, (long long)asked);
}

/* Marks every result so that a test can see which ones were written. */
static void mark_results(chan_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cases[i].result = RESULT_UNTOUCHED;
}

static void check_only_result(const chan_case_t *cases, size_t n, int chosen,
                              int result)
{
    for (size_t i = 0; i < n; i++) {
        if ((int)i == chosen)
            cr_assert_eq(cases[i].result, result, "case %zu: result %d", i,
                         cases[i].result);
        else
            cr_assert_eq(cases[i].result, RESULT_UNTOUCHED,
                         "case %zu was not chosen but its result was written",
                         i);
    }
}

/* ------------------------------------------------------------------ */
/* A helper thread blocked in one select.                             */

enum { MAXC = 40 };

struct sel_op {
    chan_case_t cases[MAXC];
    int vals[MAXC];    /* elems of the cases: values to send, or slots */
    size_t n;
    int64_t timeout;
    int rc;
    int64_t elapsed;
    struct test_call call;
};

static void sel_call(void *arg)
{
    struct sel_op *o = arg;
    int64_t t0 = test_now_ns();
    o->rc = chan_select(o->cases, o->n, o->timeout);
    o->elapsed = test_now_ns() - t0;
}

/* Prepares o: n cases, none yet filled; vals all SENTINEL, results marked. */
static void sel_prepare(struct sel_op *o, size_t n, int64_t timeout)
{
    memset(o, 0, sizeof *o);
    o->n = n;
    o->timeout = timeout;
    for (size_t i = 0; i < MAXC; i++)
        o->vals[i] = SENTINEL;
}

static void sel_case(struct sel_op *o, size_t i, chan_t *ch, enum chan_op op,
                     int send_value)
{
    if (op == CHAN_SEND)
        o->vals[i] = send_value;
    o->cases[i] = (chan_case_t){ .ch = ch, .op = op, .elem = &o->vals[i] };
}

static void sel_start_blocked(struct sel_op *o)
{
    mark_results(o->cases, o->n);
    o->rc = SENTINEL;
    test_start_blocked(&o->call, sel_call, o);
}

static int sel_join(struct sel_op *o)
{
    test_join(&o->call);
    return o->rc;
}

/* ------------------------------------------------------------------ */
/* Ready cases                                                        */

Test(select, recv_case_ready)
{
    chan_t *a = chan_make(sizeof(int), 1), *b = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_send(b, &(int){ 42 }), 0);
    int va = SENTINEL, vb = SENTINEL;
    chan_case_t cases[] = { CHAN_RECV_CASE(a, &va), CHAN_RECV_CASE(b, &vb) };
    mark_results(cases, 2);
    cr_assert_eq(chan_select(cases, 2, 0), 1);
    check_only_result(cases, 2, 1, 0);
    cr_assert_eq(vb, 42);
    cr_assert_eq(va, SENTINEL);
    cr_assert_eq(chan_len(b), 0);
    chan_release(a);
    chan_release(b);
}

Test(select, send_case_ready)
{
    chan_t *full = chan_make(sizeof(int), 1), *room = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_send(full, &(int){ 1 }), 0);
    int x = 10, y = 20;
    chan_case_t cases[] = { CHAN_SEND_CASE(full, &x), CHAN_SEND_CASE(room, &y) };
    mark_results(cases, 2);
    cr_assert_eq(chan_select(cases, 2, CHAN_FOREVER), 1);
    check_only_result(cases, 2, 1, 0);
    int v;
    cr_assert_eq(chan_recv(room, &v), 0);
    cr_assert_eq(v, 20);
    cr_assert_eq(chan_len(full), 1);
    cr_assert_eq(chan_recv(full, &v), 0);
    cr_assert_eq(v, 1, "the full channel's value changed");
    chan_release(full);
    chan_release(room);
}

Test(select, recv_case_with_null_elem_discards)
{
    chan_t *c = chan_make(sizeof(int), 2);
    cr_assert_eq(chan_send(c, &(int){ 1 }), 0);
    cr_assert_eq(chan_send(c, &(int){ 2 }), 0);
    chan_case_t cases[] = { CHAN_RECV_CASE(c, NULL) };
    cr_assert_eq(chan_select(cases, 1, 0), 0);
    cr_assert_eq(cases[0].result, 0);
    int v;
    cr_assert_eq(chan_recv(c, &v), 0);
    cr_assert_eq(v, 2);
    chan_release(c);
}

Test(select, send_to_unbuffered_with_waiting_receiver)
{
    chan_t *c = chan_make(sizeof(int), 0), *other = chan_make(sizeof(int), 0);
    struct sel_op r;
    sel_prepare(&r, 1, CHAN_FOREVER);
    sel_case(&r, 0, c, CHAN_RECV, 0);
    sel_start_blocked(&r);
    int x = 5, y = 6;
    chan_case_t cases[] = { CHAN_SEND_CASE(other, &y), CHAN_SEND_CASE(c, &x) };
    mark_results(cases, 2);
    cr_assert_eq(chan_select(cases, 2, 0), 1);
    check_only_result(cases, 2, 1, 0);
    cr_assert_eq(sel_join(&r), 0);
    cr_assert_eq(r.cases[0].result, 0);
    cr_assert_eq(r.vals[0], 5);
    chan_release(c);
    chan_release(other);
}

Test(select, recv_from_closed_is_ready_with_epipe)
{
    chan_t *open = chan_make(sizeof(int), 1), *closed = chan_make(sizeof(int), 2);
    cr_assert_eq(chan_send(closed, &(int){ 3 }), 0);
    cr_assert_eq(chan_close(closed), 0);
    int vo = SENTINEL, vc = SENTINEL;
    chan_case_t cases[] = { CHAN_RECV_CASE(open, &vo),
                            CHAN_RECV_CASE(closed, &vc) };
    /* Buffered values first, with result 0. */
    mark_results(cases, 2);
    cr_assert_eq(chan_select(cases, 2, 0), 1);
    check_only_result(cases, 2, 1, 0);
    cr_assert_eq(vc, 3);
    /* Then the drained channel is ready with -EPIPE, elem untouched. */
    vc = SENTINEL;
    for (int t = 0; t < 3; t++) {
        mark_results(cases, 2);
        int64_t timeout = t == 0 ? 0 : t == 1 ? 10 * TEST_MS : CHAN_FOREVER;
        cr_assert_eq(chan_select(cases, 2, timeout), 1);
        check_only_result(cases, 2, 1, -EPIPE);
        cr_assert_eq(vc, SENTINEL);
        cr_assert_eq(vo, SENTINEL);
    }
    chan_release(open);
    chan_release(closed);
}

Test(select, send_to_closed_is_ready_with_epipe)
{
    chan_t *full = chan_make(sizeof(int), 1), *closed = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_send(full, &(int){ 1 }), 0);
    cr_assert_eq(chan_close(closed), 0);
    int x = 7;
    chan_case_t cases[] = { CHAN_SEND_CASE(full, &x),
                            CHAN_SEND_CASE(closed, &x) };
    mark_results(cases, 2);
    cr_assert_eq(chan_select(cases, 2, CHAN_FOREVER), 1);
    check_only_result(cases, 2, 1, -EPIPE);
    cr_assert_eq(chan_len(closed), 0, "a send to a closed channel delivered");
    cr_assert_eq(chan_len(full), 1);
    int v = SENTINEL;
    cr_assert_eq(chan_tryrecv(closed, &v), -EPIPE);
    cr_assert_eq(v, SENTINEL);
    chan_release(full);
    chan_release(closed);
}

Test(select, disabled_cases_never_fire)
{
    chan_t *c = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_send(c, &(int){ 9 }), 0);
    int v = SENTINEL, x = 1;
    chan_case_t cases[] = {
        CHAN_RECV_CASE(NULL, &v), CHAN_SEND_CASE(NULL, &x),
        CHAN_RECV_CASE(c, &v),    CHAN_SEND_CASE(NULL, NULL),
    };
    for (int i = 0; i < 20; i++) {
        mark_results(cases, 4);
        cr_assert_eq(chan_select(cases, 4, 0), 2);
        check_only_result(cases, 4, 2, 0);
        cr_assert_eq(v, 9);
        cr_assert_eq(chan_send(c, &(int){ 9 }), 0);
    }
    /* Only disabled cases left after draining c: nothing is ready. */
    cases[2].ch = NULL;
    mark_results(cases, 4);
    cr_assert_eq(chan_select(cases, 4, 0), -EAGAIN);
    check_only_result(cases, 4, -1, 0);
    cr_assert_eq(chan_len(c), 1);
    chan_release(c);
}

Test(select, same_channel_in_several_cases)
{
    chan_t *c = chan_make(sizeof(int), 1);
    int v1 = SENTINEL, v2 = SENTINEL, x = 4;
    /* Two receives on one channel with one value: exactly one fires. */
    cr_assert_eq(chan_send(c, &(int){ 8 }), 0);
    chan_case_t r2[] = { CHAN_RECV_CASE(c, &v1), CHAN_RECV_CASE(c, &v2) };
    mark_results(r2, 2);
    int i = chan_select(r2, 2, 0);
    cr_assert(i == 0 || i == 1, "select returned %d", i);
    check_only_result(r2, 2, i, 0);
    cr_assert_eq(i == 0 ? v1 : v2, 8);
    cr_assert_eq(i == 0 ? v2 : v1, SENTINEL);
    cr_assert_eq(chan_len(c), 0);

    /* Send and receive on one buffered channel: the empty buffer makes
     * the send the only ready case, the full one the receive. */
    v1 = SENTINEL;
    chan_case_t sr[] = { CHAN_SEND_CASE(c, &x), CHAN_RECV_CASE(c, &v1) };
    mark_results(sr, 2);
    cr_assert_eq(chan_select(sr, 2, 0), 0);
    check_only_result(sr, 2, 0, 0);
    cr_assert_eq(chan_len(c), 1);
    mark_results(sr, 2);
    cr_assert_eq(chan_select(sr, 2, 0), 1);
    check_only_result(sr, 2, 1, 0);
    cr_assert_eq(v1, 4);

    /* A blocked select with the channel in several cases, woken once. */
    struct sel_op o;
    sel_prepare(&o, 3, CHAN_FOREVER);
    sel_case(&o, 0, c, CHAN_RECV, 0);
    sel_case(&o, 1, c, CHAN_RECV, 0);
    sel_case(&o, 2, c, CHAN_RECV, 0);
    sel_start_blocked(&o);
    cr_assert_eq(chan_send(c, &(int){ 15 }), 0);
    int k = sel_join(&o);
    cr_assert(k >= 0 && k < 3, "select returned %d", k);
    check_only_result(o.cases, 3, k, 0);
    for (int j = 0; j < 3; j++)
        cr_assert_eq(o.vals[j], j == k ? 15 : SENTINEL);
    cr_assert_eq(chan_len(c), 0);
    chan_release(c);
}

/* ------------------------------------------------------------------ */
/* A select never pairs with itself                                   */

Test(select, self_send_recv_unbuffered_times_out)
{
    chan_t *c = chan_make(sizeof(int), 0);
    int x = 1, v = SENTINEL;
    chan_case_t cases[] = { CHAN_SEND_CASE(c, &x), CHAN_RECV_CASE(c, &v) };
    mark_results(cases, 2);
    cr_assert_eq(chan_select(cases, 2, 0), -EAGAIN);
    int64_t t0 = test_now_ns();
    cr_assert_eq(chan_select(cases, 2, 30 * TEST_MS), -ETIMEDOUT);
    check_on_time(test_now_ns() - t0, 30 * TEST_MS);
    check_only_result(cases, 2, -1, 0);
    cr_assert_eq(v, SENTINEL, "the select received its own value");
    /* Nothing is left queued on the channel. */
    cr_assert_eq(chan_trysend(c, &x), -EAGAIN);
    cr_assert_eq(chan_tryrecv(c, &v), -EAGAIN);
    chan_release(c);
}

Test(select, self_send_recv_pairs_with_peers)
{
    chan_t *c = chan_make(sizeof(int), 0);
    /* A peer receiver takes the send case. */
    struct sel_op o;
    sel_prepare(&o, 2, CHAN_FOREVER);
    sel_case(&o, 0, c, CHAN_SEND, 71);
    sel_case(&o, 1, c, CHAN_RECV, 0);
    sel_start_blocked(&o);
    int v = SENTINEL;
    cr_assert_eq(chan_recv(c, &v), 0);
    cr_assert_eq(sel_join(&o), 0);
    check_only_result(o.cases, 2, 0, 0);
    cr_assert_eq(v, 71);
    cr_assert_eq(o.vals[1], SENTINEL);

    /* A peer sender feeds the receive case. */
    sel_prepare(&o, 2, CHAN_FOREVER);
    sel_case(&o, 0, c, CHAN_SEND, 71);
    sel_case(&o, 1, c, CHAN_RECV, 0);
    sel_start_blocked(&o);
    cr_assert_eq(chan_send(c, &(int){ 72 }), 0);
    cr_assert_eq(sel_join(&o), 1);
    check_only_result(o.cases, 2, 1, 0);
    cr_assert_eq(o.vals[1], 72);
    chan_release(c);
}

/* Two threads each loop over select { send c <- id; v = <-c }: every
 * completed select pairs with the other thread, never with itself. */
struct self_arg {
    chan_t *ch;
    int id;
    int iters;
    int self_pairs;   /* received its own id */
    int errors;       /* unexpected return codes */
    int sends, recvs;
};

static void *self_select_loop(void *arg)
{
    struct self_arg *a = arg;
    for (int i = 0; i < a->iters; i++) {
        int x = a->id, v = SENTINEL;
        chan_case_t cases[] = { CHAN_SEND_CASE(a->ch, &x),
                                CHAN_RECV_CASE(a->ch, &v) };
        int rc = chan_select(cases, 2, 30000 * TEST_MS);
        if (rc == 0 && cases[0].result == 0) {
            a->sends++;
        } else if (rc == 1 && cases[1].result == 0) {
            a->recvs++;
            if (v == a->id)
                a->self_pairs++;
            else if (v != 1 - a->id)
                a->errors++;
        } else {
            a->errors++;
            break;
        }
    }
    return NULL;
}

Test(select, self_select_stress_never_pairs_with_itself)
{
    chan_t *c = chan_make(sizeof(int), 0);
    int iters = (int)test_scaled(2000, 10);
    struct self_arg a[2] = { { c, 0, iters, 0, 0, 0, 0 },
                             { c, 1, iters, 0, 0, 0, 0 } };
    pthread_t t0 = test_thread_start(self_select_loop, &a[0]);
    pthread_t t1 = test_thread_start(self_select_loop, &a[1]);
    test_thread_join(t0);
    test_thread_join(t1);
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(a[k].self_pairs, 0, "thread %d paired with itself", k);
        cr_assert_eq(a[k].errors, 0, "thread %d saw bad results", k);
    }
    cr_assert_eq(a[0].sends, a[1].recvs);
    cr_assert_eq(a[1].sends, a[0].recvs);
    chan_release(c);
}

/* ------------------------------------------------------------------ */
/* Fairness                                                           */

Test(select, ready_recv_cases_chosen_uniformly)
{
    enum { K = 3 };
    int n = (int)test_scaled(3000, 1500);
    chan_t *c[K];
    int v[K];
    chan_case_t cases[K];
    for (int k = 0; k < K; k++) {
        c[k] = chan_make(sizeof(int), 1);
        cr_assert_eq(chan_send(c[k], &k), 0);
        cases[k] = CHAN_RECV_CASE(c[k], &v[k]);
    }
    long count[K] = { 0 };
    for (int i = 0; i < n; i++) {
        int k = chan_select(cases, K, 0);
        cr_assert(k >= 0 && k < K, "select returned %d", k);
        cr_assert_eq(v[k], k);
        count[k]++;
        cr_assert_eq(chan_send(c[k], &k), 0); /* make it ready again */
    }
    /* Expected n/3 each, standard deviation about sqrt(n)/2.1: a band of
     * +-40% of the mean is more than 10 deviations wide at n = 3000. */
    for (int k = 0; k < K; k++) {
        cr_assert(count[k] > n / K * 6 / 10 && count[k] < n / K * 14 / 10,
                  "case %d chosen %ld times out of %d", k, count[k], n);
        chan_release(c[k]);
    }
}

Test(select, ready_send_and_recv_cases_chosen_uniformly)
{
    int n = (int)test_scaled(2000, 1000);
    chan_t *in = chan_make(sizeof(int), 1), *out = chan_make(sizeof(int), 1);
    chan_t *closed = chan_make(sizeof(int), 0);
    cr_assert_eq(chan_close(closed), 0);
    int x = 3, v;
    chan_case_t cases[] = { CHAN_RECV_CASE(in, &v), CHAN_SEND_CASE(out, &x),
                            CHAN_RECV_CASE(closed, &v),
                            CHAN_SEND_CASE(closed, &x) };
    long count[4] = { 0 };
    cr_assert_eq(chan_send(in, &x), 0);
    for (int i = 0; i < n; i++) {
        int k = chan_select(cases, 4, 0);
        cr_assert(k >= 0 && k < 4, "select returned %d", k);
        cr_assert_eq(cases[k].result, k >= 2 ? -EPIPE : 0);
        count[k]++;
        if (k == 0)
            cr_assert_eq(chan_send(in, &x), 0);
        if (k == 1)
            cr_assert_eq(chan_recv(out, NULL), 0);
    }
    for (int k = 0; k < 4; k++)
        cr_assert(count[k] > n / 4 * 6 / 10 && count[k] < n / 4 * 14 / 10,
                  "case %d chosen %ld times out of %d", k, count[k], n);
    chan_release(in);
    chan_release(out);
    chan_release(closed);
}

/* ------------------------------------------------------------------ */
/* Several blocked cases on one channel                               */

/*
 * Two cases of one blocked select on one channel: a peer that arrives
 * takes the oldest waiter in the channel's queue, so the order in which the
 * select queued the two decides which fires.  That order must be random,
 * as the choice among ready cases is (Go's TestPseudoRandomSend).
 *
 * Each case should fire in half of the rounds; the standard deviation is
 * about 16 at 1000 rounds, so SAME_MIN is more than 20 deviations below
 * the mean, while a select that queues its cases in case order gives the
 * second one none.
 */
enum { SAME_ROUNDS = 1000, SAME_MIN = 150 };

/* A thread that runs one select over two cases on ch per round. */
struct same_thread {
    chan_t *ch;
    enum chan_op op;    /* of both cases */
    int rounds;
    sem_t go, done;     /* a round: the test posts go, the selector done */
    int rc;             /* of this round's select */
    int vals[2];        /* the cases' elems */
    int results[2];     /* the cases' results */
};

static void *same_thread_main(void *arg)
{
    struct same_thread *s = arg;
    for (int r = 0; r < s->rounds; r++) {
        test_sem_wait(&s->go);
        chan_case_t cases[2];
        for (int k = 0; k < 2; k++) {
            s->vals[k] = s->op == CHAN_SEND ? 2 * r + k : SENTINEL;
            cases[k] = (chan_case_t){ .ch = s->ch, .op = s->op,
                                      .elem = &s->vals[k] };
        }
        mark_results(cases, 2);
        s->rc = chan_select(cases, 2, CHAN_FOREVER);
        s->results[0] = cases[0].result;
        s->results[1] = cases[1].result;
        test_sem_post(&s->done);
    }
    return NULL;
}

/*
 * The peer's side on unbuffered ch: a try, repeated until it succeeds,
 * which it does only once a waiter is queued.  A select queues all of its
 * waiters under its channel locks, so when the try succeeds the select is
 * blocked with both of its waiters queued.  Gives up after 10 s.
 */
static int try_until_waiter(chan_t *ch, enum chan_op peer_op, int *v)
{
    int64_t give_up = test_now_ns() + 10000 * TEST_MS;
    int rc;
    while ((rc = peer_op == CHAN_SEND ? chan_trysend(ch, v)
                                      : chan_tryrecv(ch, v)) == -EAGAIN) {
        cr_assert(test_now_ns() < give_up, "the select never blocked");
        sched_yield();
    }
    return rc;
}

static void same_chan_threads(enum chan_op op)
{
    struct same_thread s = { .ch = chan_make(sizeof(int), 0), .op = op,
                             .rounds = SAME_ROUNDS };
    test_sem_init(&s.go, 0);
    test_sem_init(&s.done, 0);
    pthread_t th = test_thread_start(same_thread_main, &s);
    long count[2] = { 0, 0 };
    for (int r = 0; r < s.rounds; r++) {
        test_sem_post(&s.go);
        int v = op == CHAN_RECV ? r : SENTINEL;
        cr_assert_eq(try_until_waiter(s.ch, op == CHAN_RECV ? CHAN_SEND
                                                            : CHAN_RECV, &v),
                     0);
        test_sem_wait(&s.done);
        int k = s.rc;
        cr_assert(k == 0 || k == 1, "round %d: select returned %d", r, k);
        cr_assert_eq(s.results[k], 0);
        cr_assert_eq(s.results[1 - k], RESULT_UNTOUCHED);
        if (op == CHAN_RECV) {
            cr_assert_eq(s.vals[k], r);
            cr_assert_eq(s.vals[1 - k], SENTINEL);
        } else {
            cr_assert_eq(v, 2 * r + k, "round %d: case %d fired, %d arrived",
                         r, k, v);
        }
        count[k]++;
    }
    test_thread_join(th);
    for (int k = 0; k < 2; k++)
        cr_assert_geq(count[k], SAME_MIN, "case %d fired %ld times of %d", k,
                      count[k], s.rounds);
    test_sem_destroy(&s.go);
    test_sem_destroy(&s.done);
    chan_release(s.ch);
}

Test(select, blocked_recv_cases_on_one_channel_fire_at_random)
{
    same_chan_threads(CHAN_RECV);
}

Test(select, blocked_send_cases_on_one_channel_fire_at_random)
{
    same_chan_threads(CHAN_SEND);
}

/*
 * The same with tasks on a scheduler of one worker, which also covers
 * buffered channels, where no try can tell that a waiter is queued: a
 * task runs until it blocks, so the peer task, started by the selecting
 * task just before its select, runs only once the select has queued its
 * waiters and parked, and it runs to its end before the selecting task
 * resumes.
 */
struct same_task {
    chan_t *ch;
    size_t cap;
    enum chan_op op;    /* of the select's two cases */
    int rounds;
    int *sent;          /* send cases: the values in channel order */
    int peer_rc, peer_val;
    long count[2];
    int bad_round;      /* the round that went wrong, or -1 */
    const char *what;   /* what went wrong */
};

static void same_task_peer(void *arg)
{
    struct same_task *s = arg;
    s->peer_rc = s->op == CHAN_RECV ? chan_send(s->ch, &s->peer_val)
                                    : chan_recv(s->ch, &s->peer_val);
}

/* One round; NULL if it went right, else what went wrong. */
static const char *same_task_round(struct same_task *s, int r)
{
    int vals[2];
    chan_case_t cases[2];
    for (int k = 0; k < 2; k++) {
        vals[k] = s->op == CHAN_SEND ? 2 * r + k : SENTINEL;
        cases[k] = (chan_case_t){ .ch = s->ch, .op = s->op, .elem = &vals[k] };
    }
    mark_results(cases, 2);
    s->peer_rc = SENTINEL;
    s->peer_val = s->op == CHAN_RECV ? r : SENTINEL;
    if (chan_go(NULL, same_task_peer, s) != 0)
        return "chan_go failed";
    int k = chan_select(cases, 2, CHAN_FOREVER);
    if (k != 0 && k != 1)
        return "bad return code";
    if (cases[k].result != 0 || cases[1 - k].result != RESULT_UNTOUCHED)
        return "bad results";
    if (s->peer_rc != 0)
        return "the peer failed";
    if (s->op == CHAN_RECV) {
        if (vals[k] != r || vals[1 - k] != SENTINEL)
            return "wrong value received";
    } else {
        /* The peer got the oldest value; the chosen one went in last. */
        s->sent[s->cap + (size_t)r] = vals[k];
        if (s->peer_val != s->sent[r])
            return "wrong value sent";
    }
    s->count[k]++;
    return NULL;
}

static void same_task_driver(void *arg)
{
    struct same_task *s = arg;
    for (int r = 0; r < s->rounds; r++) {
        if ((s->what = same_task_round(s, r)) != NULL) {
            s->bad_round = r;
            return;
        }
    }
}

static void same_chan_tasks(enum chan_op op)
{
    static const size_t caps[] = { 0, 1, 4 };
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        struct same_task s = { .ch = chan_make(sizeof(int), caps[c]),
                               .cap = caps[c], .op = op,
                               .rounds = SAME_ROUNDS, .bad_round = -1 };
        cr_assert_not_null(s.ch);
        s.sent = calloc(s.cap + (size_t)s.rounds, sizeof *s.sent);
        cr_assert_not_null(s.sent);
        /* Send cases block on a full channel. */
        for (size_t i = 0; op == CHAN_SEND && i < s.cap; i++) {
            s.sent[i] = -1 - (int)i;
            cr_assert_eq(chan_send(s.ch, &s.sent[i]), 0);
        }
        chan_sched_opts_t o = { .threads = 1, .stack_size = 0 };
        chan_sched_t *sched = chan_sched_new(&o);
        cr_assert_not_null(sched);
        cr_assert_eq(chan_go(sched, same_task_driver, &s), 0);
        cr_assert_eq(chan_sched_wait(sched), 0);
        chan_sched_free(sched);
        cr_assert_eq(s.bad_round, -1, "capacity %zu, round %d: %s", s.cap,
                     s.bad_round, s.what);
        for (int k = 0; k < 2; k++)
            cr_assert_geq(s.count[k], SAME_MIN,
                          "capacity %zu: case %d fired %ld times of %d", s.cap,
                          k, s.count[k], s.rounds);
        /* What is left are the last values sent, in order. */
        cr_assert_eq(chan_len(s.ch), op == CHAN_SEND ? s.cap : 0);
        for (size_t i = 0; op == CHAN_SEND && i < s.cap; i++) {
            int v = SENTINEL;
            cr_assert_eq(chan_recv(s.ch, &v), 0);
            cr_assert_eq(v, s.sent[(size_t)s.rounds + i]);
        }
        free(s.sent);
        chan_release(s.ch);
    }
}

Test(select, blocked_recv_cases_on_one_channel_fire_at_random_tasks)
{
    same_chan_tasks(CHAN_RECV);
}

Test(select, blocked_send_cases_on_one_channel_fire_at_random_tasks)
{
    same_chan_tasks(CHAN_SEND);
}

/* ------------------------------------------------------------------ */
/* Timeouts and wakeups                                               */

Test(select, timeout_zero_is_eagain)
{
    chan_t *a = chan_make(sizeof(int), 0), *b = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_send(b, &(int){ 1 }), 0);
    int v = SENTINEL, x = 2;
    chan_case_t cases[] = { CHAN_RECV_CASE(a, &v), CHAN_SEND_CASE(a, &x),
                            CHAN_SEND_CASE(b, &x) };
    mark_results(cases, 3);
    cr_assert_eq(chan_select(cases, 3, 0), -EAGAIN);
    check_only_result(cases, 3, -1, 0);
    cr_assert_eq(v, SENTINEL);
    cr_assert_eq(chan_len(b), 1);
    chan_release(a);
    chan_release(b);
}

Test(select, positive_timeout_is_etimedout)
{
    chan_t *a = chan_make(sizeof(int), 0), *b = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_send(b, &(int){ 1 }), 0);
    int v = SENTINEL, x = 2;
    chan_case_t cases[] = { CHAN_RECV_CASE(a, &v), CHAN_SEND_CASE(b, &x) };
    static const int64_t asks[] = { 1, 1000, 50 * TEST_MS };
    for (int i = 0; i < 3; i++) {
        mark_results(cases, 2);
        int64_t t0 = test_now_ns();
        cr_assert_eq(chan_select(cases, 2, asks[i]), -ETIMEDOUT);
        check_on_time(test_now_ns() - t0, asks[i]);
        check_only_result(cases, 2, -1, 0);
        cr_assert_eq(v, SENTINEL);
    }
    /* The timed-out select left nothing queued. */
    cr_assert_eq(chan_trysend(a, &x), -EAGAIN);
    cr_assert_eq(chan_len(b), 1);
    chan_release(a);
    chan_release(b);
}

Test(select, forever_woken_by_peer_send)
{
    chan_t *c[3];
    for (int k = 0; k < 3; k++)
        c[k] = chan_make(sizeof(int), k); /* capacities 0, 1, 2 */
    for (int target = 0; target < 3; target++) {
        struct sel_op o;
        sel_prepare(&o, 3, CHAN_FOREVER);
        for (int k = 0; k < 3; k++)
            sel_case(&o, k, c[k], CHAN_RECV, 0);
        sel_start_blocked(&o);
        cr_assert(test_stays_zero(&o.call.done, 20 * TEST_MS));
        cr_assert_eq(chan_send(c[target], &(int){ 100 + target }), 0);
        cr_assert_eq(sel_join(&o), target);
        check_only_result(o.cases, 3, target, 0);
        for (int k = 0; k < 3; k++)
            cr_assert_eq(o.vals[k], k == target ? 100 + target : SENTINEL);
        for (int k = 0; k < 3; k++)
            cr_assert_eq(chan_tryrecv(c[k], NULL), -EAGAIN);
    }
    for (int k = 0; k < 3; k++)
        chan_release(c[k]);
}

Test(select, forever_woken_by_peer_recv)
{
    chan_t *u = chan_make(sizeof(int), 0), *f = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_send(f, &(int){ 50 }), 0);
    for (int target = 0; target < 2; target++) {
        struct sel_op o;
        sel_prepare(&o, 2, CHAN_FOREVER);
        sel_case(&o, 0, u, CHAN_SEND, 10);
        sel_case(&o, 1, f, CHAN_SEND, 11);
        sel_start_blocked(&o);
        int v;
        cr_assert_eq(chan_recv(target ? f : u, &v), 0);
        cr_assert_eq(v, target ? 50 : 10);
        cr_assert_eq(sel_join(&o), target);
        check_only_result(o.cases, 2, target, 0);
    }
    /* f now holds the select's 11; u was never sent to again. */
    int v;
    cr_assert_eq(chan_recv(f, &v), 0);
    cr_assert_eq(v, 11);
    cr_assert_eq(chan_tryrecv(u, &v), -EAGAIN);
    chan_release(u);
    chan_release(f);
}

Test(select, timed_select_woken_before_timeout)
{
    chan_t *c = chan_make(sizeof(int), 0);
    struct sel_op o;
    sel_prepare(&o, 1, 60000 * TEST_MS);
    sel_case(&o, 0, c, CHAN_RECV, 0);
    sel_start_blocked(&o);
    cr_assert_eq(chan_send(c, &(int){ 3 }), 0);
    cr_assert_eq(sel_join(&o), 0);
    cr_assert_eq(o.vals[0], 3);
    cr_assert_lt(o.elapsed, 30000 * TEST_MS);
    chan_release(c);
}

Test(select, close_wakes_blocked_select_on_the_right_case)
{
    for (int target = 0; target < 3; target++) {
        chan_t *c[3] = { chan_make(sizeof(int), 0), chan_make(sizeof(int), 2),
                         chan_make(sizeof(int), 1) };
        cr_assert_eq(chan_send(c[2], &(int){ 1 }), 0); /* full */
        struct sel_op o;
        sel_prepare(&o, 3, CHAN_FOREVER);
        sel_case(&o, 0, c[0], CHAN_RECV, 0);
        sel_case(&o, 1, c[1], CHAN_RECV, 0);
        sel_case(&o, 2, c[2], CHAN_SEND, 9);
        sel_start_blocked(&o);
        cr_assert_eq(chan_close(c[target]), 0);
        cr_assert_eq(sel_join(&o), target);
        check_only_result(o.cases, 3, target, -EPIPE);
        cr_assert_eq(o.vals[0], SENTINEL);
        cr_assert_eq(o.vals[1], SENTINEL);
        /* Nothing was performed on the other channels. */
        cr_assert_eq(chan_len(c[2]), 1);
        int v;
        cr_assert_eq(chan_recv(c[2], &v), 0);
        cr_assert_eq(v, 1);
        for (int k = 0; k < 2; k++)
            cr_assert_eq(chan_tryrecv(c[k], NULL), k == target ? -EPIPE : -EAGAIN);
        for (int k = 0; k < 3; k++)
            chan_release(c[k]);
    }
}

Test(select, close_wakes_timed_select)
{
    chan_t *c = chan_make(sizeof(int), 0);
    struct sel_op o;
    sel_prepare(&o, 2, 60000 * TEST_MS);
    sel_case(&o, 0, c, CHAN_RECV, 0);
    sel_case(&o, 1, c, CHAN_SEND, 4);
    sel_start_blocked(&o);
    cr_assert_eq(chan_close(c), 0);
    int k = sel_join(&o);
    cr_assert(k == 0 || k == 1, "select returned %d", k);
    check_only_result(o.cases, 2, k, -EPIPE);
    cr_assert_eq(o.vals[0], SENTINEL);
    chan_release(c);
}

/* More cases than fit the select's stack storage. */
Test(select, many_cases)
{
    enum { N = MAXC };
    chan_t *c[N];
    for (int k = 0; k < N; k++)
        c[k] = chan_make(sizeof(int), (size_t)(k % 3));
    /* One ready case among many. */
    cr_assert_eq(chan_send(c[29], &(int){ 29 }), 0);
    struct sel_op o;
    sel_prepare(&o, N, 0);
    for (int k = 0; k < N; k++)
        sel_case(&o, k, c[k], CHAN_RECV, 0);
    mark_results(o.cases, N);
    cr_assert_eq(chan_select(o.cases, N, 0), 29);
    check_only_result(o.cases, N, 29, 0);
    cr_assert_eq(o.vals[29], 29);
    /* Blocked on all of them, woken by one. */
    sel_prepare(&o, N, CHAN_FOREVER);
    for (int k = 0; k < N; k++)
        sel_case(&o, k, c[k], CHAN_RECV, 0);
    sel_start_blocked(&o);
    cr_assert_eq(chan_send(c[33], &(int){ 33 }), 0);
    cr_assert_eq(sel_join(&o), 33);
    check_only_result(o.cases, N, 33, 0);
    cr_assert_eq(o.vals[33], 33);
    for (int k = 0; k < N; k++) {
        cr_assert_eq(chan_tryrecv(c[k], NULL), -EAGAIN, "channel %d", k);
        chan_release(c[k]);
    }
}

/* ------------------------------------------------------------------ */
/* Very many cases                                                    */

/* Orders channels by address, highest first. */
static int by_address_down(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(chan_t *const *)a;
    uintptr_t y = (uintptr_t)*(chan_t *const *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* A thread blocked in one select over cases allocated by the test. */
struct big_sel {
    chan_case_t *cases;
    size_t n;
    int rc;
};

static void *big_sel_main(void *arg)
{
    struct big_sel *b = arg;
    b->rc = chan_select(b->cases, b->n, CHAN_FOREVER);
    return NULL;
}

/*
 * 400,000 receive cases on 100,000 channels, every channel in four cases
 * next to each other and the channels in descending address order, so
 * that the lock order is the reverse of the case order.  With a sort of
 * O(n log n) compares the whole test takes a fraction of a second
 * natively and a few seconds under ThreadSanitizer or emulation; a sort of
 * O(n^2), such as an insertion sort, needs some 8 * 10^10 compares for
 * this order, more than half a minute per select natively.  So the
 * suite's timeout, well above what the six selects below need but a few
 * times below what a quadratic sort takes for them, catches a quadratic
 * select without a clock in the test.  (Not a shorter timeout of its own:
 * a test with one makes Criterion's runner leak, which fails the
 * AddressSanitizer build.)
 */
enum { HUGE_CHANS = 100000, HUGE_REPEAT = 4, HUGE_TRIES = 5 };

Test(select, four_hundred_thousand_cases_in_reverse_lock_order)
{
    size_t n = (size_t)HUGE_REPEAT * HUGE_CHANS;
    chan_t **c = calloc(HUGE_CHANS, sizeof *c);
    chan_case_t *cases = calloc(n, sizeof *cases);
    int *vals = calloc(n, sizeof *vals);
    cr_assert(c && cases && vals);
    for (size_t i = 0; i < HUGE_CHANS; i++) {
        c[i] = chan_make(sizeof(int), i % 2 ? 0 : 2);
        cr_assert_not_null(c[i]);
    }
    qsort(c, HUGE_CHANS, sizeof *c, by_address_down);
    for (size_t i = 0; i < n; i++) {
        vals[i] = SENTINEL;
        cases[i] = CHAN_RECV_CASE(c[i / HUGE_REPEAT], &vals[i]);
    }
    /* Where the buffered and the unbuffered ones are now (an allocator
     * may keep the two sizes apart, so that they form two runs). */
    size_t *buffered = calloc(HUGE_CHANS, sizeof *buffered);
    size_t *unbuffered = calloc(HUGE_CHANS, sizeof *unbuffered);
    size_t nb = 0, nu = 0;
    cr_assert(buffered && unbuffered);
    for (size_t i = 0; i < HUGE_CHANS; i++) {
        if (chan_cap(c[i]))
            buffered[nb++] = i;
        else
            unbuffered[nu++] = i;
    }
    cr_assert(nb > 0 && nu > 0);

    /* One buffered channel ready: one of its cases fires. */
    for (int t = 0; t < HUGE_TRIES; t++) {
        size_t target = buffered[(size_t)(t + 1) * nb / (HUGE_TRIES + 1)];
        cr_assert_eq(chan_send(c[target], &(int){ t }), 0);
        mark_results(cases, n);
        int k = chan_select(cases, n, 0);
        cr_assert(k >= 0 && (size_t)k / HUGE_REPEAT == target,
                  "select returned %d, not a case of channel %zu", k,
                  target);
        check_only_result(cases, n, k, 0);
        cr_assert_eq(vals[k], t);
        vals[k] = SENTINEL;
        cr_assert_eq(chan_len(c[target]), 0);
    }

    /* Blocked on every case, woken by a sender on an unbuffered one. */
    size_t u = unbuffered[nu / 3];
    mark_results(cases, n);
    struct big_sel b = { cases, n, SENTINEL };
    pthread_t th = test_thread_start(big_sel_main, &b);
    int v = 77;
    cr_assert_eq(try_until_waiter(c[u], CHAN_SEND, &v), 0);
    test_thread_join(th);
    cr_assert(b.rc >= 0 && (size_t)b.rc / HUGE_REPEAT == u,
              "select returned %d, not a case of channel %zu", b.rc, u);
    check_only_result(cases, n, b.rc, 0);
    cr_assert_eq(vals[b.rc], 77);
    /* It left no waiter behind. */
    for (size_t i = 0; i < HUGE_CHANS; i++) {
        if (chan_cap(c[i]) == 0)
            cr_assert_eq(chan_trysend(c[i], &v), -EAGAIN, "channel %zu", i);
        chan_release(c[i]);
    }
    free(buffered);
    free(unbuffered);
    free(c);
    free(cases);
    free(vals);
}

/*
 * 10,000 cases on 97 channels, case i on channel map[i], a fixed
 * pseudo-random assignment, so that every channel is in about 100 cases
 * scattered over the array: the lock order must group them, lock each
 * channel once and unlock it once (a channel locked twice hangs, and the
 * suite's timeout fails the test).
 */
enum { REP_CASES = 10000, REP_CHANS = 97 };

struct rep {
    chan_t *ch[REP_CHANS];
    int map[REP_CASES];
    int vals[REP_CASES];
    chan_case_t cases[REP_CASES];
};

/* Makes the channels with the given capacities (cycled) and the cases. */
static struct rep *rep_make(const size_t *caps, size_t ncaps)
{
    struct rep *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    for (int k = 0; k < REP_CHANS; k++) {
        r->ch[k] = chan_make(sizeof(int), caps[(size_t)k % ncaps]);
        cr_assert_not_null(r->ch[k]);
    }
    uint32_t seed = 12345;
    for (int i = 0; i < REP_CASES; i++) {
        r->map[i] = (int)(test_rand(&seed) % REP_CHANS);
        r->vals[i] = SENTINEL;
        r->cases[i] = CHAN_RECV_CASE(r->ch[r->map[i]], &r->vals[i]);
    }
    return r;
}

static void rep_free(struct rep *r)
{
    for (int k = 0; k < REP_CHANS; k++)
        chan_release(r->ch[k]);
    free(r);
}

Test(select, ten_thousand_cases_on_few_channels_one_ready)
{
    static const size_t caps[] = { 0, 1, 2 };
    struct rep *r = rep_make(caps, 3);
    /* Nothing ready: a try, then a timed wait with every waiter queued. */
    cr_assert_eq(chan_select(r->cases, REP_CASES, 0), -EAGAIN);
    cr_assert_eq(chan_select(r->cases, REP_CASES, TEST_MS), -ETIMEDOUT);
    /* Each buffered channel ready in turn: one of its cases fires. */
    for (int t = 0; t < REP_CHANS; t++) {
        if (caps[t % 3] == 0)
            continue;
        cr_assert_eq(chan_send(r->ch[t], &t), 0);
        mark_results(r->cases, REP_CASES);
        int k = chan_select(r->cases, REP_CASES, t % 2 ? 0 : CHAN_FOREVER);
        cr_assert(k >= 0 && k < REP_CASES, "select returned %d", k);
        cr_assert_eq(r->map[k], t, "case %d of channel %d fired, not one of "
                     "channel %d", k, r->map[k], t);
        check_only_result(r->cases, REP_CASES, k, 0);
        cr_assert_eq(r->vals[k], t);
        r->vals[k] = SENTINEL;
        cr_assert_eq(chan_len(r->ch[t]), 0);
    }
    /* Blocked, woken by a sender on an unbuffered channel. */
    for (int t = 0; t < 12; t += 3) {
        struct big_sel b = { r->cases, REP_CASES, SENTINEL };
        mark_results(r->cases, REP_CASES);
        pthread_t th = test_thread_start(big_sel_main, &b);
        int v = 500 + t;
        cr_assert_eq(try_until_waiter(r->ch[t], CHAN_SEND, &v), 0);
        test_thread_join(th);
        cr_assert(b.rc >= 0 && b.rc < REP_CASES, "select returned %d", b.rc);
        cr_assert_eq(r->map[b.rc], t);
        check_only_result(r->cases, REP_CASES, b.rc, 0);
        cr_assert_eq(r->vals[b.rc], 500 + t);
        r->vals[b.rc] = SENTINEL;
    }
    /* No select left a waiter behind. */
    for (int t = 0; t < REP_CHANS; t += 3)
        cr_assert_eq(chan_trysend(r->ch[t], &t), -EAGAIN, "channel %d", t);
    rep_free(r);
}

Test(select, ten_thousand_cases_on_few_channels_all_ready)
{
    static const size_t caps[] = { 1, 2 };
    struct rep *r = rep_make(caps, 2);
    for (int k = 0; k < REP_CHANS; k++)
        cr_assert_eq(chan_send(r->ch[k], &k), 0);
    /* Groups of channels by address, and how many cases each group has. */
    chan_t *sorted[REP_CHANS];
    memcpy(sorted, r->ch, sizeof sorted);
    qsort(sorted, REP_CHANS, sizeof *sorted, by_address_down);
    int group_of[REP_CHANS];
    for (int k = 0; k < REP_CHANS; k++)
        for (int g = 0; g < REP_CHANS; g++)
            if (sorted[g] == r->ch[k])
                group_of[k] = g * 4 / REP_CHANS;
    long in_group[4] = { 0 };
    for (int i = 0; i < REP_CASES; i++)
        in_group[group_of[r->map[i]]]++;

    /* Every case is ready: the choice is uniform over the cases, so by
     * quarter of the case array (expected rounds / 4 each, a standard
     * deviation of 8.7 at 400 rounds) and by group of channels (expected
     * in proportion to the cases they have).  The bands are +-50%. */
    int rounds = (int)test_scaled(400, 400);
    long by_index[4] = { 0 }, by_group[4] = { 0 };
    for (int i = 0; i < rounds; i++) {
        int k = chan_select(r->cases, REP_CASES, 0);
        cr_assert(k >= 0 && k < REP_CASES, "select returned %d", k);
        cr_assert_eq(r->cases[k].result, 0);
        cr_assert_eq(r->vals[k], r->map[k]);
        by_index[k * 4 / REP_CASES]++;
        by_group[group_of[r->map[k]]]++;
        cr_assert_eq(chan_send(r->ch[r->map[k]], &r->map[k]), 0);
    }
    for (int q = 0; q < 4; q++) {
        double want = (double)rounds / 4;
        cr_assert(by_index[q] > want / 2 && by_index[q] < want * 3 / 2,
                  "cases of quarter %d chosen %ld times of %d", q,
                  by_index[q], rounds);
        want = (double)rounds * (double)in_group[q] / REP_CASES;
        cr_assert(by_group[q] > want / 2 && by_group[q] < want * 3 / 2,
                  "channels of group %d chosen %ld times of %d, expected %.0f",
                  q, by_group[q], rounds, want);
    }
    rep_free(r);
}

/*
 * Selects of many cases (a heap sort makes their lock order) and of few
 * (an insertion sort) over the same unbuffered channels, from two threads
 * at once: every select locks all of its channels, so the two sorts must
 * agree on the order, or the threads deadlock and the suite's timeout
 * fails the test.  (Two threads must meet inside their lock loops for
 * that, so a run catches a disagreement only with some probability;
 * loop it, or raise CHAN_TEST_SCALE, after changing the sorts.)
 */
struct mixed_sel {
    chan_t **ch;
    int nch;
    int sizes[2];       /* cases per select, alternating */
    int iters;
    uint32_t seed;
    int bad;            /* selects that did not return -EAGAIN */
};

static void *mixed_sel_main(void *arg)
{
    struct mixed_sel *m = arg;
    int big = m->sizes[0] > m->sizes[1] ? m->sizes[0] : m->sizes[1];
    chan_case_t *cases = calloc((size_t)big, sizeof *cases);
    int v = 0;
    if (!cases) {
        m->bad = -1;
        return NULL;
    }
    for (int i = 0; i < m->iters; i++) {
        int n = m->sizes[i % 2];
        for (int j = 0; j < n; j++) {
            chan_t *ch = m->ch[test_rand(&m->seed) % (uint32_t)m->nch];
            cases[j] = test_rand(&m->seed) % 2 ? CHAN_SEND_CASE(ch, &v)
                                               : CHAN_RECV_CASE(ch, &v);
        }
        if (chan_select(cases, (size_t)n, 0) != -EAGAIN)
            m->bad++;
    }
    free(cases);
    return NULL;
}

Test(select, large_and_small_selects_agree_on_lock_order)
{
    enum { NCH = 40 };
    chan_t *ch[NCH];
    for (int k = 0; k < NCH; k++)
        ch[k] = chan_make(sizeof(int), 0);
    int iters = (int)test_scaled(10000, 100);
    struct mixed_sel m[2] = {
        { ch, NCH, { 200, 3 }, iters, 1, 0 },
        { ch, NCH, { 20, 600 }, iters, 2, 0 },
    };
    pthread_t t0 = test_thread_start(mixed_sel_main, &m[0]);
    pthread_t t1 = test_thread_start(mixed_sel_main, &m[1]);
    test_thread_join(t0);
    test_thread_join(t1);
    cr_assert_eq(m[0].bad, 0);
    cr_assert_eq(m[1].bad, 0);
    for (int k = 0; k < NCH; k++)
        chan_release(ch[k]);
}

/* ------------------------------------------------------------------ */
/* Empty selects                                                      */

Test(select, empty_select_try_and_timeout)
{
    chan_case_t none[2] = { CHAN_RECV_CASE(NULL, NULL),
                            CHAN_SEND_CASE(NULL, NULL) };
    cr_assert_eq(chan_select(NULL, 0, 0), -EAGAIN);
    cr_assert_eq(chan_select(none, 0, 0), -EAGAIN);
    cr_assert_eq(chan_select(none, 2, 0), -EAGAIN);
    int64_t t0 = test_now_ns();
    cr_assert_eq(chan_select(NULL, 0, 30 * TEST_MS), -ETIMEDOUT);
    check_on_time(test_now_ns() - t0, 30 * TEST_MS);
    t0 = test_now_ns();
    cr_assert_eq(chan_select(none, 2, 30 * TEST_MS), -ETIMEDOUT);
    check_on_time(test_now_ns() - t0, 30 * TEST_MS);
}

static void *empty_forever(void *arg)
{
    atomic_int *done = arg;
    chan_select(NULL, 0, CHAN_FOREVER);
    atomic_store(done, 1);
    return NULL;
}

Test(select, empty_select_forever_blocks)
{
    /* The thread never returns; the test's process ends with it. */
    static atomic_int done;
    pthread_t t = test_thread_start(empty_forever, &done);
    pthread_detach(t);
    cr_assert(test_stays_zero(&done, 100 * TEST_MS),
              "an empty select with CHAN_FOREVER returned");
}

/* ------------------------------------------------------------------ */
/* Bad input                                                          */

Test(select, null_cases_is_einval)
{
    cr_assert_eq(chan_select(NULL, 1, 0), -EINVAL);
    cr_assert_eq(chan_select(NULL, 3, CHAN_FOREVER), -EINVAL);
    cr_assert_eq(chan_select(NULL, 1, 10 * TEST_MS), -EINVAL);
}

Test(select, unknown_op_is_einval_and_performs_nothing)
{
    chan_t *in = chan_make(sizeof(int), 1), *out = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_send(in, &(int){ 5 }), 0);
    static const int bad_ops[] = { 0, 3, -1, 100 };
    for (int b = 0; b < 4; b++) {
        int v = SENTINEL, x = 6, y = 0;
        chan_case_t cases[] = {
            CHAN_RECV_CASE(in, &v),
            CHAN_SEND_CASE(out, &x),
            { .ch = in, .op = (enum chan_op)bad_ops[b], .elem = &y },
        };
        for (int t = 0; t < 3; t++) {
            int64_t timeout = t == 0 ? 0 : t == 1 ? 10 * TEST_MS : CHAN_FOREVER;
            mark_results(cases, 3);
            cr_assert_eq(chan_select(cases, 3, timeout), -EINVAL, "op %d",
                         bad_ops[b]);
            check_only_result(cases, 3, -1, 0);
            cr_assert_eq(v, SENTINEL, "a bad select received");
            cr_assert_eq(chan_len(in), 1, "a bad select received");
            cr_assert_eq(chan_len(out), 0, "a bad select sent");
        }
    }
    chan_release(in);
    chan_release(out);
}

Test(select, unknown_op_in_a_disabled_case_is_einval)
{
    chan_t *in = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_send(in, &(int){ 5 }), 0);
    int v = SENTINEL;
    chan_case_t cases[] = {
        CHAN_RECV_CASE(in, &v),
        { .ch = NULL, .op = (enum chan_op)0, .elem = NULL },
    };
    mark_results(cases, 2);
    cr_assert_eq(chan_select(cases, 2, 0), -EINVAL);
    check_only_result(cases, 2, -1, 0);
    cr_assert_eq(v, SENTINEL, "a bad select received");
    cr_assert_eq(chan_len(in), 1, "a bad select received");
    /* With a valid op the disabled case is simply never chosen. */
    cases[1].op = CHAN_SEND;
    cr_assert_eq(chan_select(cases, 2, 0), 0);
    cr_assert_eq(v, 5);
    chan_release(in);
}

Test(select, null_send_elem_is_einval_and_performs_nothing)
{
    chan_t *in = chan_make(sizeof(int), 1), *out = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_send(in, &(int){ 5 }), 0);
    int v = SENTINEL;
    chan_case_t cases[] = { CHAN_RECV_CASE(in, &v), CHAN_SEND_CASE(out, NULL) };
    mark_results(cases, 2);
    cr_assert_eq(chan_select(cases, 2, 0), -EINVAL);
    cr_assert_eq(chan_select(cases, 2, CHAN_FOREVER), -EINVAL);
    check_only_result(cases, 2, -1, 0);
    cr_assert_eq(v, SENTINEL);
    cr_assert_eq(chan_len(in), 1);
    cr_assert_eq(chan_len(out), 0);

    /* A bad case on an unbuffered channel must not consume its waiting
     * receiver either. */
    chan_t *u = chan_make(sizeof(int), 0);
    struct sel_op r;
    sel_prepare(&r, 1, CHAN_FOREVER);
    sel_case(&r, 0, u, CHAN_RECV, 0);
    sel_start_blocked(&r);
    chan_case_t bad[] = { CHAN_SEND_CASE(u, NULL) };
    cr_assert_eq(chan_select(bad, 1, 0), -EINVAL);
    cr_assert(test_stays_zero(&r.call.done, 20 * TEST_MS),
              "a bad select released a receiver");
    cr_assert_eq(chan_send(u, &(int){ 8 }), 0);
    cr_assert_eq(sel_join(&r), 0);
    cr_assert_eq(r.vals[0], 8);

    /* On a zero-size channel a NULL elem is fine. */
    chan_t *z = chan_make(0, 1);
    chan_case_t ok[] = { CHAN_SEND_CASE(z, NULL) };
    cr_assert_eq(chan_select(ok, 1, 0), 0);
    cr_assert_eq(ok[0].result, 0);
    cr_assert_eq(chan_len(z), 1);
    chan_case_t okr[] = { CHAN_RECV_CASE(z, NULL) };
    cr_assert_eq(chan_select(okr, 1, 0), 0);
    cr_assert_eq(chan_len(z), 0);
    chan_release(z);
    chan_release(u);
    chan_release(in);
    chan_release(out);
}

/* ------------------------------------------------------------------ */
/* errno                                                              */

Test(select, errno_left_alone)
{
    errno = 4242;
    chan_t *c = chan_make(sizeof(int), 0);
    int v;
    chan_case_t one[] = { CHAN_RECV_CASE(c, &v) };
    cr_assert_eq(chan_select(one, 1, 0), -EAGAIN);
    cr_assert_eq(chan_select(one, 1, TEST_MS), -ETIMEDOUT);
    cr_assert_eq(chan_select(NULL, 0, TEST_MS), -ETIMEDOUT);
    cr_assert_eq(chan_select(NULL, 1, 0), -EINVAL);
    chan_case_t many[MAXC];
    for (int k = 0; k < MAXC; k++)
        many[k] = CHAN_RECV_CASE(c, &v);
    cr_assert_eq(chan_select(many, MAXC, TEST_MS), -ETIMEDOUT);
    cr_assert_eq(chan_close(c), 0);
    int k = chan_select(many, MAXC, 0);
    cr_assert(k >= 0 && k < MAXC, "select returned %d", k);
    cr_assert_eq(many[k].result, -EPIPE);
    cr_assert_eq(errno, 4242, "errno changed to %d", errno);
    chan_release(c);
}

/*
 * bridge.c - libchan-nng: a bridge moves values between libchan channels
 * and one nng socket, with one plain thread per direction.
 *
 * The sending thread (tx: push, pub, pair) takes a value from b->out into a
 * fresh nng message after the header (see the message format in
 * include/chan_nng.h) and hands the message to nng_sendmsg, which blocks
 * while nng has no room: that is the backpressure towards the producer.
 * When b->out is closed and drained it sends the end of stream (push: one
 * per connected puller, repeated until no puller is left; see send_eos).
 * The receiving thread (rx: pull, sub, pair) takes one message with
 * nng_recvmsg, checks its header, and sends the value to b->in before it
 * takes the next message: that is the backpressure towards the peer.
 * rx waits in nng_recvmsg with a receive timeout of LOSS_NS; each timeout
 * is where it looks for a lost peer (no peer connected, nothing left to
 * receive, the stream not ended).  Both threads are plain pthreads, so a
 * bridge never holds a scheduler worker, and they wait on channels with
 * chan_select against b->stop so that chan_nng_close can end them.
 *
 * nng calls on_pipe from its own threads whenever a peer connects or goes.
 * A connection is counted when nng announces it (NNG_PIPE_EV_ADD_PRE),
 * before the protocol may use it: counted on NNG_PIPE_EV_ADD_POST, a push
 * could hand its last value to a puller not counted yet, find no puller,
 * and skip that puller's end of stream.  nng reports the removal of every
 * connection it announced (NNG_PIPE_EV_REM_POST).  chan_nng_peers and
 * chan_nng_wait_peers count the connections nng has started
 * (NNG_PIPE_EV_ADD_POST, nready), on which a value published now arrives.
 * It must never block: it only adjusts the atomic counters, reports a
 * lost push or pub peer with a non-blocking send on the error channel, and
 * wakes tx and chan_nng_wait_peers with non-blocking sends on two signal
 * channels of capacity 1.
 *
 * Invariants:
 *   - b->status goes once from 0 to a negative errno (the first fail()
 *     wins its CAS) and never back.  After it is set, b->stop and b->done
 *     are closed, b->in is closed, and on pair b->out too.
 *   - b->done is closed exactly when the bridge has finished: every
 *     direction it has is done (out_done, in_done) or status != 0 or
 *     chan_nng_close ran.  Closing it again is harmless (chan_close
 *     returns -EPIPE), so whoever sees the condition first closes it.
 *   - b->stop is closed when the threads must exit: by fail() or by
 *     chan_nng_close.  A thread that sees stop closed, or the socket closed
 *     (NNG_ECLOSED), returns without sending anything more.
 *   - The socket is closed once (sock_open, under b->mu), by fail(), by rx
 *     when a pull or sub stream ended, or by chan_nng_close; nng_close
 *     returns only after the last on_pipe call, and the threads are joined
 *     after it, so b outlives every use by nng and by its threads.
 *
 * Locking.  b->mu guards sock_open, dialer and dialed, and is never held
 * across a call into nng or libchan.  b->close_mu is held across
 * nng_dialer_close and nng_close only (close_sock, stop_dialing), so that
 * the two never run at once; it is taken before mu, and nothing else
 * nests in them.  on_pipe takes neither, so nng_close, which waits for
 * the callbacks, cannot wait for a thread that waits for these locks.
 * The flags (npipes, nready, gone, ever, eos_sending, out_eos, out_done, in_done,
 * status) are atomics: each is written by one side and read by others
 * that only need to see it eventually, with sequentially consistent order
 * (the default), which makes "set the flag, then close the channel" seen
 * in that order by whoever saw the channel closed.
 *
 * Lifetimes.  The bridge holds one reference to each of out, in and err
 * (chan_retain in open, chan_release in chan_nng_close), so the channels
 * outlive the threads and the callbacks.  A message is owned by the thread
 * that allocated or received it until nng_sendmsg succeeds.
 */
#include <chan.h>
#include <chan_nng.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

/* The message header, as documented in include/chan_nng.h. */
#define HDR 8
#define MAGIC0 0x63
#define MAGIC1 0x6e
#define VERSION 1
enum kind { K_DATA = 1, K_EOS = 2, K_ACK = 3 };
#define ID_LEN 8

/*
 * How long rx waits for a message before it looks for a lost peer, and so
 * how long no peer may be connected before a stream counts as lost: long
 * enough for a dialer to reconnect after a brief drop on one host (nng's
 * default reconnect interval is 100 ms, but a dial to a live listener
 * succeeds at the first attempt), short enough to report a dead peer soon.
 */
#define LOSS_MS 100

/* How long push's tx waits for a puller to leave after it sent an end of
 * stream before it sends another (see send_eos_push): long, so that a
 * puller that is disconnecting is not sent one. */
#define EOS_RESEND_NS (5 * 1000 * 1000 * 1000LL)

/* How long push's tx waits before it offers an end of stream again when no
 * puller was ready to take one (see send_eos_push). */
#define EAGAIN_RETRY_NS (1 * 1000 * 1000LL)

/* A dialer's first and longest pause between two connection attempts
 * (see dial()). */
#define RECONNECT_MIN_MS 10
#define RECONNECT_MAX_MS 100

/* The first and the longest pause between two dials (see dial()). */
#define DIAL_RETRY_MIN_NS (5 * 1000 * 1000LL)
#define DIAL_RETRY_MAX_NS (100 * 1000 * 1000LL)

/* The longest wait of chan_nng_wait_peers between two looks at npipes. */
#define PEERS_POLL_NS (10 * 1000 * 1000LL)

struct chan_nng {
    nng_socket sock;
    enum chan_nng_proto proto;
    chan_t *out;          /* tx: values to send; NULL for pull, sub */
    chan_t *in;           /* rx: values received; NULL for push, pub */
    chan_t *err;          /* NULL, or where errors are reported */
    size_t esize;         /* elem_size of out and in */
    unsigned streams;     /* pull: end-of-streams that end the input */
    uint64_t id;          /* this bridge's stream id, in its EOS */
    int port;             /* tcp listener's bound port, or -ENOTSUP */
    chan_t *stop;         /* signal channel; closed: threads must exit */
    chan_t *done;         /* signal channel; closed: finished */
    chan_t *tx_ev;        /* capacity 1; on_pipe wakes tx */
    chan_t *peers_ev;     /* capacity 1; on_pipe wakes wait_peers */
    pthread_t tx, rx;
    bool has_tx, has_rx;  /* set in open before any other thread runs */
    atomic_int npipes;    /* peers connected now (on_pipe, from ADD_PRE) */
    atomic_int nready;    /* ... of which nng has started (ADD_POST) */
    atomic_uint gone;     /* peers that disconnected so far (on_pipe) */
    atomic_bool ever;     /* a peer was connected at least once */
    atomic_bool eos_sending; /* tx is ending its stream: peers may go */
    atomic_bool out_eos;  /* tx has handed its end of stream to nng */
    atomic_bool out_done; /* the sending direction has finished */
    atomic_bool in_done;  /* the receiving direction has finished */
    atomic_bool stopping; /* chan_nng_close has begun */
    atomic_int status;    /* 0, or the error that stopped the bridge */
    pthread_mutex_t mu;   /* guards sock_open, dialer, dialed */
    pthread_mutex_t close_mu; /* held across nng_dialer_close, nng_close */
    bool sock_open;
    uint64_t *seen;       /* pull: ids of the ended streams ... */
    unsigned nseen;       /* ... and how many; rx only */
    uint32_t *open;       /* pull: pipes that sent values but no end of */
    unsigned nopen, capopen; /* stream yet, how many, room for; rx only */
    char *dial_url;       /* dialing bridges: the URL; NULL for listeners */
    nng_dialer dialer;    /* the socket's dialer once dialed (mu) */
    bool dialed;          /* dialer is valid (mu) */
};

static bool has_out(enum chan_nng_proto p)
{
    return p == CHAN_NNG_PUSH || p == CHAN_NNG_PUB || p == CHAN_NNG_PAIR;
}

static bool has_in(enum chan_nng_proto p)
{
    return p == CHAN_NNG_PULL || p == CHAN_NNG_SUB || p == CHAN_NNG_PAIR;
}

/* nng's error numbers as negative errno values. */
static int nerr(int rv)
{
    if (rv & NNG_ESYSERR)
        return -(rv & ~NNG_ESYSERR);
    switch (rv) {
    case NNG_EINTR: return -EINTR;
    case NNG_ENOMEM: return -ENOMEM;
    case NNG_EINVAL: return -EINVAL;
    case NNG_EBUSY: return -EBUSY;
    case NNG_ETIMEDOUT: return -ETIMEDOUT;
    case NNG_ECONNREFUSED: return -ECONNREFUSED;
    case NNG_ECLOSED: return -EBADF;
    case NNG_EAGAIN: return -EAGAIN;
    case NNG_ENOTSUP: return -ENOTSUP;
    case NNG_EADDRINUSE: return -EADDRINUSE;
    case NNG_ESTATE: return -EINVAL;
    case NNG_ENOENT: return -ENOENT;
    case NNG_EPROTO: return -EPROTO;
    case NNG_EUNREACHABLE: return -EHOSTUNREACH;
    case NNG_EADDRINVAL: return -EINVAL;
    case NNG_EPERM: return -EPERM;
    case NNG_EMSGSIZE: return -EMSGSIZE;
    case NNG_ECONNABORTED: return -ECONNABORTED;
    case NNG_ECONNRESET: return -ECONNRESET;
    case NNG_ECANCELED: return -ECANCELED;
    case NNG_ENOFILES: return -EMFILE;
    case NNG_ENOSPC: return -ENOSPC;
    case NNG_EEXIST: return -EEXIST;
    case NNG_EPEERAUTH: return -EACCES;
    case NNG_ECONNSHUT: return -ECONNRESET;
    default: return -EIO;
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_header(uint8_t *p, enum kind k, size_t esize)
{
    p[0] = MAGIC0;
    p[1] = MAGIC1;
    p[2] = VERSION;
    p[3] = (uint8_t)k;
    put_be32(p + 4, (uint32_t)esize);
}

/* A new end-of-stream (or acknowledgement) message carrying id. */
static int make_mark(nng_msg **mp, enum kind k, size_t esize, uint64_t id)
{
    int rv = nng_msg_alloc(mp, HDR + ID_LEN);
    if (rv != 0)
        return nerr(rv);
    uint8_t *p = nng_msg_body(*mp);
    put_header(p, k, esize);
    put_be32(p + HDR, (uint32_t)(id >> 32));
    put_be32(p + HDR + 4, (uint32_t)id);
    return 0;
}

static bool is_closed(chan_t *sig)
{
    return chan_tryrecv(sig, NULL) == -EPIPE;
}

static void report(struct chan_nng *b, int err)
{
    if (b->err != NULL)
        (void)chan_trysend(b->err, &err);
}

/* Closes the socket once; the dialer first.  Under close_mu: nng 1.5 can
 * use a freed dialer when nng_dialer_close and nng_close run at once. */
static void close_sock(struct chan_nng *b)
{
    pthread_mutex_lock(&b->close_mu);
    pthread_mutex_lock(&b->mu);
    bool was = b->sock_open;
    bool dialed = b->dialed;
    b->sock_open = false;
    b->dialed = false;
    pthread_mutex_unlock(&b->mu);
    if (dialed)
        nng_dialer_close(b->dialer);
    if (was)
        nng_close(b->sock);
    pthread_mutex_unlock(&b->close_mu);
}

/*
 * The stream has ended: a dialing bridge closes its dialer, which closes
 * its connection and never reconnects.  (Changing the reconnect interval
 * instead would not do: nng 1.5 keeps the interval it already chose for
 * the next attempt.)  Listeners keep listening until chan_nng_close.
 */
static void stop_dialing(struct chan_nng *b)
{
    pthread_mutex_lock(&b->close_mu);
    pthread_mutex_lock(&b->mu);
    bool dialed = b->dialed;
    b->dialed = false;
    pthread_mutex_unlock(&b->mu);
    if (dialed)
        nng_dialer_close(b->dialer);
    pthread_mutex_unlock(&b->close_mu);
}

/*
 * Connects a dialing bridge; called first by the thread that dials (rx if
 * the bridge has one, else tx).  Returns 0 once dialed, 1 if the bridge is
 * stopping.
 *
 * The dialer connects in the background and retries every
 * RECONNECT_MIN_MS, backing off to RECONNECT_MAX_MS, so it finds a listener
 * that starts later soon after it is there (a stage of a work queue that
 * connects a second late looks to its peers like a lost one).  This loop
 * only retries what nng refuses at once.
 */
static int dial(struct chan_nng *b)
{
    int64_t wait = DIAL_RETRY_MIN_NS;
    for (;;) {
        nng_dialer d;
        int rv = nng_dial(b->sock, b->dial_url, &d, NNG_FLAG_NONBLOCK);
        if (rv == 0) {
            pthread_mutex_lock(&b->mu);
            bool open = b->sock_open;
            if (open) {
                b->dialer = d;
                b->dialed = true;
            }
            pthread_mutex_unlock(&b->mu);
            return open ? 0 : 1;
        }
        if (rv == NNG_ECLOSED)
            return 1;
        /* Refused, not there yet, unreachable: try again. */
        if (chan_timedrecv(b->stop, NULL, wait) == -EPIPE)
            return 1;
        wait = wait * 2 > DIAL_RETRY_MAX_NS ? DIAL_RETRY_MAX_NS : wait * 2;
    }
}

/* Closes b->done if every direction of b has finished. */
static void check_done(struct chan_nng *b)
{
    if (has_out(b->proto) && !atomic_load(&b->out_done))
        return;
    if (has_in(b->proto) && !atomic_load(&b->in_done))
        return;
    (void)chan_close(b->done);
}

/*
 * Stops the bridge on an error; the first error wins.  Called by tx or rx,
 * never by on_pipe (it closes the socket, which waits for the callbacks).
 */
static void fail(struct chan_nng *b, int err)
{
    int zero = 0;
    if (!atomic_compare_exchange_strong(&b->status, &zero, err))
        return;
    report(b, err);
    /* out before done, done before in: whoever saw chan_nng_wait() return
     * finds out closed, whoever saw in closed finds the bridge finished. */
    (void)chan_close(b->stop);
    if (b->proto == CHAN_NNG_PAIR)
        (void)chan_close(b->out);
    (void)chan_close(b->done);
    if (b->in != NULL)
        (void)chan_close(b->in);
    close_sock(b);
}

/* nng's pipe notification; must not block (see the top of this file). */
static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    struct chan_nng *b = arg;
    (void)p;
    if (ev == NNG_PIPE_EV_ADD_PRE) {
        atomic_fetch_add(&b->npipes, 1);
        atomic_store(&b->ever, true);
    } else if (ev == NNG_PIPE_EV_ADD_POST) {
        atomic_fetch_add(&b->nready, 1);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        int n = atomic_fetch_sub(&b->npipes, 1) - 1;
        /* nready <= npipes; a connection nng refused to start has no
         * ADD_POST, so a removal lowers nready only as far as npipes. */
        int r = atomic_load(&b->nready);
        while (r > n && !atomic_compare_exchange_weak(&b->nready, &r, n))
            ;
        atomic_fetch_add(&b->gone, 1);
        if ((b->proto == CHAN_NNG_PUSH || b->proto == CHAN_NNG_PUB) &&
            !atomic_load(&b->eos_sending) && !atomic_load(&b->stopping) &&
            atomic_load(&b->status) == 0)
            report(b, -ECONNRESET);
    }
    (void)chan_trysend(b->tx_ev, NULL);
    (void)chan_trysend(b->peers_ev, NULL);
}

/*
 * Takes the next value of b->out into v.  Returns 0, -EPIPE once out is
 * closed and drained, or 1 if the bridge is stopping.
 */
static int take(struct chan_nng *b, void *v)
{
    int rc = chan_tryrecv(b->out, v);
    if (rc != -EAGAIN)
        return rc;
    chan_case_t cs[2] = { CHAN_RECV_CASE(b->out, v),
                          CHAN_RECV_CASE(b->stop, NULL) };
    int i = chan_select(cs, 2, CHAN_FOREVER);
    return i == 0 ? cs[0].result : 1;
}

/*
 * Hands v to b->in.  Returns 0, -EPIPE if in was closed under the bridge,
 * or 1 if the bridge is stopping.
 */
static int deliver(struct chan_nng *b, const void *v)
{
    int rc = chan_trysend(b->in, v);
    if (rc != -EAGAIN)
        return rc;
    chan_case_t cs[2] = { CHAN_SEND_CASE(b->in, v),
                          CHAN_RECV_CASE(b->stop, NULL) };
    int i = chan_select(cs, 2, CHAN_FOREVER);
    return i == 0 ? cs[0].result : 1;
}

static int64_t now_ns(void);

/* Waits for on_pipe's next wake-up, or for stop, for up to timeout_ns. */
static void wait_pipe_event(struct chan_nng *b, int64_t timeout_ns)
{
    chan_case_t cs[2] = { CHAN_RECV_CASE(b->tx_ev, NULL),
                          CHAN_RECV_CASE(b->stop, NULL) };
    (void)chan_select(cs, 2, timeout_ns);
}

/*
 * Push's end of stream.  push hands each message to one ready puller and
 * cannot address a pipe, so one end of stream reaches one puller, and every
 * pulling bridge disconnects when its stream ends.  So tx sends one end of
 * stream, waits until a puller leaves (the one that took it, normally),
 * and sends the next, until no puller is connected.  It never sends a
 * second one before a puller left: a puller that has its end of stream
 * then gets nothing more while it disconnects.  That matters with nng 1.5,
 * where a connection closed by the receiving side while a message arrives
 * on it can leave nng's receive on it unfinished for ever, and every later
 * nng_close of the process waiting for it.  The data was all handed to
 * pullers before the first end of stream (push keeps order), and each
 * puller's end of stream follows its data on its pipe.
 */
static void send_eos_push(struct chan_nng *b)
{
    while (atomic_load(&b->npipes) > 0 && !is_closed(b->stop)) {
        unsigned gone = atomic_load(&b->gone);
        nng_msg *m;
        int rc = make_mark(&m, K_EOS, b->esize, b->id);
        if (rc < 0) {
            fail(b, rc);
            return;
        }
        int rv = nng_sendmsg(b->sock, m, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            nng_msg_free(m);
            if (rv == NNG_ECLOSED)
                return;
            if (rv != NNG_EAGAIN) {
                fail(b, nerr(rv));
                return;
            }
            /* No puller ready (each busy with earlier values): retry. */
            wait_pipe_event(b, EAGAIN_RETRY_NS);
            continue;
        }
        /* An end of stream can be lost with a connection that goes as
         * nng hands it over; after EOS_RESEND_NS without a departure,
         * another one is sent (a puller that has one ignores it). */
        int64_t until = now_ns() + EOS_RESEND_NS;
        while (atomic_load(&b->gone) == gone &&
               atomic_load(&b->npipes) > 0 && !is_closed(b->stop)) {
            int64_t left = until - now_ns();
            if (left <= 0)
                break;
            wait_pipe_event(b, left);
        }
        /* A dialer has one peer, the listener, which has now left (or
         * is its dialer already connected again, see stop_dialing). */
        if (b->dial_url != NULL && atomic_load(&b->gone) != gone)
            return;
    }
}

static void *tx_main(void *arg)
{
    struct chan_nng *b = arg;
    if (b->dial_url != NULL && !has_in(b->proto) && dial(b) != 0)
        return NULL;
    for (;;) {
        nng_msg *m;
        int rv = nng_msg_alloc(&m, HDR + b->esize);
        if (rv != 0) {
            fail(b, nerr(rv));
            return NULL;
        }
        uint8_t *p = nng_msg_body(m);
        put_header(p, K_DATA, b->esize);
        int rc = take(b, p + HDR);
        if (rc != 0) {
            nng_msg_free(m);
            if (rc == 1 || atomic_load(&b->status) != 0)
                return NULL;
            break; /* out is closed and drained */
        }
        rv = nng_sendmsg(b->sock, m, 0);
        if (rv != 0) {
            nng_msg_free(m);
            if (rv != NNG_ECLOSED)
                fail(b, nerr(rv));
            return NULL;
        }
    }

    atomic_store(&b->eos_sending, true);
    if (b->proto == CHAN_NNG_PUSH) {
        send_eos_push(b);
        stop_dialing(b);
    } else {
        nng_msg *m;
        int rc = make_mark(&m, K_EOS, b->esize, b->id);
        if (rc < 0) {
            fail(b, rc);
            return NULL;
        }
        int rv = nng_sendmsg(b->sock, m, 0);
        if (rv != 0) {
            nng_msg_free(m);
            if (rv != NNG_ECLOSED)
                fail(b, nerr(rv));
            return NULL;
        }
        atomic_store(&b->out_eos, true);
        if (b->proto == CHAN_NNG_PAIR)
            return NULL; /* rx sets out_done on the acknowledgement */
    }
    if (atomic_load(&b->status) == 0 && !atomic_load(&b->stopping)) {
        atomic_store(&b->out_done, true);
        check_done(b);
    }
    return NULL;
}

/* pull: records the stream id of an end of stream; true if it is new. */
static bool note_stream(struct chan_nng *b, uint64_t id)
{
    for (unsigned i = 0; i < b->nseen; i++)
        if (b->seen[i] == id)
            return false;
    b->seen[b->nseen++] = id;
    return true;
}

/* The input has ended: finished first, so that whoever sees in closed
 * and then asks chan_nng_wait() finds a pull or sub bridge finished. */
/* pull: pipe p has sent a value (open) or its end of stream (!open).
 * Returns 0 or -ENOMEM. */
static int note_open(struct chan_nng *b, nng_pipe p, bool open)
{
    uint32_t id = (uint32_t)nng_pipe_id(p);
    for (unsigned i = 0; i < b->nopen; i++) {
        if (b->open[i] == id) {
            if (!open)
                b->open[i] = b->open[--b->nopen];
            return 0;
        }
    }
    if (!open)
        return 0;
    if (b->nopen == b->capopen) {
        unsigned cap = b->capopen ? 2 * b->capopen : 4;
        uint32_t *a = realloc(b->open, cap * sizeof *a);
        if (a == NULL)
            return -ENOMEM;
        b->open = a;
        b->capopen = cap;
    }
    b->open[b->nopen++] = id;
    return 0;
}

static void end_input(struct chan_nng *b)
{
    atomic_store(&b->in_done, true);
    check_done(b);
    (void)chan_close(b->in);
}

/*
 * rx found no message for LOSS_MS.  Returns true if rx is to go on.
 */
static bool idle(struct chan_nng *b)
{
    if (is_closed(b->stop))
        return false;
    if (b->proto != CHAN_NNG_PAIR && atomic_load(&b->in_done))
        return true;
    if (!atomic_load(&b->ever) || atomic_load(&b->npipes) > 0)
        return true;
    /* A pull bridge waiting for more streams: no pusher that sent values
     * left before its end of stream, so the streams still to come are from
     * pushers not connected yet (or that connected and left sending
     * nothing, as a finished pusher's dialer can do). */
    if (b->proto == CHAN_NNG_PULL && b->nopen == 0)
        return true;
    /* No peer, nothing received for LOSS_MS.  A pair whose own end of
     * stream is out and whose input ended has nothing left to lose: the
     * peer left after both ends, as a peer does once it has finished. */
    if (b->proto == CHAN_NNG_PAIR && atomic_load(&b->in_done) &&
        atomic_load(&b->out_eos)) {
        atomic_store(&b->out_done, true);
        check_done(b);
        return false;
    }
    fail(b, -ECONNRESET);
    return false;
}

/* Handles one message; returns true if rx is to go on. */
static bool handle(struct chan_nng *b, nng_msg *m)
{
    size_t len = nng_msg_len(m);
    const uint8_t *p = nng_msg_body(m);
    if (b->proto != CHAN_NNG_PAIR && atomic_load(&b->in_done)) {
        /* The input has ended, and this peer is still connected (or
         * connected again): it is a pusher still sending ends of stream
         * to pullers.  Disconnect it, so that it sees this puller go. */
        nng_pipe_close(nng_msg_get_pipe(m));
        return true;
    }
    if (len < HDR || p[0] != MAGIC0 || p[1] != MAGIC1 || p[2] != VERSION) {
        fail(b, -EPROTO);
        return false;
    }
    if (get_be32(p + 4) != b->esize) {
        fail(b, -EMSGSIZE);
        return false;
    }
    switch (p[3]) {
    case K_DATA: {
        if (len != HDR + b->esize || atomic_load(&b->in_done))
            break;
        int rc = 0;
        if (b->proto == CHAN_NNG_PULL)
            rc = note_open(b, nng_msg_get_pipe(m), true);
        if (rc == 0)
            rc = deliver(b, p + HDR);
        if (rc == 1)
            return false;
        if (rc < 0) {
            fail(b, rc);
            return false;
        }
        return true;
    }
    case K_EOS: {
        if (len != HDR + ID_LEN)
            break;
        uint64_t id = (uint64_t)get_be32(p + HDR) << 32 | get_be32(p + HDR + 4);
        if (b->proto == CHAN_NNG_PAIR) {
            nng_msg *ack;
            int rc = make_mark(&ack, K_ACK, b->esize, id);
            if (rc < 0) {
                fail(b, rc);
                return false;
            }
            int rv = nng_sendmsg(b->sock, ack, 0);
            if (rv != 0) {
                nng_msg_free(ack);
                if (rv != NNG_ECLOSED)
                    fail(b, nerr(rv));
                return false;
            }
            if (!atomic_load(&b->in_done))
                end_input(b);
            return !atomic_load(&b->out_done);
        }
        if (b->proto == CHAN_NNG_PULL) {
            (void)note_open(b, nng_msg_get_pipe(m), false);
            if (!note_stream(b, id)) {
                nng_pipe_close(nng_msg_get_pipe(m));
                return true;
            }
            if (b->nseen < b->streams) {
                /* Disconnect this pusher, so that its end of stream
                 * finishes; the others go on. */
                nng_pipe_close(nng_msg_get_pipe(m));
                return true;
            }
        }
        /* The input has ended: close in, and disconnect from the pusher
         * so that its end of stream finishes (a dialer closes its dialer,
         * so that it does not connect again).  The pusher sends nothing
         * more on this connection until it is gone (see send_eos_push).
         * The socket stays open until chan_nng_close. */
        pthread_mutex_lock(&b->mu);
        bool dialed = b->dialed;
        pthread_mutex_unlock(&b->mu);
        if (dialed) {
            stop_dialing(b);
        } else {
            nng_pipe_close(nng_msg_get_pipe(m));
        }
        end_input(b);
        return true;
    }
    case K_ACK:
        if (len != HDR + ID_LEN || b->proto != CHAN_NNG_PAIR)
            break;
        atomic_store(&b->out_done, true);
        check_done(b);
        return !atomic_load(&b->in_done);
    default:
        break;
    }
    fail(b, -EPROTO);
    return false;
}

static void *rx_main(void *arg)
{
    struct chan_nng *b = arg;
    if (b->dial_url != NULL && dial(b) != 0)
        return NULL;
    for (;;) {
        nng_msg *m;
        int rv = nng_recvmsg(b->sock, &m, 0);
        if (rv == NNG_ETIMEDOUT) {
            if (!idle(b))
                return NULL;
            continue;
        }
        if (rv != 0) {
            if (rv != NNG_ECLOSED)
                fail(b, nerr(rv));
            return NULL;
        }
        bool go_on = handle(b, m);
        nng_msg_free(m);
        if (!go_on)
            return NULL;
    }
}

static uint64_t new_id(void)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, GRND_NONBLOCK) != (ssize_t)sizeof id) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        id = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^
             ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)(uintptr_t)&id;
    }
    return id;
}

static int open_socket(nng_socket *s, enum chan_nng_proto proto)
{
    switch (proto) {
    case CHAN_NNG_PUSH: return nng_push0_open(s);
    case CHAN_NNG_PULL: return nng_pull0_open(s);
    case CHAN_NNG_PUB: return nng_pub0_open(s);
    case CHAN_NNG_SUB: return nng_sub0_open(s);
    case CHAN_NNG_PAIR: return nng_pair1_open(s);
    }
    return NNG_EINVAL;
}

static void free_bridge(struct chan_nng *b)
{
    chan_release(b->out);
    chan_release(b->in);
    chan_release(b->err);
    chan_release(b->stop);
    chan_release(b->done);
    chan_release(b->tx_ev);
    chan_release(b->peers_ev);
    pthread_mutex_destroy(&b->mu);
    pthread_mutex_destroy(&b->close_mu);
    free(b->dial_url);
    free(b->seen);
    free(b->open);
    free(b);
}

/* Starts one of b's threads with every signal blocked: a bridge's threads
 * have no business with the program's signals. */
static int start(pthread_t *t, void *(*fn)(void *), struct chan_nng *b)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, b);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

/* A channel given to a bridge must carry values of the bridge's size. */
static bool size_ok(chan_t *ch, size_t esize)
{
    return ch == NULL || chan_elem_size(ch) == esize;
}

static int open_bridge(chan_nng_t **bp, enum chan_nng_proto proto,
                       enum chan_nng_mode mode, const char *url,
                       size_t esize, chan_t *out, chan_t *in,
                       const chan_nng_opts_t *opts)
{
    chan_t *err = opts != NULL ? opts->err : NULL;
    unsigned streams = opts != NULL ? opts->streams : 0;
    if (bp == NULL || url == NULL)
        return -EINVAL;
    if (proto < CHAN_NNG_PUSH || proto > CHAN_NNG_PAIR)
        return -EINVAL;
    if (mode != CHAN_NNG_LISTEN && mode != CHAN_NNG_DIAL)
        return -EINVAL;
    if (has_out(proto) != (out != NULL) || has_in(proto) != (in != NULL))
        return -EINVAL;
    if (streams != 0 && proto != CHAN_NNG_PULL)
        return -EINVAL;
    if (!size_ok(err, sizeof(int)) || !size_ok(out, esize) ||
        !size_ok(in, esize))
        return -EINVAL;
    if (esize > UINT32_MAX)
        return -EINVAL;

    struct chan_nng *b = calloc(1, sizeof *b);
    if (b == NULL)
        return -ENOMEM;
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->close_mu, NULL);
    b->proto = proto;
    b->esize = esize;
    b->streams = streams == 0 ? 1 : streams;
    b->id = new_id();
    b->port = -ENOTSUP;
    b->out = chan_retain(out);
    b->in = chan_retain(in);
    b->err = chan_retain(err);
    b->stop = chan_make(0, 0);
    b->done = chan_make(0, 0);
    b->tx_ev = chan_make(0, 1);
    b->peers_ev = chan_make(0, 1);
    if (proto == CHAN_NNG_PULL)
        b->seen = calloc(b->streams, sizeof *b->seen);
    if (b->stop == NULL || b->done == NULL || b->tx_ev == NULL ||
        b->peers_ev == NULL || (proto == CHAN_NNG_PULL && b->seen == NULL)) {
        free_bridge(b);
        return -ENOMEM;
    }

    int rv = open_socket(&b->sock, proto);
    if (rv != 0) {
        free_bridge(b);
        return nerr(rv);
    }
    b->sock_open = true;
    if (proto == CHAN_NNG_SUB)
        rv = nng_socket_set(b->sock, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    if (rv == 0 && has_in(proto))
        rv = nng_socket_set_ms(b->sock, NNG_OPT_RECVTIMEO, LOSS_MS);
    if (rv == 0)
        rv = nng_pipe_notify(b->sock, NNG_PIPE_EV_ADD_PRE, on_pipe, b);
    if (rv == 0)
        rv = nng_pipe_notify(b->sock, NNG_PIPE_EV_ADD_POST, on_pipe, b);
    if (rv == 0)
        rv = nng_pipe_notify(b->sock, NNG_PIPE_EV_REM_POST, on_pipe, b);
    if (rv == 0 && mode == CHAN_NNG_LISTEN) {
        nng_listener l;
        rv = nng_listen(b->sock, url, &l, 0);
        int port;
        if (rv == 0 && strncmp(url, "tcp", 3) == 0 &&
            nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
            b->port = port;
    } else if (rv == 0) {
        /* Check the URL now; the bridge's thread dials (see dial()). */
        nng_dialer d;
        rv = nng_dialer_create(&d, b->sock, url);
        if (rv == 0)
            nng_dialer_close(d);
        if (rv == 0)
            rv = nng_socket_set_ms(b->sock, NNG_OPT_RECONNMINT,
                                   RECONNECT_MIN_MS);
        if (rv == 0)
            rv = nng_socket_set_ms(b->sock, NNG_OPT_RECONNMAXT,
                                   RECONNECT_MAX_MS);
        if (rv == 0 && (b->dial_url = strdup(url)) == NULL)
            rv = NNG_ENOMEM;
    }
    int rc = rv != 0 ? nerr(rv) : 0;
    if (rc == 0 && has_out(proto)) {
        rc = start(&b->tx, tx_main, b);
        b->has_tx = rc == 0;
    }
    if (rc == 0 && has_in(proto)) {
        rc = start(&b->rx, rx_main, b);
        b->has_rx = rc == 0;
    }
    if (rc < 0) {
        atomic_store(&b->stopping, true);
        (void)chan_close(b->stop);
        close_sock(b);
        if (b->has_tx)
            pthread_join(b->tx, NULL);
        free_bridge(b);
        return rc;
    }
    *bp = b;
    return 0;
}

int chan_nng_open2(chan_nng_t **bp, enum chan_nng_proto proto,
                   enum chan_nng_mode mode, const char *url, size_t elem_size,
                   chan_t *out, chan_t *in, const chan_nng_opts_t *opts)
{
    int saved = errno;
    int rc = open_bridge(bp, proto, mode, url, elem_size, out, in, opts);
    errno = saved;
    return rc;
}

int chan_nng_open(chan_nng_t **bp, enum chan_nng_proto proto,
                  enum chan_nng_mode mode, const char *url, size_t elem_size,
                  chan_t *out, chan_t *in, chan_t *err)
{
    chan_nng_opts_t o = { .err = err };
    return chan_nng_open2(bp, proto, mode, url, elem_size, out, in, &o);
}

int chan_nng_wait(chan_nng_t *b, int64_t timeout_ns)
{
    if (b == NULL)
        return -EINVAL;
    int rc = chan_timedrecv(b->done, NULL, timeout_ns);
    if (rc == -EPIPE)
        return atomic_load(&b->status);
    return rc;
}

int chan_nng_peers(chan_nng_t *b)
{
    if (b == NULL)
        return -EINVAL;
    int n = atomic_load(&b->nready);
    return n < 0 ? 0 : n;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int chan_nng_wait_peers(chan_nng_t *b, unsigned n, int64_t timeout_ns)
{
    if (b == NULL)
        return -EINVAL;
    int64_t deadline = timeout_ns > 0 ? now_ns() + timeout_ns : 0;
    for (;;) {
        if (atomic_load(&b->nready) >= (int)n)
            return 0;
        if (timeout_ns == 0)
            return -EAGAIN;
        int64_t wait = PEERS_POLL_NS;
        if (timeout_ns > 0) {
            int64_t left = deadline - now_ns();
            if (left <= 0)
                return -ETIMEDOUT;
            if (left < wait)
                wait = left;
        }
        /* Several callers may wait at once and one wake-up reaches one of
         * them, so each also looks again after PEERS_POLL_NS. */
        (void)chan_timedrecv(b->peers_ev, NULL, wait);
    }
}

int chan_nng_port(chan_nng_t *b)
{
    if (b == NULL)
        return -EINVAL;
    return b->port;
}

/* The blocking part of chan_nng_close; runs via chan_blocking in a task. */
static void teardown(void *arg)
{
    struct chan_nng *b = arg;
    int saved = errno;
    close_sock(b);
    if (b->has_tx)
        pthread_join(b->tx, NULL);
    if (b->has_rx)
        pthread_join(b->rx, NULL);
    errno = saved;
}

int chan_nng_close(chan_nng_t *b)
{
    if (b == NULL)
        return -EINVAL;
    atomic_store(&b->stopping, true);
    (void)chan_close(b->stop);
    if (chan_blocking(teardown, b) < 0)
        teardown(b); /* no helper thread to be had: block the worker */
    if (b->in != NULL)
        (void)chan_close(b->in);
    (void)chan_close(b->done);
    int status = atomic_load(&b->status);
    int saved = errno;
    free_bridge(b);
    errno = saved;
    return status;
}

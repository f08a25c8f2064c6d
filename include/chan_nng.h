/*
 * chan_nng.h - bridges between libchan channels and nng sockets, so that a
 * pipeline stage can move to another process or host and keep calling
 * chan_send, chan_recv and chan_select on an ordinary channel.
 *
 * Link with -lchan-nng (pkg-config --cflags --libs libchan-nng); the
 * companion library depends on nng (https://nng.nanomsg.org), libchan
 * itself does not.  This header needs only <chan.h>, not nng's headers.
 *
 * A bridge owns one nng socket of one protocol, listening on or dialing one
 * URL (inproc://, ipc://, tcp://), and moves values between it and the
 * channels it was given:
 *
 *   CHAN_NNG_PUSH  values received from `out` are sent to the pull peers,
 *                  each to one of them (nng load-balances: a work queue or a
 *                  distributed pipeline).
 *   CHAN_NNG_PULL  values from the push peers are sent to `in`.
 *   CHAN_NNG_PUB   values received from `out` are broadcast to every
 *                  subscriber connected at that moment.  Lossy by nng's
 *                  design: a subscriber that is not connected yet, or that
 *                  falls behind, misses values, and nothing reports it.
 *   CHAN_NNG_SUB   values from the publishers are sent to `in`.
 *   CHAN_NNG_PAIR  one to one, both directions: `out` to the peer, the
 *                  peer's values to `in`.
 *
 * Semantics:
 *
 *  - Values.  Each value crosses as the elem_size bytes of its channel, so
 *    only self-contained values make sense: integers, fixed-size structs
 *    of plain data, fixed-size character arrays.  A pointer means nothing in
 *    another process.  Both ends must agree on elem_size (and on the byte
 *    order and layout of the values: the bridge copies bytes, it does not
 *    convert them).  Every message carries the sender's elem_size, and a
 *    receiving bridge checks it before it delivers anything: a message of
 *    another elem_size stops the bridge with -EMSGSIZE, a message not made
 *    by a bridge of this version stops it with -EPROTO (see "Errors").
 *  - Buffering.  A bridged channel behaves as a buffered channel, never as
 *    a rendezvous: a chan_send on `out` completes once the value is in `out`
 *    (or taken by the bridge), not when the far side has received it.  The
 *    network never gives rendezvous semantics, so none is pretended.
 *  - Backpressure.  A receiving bridge takes the next message from nng only
 *    after the previous value was accepted by `in`; a sending bridge takes
 *    the next value from `out` only after nng accepted the previous message.
 *    So a slow consumer fills `in`, then nng's and the kernel's small
 *    buffers, then `out`, and then blocks the producer: memory stays
 *    bounded.  Pub/sub has no backpressure (nng drops instead).
 *  - End of stream.  Closing `out` makes the bridge send, after every value
 *    already in `out`, an end-of-stream message; the receiving bridge closes
 *    its `in` after the values before it, so `while (chan_recv(in, &v) == 0)`
 *    ends on the far side too.  Push sends an end-of-stream to every
 *    connected puller, one at a time: it sends one, waits until a puller
 *    has disconnected (a pulling bridge disconnects on end of stream; if
 *    none does for 5 s, it sends another), and sends the next, until no
 *    puller is connected, so a puller that
 *    connects meanwhile also gets one, and chan_nng_wait() on a push
 *    bridge returns only when every puller has seen the end.  A puller
 *    that has its end of stream gets nothing more.  A pull bridge fed by
 *    several pushers closes `in` after the end of stream of `opts.streams`
 *    distinct pushers (default 1).  A pull or sub bridge has finished
 *    before it closes `in` at the end of its stream.  On pair the peer
 *    acknowledges the end of stream.  On pub it is sent once, and lossy as
 *    everything on pub.
 *  - Lost connections.  nng reconnects dialers transparently (a bridge's
 *    dialer retries every 10 ms, backing off to 100 ms), so a peer is
 *    "lost" when no peer is connected, for a tenth of a second with nothing
 *    left to receive, before its stream ended: on pull, sub and pair that
 *    stops the bridge with -ECONNRESET (see "Errors").  A pull bridge that
 *    waits for several streams counts only a pusher that sent values and
 *    left before its end of stream, not one that has not connected yet.  On push and pub,
 *    where other peers may remain, each peer that disconnects before the
 *    end of stream is reported on the error channel as -ECONNRESET and the
 *    bridge goes on; values that nng had already handed to that peer are
 *    lost with it.
 *  - Errors.  A bridge that stops on an error (-EMSGSIZE, -EPROTO,
 *    -ECONNRESET, or a negative errno from nng) sends the error on the error
 *    channel, closes `in` (receivers get -EPIPE once they drained the values
 *    delivered before the error) and, on pair, closes `out` too (senders get
 *    -EPIPE), and returns the error from chan_nng_wait() and
 *    chan_nng_close().  The error channel, if given, is a channel of int
 *    (elem_size == sizeof(int)) that receives negative errno values with a
 *    non-blocking send: give it a buffer, or an error is dropped from it
 *    (chan_nng_wait() still returns the error that stopped the bridge).
 *  - Threads.  A bridge runs one plain thread per direction (two on pair).
 *    It never holds a scheduler worker, so channels of a bridge may be used
 *    from threads and tasks alike; nng's callbacks only count peers and
 *    wake a thread with a non-blocking send.
 *
 * Message format (the body of each nng message; nng itself does the
 * framing, routing and reconnecting):
 *
 *   byte 0-1  magic 0x63 0x6e ("cn")
 *   byte 2    version, 1
 *   byte 3    kind: 1 data, 2 end of stream, 3 end of stream acknowledged
 *   byte 4-7  elem_size of the sender's channel, unsigned, big-endian
 *   then      data: the elem_size bytes of one value; end of stream and its
 *             acknowledgement: the 8-byte stream id of the sending bridge,
 *             random, so that repeated end-of-stream messages of one pusher
 *             are counted once.
 *
 * Example, a stage that receives its input from another process instead of
 * from a local goroutine-style producer:
 *
 *   chan_t *in = chan_make(sizeof(long), 64);
 *   chan_nng_t *b;
 *   int rc = chan_nng_open(&b, CHAN_NNG_PULL, CHAN_NNG_DIAL,
 *                          "tcp://127.0.0.1:5555", sizeof(long),
 *                          NULL, in, NULL);
 *   while (chan_recv(in, &v) == 0) ...
 *   rc = chan_nng_close(b);
 *
 * See examples/dpipe.c for a pipeline and a work queue over processes.
 */
#ifndef CHAN_NNG_H
#define CHAN_NNG_H

#include <chan.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An opaque bridge between channels and one nng socket. */
typedef struct chan_nng chan_nng_t;

/* The nng protocol of a bridge's socket (see the top of this file). */
enum chan_nng_proto {
    CHAN_NNG_PUSH = 1,
    CHAN_NNG_PULL = 2,
    CHAN_NNG_PUB = 3,
    CHAN_NNG_SUB = 4,
    CHAN_NNG_PAIR = 5
};

/* Whether a bridge's socket listens on its URL or dials it. */
enum chan_nng_mode { CHAN_NNG_LISTEN = 1, CHAN_NNG_DIAL = 2 };

/* Options of chan_nng_open2(); zero-initialize, then set what you need. */
typedef struct chan_nng_opts {
    chan_t  *err;     /* NULL, or an int channel that receives errors */
    unsigned streams; /* pull: end-of-streams to wait for; 0 means 1 */
} chan_nng_opts_t;

/*
 * chan_nng_open - start a bridge between channels and a new nng socket.
 *
 * Opens a socket of protocol `proto`, listens on or dials `url` (`mode`),
 * and starts the bridge's threads.  A dialer connects in the background and
 * retries until the listener is there, so processes may start in any order.
 * `out` is required for PUSH, PUB and PAIR and must be NULL otherwise; `in`
 * is required for PULL, SUB and PAIR and must be NULL otherwise.
 * `elem_size` must be the elem_size of `out` and `in` (the bridge copies
 * that many bytes per value; it checks it with chan_elem_size()) and must
 * fit in 32 bits.  `err` may be NULL, or an int channel (see "Errors" at
 * the top of this file).
 *
 * The bridge takes its own reference to each channel and releases it in
 * chan_nng_close(); it owns the socket.  Does not block (beyond binding a
 * listener).
 *
 * Returns 0 with *bp set, or: -EINVAL for bad arguments (NULL bp or url, an
 * unknown proto or mode, a missing or extra channel, a channel of another
 * elem_size, an err channel whose elem_size is not sizeof(int)) or a URL
 * nng does not
 * accept; -EADDRINUSE if the address of a listener is taken; -ENOMEM;
 * -EAGAIN if a thread cannot be started; other negative errno values that
 * nng reports.  *bp is untouched on failure.
 */
CHAN_EXPORT int chan_nng_open(chan_nng_t **bp, enum chan_nng_proto proto,
                              enum chan_nng_mode mode, const char *url,
                              size_t elem_size, chan_t *out, chan_t *in,
                              chan_t *err);

/*
 * chan_nng_open2 - chan_nng_open() with options.
 *
 * As chan_nng_open(), with the error channel and the rest taken from
 * `opts` (NULL: all defaults).  `opts->streams` is valid only for PULL.
 */
CHAN_EXPORT int chan_nng_open2(chan_nng_t **bp, enum chan_nng_proto proto,
                               enum chan_nng_mode mode, const char *url,
                               size_t elem_size, chan_t *out, chan_t *in,
                               const chan_nng_opts_t *opts);

/*
 * chan_nng_wait - wait until a bridge has finished.
 *
 * A bridge has finished when each of its directions has: a sending one once
 * `out` was closed and drained and its end of stream delivered (push: every
 * puller disconnected after it; pair: the peer acknowledged it; pub: sent),
 * a receiving one once the end of stream arrived and `in` was closed; or when
 * the bridge stopped on an error.  Parks the calling task, or blocks the
 * thread, for up to timeout_ns.
 *
 * Returns 0 once finished cleanly, the error that stopped the bridge
 * (see "Errors"), -EAGAIN (timeout 0) or -ETIMEDOUT if it has not finished
 * yet, -EINVAL for a NULL b.
 */
CHAN_EXPORT int chan_nng_wait(chan_nng_t *b, int64_t timeout_ns);

/*
 * chan_nng_peers - the number of peers connected to the bridge's socket now.
 *
 * Returns the count (0 or more), or -EINVAL for a NULL b.  Never blocks.
 */
CHAN_EXPORT int chan_nng_peers(chan_nng_t *b);

/*
 * chan_nng_wait_peers - wait until at least n peers are connected.
 *
 * Useful before publishing (a publisher's values reach only connected
 * subscribers) or before spreading work over several pullers.  Parks the
 * calling task, or blocks the thread, for up to timeout_ns.
 *
 * Returns 0, -EAGAIN (timeout 0) or -ETIMEDOUT if fewer are connected,
 * -EINVAL for a NULL b.
 */
CHAN_EXPORT int chan_nng_wait_peers(chan_nng_t *b, unsigned n,
                                    int64_t timeout_ns);

/*
 * chan_nng_port - the TCP port a tcp:// listener is bound to.
 *
 * Listen on "tcp://127.0.0.1:0" to let the system pick a free port, then
 * ask for it here.  Returns the port (1..65535), -ENOTSUP if the bridge is
 * not a tcp:// listener, -EINVAL for a NULL b.  Never blocks.
 */
CHAN_EXPORT int chan_nng_port(chan_nng_t *b);

/*
 * chan_nng_close - stop a bridge and free it.
 *
 * Stops the bridge at once, whether it has finished or not (call
 * chan_nng_wait() first to let an end of stream reach the far side): closes
 * the socket, which drops the messages nng still holds, joins the bridge's
 * threads, closes `in` so that no receiver waits forever, and releases the
 * bridge's references to its channels.  Values left in `out` stay there;
 * `out` is not closed.  Inside a task the joining runs via chan_blocking(),
 * so the worker is not held.  chan_nng_close(NULL) does nothing and returns
 * -EINVAL.  b must not be used afterwards, nor by another thread meanwhile.
 *
 * Returns 0, or the error that had stopped the bridge (as chan_nng_wait()).
 */
CHAN_EXPORT int chan_nng_close(chan_nng_t *b);

#ifdef __cplusplus
}
#endif

#endif /* CHAN_NNG_H */

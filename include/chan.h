/*
 * chan.h - Go-style channels, select, timers, signal channels, wait groups
 * and an optional M:N task scheduler for C.
 *
 * Conventions (they hold for every function below):
 *
 *  - Errors.  A function that can fail returns 0 (or a non-negative result)
 *    on success and a negative errno value on failure: -EPIPE, -EAGAIN,
 *    -ETIMEDOUT, -EINVAL, -ENOMEM, -EDEADLK.  Constructors return NULL on
 *    failure.  No function reads or writes errno.
 *  - Timeouts are relative durations in nanoseconds (int64_t): 0 means "do
 *    not block", any negative value (CHAN_FOREVER) means "no limit".  They
 *    are measured on CLOCK_MONOTONIC, so wall-clock jumps do not affect them.
 *  - Values are copied.  A channel carries elements of the fixed size given
 *    to chan_make(), copied with memcpy.  To pass ownership of a large
 *    object, send a pointer.  elem_size may be 0 (a pure signal channel, like
 *    Go's chan struct{}); then every elem argument may be NULL.
 *  - Thread safety.  Every function may be called from any number of threads
 *    and scheduler tasks at once, and one channel may connect both.
 *  - Bad input (a NULL channel, a NULL elem where elem_size > 0, an unknown
 *    op, ...) gives -EINVAL or NULL, never a crash, a hang or a lost value.
 *
 * Inside a scheduler task every blocking call parks the task, not its worker
 * thread; in a plain thread it blocks the thread.
 */
#ifndef CHAN_H
#define CHAN_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>       /* POLLIN, POLLOUT, POLLERR, POLLHUP (I/O) */
#include <sys/socket.h> /* struct sockaddr, socklen_t (I/O) */
#include <sys/types.h>  /* ssize_t (I/O) */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CHAN_EXPORT __attribute__((visibility("default")))
#else
#define CHAN_EXPORT
#endif

/* Library version, also available to the preprocessor. */
#define CHAN_VERSION_MAJOR 0
#define CHAN_VERSION_MINOR 1
#define CHAN_VERSION_PATCH 0

/* A timeout that never expires. Any negative timeout means the same. */
#define CHAN_FOREVER ((int64_t)-1)

/* ------------------------------------------------------------------------ */
/* Channels                                                                 */
/* ------------------------------------------------------------------------ */

/* An opaque, reference-counted channel. */
typedef struct chan chan_t;

/*
 * chan_make - create a channel of elements of elem_size bytes.
 *
 * capacity == 0 makes an unbuffered (rendezvous) channel: a send completes
 * only once a receiver has taken the value.  capacity > 0 buffers up to that
 * many elements in FIFO order.  elem_size may be 0.
 *
 * Returns the channel with one reference owned by the caller, or NULL if
 * elem_size * capacity overflows or memory runs out.  Never blocks.
 */
CHAN_EXPORT chan_t *chan_make(size_t elem_size, size_t capacity);

/*
 * chan_retain - add a reference to ch.
 *
 * Returns ch (NULL if ch is NULL).  Never blocks.  Use it when handing a
 * channel to another thread or task that will release it independently.
 */
CHAN_EXPORT chan_t *chan_retain(chan_t *ch);

/*
 * chan_release - drop one reference to ch; the last one frees the channel.
 *
 * chan_release(NULL) does nothing.  Releasing the last reference while a
 * thread or task is still blocked on the channel is a programming error.
 * Releasing the last reference to a timer channel also stops the timer.
 * Never blocks.
 *
 * Misuse is reported on standard error, naming the function and the
 * mistake ("libchan: chan_send: channel used after its last chan_release"),
 * and aborts: a last release while a thread or task is blocked on the
 * channel, and, as long as the freed memory has not been reused, a release
 * after the last one and any retain, send, receive, close, select or
 * chan_pollfd on the freed channel.  (Under AddressSanitizer its own report
 * on the freed memory comes instead.)
 */
CHAN_EXPORT void chan_release(chan_t *ch);

/*
 * chan_send - send the elem_size bytes at elem, blocking until done.
 *
 * On a buffered channel it blocks while the buffer is full; on an unbuffered
 * one it returns only after a receiver has taken the value.  Blocked senders
 * are served first come, first served.
 *
 * Returns 0 once the value is delivered or buffered; -EPIPE if the channel is
 * closed, or is closed while waiting (the value is then not delivered);
 * -EINVAL if ch is NULL, or elem is NULL and elem_size > 0.
 */
CHAN_EXPORT int chan_send(chan_t *ch, const void *elem);

/*
 * chan_recv - receive one element into elem, blocking until one is there.
 *
 * elem may be NULL to discard the value.  Blocked receivers are served first
 * come, first served.
 *
 * Returns 0 with the value copied to elem; -EPIPE once the channel is closed
 * and its buffer is drained (elem is left untouched); -EINVAL if ch is NULL.
 */
CHAN_EXPORT int chan_recv(chan_t *ch, void *elem);

/*
 * chan_trysend - send without blocking.
 *
 * An unbuffered chan_trysend succeeds only if a receiver is already waiting.
 * Returns 0, -EAGAIN if the send cannot complete right now, -EPIPE if the
 * channel is closed, -EINVAL as for chan_send.
 */
CHAN_EXPORT int chan_trysend(chan_t *ch, const void *elem);

/*
 * chan_tryrecv - receive without blocking.
 *
 * Returns 0, -EAGAIN if no value is available right now (and the channel is
 * not closed), -EPIPE if the channel is closed and drained, -EINVAL if ch is
 * NULL.
 */
CHAN_EXPORT int chan_tryrecv(chan_t *ch, void *elem);

/*
 * chan_timedsend - chan_send giving up after timeout_ns nanoseconds.
 *
 * timeout_ns == 0 behaves exactly like chan_trysend (-EAGAIN); a negative
 * timeout waits forever.  Returns as chan_send, or -ETIMEDOUT when the
 * timeout expired (the value was not delivered).
 */
CHAN_EXPORT int chan_timedsend(chan_t *ch, const void *elem, int64_t timeout_ns);

/*
 * chan_timedrecv - chan_recv giving up after timeout_ns nanoseconds.
 *
 * timeout_ns == 0 behaves exactly like chan_tryrecv (-EAGAIN); a negative
 * timeout waits forever.  Returns as chan_recv, or -ETIMEDOUT when the
 * timeout expired (elem is left untouched).
 */
CHAN_EXPORT int chan_timedrecv(chan_t *ch, void *elem, int64_t timeout_ns);

/*
 * chan_close - close ch.
 *
 * Values already buffered can still be received.  Every blocked sender and
 * every blocked receiver (including selects) wakes with -EPIPE, and later
 * sends fail with -EPIPE.  This is how a "done" or "quit" broadcast is
 * expressed.  Never blocks.
 *
 * Returns 0, -EPIPE if ch was already closed, -EINVAL if ch is NULL.
 */
CHAN_EXPORT int chan_close(chan_t *ch);

/* chan_len - the number of elements buffered now (0 for unbuffered or NULL). */
CHAN_EXPORT size_t chan_len(chan_t *ch);

/* chan_cap - the capacity given to chan_make (0 for NULL). */
CHAN_EXPORT size_t chan_cap(chan_t *ch);

/*
 * chan_elem_size - the elem_size given to chan_make (0 for NULL), so that
 * typed wrappers can check sizeof at run time (see CHAN_SEND below).
 */
CHAN_EXPORT size_t chan_elem_size(chan_t *ch);

/*
 * Typed send and receive: CHAN_SEND(ch, v), CHAN_TRYSEND(ch, v),
 * CHAN_RECV(ch, &v) and CHAN_TRYRECV(ch, &v) are chan_send, chan_trysend,
 * chan_recv and chan_tryrecv that first check that sizeof the value is the
 * channel's elem_size, and return -EINVAL, sending or receiving nothing, if
 * it is not (or if ch is NULL).  For example, on a channel made with
 * chan_make(sizeof(int64_t), n), CHAN_SEND(ch, x) with an int x is refused
 * instead of sending 4 bytes of x and 4 of whatever follows it.
 *
 * v is evaluated once.  In standard C it must be an lvalue (a variable, an
 * array element, a member: its address is taken); with GCC or Clang it
 * may be any expression but an array, whose value is copied first, so
 * CHAN_SEND(ch, 42) sends an int (define CHAN_TYPED_LVALUES before
 * including this header to get the standard-C form there too).  The
 * receive forms take a pointer to the variable that receives the value;
 * its pointed-to type sets the size.
 */
static inline int chan__send_sized(chan_t *ch, const void *elem, size_t size,
                                   int try_)
{
    if (!ch || chan_elem_size(ch) != size)
        return -EINVAL;
    return try_ ? chan_trysend(ch, elem) : chan_send(ch, elem);
}

static inline int chan__recv_sized(chan_t *ch, void *elem, size_t size,
                                   int try_)
{
    if (!ch || chan_elem_size(ch) != size)
        return -EINVAL;
    return try_ ? chan_tryrecv(ch, elem) : chan_recv(ch, elem);
}

#if (defined(__GNUC__) || defined(__clang__)) && !defined(CHAN_TYPED_LVALUES)
#define CHAN__SEND_TYPED(ch, v, try_)                                         \
    __extension__({                                                           \
        __typeof__(v) chan__value_ = (v);                                     \
        chan__send_sized((ch), &chan__value_, sizeof chan__value_, (try_));   \
    })
#else
#define CHAN__SEND_TYPED(ch, v, try_)                                         \
    chan__send_sized((ch), &(v), sizeof(v), (try_))
#endif
#define CHAN_SEND(ch, v) CHAN__SEND_TYPED(ch, v, 0)
#define CHAN_TRYSEND(ch, v) CHAN__SEND_TYPED(ch, v, 1)
#define CHAN_RECV(ch, p) chan__recv_sized((ch), (p), sizeof *(p), 0)
#define CHAN_TRYRECV(ch, p) chan__recv_sized((ch), (p), sizeof *(p), 1)

/* ------------------------------------------------------------------------ */
/* Select                                                                   */
/* ------------------------------------------------------------------------ */

/* What a select case does: receive, send, or wait for a descriptor. */
enum chan_op { CHAN_RECV = 1, CHAN_SEND = 2, CHAN_FD = 3 };

/*
 * One case of chan_select(); fill ch, op and elem (a channel case) or op,
 * fd and events (a CHAN_FD case), read result.
 */
typedef struct chan_case {
    chan_t      *ch;     /* NULL: the case is disabled and never fires */
    enum chan_op op;
    void        *elem;   /* SEND: the value to send; RECV: where the value goes (may be NULL) */
    int          result; /* out, chosen case only: 0, or -EPIPE if its channel was closed;
                            CHAN_FD: the ready events (> 0) or -EBADF */
    int          fd;     /* CHAN_FD only: the descriptor; < 0 disables the case */
    int          events; /* CHAN_FD only: POLLIN and/or POLLOUT */
} chan_case_t;

/* Compound-literal helpers: CHAN_RECV_CASE(ch, &v), CHAN_SEND_CASE(ch, &v),
 * CHAN_FD_CASE(fd, POLLIN).  Channel cases leave fd and events 0: those
 * fields are ignored for them. */
#define CHAN_RECV_CASE(c, p) ((chan_case_t){ .ch = (c), .op = CHAN_RECV, .elem = (p) })
#define CHAN_SEND_CASE(c, p) ((chan_case_t){ .ch = (c), .op = CHAN_SEND, .elem = (void *)(p) })
#define CHAN_FD_CASE(f, ev)  ((chan_case_t){ .op = CHAN_FD, .fd = (f), .events = (ev) })

/*
 * chan_select - wait until one of the cases can proceed, perform exactly one.
 *
 * When several cases are ready one is chosen uniformly at random, so no case
 * is starved.  A receive from a closed, drained channel and a send to a
 * closed channel are ready: the case is chosen with result = -EPIPE and
 * nothing is sent or received.  Only the chosen case's result is written.
 * The same channel may appear in several cases, for sending and receiving;
 * a select never pairs with itself.  Cases whose ch is NULL are disabled.
 *
 * Returns the index of the chosen case; -EAGAIN when timeout_ns == 0 and no
 * case is ready (Go's default:); -ETIMEDOUT when a positive timeout expires;
 * -EINVAL for bad arguments (cases NULL with ncases > 0, an op other than
 * CHAN_RECV, CHAN_SEND or CHAN_FD in any case, disabled ones included, a
 * NULL elem on a send case whose channel has elem_size > 0, an enabled
 * CHAN_FD case whose events have neither POLLIN nor POLLOUT), in which
 * case nothing is performed; -ENOMEM if a select of very many cases cannot
 * allocate its bookkeeping.  With ncases == 0 or only disabled cases it waits
 * out the timeout (forever for CHAN_FOREVER, like Go's empty select {}).
 *
 * A CHAN_FD case (CHAN_FD_CASE(fd, events)) waits for a descriptor: it is
 * ready when fd is ready for one of events, exactly as chan_fd_wait would
 * report, and takes part in the random choice like any other case.
 * Choosing it performs nothing and sets result to the ready events (a
 * positive mask, with POLLERR and POLLHUP reported unasked) or to -EBADF
 * (fd is not open, or was closed with chan_fd_close while waiting).  Its
 * ch and elem are ignored; fd < 0 disables it, as in poll(2).  It does not
 * change the descriptor's mode.  A select with CHAN_FD cases may also
 * return -ENOMEM if the poller cannot be started.
 */
CHAN_EXPORT int chan_select(chan_case_t *cases, size_t ncases, int64_t timeout_ns);

/* ------------------------------------------------------------------------ */
/* Timers and signals                                                       */
/* ------------------------------------------------------------------------ */

/*
 * chan_after - a channel that receives once, after delay_ns.
 *
 * The channel has elem_size sizeof(int64_t) and capacity 1; the value is the
 * CLOCK_MONOTONIC time in nanoseconds at which the timer fired.  A delay of 0
 * or less fires at once.  The channel is not closed after firing: a second
 * receive blocks, as in Go's time.After.  The caller owns one reference;
 * releasing it stops the timer.  Returns NULL if memory runs out.
 */
CHAN_EXPORT chan_t *chan_after(int64_t delay_ns);

/*
 * chan_tick - a channel that receives every period_ns nanoseconds.
 *
 * As chan_after, repeating.  If the receiver falls behind, ticks are dropped
 * rather than queued (capacity 1).  Returns NULL if period_ns <= 0 or memory
 * runs out.  The caller owns one reference; releasing it stops the ticker.
 */
CHAN_EXPORT chan_t *chan_tick(int64_t period_ns);

/*
 * chan_timer_stop - stop a timer channel made by chan_after or chan_tick.
 *
 * Returns 0 if it stopped the timer before it fired (chan_after) or while it
 * was running (chan_tick); -EPIPE if it had already fired or was already
 * stopped; -EINVAL if timer is NULL or not a timer channel.  A value that
 * was already delivered stays in the channel.  Never blocks for long.
 */
CHAN_EXPORT int chan_timer_stop(chan_t *timer);

/*
 * chan_timer_reset - restart a timer channel made by chan_after or
 * chan_tick with a new delay or period, as Go's Timer.Reset and
 * Ticker.Reset do since Go 1.23.
 *
 * A chan_after timer then fires once, ns from now (at once, inside the
 * call, if ns <= 0, as chan_after does); a chan_tick timer ticks every ns
 * from now on.  A value of the old setting that was not received yet is
 * discarded, so no receive that starts after the call returns gets a stale
 * value, and each setting of a chan_after timer fires at most once.
 * Returns 0 if the timer was still running (pending, or a ticker not
 * stopped); -EPIPE if it had fired or been stopped (it runs again all the
 * same); -EINVAL if timer is NULL or not a timer channel, or for a ticker
 * if ns <= 0 (the ticker is then left as it was); -ENOMEM, with the timer
 * left as it was, if the library's timer heap cannot grow.  Safe to call
 * from any thread or task, also while others receive from the timer;
 * stops and resets of one timer take effect one at a time.  Never blocks
 * for long.
 */
CHAN_EXPORT int chan_timer_reset(chan_t *timer, int64_t ns);

/*
 * chan_signal_notify - deliver each arrival of signal signo to ch.
 *
 * ch must have elem_size sizeof(int); the value sent is the signal number,
 * with a non-blocking send: when ch is full the signal is dropped, so give
 * the channel a buffer.  Several channels may watch one signal and one
 * channel may watch several; watching the same pair twice changes nothing.
 * A watched signal is delivered even if it was ignored before, and watching
 * SIGTSTP replaces its default stop.  SIGSEGV, SIGBUS, SIGFPE and SIGILL
 * raised by the CPU (a real fault) keep their default action; sent by
 * kill() they are delivered.  The registry holds its own reference to ch
 * until chan_signal_stop().  Never blocks for long.
 *
 * A watched signal is also delivered when every thread of the application
 * blocks it (a mask inherited from the parent, say): the library's relay
 * thread takes it while it waits, as Go does; the masks of the
 * application's threads are never changed.  A signal sent to one thread
 * that blocks it (raise(), pthread_kill()) stays pending on that thread
 * until it unblocks it.
 *
 * Returns 0; -EINVAL if ch is NULL, its elem_size is not sizeof(int), signo
 * is outside 1..NSIG-1, is SIGKILL or SIGSTOP, or may not be caught (a
 * signal reserved by the C library); -ENOMEM if memory, a pipe or the
 * library's relay thread cannot be had.
 */
CHAN_EXPORT int chan_signal_notify(chan_t *ch, int signo);

/*
 * chan_signal_stop - stop all signal delivery to ch.
 *
 * On return no further signal is sent to ch, and the registry's
 * references to it are dropped.  Once no channel watches a signal, its
 * previous disposition is restored.  No arrival is lost on the way, as
 * with Go's signal.Stop: one that the library caught before the restore
 * is sent to ch (and the other watchers) before stop returns, one that
 * comes after takes the restored disposition (the default action, a
 * handler, or nothing if ignored), and a signal that the application
 * blocks in every thread is blocked again before the restore, so it stays
 * pending as before it was watched.  May wait briefly for the library's
 * relay thread and for its signal handler running on other threads.
 * Returns 0 (also if ch watched nothing), -EINVAL if ch is NULL.
 */
CHAN_EXPORT int chan_signal_stop(chan_t *ch);

/* ------------------------------------------------------------------------ */
/* Scheduler (optional)                                                     */
/* ------------------------------------------------------------------------ */

/* An opaque pool of worker threads running tasks (coroutines). */
typedef struct chan_sched chan_sched_t;

/* Options for chan_sched_new(). */
typedef struct chan_sched_opts {
    unsigned threads;     /* worker threads; 0 = number of online CPUs */
    size_t   stack_size;  /* bytes per task stack; 0 = the library default */
} chan_sched_opts_t;

/*
 * chan_sched_new - start a scheduler with its worker threads.
 *
 * opts may be NULL for the defaults (one worker per online CPU, 64 KiB task
 * stacks, or 256 KiB in sanitizer builds, whose frames are larger; sizes
 * are rounded up to whole pages).  Below each stack lies a 64 KiB guard
 * region, so that a task that overflows its stack dies of SIGSEGV; a frame
 * larger than that is caught only in code built with
 * -fstack-clash-protection (README, "Task stacks").  Several schedulers may
 * exist at once.  Maps the first task stack at once.  Returns NULL if
 * threads or memory cannot be had, if opts->threads is above 4096, if
 * opts->stack_size is above 1 GiB (256 MiB on 32-bit systems), or if no
 * stack of that size can be mapped.
 */
CHAN_EXPORT chan_sched_t *chan_sched_new(const chan_sched_opts_t *opts);

/*
 * chan_go - start fn(arg) as a new task on s.
 *
 * s == NULL inside a task means the task's own scheduler.  Never blocks.
 * The task's stack is normally taken when it first runs, so a queue of
 * tasks that have not started yet costs no stacks.  If no stack can be
 * mapped then (memory, or the kernel's limit on mappings, ran out), the
 * task waits, and runs on the stack of the next task of s that returns,
 * or on a new one once memory comes back (retried every few milliseconds);
 * the first such failure of a scheduler is reported once on standard
 * error ("libchan: cannot map a task stack of N bytes (ENOMEM); retrying").
 * While tasks of s wait so, chan_go maps the new task's stack at once and
 * fails if it cannot, rather than queue a task that may never run.
 * Returns 0; -EINVAL if fn is NULL, or s is NULL outside a task; -ENOMEM if
 * the task cannot be allocated, or needs a stack now that cannot be mapped
 * (fn then never runs).
 */
CHAN_EXPORT int chan_go(chan_sched_t *s, void (*fn)(void *arg), void *arg);

/*
 * chan_go_at - chan_go, remembering that it was called at file:line (file
 * must outlive the task: a string literal, as __FILE__ is), which
 * chan_sched_dump prints for the task.  The macro chan_go below calls it
 * with __FILE__ and __LINE__; (chan_go)(s, fn, arg) and &chan_go still
 * reach the plain function, which records no place.  Returns as chan_go.
 */
CHAN_EXPORT int chan_go_at(chan_sched_t *s, void (*fn)(void *arg), void *arg,
                           const char *file, int line);

#define chan_go(s, fn, arg) chan_go_at((s), (fn), (arg), __FILE__, __LINE__)

/*
 * chan_sched_wait - block until every task of s has returned.
 *
 * Tasks started by tasks count too.  Called from a task of another
 * scheduler it parks that task, like every blocking call, so its worker
 * runs other tasks meanwhile.  Returns 0; -EINVAL if s is NULL; -EDEADLK
 * when called from a task of s (it would wait for itself).
 */
CHAN_EXPORT int chan_sched_wait(chan_sched_t *s);

/*
 * chan_sched_free - wait like chan_sched_wait, then stop the workers and free
 * everything.  From a task of another scheduler the wait parks the task.
 * chan_sched_free(NULL) does nothing; calling it from a task of s is a
 * programming error.
 */
CHAN_EXPORT void chan_sched_free(chan_sched_t *s);

/* chan_sched_current - the scheduler of the calling task; NULL outside a task. */
CHAN_EXPORT chan_sched_t *chan_sched_current(void);

/* chan_yield - let other tasks run (in a plain thread: sched_yield()). */
CHAN_EXPORT void chan_yield(void);

/*
 * chan_sleep - park the calling task (or sleep the calling thread) for ns
 * nanoseconds.  Returns 0 (at once for ns <= 0).
 */
CHAN_EXPORT int chan_sleep(int64_t ns);

/*
 * chan_sched_dump - write one line per task of s to the descriptor fd.
 *
 * For debugging, like the goroutine dump of a Go program that gets
 * SIGQUIT: a first line "libchan: scheduler 0x...: N tasks, M workers",
 * then for each task its id and its state, "running on worker W",
 * "runnable", or "parked T.TTTs: " and what it waits on: "send on channel
 * 0x... (elem E, cap C, len L)" or "recv on ...", "select over N cases"
 * (the enabled ones), "sleep", "wait group 0x...", "chan_blocking call",
 * "descriptor D (events 0x...)" or "chan_sched_wait on scheduler 0x...",
 * with ", with a deadline" for a timed wait; then ", started at FILE:LINE"
 * for a task started with the chan_go macro.  T counts from the first
 * dump (or check of CHAN_DEBUG=deadlock, every 200 ms) that saw the task
 * in this wait, so a wait no earlier dump saw shows 0.000s.
 *
 * Safe to call from any thread or task at any time, also from a task of
 * s, while tasks start and finish: it takes no lock of the library, and
 * each line is a snapshot of one task, taken while the others move on.
 * Blocks only in write(2).  Returns 0; -EINVAL if s is NULL; -ENOMEM if
 * its buffer cannot be allocated; or the negative errno of a failed write
 * (-EBADF for a bad fd, -EPIPE, ...).  With the environment variable
 * CHAN_DEBUG=deadlock set when s was made, s writes such a dump to
 * standard error by itself, once, after the line "libchan: possible
 * deadlock: all N tasks of scheduler 0x... are blocked", when every task
 * has stayed blocked for a second on channels, selects or wait groups,
 * without a deadline, while no channel operation completed in the process
 * and no timer or signal watch was pending (README, "Debugging").
 */
CHAN_EXPORT int chan_sched_dump(chan_sched_t *s, int fd);

/* ------------------------------------------------------------------------ */
/* Wait groups                                                              */
/* ------------------------------------------------------------------------ */

/* An opaque counter to wait on, like Go's sync.WaitGroup. */
typedef struct chan_wg chan_wg_t;

/* chan_wg_new - a wait group with counter 0, or NULL if memory runs out. */
CHAN_EXPORT chan_wg_t *chan_wg_new(void);

/*
 * chan_wg_add - add delta (which may be negative) to the counter.
 *
 * When the counter reaches zero every waiter wakes.  Returns 0; -EINVAL if wg
 * is NULL or the counter would go negative (it is then left unchanged).
 */
CHAN_EXPORT int chan_wg_add(chan_wg_t *wg, int delta);

/* chan_wg_done - chan_wg_add(wg, -1). */
CHAN_EXPORT int chan_wg_done(chan_wg_t *wg);

/*
 * chan_wg_wait - block until the counter is zero (at once if it is).
 *
 * Any number of threads and tasks may wait; a task parks, leaving its
 * worker thread free.  Returns 0, or -EINVAL if wg is NULL.
 */
CHAN_EXPORT int chan_wg_wait(chan_wg_t *wg);

/*
 * chan_wg_free - free wg.  chan_wg_free(NULL) does nothing.  Freeing a wait
 * group that a thread or task still waits on is a programming error.
 */
CHAN_EXPORT void chan_wg_free(chan_wg_t *wg);

/* ------------------------------------------------------------------------ */
/* I/O (tasks and threads)                                                  */
/* ------------------------------------------------------------------------ */

/*
 * The calls below wait for file descriptors through one poller per process
 * (epoll on Linux), started by the first call that has to wait.  Inside a
 * task a wait parks the task, never its worker thread; in a plain thread it
 * blocks the thread.  Any number of threads and tasks may wait on one
 * descriptor at once, for the same or for different events.  POLLIN,
 * POLLOUT, POLLERR and POLLHUP are those of <poll.h>.
 *
 * chan_read and chan_write put a descriptor that is not a socket (a pipe,
 * a terminal) into non-blocking mode (O_NONBLOCK) when they find it in
 * blocking mode, as Go does with every descriptor it manages, and
 * chan_accept and chan_connect do so for their socket; sockets are
 * otherwise read and written with MSG_DONTWAIT.  The flag stays set, and
 * it is shared by every duplicate of the descriptor and by other processes
 * that share the open file.  These calls never block a worker thread.
 *
 * Close a descriptor that somebody may be waiting on with chan_fd_close,
 * which wakes the waiters.  Closing with plain close(2) a descriptor on
 * which nobody waits is fine: a later descriptor with the same number
 * works normally and never sees readiness left over from the old one.
 *
 * After fork() the child may use these calls on its own: its first wait
 * starts a poller of its own.  Waits that were in progress in the parent
 * do not exist in the child.
 */

/*
 * chan_fd_wait - wait until fd is ready for one of events (POLLIN, POLLOUT
 * or both).
 *
 * Level-triggered: a descriptor that is ready now returns at once.  Blocks
 * up to timeout_ns (0: not at all; negative: no limit).  Returns the ready
 * events as poll(2) reports them in revents (a positive mask; POLLERR and
 * POLLHUP are reported whether asked for or not); -EAGAIN when timeout_ns
 * is 0 and fd is not ready; -ETIMEDOUT; -EBADF if fd is not an open
 * descriptor, or is closed with chan_fd_close while waiting; -EINVAL if
 * events has neither POLLIN nor POLLOUT; -ENOMEM if the poller cannot be
 * started.  Does not change the descriptor's mode.
 */
CHAN_EXPORT int chan_fd_wait(int fd, int events, int64_t timeout_ns);

/*
 * chan_read - read up to len bytes from fd into buf, waiting up to
 * timeout_ns for data.
 *
 * Tries the read first and waits (as chan_fd_wait for POLLIN) only if
 * there is nothing to read.  Returns the number of bytes read (> 0); 0 at
 * end of file, or for len == 0; -EAGAIN when timeout_ns is 0 and nothing
 * can be read; -ETIMEDOUT; -EBADF as for chan_fd_wait; -EINVAL if buf is
 * NULL and len > 0; -ENOMEM if the poller cannot be started; or the
 * negative errno of read(2) (-ECONNRESET, ...).  May set O_NONBLOCK on fd
 * (see above).
 */
CHAN_EXPORT ssize_t chan_read(int fd, void *buf, size_t len, int64_t timeout_ns);

/*
 * chan_write - write all len bytes of buf to fd, waiting for room as often
 * as needed; timeout_ns bounds the whole call.
 *
 * Never raises SIGPIPE: sockets are written with MSG_NOSIGNAL, anything
 * else with SIGPIPE blocked in the calling thread for the write, and a
 * SIGPIPE that the write itself raised is taken back.  Returns len (0 for
 * len == 0); if an error or the timeout ends the call after some bytes
 * were written, the number written (< len); otherwise a negative errno:
 * -EPIPE when the reading end is gone, -ETIMEDOUT, -EAGAIN (timeout_ns 0
 * and no room at all), -EBADF as for chan_fd_wait, -EINVAL if buf is NULL
 * and len > 0, -ENOMEM if the poller cannot be started, or the negative
 * errno of write(2).  May set O_NONBLOCK on fd (see above).
 */
CHAN_EXPORT ssize_t chan_write(int fd, const void *buf, size_t len, int64_t timeout_ns);

/*
 * chan_accept - wait up to timeout_ns for a connection on the listening
 * socket fd and accept it.
 *
 * addr and addrlen are as for accept(2) (both may be NULL).  Returns the
 * new socket, non-blocking and close-on-exec; -EAGAIN when timeout_ns is 0
 * and no connection is pending; -ETIMEDOUT; -EBADF as for chan_fd_wait;
 * -EINVAL if addr is given without addrlen; -ENOMEM if the poller cannot
 * be started; or the negative errno of accept4(2).  Sets O_NONBLOCK on fd.
 */
CHAN_EXPORT int chan_accept(int fd, struct sockaddr *addr, socklen_t *addrlen,
                            int64_t timeout_ns);

/*
 * chan_connect - connect the socket fd to addr and wait up to timeout_ns
 * until the connection is made.
 *
 * Returns 0 once connected; -ETIMEDOUT; -EAGAIN when timeout_ns is 0 and
 * the connection is still being made (it goes on: wait for POLLOUT, then
 * read SO_ERROR, or call chan_fd_wait); the connection's error as a
 * negative errno (-ECONNREFUSED, -ENETUNREACH, ...); -EBADF as for
 * chan_fd_wait; -EINVAL if addr is NULL; -ENOMEM if the poller cannot be
 * started; or the negative errno of connect(2).  After -ETIMEDOUT the
 * socket's state is unspecified: close it.  Sets O_NONBLOCK on fd.
 */
CHAN_EXPORT int chan_connect(int fd, const struct sockaddr *addr, socklen_t addrlen,
                             int64_t timeout_ns);

/*
 * chan_fd_close - wake every thread and task that waits on fd, forget fd,
 * and close it.
 *
 * Every wait on fd in progress (chan_fd_wait, chan_read, chan_write,
 * chan_accept, chan_connect, a CHAN_FD select case) ends with -EBADF (a
 * select chooses the case with result -EBADF).  Never blocks for long.
 * Returns 0, or the negative errno of close(2) (-EBADF if fd was not open).
 */
CHAN_EXPORT int chan_fd_close(int fd);

/*
 * chan_blocking - run fn(arg), which may block in anything (file I/O,
 * getaddrinfo, another library's lock), without holding a worker thread.
 *
 * Inside a task, fn runs on a helper thread of the library while the task
 * is parked, and the call returns once fn has returned; in a plain thread
 * it simply calls fn(arg).  On a helper, fn's thread-local state (errno
 * included) is the helper's, and every signal is blocked: pass results back
 * through arg.  fn must return (no pthread_exit, no longjmp out of it).
 *
 * Helpers are shared by the whole process and started on demand, up to 64
 * at once (the environment variable CHAN_BLOCKING_THREADS, read at the
 * first call from a task, may set 1 to 10000); beyond that a call waits,
 * parked, for the first helper to become free, so calls whose fn wait for
 * each other must not outnumber the limit.  A helper left without work for
 * 10 s exits (CHAN_BLOCKING_IDLE_MS sets that time in milliseconds).  A
 * program that never calls chan_blocking from a task starts no helper.
 * After fork() the child starts helpers of its own.
 *
 * Returns 0; -EINVAL if fn is NULL; -EAGAIN if no helper thread can be had
 * (none is free and no new thread can be created), and then fn was not
 * called.
 */
CHAN_EXPORT int chan_blocking(void (*fn)(void *arg), void *arg);

/* ------------------------------------------------------------------------ */
/* Event-loop integration                                                   */
/* ------------------------------------------------------------------------ */

/*
 * chan_pollfd - a file descriptor that is readable while ch is ready, for
 * a foreign event loop (epoll, poll, libuv, GLib, libevent).
 *
 * events is POLLIN (from <poll.h>): the descriptor is readable while a
 * receive would not block (a value is buffered, a sender waits, or ch is
 * closed); or POLLOUT: readable while a send would not block (there is
 * room, a receiver waits, or ch is closed).  Either way, watch it for
 * readability (POLLIN, EPOLLIN, UV_READABLE, G_IO_IN).  It is
 * level-triggered: when the loop reports it readable, call chan_tryrecv
 * (or chan_trysend) until it returns -EAGAIN (or -EPIPE); the first try
 * may already return -EAGAIN, when another consumer was faster.
 *
 * The descriptor belongs to ch: never read, write or close it.  It stays
 * valid until ch's last reference is released, which closes it, and
 * asking again for the same events returns the same descriptor.  From its
 * first pollfd on, every operation on ch takes ch's lock, and one that
 * makes ch ready or not ready for a direction with a descriptor costs a
 * system call; channels that never had a pollfd pay nothing for it.
 *
 * Returns the descriptor (close-on-exec); -EINVAL if ch is NULL or events
 * is not exactly one of POLLIN and POLLOUT; -ENOMEM or -EMFILE if it
 * cannot be made.
 */
CHAN_EXPORT int chan_pollfd(chan_t *ch, int events);

#ifdef __cplusplus
}
#endif

#endif /* CHAN_H */

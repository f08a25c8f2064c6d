/*
 * sched.c - which worker runs the calling thread, the run queues, work
 * stealing and idling (the shape of it all is described in sched.h).
 *
 * Invariants.
 *   - A runnable task is in exactly one place: a ring, a run-next slot or
 *     the global queue; a running task is in none.  Only task_run() in
 *     task.c (after a park, yield or first run) and chan__sched_ready()
 *     (after a wakeup) put an existing task back, and park.h's state
 *     protocol lets exactly one of them do it per park.
 *   - Only a worker's own thread adds to its ring or its run-next slot
 *     (tasks running on it count as that thread); other workers only take
 *     from them.  So a worker that sees its own len == 0 knows its queue
 *     is empty.
 *   - sched->ntasks counts tasks from chan_go to their return, and on
 *     after it until their worker runs out of work (task.c's task_flush),
 *     so it is never lower than the number of live tasks.  When it
 *     drops to 0 every queue is empty.
 *
 * No lost wakeups.  Adding work and going to sleep meet on one atomic
 * word, sched->idle_word, which both sides update with a read-modify-write
 * after their own step: an adder publishes the task, then reads the word
 * with fetch_add(0); a worker about to sleep adds itself to the word, then
 * looks at every queue once more.  Read-modify-writes of one word are
 * totally ordered.  If the adder's comes later, it sees the idle worker
 * and hands it a token.  If the worker's comes later, it reads what the
 * adder's wrote, so the adder's push happens before the worker's last
 * look, which finds the task.  (Fences would express the same, but
 * ThreadSanitizer does not understand them.)  A spinning worker moves from
 * spinning to idle in the same single update, so an adder that saw it
 * spinning is covered by its last look too.  An idle worker that sleeps
 * in the descriptor poll instead of on idle_cv (idle()) counts as idle
 * like the others; it is published as s->poll_sleeper under idle_mu
 * before its wait, and the adder, which finds it there under idle_mu,
 * wakes it with a kick of the poll instead of a signal (a kick that comes
 * before the wait ends the wait at once).
 */
#include "internal.h"

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "netpoll.h"
#include "sched/sched.h"
#include "sched/stack.h"
#include "waitq.h"

enum {
    /* Every GLOBAL_EVERY schedules a worker looks at the global queue
     * first, so tasks from outside are not starved by busy local queues.
     * A prime, so it does not fall into step with a program's own loop. */
    GLOBAL_EVERY = 61,
    /* Run-next picks in a row before the ring gets a turn: two tasks
     * passing a value back and forth must not starve the rest. */
    RUNNEXT_MAX = 32,
    /* Rounds of looking for work before a worker sleeps; with the pause
     * between rounds this is some tens of microseconds. */
    SPIN_ROUNDS = 32,
    SPIN_PAUSES = 32,
    /* After those rounds a worker stays spinning while other workers have
     * queued tasks, or queued any during its last nap, looking again after
     * each nap of this many ns (plus the kernel's timer slack, 50 us by
     * default). */
    SPIN_NAP_NS = 20000,
    /* While it spins, a worker looks at the descriptor poll every this
     * many rounds (a few microseconds apart), and before each nap: if
     * nobody sleeps in the poll, it is the one who sees I/O first. */
    LOOK_EVERY = 4,
    /* Naps, at most, that a worker about to sleep waits for the poller
     * thread to hand the poll over (netpoll.c) before it sleeps on
     * idle_cv instead: 40 ms or more, since on a loaded machine the
     * poller thread may wait that long for a CPU, and a worker that gives
     * up sleeps on idle_cv until work comes, the poll left to the poller
     * thread. */
    HANDOVER_NAPS = 2000,
    /* While tasks wait for stacks, an idle worker tries one of them
     * again this often (milliseconds). */
    STACK_RETRY_MS = 10,
};

/* How long a ring must hold tasks without once running empty before
 * another worker steals from it (see "When to steal" at steal()). */
#define CHAN_STEAL_AGE_NS ((int64_t)20 * 1000)

/* The running worker, or NULL outside one (CHAN_TLS: initial-exec). */
static CHAN_TLS chan__worker_t *tls_worker;

/*
 * noinline (and noclone): the compiler may compute the address of a
 * thread-local variable once per function and reuse it, which is wrong
 * when a task calling this function can resume on another thread.  An
 * opaque call per read forces a fresh lookup every time.
 */
#if defined(__clang__)
__attribute__((noinline))
#else
__attribute__((noinline, noclone))
#endif
chan__worker_t *chan__worker_self(void)
{
    chan__worker_t *w = tls_worker;
    __asm__ __volatile__("" : "+r"(w)); /* no value propagation either */
    return w;
}

void chan__worker_bind(chan__worker_t *w)
{
    tls_worker = w;
}

/* ---------------------------------------------------------------- waking */

/* worker->len: the ring's length, plus this if run-next is taken. */
#define LEN_NEXT (1u << 16)

/* The two halves of sched->idle_word. */
#define IDLE_ONE ((uint64_t)1)
#define SPIN_ONE ((uint64_t)1 << 32)
#define IDLE_COUNT(w) ((unsigned)((w) & 0xffffffffu))
#define SPIN_COUNT(w) ((unsigned)((w) >> 32))

/* Wakes one idle worker if there is one and nobody is looking for work.
 * Called after publishing new work. */
static void notify(chan_sched_t *s)
{
    /* A read-modify-write, not a load: see "No lost wakeups" above. */
    uint64_t w = atomic_fetch_add_explicit(&s->idle_word, 0,
                                           memory_order_seq_cst);
    if (SPIN_COUNT(w) != 0 || IDLE_COUNT(w) == 0)
        return;
    chan__check(pthread_mutex_lock(&s->idle_mu));
    w = atomic_load_explicit(&s->idle_word, memory_order_relaxed);
    /* A worker sleeping in the descriptor poll keeps polling while others
     * can be woken; it is kicked out only when it is the last one. */
    unsigned sleepers = IDLE_COUNT(w) - (s->poll_sleeper != NULL);
    if (s->tokens < sleepers) {
        s->tokens++;
        chan__check(pthread_cond_signal(&s->idle_cv));
    } else if (s->poll_sleeper && !s->poll_kicked) {
        s->poll_kicked = 1;
        chan__netpoll_kick();
    }
    chan__check(pthread_mutex_unlock(&s->idle_mu));
}

/* ---------------------------------------------------------------- queues */

/*
 * A worker's run-queue lock: a spin lock, since it is held for a few
 * loads and stores (a steal: up to half a ring), and taking and dropping
 * it costs one atomic read-modify-write where a mutex costs two and two
 * calls.  A waiter whose holder was preempted yields its CPU.
 */
static void qlock(chan__worker_t *w)
{
    for (unsigned i = 0;; i++) {
        if (!atomic_exchange_explicit(&w->mu, 1, memory_order_acquire))
            return;
        while (atomic_load_explicit(&w->mu, memory_order_relaxed)) {
            if (++i < 64)
                chan__cpu_relax();
            else
                sched_yield();
        }
    }
}

static void qunlock(chan__worker_t *w)
{
    atomic_store_explicit(&w->mu, 0, memory_order_release);
}

/* Updates w->len after a change of w's queue; under w's lock. */
static void set_len(chan__worker_t *w)
{
    atomic_store_explicit(&w->len,
                          (w->tail - w->head) + (w->runnext ? LEN_NEXT : 0),
                          memory_order_relaxed);
}

/* Appends the chain first..last (n tasks) to the global queue. */
static void global_append(chan_sched_t *s, chan__task_t *first,
                          chan__task_t *last, size_t n)
{
    chan__check(pthread_mutex_lock(&s->gmu));
    chan__taskq_append(&s->global, first, last, n);
    chan__check(pthread_mutex_unlock(&s->gmu));
}

/* Tasks a plain thread made runnable inside chan__unpark_many_begin/end,
 * not queued yet: all of one scheduler, at most READY_BATCH. */
enum { READY_BATCH = 64 };
static CHAN_TLS struct ready_batch {
    chan_sched_t *s;
    chan__task_t *first, *last;
    size_t n;
} ready_batch;

static void push_chain(chan_sched_t *s, chan__task_t *first,
                       chan__task_t *last, size_t n)
{
    /* Relaxed: the gmu release in global_append orders the count before
     * the tasks, and so before anything their return lets the freeing
     * thread see. */
    atomic_fetch_add_explicit(&s->pushers, 1, memory_order_relaxed);
    global_append(s, first, last, n);
    notify(s);
    /* Release: everything above happens before sched_destroy frees s. */
    atomic_fetch_sub_explicit(&s->pushers, 1, memory_order_release);
}

void chan__sched_flush_ready(void)
{
    struct ready_batch *b = &ready_batch;
    if (b->n == 0)
        return;
    chan_sched_t *s = b->s;
    chan__task_t *first = b->first, *last = b->last;
    size_t n = b->n;
    *b = (struct ready_batch){ NULL, NULL, NULL, 0 };
    /* The tasks cannot finish before this, so s outlives the call. */
    push_chain(s, first, last, n);
}

void chan__sched_push_global(chan_sched_t *s, chan__task_t *t)
{
    if (chan__unpark_many_depth) {
        struct ready_batch *b = &ready_batch;
        if (b->n && b->s != s)
            chan__sched_flush_ready();
        t->next = NULL;
        if (b->n)
            b->last->next = t;
        else
            b->s = s, b->first = t;
        b->last = t;
        if (++b->n == READY_BATCH)
            chan__sched_flush_ready();
        return;
    }
    push_chain(s, t, t, 1);
}

/*
 * Puts t at the tail of w's ring, or in its run-next slot (moving the old
 * occupant to the ring).  A full ring sends half of itself, oldest first,
 * to the global queue, where other workers find it.  Called by w's thread.
 */
static void local_put(chan__worker_t *w, chan__task_t *t, int next, int wake)
{
    chan__task_t *first = NULL, *last = NULL;
    size_t moved = 0;
    qlock(w);
    if (next) {
        chan__task_t *old = w->runnext;
        w->runnext = t;
        w->next_seq++;
        t = old;
    }
    if (t) {
        if (w->tail - w->head == CHAN_RUNQ_SIZE) {
            for (unsigned i = 0; i < CHAN_RUNQ_SIZE / 2; i++) {
                chan__task_t *x = w->ring[w->head++ % CHAN_RUNQ_SIZE];
                if (last)
                    last->next = x;
                else
                    first = x;
                last = x;
                moved++;
            }
        }
        w->ring[w->tail++ % CHAN_RUNQ_SIZE] = t;
    }
    set_len(w);
    qunlock(w);
    atomic_store_explicit(&w->puts,
                          atomic_load_explicit(&w->puts, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (moved)
        global_append(w->sched, first, last, moved);
    if (wake)
        notify(w->sched);
}

void chan__sched_push_local(chan__worker_t *w, chan__task_t *t)
{
    /* A yield: the worker itself will look here next, no need to wake
     * anybody (that would only bounce the yielding task between threads). */
    local_put(w, t, 0, 0);
}

void chan__sched_ready(chan__task_t *t)
{
    chan__worker_t *w = chan__worker_self();
    if (w && w->sched == t->sched && w->current)
        local_put(w, t, 1, 1);
    else if (w && w->sched == t->sched && w->polling)
        local_put(w, t, 0, 0); /* idle() runs it, or wakes a helper */
    else
        chan__sched_push_global(t->sched, t);
}

void chan__sched_spawn(chan_sched_t *s, chan__task_t *t)
{
    chan__worker_t *w = chan__in_task_of(s);
    if (w)
        local_put(w, t, 0, 1);
    else
        chan__sched_push_global(s, t);
}

/* The next task of w's own queue, or NULL.  Called by w's thread. */
static chan__task_t *pop_local(chan__worker_t *w)
{
    if (atomic_load_explicit(&w->len, memory_order_relaxed) == 0)
        return NULL;
    chan__task_t *t = NULL;
    qlock(w);
    if (w->runnext &&
        (w->runnext_streak < RUNNEXT_MAX || w->head == w->tail)) {
        t = w->runnext;
        w->runnext = NULL;
        w->runnext_streak++;
    } else if (w->head != w->tail) {
        t = w->ring[w->head++ % CHAN_RUNQ_SIZE];
        w->runnext_streak = 0;
        if (w->head == w->tail)
            atomic_store_explicit(
                &w->drains,
                atomic_load_explicit(&w->drains, memory_order_relaxed) + 1,
                memory_order_relaxed);
    }
    if (t)
        set_len(w);
    qunlock(w);
    return t;
}

/*
 * Takes a task from the global queue, and a fair share of the rest (up to
 * half a ring) into w's ring, so that a burst from outside is not fetched
 * one lock round trip at a time.  Called by w's thread.
 */
static chan__task_t *pop_global(chan__worker_t *w)
{
    chan_sched_t *s = w->sched;
    if (chan__taskq_len(&s->global) == 0)
        return NULL;
    chan__check(pthread_mutex_lock(&s->gmu));
    size_t len = chan__taskq_len(&s->global);
    if (len == 0) {
        chan__check(pthread_mutex_unlock(&s->gmu));
        return NULL;
    }
    size_t n = len / s->nworkers + 1;
    if (n > len)
        n = len;
    if (n > CHAN_RUNQ_SIZE / 2)
        n = CHAN_RUNQ_SIZE / 2;
    chan__task_t *first = chan__taskq_take(&s->global, n);
    chan__check(pthread_mutex_unlock(&s->gmu));

    chan__task_t *t = first;
    first = first->next;
    /* (A full ring spills half of itself back to the global queue.) */
    for (size_t i = 1; i < n; i++) {
        chan__task_t *x = first;
        first = first->next;
        local_put(w, x, 0, 0);
    }
    return t;
}

/*
 * When to steal.  Taking tasks from a busy worker pays off when that
 * worker cannot keep up: its ring stays full of tasks that would wait.
 * It costs when the tasks pass values to each other: a stolen task's
 * every hand-off then moves the channel's and the waiter's cache lines
 * between two CPUs, which on some machines costs more than running both
 * sides on one (a consumer selecting over four producers' channels ran at
 * a quarter of the speed with every woken producer stolen at once).  So
 * a thief first watches a victim's ring: the victim counts the times its
 * own pops leave its ring empty (drains), and the thief steals only once
 * the ring has held tasks without draining for CHAN_STEAL_AGE_NS.  A
 * worker that keeps up drains its ring every few microseconds and keeps
 * its tasks; one stuck in a long task, or with more tasks than it gets
 * through, loses half of them after the watch.  One watch at a time per
 * thief: with two workers there is only one victim to watch, and with
 * more a thief that found one stale ring takes from it.  The last look
 * before sleeping (take_next) steals without watching, so that no worker
 * sleeps while another's ring holds tasks.
 */
static int ring_stale(chan__worker_t *w, chan__worker_t *v)
{
    unsigned drains = atomic_load_explicit(&v->drains, memory_order_relaxed);
    int64_t now = chan__now();
    if (w->watch != v || w->watch_drains != drains) {
        w->watch = v;
        w->watch_drains = drains;
        w->watch_since = now;
        return 0;
    }
    return now - w->watch_since >= CHAN_STEAL_AGE_NS;
}

/*
 * Steals half of another worker's ring (rounded up) into w's, returning
 * one of the stolen tasks.  With take_next, a victim whose ring is empty
 * may also lose its run-next task; that is left for the last look before
 * sleeping, because the victim usually runs it within microseconds.
 * Without take_next, only a ring that ring_stale() says has waited.
 */
static chan__task_t *steal(chan__worker_t *w, int take_next)
{
    chan_sched_t *s = w->sched;
    chan__task_t *batch[CHAN_RUNQ_SIZE / 2];
    w->rng = w->rng * 1103515245u + 12345u;
    unsigned start = (w->rng >> 8) % s->nworkers;
    for (unsigned i = 0; i < s->nworkers; i++) {
        chan__worker_t *v = &s->workers[(start + i) % s->nworkers];
        /* Without take_next a victim with only a run-next task is left
         * alone, and its lock too. */
        unsigned len = atomic_load_explicit(&v->len, memory_order_relaxed);
        if (v == w)
            continue;
        if (len == 0 || len == LEN_NEXT) {
            if (w->watch == v)
                w->watch = NULL; /* its ring is empty: a new watch */
            if (len == 0 || !take_next)
                continue;
        }
        if (!take_next && !ring_stale(w, v))
            continue;
        w->watch = NULL;
        unsigned k = 0;
        qlock(v);
        unsigned n = v->tail - v->head;
        k = n - n / 2;
        for (unsigned j = 0; j < k; j++)
            batch[j] = v->ring[v->head++ % CHAN_RUNQ_SIZE];
        if (k == 0 && take_next && v->runnext) {
            batch[k++] = v->runnext;
            v->runnext = NULL;
        }
        if (k)
            set_len(v);
        qunlock(v);
        if (k == 0)
            continue;
        for (unsigned j = 1; j < k; j++)
            local_put(w, batch[j], 0, 0);
        return batch[0];
    }
    return NULL;
}

/*
 * 1 if the global queue or another worker's queue holds a task, or if
 * another worker has queued one since w's previous call: a task passing
 * work along (a pipeline, a ring, two tasks taking turns) leaves its queue
 * empty most of the time, yet a worker that slept would have to be woken,
 * a system call on the busy worker's path, for each of its handoffs.
 */
static int others_busy(chan__worker_t *w)
{
    chan_sched_t *s = w->sched;
    int busy = chan__taskq_len(&s->global) != 0;
    unsigned puts = 0;
    for (unsigned i = 0; i < s->nworkers; i++) {
        chan__worker_t *v = &s->workers[i];
        if (v == w)
            continue;
        puts += atomic_load_explicit(&v->puts, memory_order_relaxed);
        if (atomic_load_explicit(&v->len, memory_order_relaxed))
            busy = 1;
    }
    if (puts != w->seen_puts)
        busy = 1;
    w->seen_puts = puts;
    return busy;
}

/*
 * Takes the run-next task of a worker with nothing else queued if it was
 * put there before a thief's previous look, a nap ago (no run-next put
 * since): that worker has been busy with one task all that time.  (A
 * fresh run-next task is left alone: its worker usually runs it within
 * microseconds, on a warm cache.)
 */
static chan__task_t *steal_stale_next(chan__worker_t *w)
{
    chan_sched_t *s = w->sched;
    for (unsigned i = 0; i < s->nworkers; i++) {
        chan__worker_t *v = &s->workers[i];
        if (v == w ||
            atomic_load_explicit(&v->len, memory_order_relaxed) != LEN_NEXT)
            continue;
        chan__task_t *t = NULL;
        qlock(v);
        if (v->runnext && v->head == v->tail) {
            if (v->next_seq == v->seen_seq) {
                t = v->runnext;
                v->runnext = NULL;
                set_len(v);
            }
            v->seen_seq = v->next_seq;
        }
        qunlock(v);
        if (t)
            return t;
    }
    return NULL;
}

/* One look at every queue w may take from. */
static chan__task_t *find_work(chan__worker_t *w, int take_next)
{
    chan__task_t *t;
    if (++w->tick % GLOBAL_EVERY == 0 && (t = pop_global(w)) != NULL)
        return t;
    if ((t = pop_local(w)) != NULL)
        return t;
    if ((t = pop_global(w)) != NULL)
        return t;
    if (w->sched->nworkers > 1)
        return steal(w, take_next);
    return NULL;
}

/* Called when a spinning worker found work. */
static void stop_spinning(chan_sched_t *s)
{
    /* The last spinner to find work wakes a replacement: where there was
     * one task there may be more, and no other spinner is left to look. */
    uint64_t w = atomic_fetch_sub_explicit(&s->idle_word, SPIN_ONE,
                                           memory_order_seq_cst);
    if (SPIN_COUNT(w) == 1)
        notify(s);
}

/*
 * Polls for descriptors, holding the poll (chan__netpoll_hold(block)):
 * the tasks of w's scheduler that become ready go onto w's own queue,
 * not to the global one, so that no other thread is woken to run them.
 * Returns one of them, or NULL.
 */
static chan__task_t *poll_net(chan__worker_t *w, int block)
{
    w->polling = 1;
    (void)chan__netpoll_poll(block ? -1 : 0);
    w->polling = 0;
    chan__netpoll_release(block);
    return pop_local(w);
}

/*
 * The spinning half of idle(): registered as a spinner, looks for work,
 * then naps while others are busy.  Returns a task (having stopped
 * spinning), or NULL when it is time to sleep, still registered as a
 * spinner, with *held set if it took the blocking poll to sleep in.
 */
static chan__task_t *spin(chan__worker_t *w, int *held)
{
    chan_sched_t *s = w->sched;
    int pending = 0; /* naps waiting for the poll */
    atomic_fetch_add_explicit(&s->idle_word, SPIN_ONE,
                              memory_order_seq_cst);
    for (int i = 0;; i++) {
        chan__task_t *t = find_work(w, 0);
        if (!t && i >= SPIN_ROUNDS)
            t = steal_stale_next(w);
        if (!t && (i >= SPIN_ROUNDS || i % LOOK_EVERY == LOOK_EVERY - 1) &&
            chan__netpoll_hold(0) > 0)
            t = poll_net(w, 0);
        if (t) {
            stop_spinning(s);
            return t;
        }
        if (i < SPIN_ROUNDS) {
            if (i % 8 == 7) {
                sched_yield();
            } else {
                for (int j = 0; j < SPIN_PAUSES; j++)
                    chan__cpu_relax();
            }
            continue;
        }
        /* Others are busy (or were, since the last nap): stay a
         * spinner, napping, so that their wakeups need not wake a
         * sleeper (a system call each). */
        if (!others_busy(w)) {
            /* About to sleep: first give back the memory of the stacks
             * of tasks that finished, a batch at a time, looking for
             * work in between (stack.c). */
            if (chan__stack_trim(s)) {
                i = SPIN_ROUNDS;
                continue;
            }
            /* About to sleep: in the poll, if it can be had.  The
             * poller thread, asked to hand it over, does so as soon
             * as it runs: nap meanwhile, for a while at most. */
            int h = chan__netpoll_hold(1);
            if (h > 0)
                *held = 1;
            if (h >= 0 || ++pending > HANDOVER_NAPS)
                return NULL;
        }
        struct timespec nap = { 0, SPIN_NAP_NS };
        int saved_errno = chan__errno_save(); /* EINTR */
        nanosleep(&nap, NULL);
        chan__errno_restore(saved_errno);
        i = SPIN_ROUNDS; /* (no overflow however long it naps) */
    }

}

/*
 * The sleeping half of idle(), for a spinner that spin() sent to sleep
 * (holding the blocking poll if held): turns idle, looks once more, then
 * sleeps in the poll or on idle_cv.  Returns 1 with *out set to a task,
 * or to NULL when the scheduler stops; 0 to spin again (after a token, a
 * stack retry that found nothing, or a poll that woke nothing here).
 */
static int sleep_idle(chan__worker_t *w, int held, chan__task_t **out)
{
    chan_sched_t *s = w->sched;
    /* Spinning -> idle in one step (unsigned arithmetic wraps), then
     * the last look. */
    atomic_fetch_add_explicit(&s->idle_word, IDLE_ONE - SPIN_ONE,
                              memory_order_seq_cst);
    chan__task_t *t = find_work(w, 1);
    if (t) {
        atomic_fetch_sub_explicit(&s->idle_word, IDLE_ONE,
                                  memory_order_seq_cst);
        if (held)
            chan__netpoll_release(1);
        *out = t;
        return 1;
    }
    chan__check(pthread_mutex_lock(&s->idle_mu));
    int retry = 0, polled = 0;
    while (s->tokens == 0 && !s->stop && !retry && !polled) {
        if (chan__taskq_len(&s->swait) == 0) {
            if (!held) {
                chan__check(pthread_cond_wait(&s->idle_cv, &s->idle_mu));
                continue;
            }
            /* Published under idle_mu before the wait begins: a
             * notify() after this kicks, and a kick before the wait
             * ends it at once. */
            s->poll_sleeper = w;
            chan__check(pthread_mutex_unlock(&s->idle_mu));
            t = poll_net(w, 1);
            held = 0;
            chan__check(pthread_mutex_lock(&s->idle_mu));
            s->poll_sleeper = NULL;
            s->poll_kicked = 0;
            polled = 1;
            continue;
        }
        /* Tasks wait for stacks: try one again now and then, in case
         * memory came back some other way than a task finishing.
         * (Not in the poll, which this leaves to others.) */
        if (held) {
            chan__netpoll_release(1);
            held = 0;
        }
        struct timespec ts;
        chan__check(clock_gettime(CLOCK_MONOTONIC, &ts));
        ts.tv_nsec += STACK_RETRY_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        int rc = pthread_cond_timedwait(&s->idle_cv, &s->idle_mu, &ts);
        if (rc == ETIMEDOUT)
            retry = 1;
        else
            chan__check(rc);
    }
    /* (A worker back from the poll leaves tokens to idle_cv's.) */
    int token = !polled && s->tokens > 0;
    if (token)
        s->tokens--;
    /* stop set, nothing left to do (waiting tasks count in ntasks) */
    int stop = !token && !retry && !polled;
    atomic_fetch_sub_explicit(&s->idle_word, IDLE_ONE,
                              memory_order_seq_cst);
    chan__check(pthread_mutex_unlock(&s->idle_mu));
    if (held) /* a token or stop came first */
        chan__netpoll_release(1);
    if (stop) {
        *out = NULL;
        return 1;
    }
    if (t) {
        /* More of them queued: wake a helper, as stop_spinning does. */
        if (atomic_load_explicit(&w->len, memory_order_relaxed))
            notify(s);
        *out = t;
        return 1;
    }
    if (!token && (t = chan__task_stack_waiter(s)) != NULL) {
        *out = t;
        return 1;
    }
    return 0;
}

/*
 * Spins, then sleeps, until there is work (returned) or the scheduler
 * stops (NULL).
 *
 * Descriptors (netpoll.c, "Who polls").  A spinner that has found
 * nothing looks at the poll without waiting every LOOK_EVERY rounds and
 * before each nap.  A worker
 * about to sleep sleeps in the poll instead of on idle_cv if it can take
 * it (only one thread of the process at a time can): it stays registered
 * idle, as s->poll_sleeper, and notify() wakes it by a kick of the poll
 * (an eventfd write) only when no worker sleeps on idle_cv.  Tasks it
 * finds ready it runs itself, waking another worker for the rest, as a
 * spinner that found work does.
 */
static chan__task_t *idle(chan__worker_t *w)
{
    for (;;) {
        int held = 0; /* the blocking poll, taken by spin() */
        chan__task_t *t = spin(w, &held);
        if (t)
            return t;
        if (sleep_idle(w, held, &t))
            return t;
    }
}

chan__task_t *chan__sched_find(chan__worker_t *w)
{
    return find_work(w, 0);
}

chan__task_t *chan__sched_idle(chan__worker_t *w)
{
    return idle(w);
}

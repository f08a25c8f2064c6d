/*
 * signal.c - signal channels: chan_signal_notify and chan_signal_stop.
 *
 * A signal handler may do almost nothing, so delivery has two halves:
 *   - the handler (on_signal) writes the signal number, one byte, to a
 *     non-blocking self-pipe and returns.  It saves and restores errno,
 *     calls only async-signal-safe functions and takes no lock.  If the
 *     pipe is full the arrival is dropped, like a send to a full channel.
 *   - the relay thread reads those bytes and, under the registry lock,
 *     makes a non-blocking send of the number to every channel watching
 *     that signal.
 *
 * Synchronous faults.  SIGSEGV, SIGBUS, SIGFPE and SIGILL raised by the CPU
 * must keep their default action: returning from a handler would re-execute
 * the faulting instruction forever.  The handler looks at si_code: for a
 * fault (si_code > 0 on Linux, e.g. SEGV_MAPERR or SI_KERNEL) it restores
 * SIG_DFL and returns, the instruction faults again and the process dies
 * with the right signal and a core dump.  The same signal sent by a process
 * (kill, sigqueue, tgkill: si_code <= 0) is delivered like any other.
 *
 * Stopping.  The handler may catch an arrival just before
 * chan_signal_stop() puts the old disposition back, and the relay may not
 * have handled it yet; stop must neither drop it nor let it vanish without
 * the old action.  So, for a signal whose last watcher goes (all under
 * reg_mu), stop (1) has the relay block the signal again (below), (2)
 * restores the old disposition, (3) clears installed[s], (4) waits until
 * no handler is between its check of installed[] and its write, and (5)
 * reads the pipe itself, delivering what it holds to every watcher, the
 * stopping channel included, before removing the channel.  A handler that
 * runs after (3), for an arrival the kernel had already committed to it
 * under the old disposition, sees installed[s] clear and passes the signal
 * on to whatever disposition is now in place: the restored one.  Step (4)
 * is the pair "handler: add to handling, then load installed[s]" against
 * "stop: store installed[s], then load handling", both seq_cst: either
 * stop sees the handler counted, and waits for its write, or the handler
 * sees installed[s] clear.
 *
 * Blocked signals.  A mask inherited from the parent (or set by the
 * application) may block a watched signal in every application thread.
 * The relay waits in ppoll() with every watched signal unblocked, so a
 * process-directed arrival always finds a thread to take it, as in Go.
 * Outside ppoll() the relay blocks everything, so the handler never
 * interrupts it while it holds a lock.  When the last watcher of a signal
 * goes, stop waits until the relay has taken up a mask that blocks it
 * again (mask_seen catches up with mask_gen) before restoring the old
 * disposition, so that a signal the application blocks stays pending
 * afterwards, as before it was watched, instead of taking its old action
 * on the relay thread.  The masks of the application's threads are never
 * changed.
 *
 * Invariants (with reg_mu held):
 *   - watches[0 .. nwatch-1] holds each (channel, signal) pair at most
 *     once, and the registry owns one channel reference per pair.
 *   - nwatchers[s] is the number of pairs for signal s; it is > 0 exactly
 *     when our handler is installed for s, and then saved[s] is the
 *     disposition to restore once it drops to 0.  installed[s] is set
 *     while our handler is installed, except inside chan_signal_stop().
 *   - unblocked[s] implies nwatchers[s] > 0; the relay waits with exactly
 *     the signals s with unblocked[s] unblocked, once mask_seen equals
 *     mask_gen (mask_gen counts the changes to unblocked[]).
 *
 * Locking.  reg_mu guards everything above plus the pipe descriptors and
 * relay_started.  It is first in the lock order (src/internal.h): the relay
 * and stop deliver with it held, taking one channel lock at a time below
 * it, and unpark a receiver after dropping that channel lock.  References
 * are dropped after reg_mu is released, since a last release runs a
 * finalizer.  The pipe is read only with reg_mu held, so an arrival is
 * either still in the pipe or already delivered.  The handler takes no
 * lock; it reads pipe_wr and installed[] and counts itself in handling,
 * all atomically.
 *
 * Threads.  The relay thread starts with the first chan_signal_notify(),
 * detached and with every signal blocked except while it waits (see
 * above), so the handler runs on the application's threads or on the
 * waiting relay, and the relay never keeps the process alive.
 *
 * fork().  The child gets a fresh pipe (otherwise the parent's relay would
 * read the child's signals) but no relay thread (fork copies only the
 * calling thread).  Its registrations stay; delivery resumes, including
 * arrivals buffered meanwhile, once the child calls chan_signal_notify()
 * again, which starts a relay thread, and chan_signal_stop() in the child
 * delivers what is buffered by itself.  Starting a thread from the atfork
 * handler itself is not safe between fork() and exec().
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct watch {
    chan_t *ch;  /* registered channel; the registry holds a reference */
    int signo;   /* the signal it watches */
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct watch *watches;          /* reg_mu */
static size_t nwatch, capwatch;        /* reg_mu */
static int nwatchers[NSIG];            /* reg_mu */
static struct sigaction saved[NSIG];   /* reg_mu */
static int pipe_rd = -1;               /* relay's end; reg_mu */
static _Atomic int pipe_wr = -1;       /* handler's end; written under reg_mu */
static int relay_started;              /* reg_mu */
static int unblocked[NSIG];            /* the relay waits with s unblocked; reg_mu */
static unsigned mask_gen;              /* changes to unblocked[]; reg_mu */
static unsigned mask_seen;             /* mask_gen the relay waits with; reg_mu */
static pthread_cond_t mask_cv = PTHREAD_COND_INITIALIZER; /* mask_seen moved */
/* Our handler is installed for s and its arrivals go to the pipe; written
 * under reg_mu, read by the handler. */
static atomic_int installed[NSIG];
/* Handlers between their load of installed[] and the end of their write. */
static atomic_int handling;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Whether a fault-type signal with this si_code was sent by a process
 * rather than raised by the CPU. */
static int sent_by_process(int code)
{
    if (code == SI_USER || code == SI_QUEUE)
        return 1;
#ifdef SI_TKILL
    if (code == SI_TKILL)
        return 1;
#endif
#ifdef __linux__
    /* Every code a process can make is <= 0 here (SI_USER is 0, the rest
     * negative); the kernel's own are > 0, SI_KERNEL included. */
    return code <= 0;
#else
    return 0;
#endif
}

static int is_fault_signal(int signo)
{
    return signo == SIGSEGV || signo == SIGBUS || signo == SIGFPE ||
           signo == SIGILL;
}

/* Whether the default action of signo is to do nothing. */
static int default_ignores(int signo)
{
    return signo == SIGCHLD || signo == SIGCONT || signo == SIGURG ||
           signo == SIGWINCH;
}

/* An arrival caught by our handler after chan_signal_stop() put the old
 * disposition now back: do what that disposition would have done.  A
 * default action is taken by sending the signal again to the process (it
 * is blocked in this handler, so another thread or this one once the
 * handler returns takes it).  A handler's sa_mask and flags other than
 * SA_SIGINFO are not applied. */
static void pass_on(int signo, const struct sigaction *now, siginfo_t *info,
                    void *uctx)
{
    if (now->sa_flags & SA_SIGINFO) {
        if (now->sa_sigaction)
            now->sa_sigaction(signo, info, uctx);
    } else if (now->sa_handler == SIG_DFL) {
        if (!default_ignores(signo))
            (void)kill(getpid(), signo);
    } else if (now->sa_handler != SIG_IGN) {
        now->sa_handler(signo);
    }
}

static void on_signal(int signo, siginfo_t *info, void *uctx)
{
    int saved_errno = chan__errno_save();
    if (is_fault_signal(signo) && info && !sent_by_process(info->si_code)) {
        /* A real fault: fall back to the default action and let the
         * instruction fault again (see the top of the file). */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(signo, &dfl, NULL);
    } else {
        struct sigaction now;
        memset(&now, 0, sizeof now);
        now.sa_handler = SIG_IGN;
        /* seq_cst, against chan_signal_stop(): see the top of the file. */
        atomic_fetch_add(&handling, 1);
        int ours = atomic_load(&installed[signo]);
        if (!ours && sigaction(signo, NULL, &now) == 0)
            /* A chan_signal_notify() between its sigaction and its store
             * to installed[]: the arrival is for its new watcher. */
            ours = (now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_signal;
        if (ours) {
            unsigned char b = (unsigned char)signo;
            /* Relaxed: the descriptor is published before the handler is
             * installed (sigaction is a full barrier for this thread) and
             * the child's atfork handler swaps it with signals blocked. */
            int fd = atomic_load_explicit(&pipe_wr, memory_order_relaxed);
            if (fd >= 0 && write(fd, &b, 1) < 0) {
                /* EAGAIN: the pipe is full and this arrival is dropped. */
            }
        }
        atomic_fetch_sub(&handling, 1);
        /* Outside the count: a handler passed on to may not return. */
        if (!ours)
            pass_on(signo, &now, info, uctx);
    }
    chan__errno_restore(saved_errno);
}

/* Sends signo, without blocking, to every channel watching it.  reg_mu
 * held. */
static void deliver(int signo)
{
    for (size_t i = 0; i < nwatch; i++) {
        if (watches[i].signo != signo)
            continue;
        /* A full channel drops the arrival. */
        (void)chan_trysend(watches[i].ch, &signo);
    }
}

/* Reads every byte in the pipe and delivers it; a 0 byte only wakes the
 * relay.  reg_mu held.  May change errno. */
static void drain(void)
{
    unsigned char buf[128];
    if (pipe_rd < 0)
        return;
    for (;;) {
        ssize_t got = read(pipe_rd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return; /* EAGAIN: empty (the write end is never closed) */
        for (ssize_t i = 0; i < got; i++)
            if (buf[i] != 0)
                deliver(buf[i]);
    }
}

/* Wakes the relay so that it takes up the current unblocked[].  reg_mu
 * held.  May change errno. */
static void relay_poke(void)
{
    unsigned char zero = 0;
    int fd = atomic_load_explicit(&pipe_wr, memory_order_relaxed);
    if (fd >= 0 && write(fd, &zero, 1) < 0) {
        /* EAGAIN: the pipe is full, so the relay wakes up anyway. */
    }
}

static void *relay_thread(void *arg)
{
    chan__thread_name("chan-signal");
    (void)arg;
    chan__check(pthread_mutex_lock(&reg_mu));
    for (;;) {
        sigset_t waiting;
        sigfillset(&waiting);
        for (int s = 1; s < NSIG; s++)
            if (unblocked[s])
                sigdelset(&waiting, s);
        if (mask_seen != mask_gen) {
            mask_seen = mask_gen;
            chan__check(pthread_cond_broadcast(&mask_cv));
        }
        struct pollfd pfd = { .fd = pipe_rd, .events = POLLIN };
        chan__check(pthread_mutex_unlock(&reg_mu));
        /* A handler that runs here, on this thread, makes ppoll() fail
         * with EINTR; what it wrote is read on the next round. */
        int rc = ppoll(&pfd, 1, NULL, &waiting);
        chan__assert(rc > 0 || errno == EINTR);
        chan__check(pthread_mutex_lock(&reg_mu));
        drain();
    }
    return NULL;
}

/* A close-on-exec, non-blocking pipe; 0 or -1.  Only async-signal-safe
 * calls: the atfork child handler uses it. */
static int make_pipe(int fds[2])
{
    if (pipe(fds) != 0)
        return -1;
    if (fcntl(fds[0], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(fds[1], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0 ||
        fcntl(fds[1], F_SETFL, O_NONBLOCK) != 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    return 0;
}

/* Makes sure the pipe exists and the relay thread runs.  reg_mu held.
 * Returns 0 or -ENOMEM. */
static int relay_start(void)
{
    if (pipe_rd < 0) {
        int fds[2];
        if (make_pipe(fds) != 0)
            return -ENOMEM;
        pipe_rd = fds[0];
        atomic_store_explicit(&pipe_wr, fds[1], memory_order_relaxed);
    }
    if (relay_started)
        return 0;
    int rc = chan__thread_start_quiet(relay_thread, NULL);
    if (rc < 0)
        return rc;
    relay_started = 1;
    return 0;
}

/* atfork handlers: no thread holds reg_mu across fork(), and the child gets
 * its own pipe. */
static void before_fork(void)
{
    chan__check(pthread_mutex_lock(&reg_mu));
}

static void after_fork_parent(void)
{
    chan__check(pthread_mutex_unlock(&reg_mu));
}

static void after_fork_child(void)
{
    int saved_errno = chan__errno_save(); /* fork() itself leaves it */
    if (pipe_rd >= 0) {
        sigset_t all, old;
        int fds[2];
        /* No handler may run between the swap and the close, or it could
         * write to the parent's pipe or to a reused descriptor. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int old_rd = pipe_rd;
        int old_wr = atomic_load_explicit(&pipe_wr, memory_order_relaxed);
        if (make_pipe(fds) == 0) {
            pipe_rd = fds[0];
            atomic_store_explicit(&pipe_wr, fds[1], memory_order_relaxed);
        } else {
            /* No pipe: arrivals are dropped until chan_signal_notify()
             * makes one. */
            pipe_rd = -1;
            atomic_store_explicit(&pipe_wr, -1, memory_order_relaxed);
        }
        close(old_rd);
        close(old_wr);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    relay_started = 0;
    /* A handler that was running, or a chan_signal_stop() that was waiting
     * for the relay, on another thread of the parent has no counterpart
     * here. */
    atomic_store(&handling, 0);
    mask_cv = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
    chan__check(pthread_mutex_unlock(&reg_mu));
    chan__errno_restore(saved_errno);
}

static void init_once(void)
{
    chan__check(pthread_atfork(before_fork, after_fork_parent,
                               after_fork_child));
}

/* Installs on_signal for signo, saving the old disposition.  reg_mu held.
 * Returns 0, or -EINVAL if the system refuses (a signal reserved by the
 * C library, for one). */
static int install(int signo)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    /* SA_RESTART: watching a signal must not make the program's own
     * system calls fail with EINTR. */
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(signo, &sa, &saved[signo]) != 0)
        return -EINVAL;
    return 0;
}

int chan_signal_notify(chan_t *ch, int signo)
{
    if (!ch || chan_elem_size(ch) != sizeof(int))
        return -EINVAL;
    if (signo < 1 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP)
        return -EINVAL;
    /* pipe, fcntl, realloc and sigaction set errno; nothing here parks. */
    int saved_errno = chan__errno_save();
    chan__check(pthread_once(&once, init_once));
    chan__check(pthread_mutex_lock(&reg_mu));
    int rc = relay_start();
    if (rc < 0)
        goto out;
    for (size_t i = 0; i < nwatch; i++)
        if (watches[i].ch == ch && watches[i].signo == signo)
            goto out; /* already watching: nothing changes, as in Go */
    if (nwatch == capwatch) {
        size_t ncap = capwatch ? 2 * capwatch : 8;
        struct watch *bigger = realloc(watches, ncap * sizeof *watches);
        if (!bigger) {
            rc = -ENOMEM;
            goto out;
        }
        watches = bigger;
        capwatch = ncap;
    }
    if (nwatchers[signo] == 0) {
        if ((rc = install(signo)) < 0)
            goto out;
        atomic_store(&installed[signo], 1);
    }
    nwatchers[signo]++;
    watches[nwatch].ch = chan_retain(ch);
    watches[nwatch].signo = signo;
    nwatch++;
    if (!unblocked[signo]) {
        /* No need to wait for the relay: an arrival that finds the signal
         * blocked everywhere stays pending until the relay unblocks it. */
        unblocked[signo] = 1;
        mask_gen++;
        relay_poke();
    }
out:
    chan__check(pthread_mutex_unlock(&reg_mu));
    chan__errno_restore(saved_errno);
    return rc;
}

/* Whether watches[i] is the last pair for its signal.  reg_mu held. */
static int last_watcher(size_t i)
{
    return nwatchers[watches[i].signo] == 1;
}

int chan_signal_stop(chan_t *ch)
{
    if (!ch)
        return -EINVAL;
    int saved_errno = chan__errno_save();
    size_t dropped = 0;
    chan__check(pthread_mutex_lock(&reg_mu));
    /* (1) The relay blocks the signals that ch is the last to watch.  The
     * wait lets go of reg_mu, so look again after it. */
    for (;;) {
        int found = 0;
        for (size_t i = 0; i < nwatch; i++) {
            if (watches[i].ch != ch)
                continue;
            found = 1;
            if (last_watcher(i) && unblocked[watches[i].signo]) {
                unblocked[watches[i].signo] = 0;
                mask_gen++;
            }
        }
        if (!found)
            goto out; /* watching nothing, or a concurrent stop did it all */
        if (!relay_started || mask_seen == mask_gen)
            break;
        relay_poke();
        chan__check(pthread_cond_wait(&mask_cv, &reg_mu));
    }
    /* (2) and (3): old dispositions back, then stop catching. */
    for (size_t i = 0; i < nwatch; i++) {
        if (watches[i].ch != ch || !last_watcher(i))
            continue;
        int signo = watches[i].signo;
        chan__check(sigaction(signo, &saved[signo], NULL));
        atomic_store(&installed[signo], 0);
    }
    /* (4) Handlers on other threads that saw installed[] set finish their
     * write; they do nothing else in between, so this is short. */
    while (atomic_load(&handling) != 0)
        sched_yield();
    /* (5) What was caught so far reaches every watcher, ch included. */
    drain();
    size_t keep = 0;
    for (size_t i = 0; i < nwatch; i++) {
        if (watches[i].ch != ch) {
            watches[keep++] = watches[i];
            continue;
        }
        nwatchers[watches[i].signo]--;
        dropped++;
    }
    nwatch = keep;
    if (nwatch == 0) {
        free(watches);
        watches = NULL;
        capwatch = 0;
    }
out:
    chan__check(pthread_mutex_unlock(&reg_mu));
    /* The relay can no longer reach ch: drop the registry's references. */
    while (dropped--)
        chan_release(ch);
    chan__errno_restore(saved_errno);
    return 0;
}

int chan__signal_watching(void)
{
    chan__check(pthread_mutex_lock(&reg_mu));
    int watching = nwatch > 0;
    chan__check(pthread_mutex_unlock(&reg_mu));
    return watching;
}

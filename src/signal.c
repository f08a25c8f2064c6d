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
 * Invariants (with reg_mu held):
 *   - watches[0 .. nwatch-1] holds each (channel, signal) pair at most
 *     once, and the registry owns one channel reference per pair.
 *   - nwatchers[s] is the number of pairs for signal s; it is > 0 exactly
 *     when our handler is installed for s, and then saved[s] is the
 *     disposition to restore once it drops to 0.
 *
 * Locking.  reg_mu guards everything above plus the pipe descriptors and
 * relay_started.  It is first in the lock order (src/internal.h): the relay
 * delivers with it held, taking one channel lock at a time below it, and
 * unparks a receiver after dropping that channel lock.  References are
 * dropped after reg_mu is released, since a last release runs a finalizer.
 * The handler takes no lock; it reads pipe_wr atomically.
 *
 * Threads.  The relay thread starts with the first chan_signal_notify(),
 * detached and with every signal blocked, so the handler runs on the
 * application's threads and the relay never keeps the process alive.
 *
 * fork().  The child gets a fresh pipe (otherwise the parent's relay would
 * read the child's signals) but no relay thread (fork copies only the
 * calling thread).  Its registrations stay; delivery resumes, including
 * arrivals buffered meanwhile, once the child calls chan_signal_notify()
 * again, which starts a relay thread.  Starting a thread from the atfork
 * handler itself is not safe between fork() and exec().
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chan_impl.h"
#include "park.h"

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

static void on_signal(int signo, siginfo_t *info, void *uctx)
{
    (void)uctx;
    int saved_errno = errno;
    if (is_fault_signal(signo) && info && !sent_by_process(info->si_code)) {
        /* A real fault: fall back to the default action and let the
         * instruction fault again (see the top of the file). */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(signo, &dfl, NULL);
    } else {
        unsigned char b = (unsigned char)signo;
        /* Relaxed: the descriptor is published before the handler is
         * installed (sigaction is a full barrier for this thread) and the
         * child's atfork handler swaps it with signals blocked. */
        int fd = atomic_load_explicit(&pipe_wr, memory_order_relaxed);
        if (fd >= 0 && write(fd, &b, 1) < 0) {
            /* EAGAIN: the pipe is full and this arrival is dropped. */
        }
    }
    errno = saved_errno;
}

/* Sends signo, without blocking, to every channel watching it.  reg_mu
 * held. */
static void deliver(int signo)
{
    for (size_t i = 0; i < nwatch; i++) {
        if (watches[i].signo != signo)
            continue;
        chan_t *ch = watches[i].ch;
        chan__parker_t *wake = NULL;
        chan__lock(&ch->lock);
        (void)chan__send_now(ch, &signo, &wake);
        chan__unlock_ch(ch);
        if (wake)
            chan__unpark(wake);
    }
}

static void *relay_thread(void *arg)
{
    int fd = (int)(intptr_t)arg;
    unsigned char buf[128];
    for (;;) {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        chan__assert(got > 0); /* the write end is never closed */
        chan__check(pthread_mutex_lock(&reg_mu));
        for (ssize_t i = 0; i < got; i++)
            deliver(buf[i]);
        chan__check(pthread_mutex_unlock(&reg_mu));
    }
    return NULL;
}

/* A close-on-exec pipe with a non-blocking write end; 0 or -1.  Only
 * async-signal-safe calls: the atfork child handler uses it. */
static int make_pipe(int fds[2])
{
    if (pipe(fds) != 0)
        return -1;
    if (fcntl(fds[0], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(fds[1], F_SETFD, FD_CLOEXEC) != 0 ||
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
    int rc = chan__thread_start_quiet(relay_thread,
                                      (void *)(intptr_t)pipe_rd);
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
    chan__check(pthread_mutex_unlock(&reg_mu));
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
    if (!ch || ch->elem_size != sizeof(int))
        return -EINVAL;
    if (signo < 1 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP)
        return -EINVAL;
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
    if (nwatchers[signo] == 0 && (rc = install(signo)) < 0)
        goto out;
    nwatchers[signo]++;
    watches[nwatch].ch = chan_retain(ch);
    watches[nwatch].signo = signo;
    nwatch++;
out:
    chan__check(pthread_mutex_unlock(&reg_mu));
    return rc;
}

int chan_signal_stop(chan_t *ch)
{
    if (!ch)
        return -EINVAL;
    size_t dropped = 0;
    chan__check(pthread_mutex_lock(&reg_mu));
    size_t keep = 0;
    for (size_t i = 0; i < nwatch; i++) {
        if (watches[i].ch != ch) {
            watches[keep++] = watches[i];
            continue;
        }
        int signo = watches[i].signo;
        dropped++;
        if (--nwatchers[signo] == 0)
            /* The last watcher: put the old disposition back.  An arrival
             * still in the pipe finds no watcher and is dropped. */
            chan__check(sigaction(signo, &saved[signo], NULL));
    }
    nwatch = keep;
    if (nwatch == 0) {
        free(watches);
        watches = NULL;
        capwatch = 0;
    }
    chan__check(pthread_mutex_unlock(&reg_mu));
    /* The relay can no longer reach ch: drop the registry's references. */
    while (dropped--)
        chan_release(ch);
    return 0;
}

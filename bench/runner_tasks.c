/*
 * runner_tasks.c - the "tasks" runner: every body is a task started with
 * chan_go on one scheduler, created on first use, with 2 worker threads
 * (the GOMAXPROCS of Go on the 2-CPU machines the numbers are usually taken
 * on; $BENCH_TASK_THREADS overrides, 0 = one per CPU) and the library's
 * default task stacks ($BENCH_TASK_STACK bytes overrides).  wait() is
 * chan_sched_wait, which waits for every task of the scheduler: that is
 * exactly the bodies started since the last wait, since the workloads
 * start no other tasks.  The stack hint of go() is ignored (stacks are
 * sized per scheduler).
 */
#include <chan.h>
#include <errno.h>
#include <stdlib.h>

#include "workloads.h"

static chan_sched_t *sched;

static unsigned long env_num(const char *name, unsigned long dflt)
{
    const char *s = getenv(name);
    char *end;
    if (!s || !*s)
        return dflt;
    unsigned long v = strtoul(s, &end, 0);
    return *end ? dflt : v;
}

static int tasks_go(struct bench_runner *r, void (*fn)(void *), void *arg,
                    size_t stack_hint)
{
    (void)r;
    (void)stack_hint;
    if (!sched) {
        chan_sched_opts_t o = {
            .threads = (unsigned)env_num("BENCH_TASK_THREADS", 2),
            .stack_size = (size_t)env_num("BENCH_TASK_STACK", 0),
        };
        sched = chan_sched_new(&o);
        if (!sched)
            return -ENOMEM;
    }
    return chan_go(sched, fn, arg);
}

static int tasks_go_inner(struct bench_runner *r, void (*fn)(void *),
                          void *arg)
{
    (void)r;
    return chan_go(NULL, fn, arg); /* on the caller's scheduler */
}

static int tasks_wait(struct bench_runner *r)
{
    (void)r;
    return sched ? chan_sched_wait(sched) : 0;
}

static void tasks_finish(struct bench_runner *r)
{
    (void)r;
    chan_sched_free(sched);
    sched = NULL;
}

static struct bench_runner tasks_runner = {
    .impl = "libchan-tasks",
    .go = tasks_go,
    .wait = tasks_wait,
    .go_inner = tasks_go_inner,
    .finish = tasks_finish,
    .own_thread = 0,
};

struct bench_runner *bench_runner_get(void)
{
    return &tasks_runner;
}

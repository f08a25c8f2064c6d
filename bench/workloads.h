/*
 * workloads.h - the benchmark workloads, written once against a "runner"
 * that starts concurrent bodies, so that the same code measures plain
 * threads (runner_threads.c) and, later, scheduler tasks (a
 * runner_tasks.c that starts each body with chan_go on a scheduler).
 *
 * A runner plays the part of Go's `go` statement plus a sync.WaitGroup:
 * go() starts fn(arg) concurrently, wait() returns once every body started
 * since the previous wait() has returned.  Only the program's main thread
 * calls them; go_inner() starts a body from inside another.
 */
#ifndef BENCH_WORKLOADS_H
#define BENCH_WORKLOADS_H

#include <stddef.h>

#include "harness.h"

struct bench_runner {
    /* Name in the output ("libchan-threads", "libchan-tasks"). */
    const char *impl;
    /* Start fn(arg); stack_hint is a stack size in bytes for bodies that
     * need little (the w5 ring), 0 for the default.  0 or -errno. */
    int (*go)(struct bench_runner *r, void (*fn)(void *), void *arg,
              size_t stack_hint);
    /* Wait for every body started since the last wait.  0 or -errno. */
    int (*wait)(struct bench_runner *r);
    /* Start fn(arg) from inside a body, as Go's `go` in a goroutine; the
     * caller waits for it by other means (spawn: a wait group).  0 or
     * -errno. */
    int (*go_inner)(struct bench_runner *r, void (*fn)(void *), void *arg);
    /* Nonzero if each body runs on an OS thread of its own, so that the
     * CPU clock of that thread measures the body alone (idle-thread). */
    int own_thread;
    /* Called once before the program exits, or NULL. */
    void (*finish)(struct bench_runner *r);
    /* The runner's private state. */
    void *impl_data;
};

/* The runner of this program (runner_threads.c or runner_tasks.c). */
struct bench_runner *bench_runner_get(void);

/* The i-th workload name, in the order "all" runs them; NULL past the end. */
const char *bench_workload_name(size_t i);

/*
 * Run the named workload and print its result line(s).  Returns 0, or
 * -ENOENT for an unknown name; any failure of the library or of a result
 * check exits the process with status 1.
 */
int bench_workload_run(const char *name, struct bench_runner *r,
                       const struct bench_opts *o);

#endif

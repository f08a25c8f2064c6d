/*
 * harness.h - timing, calibration and reporting shared by the libchan
 * benchmark programs.
 *
 * Every measurement is a function run(ctx, n) that performs n operations
 * and returns the seconds they took.  bench_measure() grows n until one
 * run lasts a noticeable fraction of the target time, scales n so that a
 * run lasts about the target, then makes `reps` measured runs and prints
 * their median.  Each result is one tab-separated line on stdout:
 *
 *   <impl> <workload> <unit> <median> <min> <max> <reps> <n>
 *
 * where median/min/max are in the unit named (ns per round trip, per
 * message, per hop, per operation, or CPU ns per second blocked) and n is
 * the number of operations in one measured run.  bench/go/main.go prints
 * the same format, so bench/run.sh and bench/compare.sh read both.
 */
#ifndef BENCH_HARNESS_H
#define BENCH_HARNESS_H

#include <stddef.h>
#include <stdint.h>

/* Knobs of one benchmark process; see usage() in main.c. */
struct bench_opts {
    int reps;          /* measured runs per workload */
    double target;     /* seconds per measured run */
    long ring;         /* w5: threads (or tasks) in the ring */
    size_t ring_stack; /* w5: stack bytes per ring thread */
    double idle;       /* idle: seconds the receiver stays blocked per run */
    long bcast;        /* bcast: bodies blocked on the channel closed */
};

/* One measured run: perform n operations, return the elapsed seconds. */
typedef double (*bench_fn)(void *ctx, long n);

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);

/* CPU time of the calling thread / of the whole process, in ns. */
int64_t bench_thread_cpu_ns(void);
int64_t bench_process_cpu_ns(void);

/* Sleep for `seconds`, resuming after signals. */
void bench_sleep(double seconds);

/* Print "bench: <what>: <error>" and exit 1.  rc is a negative errno. */
_Noreturn void bench_die(const char *what, int rc);

/* If !ok, print "bench: <workload>: check failed: <what>" and exit 1. */
void bench_check(int ok, const char *workload, const char *what);

/*
 * Calibrate n (starting from n0, always a multiple of 4 so that workloads
 * can split it between 4 producers), make o->reps measured runs of fn and
 * print their median.  Returns the median in `unit`s per operation.
 */
double bench_measure(const char *impl, const char *workload, const char *unit,
                     bench_fn fn, void *ctx, long n0,
                     const struct bench_opts *o);

/* Print the result line for `reps` values (sorted in place) of one
 * measurement with n operations per run; returns their median. */
double bench_report(const char *impl, const char *workload, const char *unit,
                    double *vals, int reps, long n);

#endif

/*
 * parked.c - memory and start-up cost of many parked tasks (bench_parked).
 *
 *   bench_parked [-n tasks] [-j threads] [-w seconds]
 *
 * Starts n tasks (100,000 by default) on one scheduler of j workers (2);
 * each one counts itself and blocks in chan_recv on one shared channel.
 * Once all of them are parked, the program reads VmRSS and VmHWM from
 * /proc/self/status and counts the process's memory mappings in
 * /proc/self/maps, then closes the channel, which releases them all, and
 * waits for them.  Prints (tab-separated, one per line):
 *
 *   libchan-tasks parked-spawn  ns/task     start until parked, per task
 *   libchan-tasks parked-rss    bytes/task  VmRSS growth per parked task
 *   libchan-tasks parked-hwm    KiB         VmHWM while all are parked
 *   libchan-tasks parked-maps   mappings    lines of /proc/self/maps
 *   libchan-tasks parked-free   ns/task     close to all finished, per task
 *   libchan-tasks parked-rss-after KiB      VmRSS once all have finished
 *
 * bench/go/parked/main.go does the same with goroutines.
 *
 * n = 1,000,000 works too, given some 4.5 GB of memory (bench/parked.sh,
 * 'make bench-parked PARKED=1000000', runs both sides that way).
 *
 * If not all tasks are parked after w seconds (10, plus 30 us per task,
 * by default), for example
 * because the kernel's limit on memory mappings stopped new stacks, the
 * program says how many are, releases them all anyway and exits 1.
 */
#include <chan.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static chan_t *gate;       /* every task blocks receiving from it */
static chan_t *ready;      /* capacity 1: the last task to park says so */
static atomic_long parked; /* tasks about to block */
static long ntasks;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A field of /proc/self/status in KiB, or -1. */
static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    long n = 0;
    int c;
    if (!f)
        return -1;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static void body(void *arg)
{
    (void)arg;
    if (atomic_fetch_add(&parked, 1) + 1 == ntasks && chan_send(ready, NULL))
        abort();
    int rc = chan_recv(gate, NULL);
    if (rc != -EPIPE) {
        fprintf(stderr, "bench_parked: chan_recv: %d, want -EPIPE\n", rc);
        abort();
    }
}

static void report(const char *what, const char *unit, double v)
{
    printf("libchan-tasks\t%s\t%s\t%.1f\n", what, unit, v);
}

int main(int argc, char **argv)
{
    long threads = 2;
    double wait_s = -1;
    int opt;
    ntasks = 100000;
    while ((opt = getopt(argc, argv, "n:j:w:")) != -1) {
        switch (opt) {
        case 'n': ntasks = strtol(optarg, NULL, 0); break;
        case 'j': threads = strtol(optarg, NULL, 0); break;
        case 'w': wait_s = strtod(optarg, NULL); break;
        default:
            fprintf(stderr, "usage: %s [-n tasks] [-j threads] [-w seconds]\n",
                    argv[0]);
            return 2;
        }
    }
    if (wait_s == -1 && ntasks > 0)
        wait_s = 10 + 30e-6 * (double)ntasks;
    if (ntasks < 1 || threads < 1 || !(wait_s > 0)) {
        fprintf(stderr, "bench_parked: bad option\n");
        return 2;
    }
    gate = chan_make(0, 0);
    ready = chan_make(0, 1);
    chan_sched_opts_t o = { .threads = (unsigned)threads };
    chan_sched_t *s = chan_sched_new(&o);
    if (!gate || !ready || !s) {
        fprintf(stderr, "bench_parked: out of memory\n");
        return 1;
    }
    long rss0 = status_kib("VmRSS");
    double t0 = now();
    for (long i = 0; i < ntasks; i++) {
        int rc = chan_go(s, body, NULL);
        if (rc) {
            fprintf(stderr, "bench_parked: chan_go: %d\n", rc);
            return 1;
        }
    }
    int rc = chan_timedrecv(ready, NULL, (int64_t)(wait_s * 1e9));
    double t1 = now();
    int all = rc == 0;
    if (all) {
        /* The last task counted itself just before blocking: let the
         * workers finish parking it. */
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    long rss = status_kib("VmRSS"), hwm = status_kib("VmHWM");
    long maps = count_maps();
    if (all) {
        report("parked-spawn", "ns/task", (t1 - t0) * 1e9 / (double)ntasks);
        report("parked-rss", "bytes/task",
               (double)(rss - rss0) * 1024.0 / (double)ntasks);
        report("parked-hwm", "KiB", (double)hwm);
        report("parked-maps", "mappings", (double)maps);
    } else {
        fprintf(stderr,
                "bench_parked: only %ld of %ld tasks parked after %.0f s "
                "(%ld mappings, VmRSS %ld KiB); releasing them\n",
                atomic_load(&parked), ntasks, wait_s, maps, rss);
    }
    double t2 = now();
    chan_close(gate);
    chan_sched_wait(s);
    double t3 = now();
    if (all) {
        report("parked-free", "ns/task", (t3 - t2) * 1e9 / (double)ntasks);
        report("parked-rss-after", "KiB", (double)status_kib("VmRSS"));
    }
    chan_sched_free(s);
    chan_release(gate);
    chan_release(ready);
    return all ? 0 : 1;
}

/*
 * main.c - command line of a benchmark program; the runner it links with
 * (runner_threads.c, later runner_tasks.c) decides what a body is.
 *
 *   bench_threads [-r reps] [-t seconds] [-n ring] [-s ring_stack_kib]
 *                 [-i idle_seconds] [-b bcast_bodies] [-l] [workload ... | all]
 *
 * Prints one line per result (format in harness.h).  Exit status: 0, 1 on
 * a failure or a wrong result, 2 for an unknown workload or bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "workloads.h"

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [-r reps] [-t seconds] [-n ring] [-s ring_stack_kib]\n"
            "          [-i idle_seconds] [-b bcast_bodies] [-l] [workload ... | all]\n"
            "  -r  measured runs per workload, median printed (default 5)\n"
            "  -t  target seconds per measured run (default 0.3)\n"
            "  -n  w5: bodies in the ring (default 1000)\n"
            "  -s  w5: stack KiB per ring thread (default 64)\n"
            "  -i  idle: seconds blocked per run (default 1)\n"
            "  -b  bcast: bodies blocked on the channel closed (default 1000)\n"
            "  -l  list the workloads and exit\n",
            prog);
    exit(2);
}

static double num(const char *s, const char *prog, double min)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= min))
        usage(prog);
    return v;
}

int main(int argc, char **argv)
{
    struct bench_opts o = {
        .reps = 5, .target = 0.3, .ring = 1000, .ring_stack = 64 * 1024, .idle = 1,
        .bcast = 1000,
    };
    int c;
    while ((c = getopt(argc, argv, "r:t:n:s:i:b:l")) != -1) {
        switch (c) {
        case 'r': o.reps = (int)num(optarg, argv[0], 1); break;
        case 't': o.target = num(optarg, argv[0], 1e-3); break;
        case 'n': o.ring = (long)num(optarg, argv[0], 2); break;
        case 's': o.ring_stack = (size_t)num(optarg, argv[0], 16) * 1024; break;
        case 'i': o.idle = num(optarg, argv[0], 1e-3); break;
        case 'b': o.bcast = (long)num(optarg, argv[0], 1); break;
        case 'l':
            for (size_t i = 0; bench_workload_name(i); i++)
                puts(bench_workload_name(i));
            return 0;
        default: usage(argv[0]);
        }
    }

    for (int i = optind; i < argc; i++) {
        int known = strcmp(argv[i], "all") == 0;
        for (size_t j = 0; !known && bench_workload_name(j); j++)
            known = strcmp(argv[i], bench_workload_name(j)) == 0;
        if (!known) {
            fprintf(stderr, "%s: unknown workload '%s' (-l lists them)\n", argv[0], argv[i]);
            return 2;
        }
    }

    struct bench_runner *r = bench_runner_get();
    if (optind == argc || (optind + 1 == argc && strcmp(argv[optind], "all") == 0)) {
        for (size_t i = 0; bench_workload_name(i); i++)
            bench_workload_run(bench_workload_name(i), r, &o);
    } else {
        for (int i = optind; i < argc; i++)
            bench_workload_run(argv[i], r, &o);
    }
    if (r->finish)
        r->finish(r);
    return 0;
}

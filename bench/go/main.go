// Command bench runs libchan's benchmark workloads (bench/workloads.c) with
// Go channels and goroutines, so that bench/compare.sh can put the two side
// by side on the same machine in the same run.
//
//	bench [-locked] [-r reps] [-t seconds] [-n ring] [-s kib] [-i seconds] [-b bodies] [-l] [workload ... | all]
//
// The options and the output are those of the C programs (bench/main.c,
// bench/harness.h): one tab-separated line per result,
//
//	<impl> <workload> <unit> <median> <min> <max> <reps> <n>
//
// With -locked every goroutine of a workload calls runtime.LockOSThread, so
// that each blocking channel operation parks and wakes an OS thread: Go's
// channel algorithm with thread-to-thread handoffs, the fair comparison for
// libchan's thread mode. Only the standard library is used, so the program
// builds offline. sel_gen.go, the select statements of 64 and 1000 cases,
// is written by gensel.go:
//
//go:generate go run gensel.go
package main

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	locked = flag.Bool("locked", false, "lock every goroutine to its own OS thread")
	reps   = flag.Int("r", 5, "measured runs per workload, median printed")
	target = flag.Float64("t", 0.3, "target seconds per measured run")
	ringN  = flag.Int("n", 1000, "w5: goroutines in the ring")
	_      = flag.Int("s", 64, "w5: stack KiB per ring thread (accepted for the C programs' sake; Go sizes stacks itself)")
	idleS  = flag.Float64("i", 1, "idle: seconds blocked per run")
	bcastN = flag.Int("b", 1000, "bcast: goroutines blocked on the channel closed")
	list   = flag.Bool("l", false, "list the workloads and exit")
)

var impl = "go"

// goBody starts fn as a goroutine counted by wg, locked to its own thread
// with -locked.
func goBody(wg *sync.WaitGroup, fn func()) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if *locked {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
		}
		fn()
	}()
}

func check(ok bool, wl, what string) {
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: %s: check failed: %s\n", wl, what)
		os.Exit(1)
	}
}

// tri is 0 + 1 + ... + (n - 1), wrapping like the sums it is compared with.
func tri(n int64) uint64 {
	u := uint64(n)
	if u%2 == 1 {
		return u * ((u - 1) / 2)
	}
	return (u / 2) * (u - 1)
}

// report prints one result line for vals (sorted in place); n is the number
// of operations per run.
func report(wl, unit string, vals []float64, n int64) {
	sort.Float64s(vals)
	k := len(vals)
	med := vals[k/2]
	if k%2 == 0 {
		med = (vals[k/2-1] + vals[k/2]) / 2
	}
	fmt.Printf("%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%d\t%d\n", impl, wl, unit, med, vals[0], vals[k-1], k, n)
}

func round4(n int64) int64 {
	n = (n + 3) &^ 3
	if n < 4 {
		return 4
	}
	return n
}

// measure calibrates n as bench_measure() does in bench/harness.c, then
// makes *reps runs of fn and reports their median in ns per operation.
func measure(wl, unit string, fn func(n int64) time.Duration, n0 int64) {
	enough := *target / 3
	if enough > 0.1 {
		enough = 0.1
	}
	n := round4(n0)
	var t float64
	for {
		t = fn(n).Seconds()
		if t >= enough || n >= 1<<40 {
			break
		}
		f := 1.5 * enough / maxf(t, 1e-6)
		if f < 2 {
			f = 2
		}
		if f > 100 {
			f = 100
		}
		n = round4(int64(float64(n) * f))
	}
	n = round4(int64(float64(n) * *target / t))
	vals := make([]float64, *reps)
	for r := range vals {
		vals[r] = float64(fn(n).Nanoseconds()) / float64(n)
	}
	report(wl, unit, vals, n)
}

func maxf(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}

// ---------------------------------------------------------------- w1

func w1(n int64) time.Duration {
	ping, pong := make(chan int64), make(chan int64)
	var wg sync.WaitGroup
	var bad int64
	t0 := time.Now()
	goBody(&wg, func() {
		for i := int64(0); i < n; i++ {
			pong <- <-ping
		}
	})
	goBody(&wg, func() {
		for i := int64(0); i < n; i++ {
			ping <- i
			if <-pong != i {
				bad++
			}
		}
	})
	wg.Wait()
	t := time.Since(t0)
	check(bad == 0, "w1", "a round trip returned another value")
	return t
}

// ---------------------------------------------------------- w2 and w3

// pc runs np producers and np consumers on one channel of capacity c;
// producer p sends k*np + p for k < n/np. A lone consumer must see each
// producer's values consecutively, several consumers in increasing order.
func pc(wl string, c, np int) func(int64) time.Duration {
	return func(n int64) time.Duration {
		ch := make(chan int64, c)
		per := n / int64(np)
		var wg sync.WaitGroup
		var sum uint64
		var bad int64
		t0 := time.Now()
		for p := 0; p < np; p++ {
			id := int64(p)
			goBody(&wg, func() {
				for k := int64(0); k < per; k++ {
					ch <- k*int64(np) + id
				}
			})
		}
		for q := 0; q < np; q++ {
			goBody(&wg, func() {
				last := make([]int64, np)
				for i := range last {
					last[i] = -1
				}
				var s uint64
				var b int64
				for i := int64(0); i < per; i++ {
					v := <-ch
					if v < 0 {
						b++
						continue
					}
					id, k := v%int64(np), v/int64(np)
					if (np == 1 && k != last[id]+1) || (np > 1 && k <= last[id]) {
						b++
					}
					last[id] = k
					s += uint64(v)
				}
				atomic.AddUint64(&sum, s)
				atomic.AddInt64(&bad, b)
			})
		}
		wg.Wait()
		t := time.Since(t0)
		unp := uint64(np)
		check(bad == 0, wl, "values out of order")
		check(sum == unp*unp*tri(per)+uint64(per)*tri(int64(np)), wl, "checksum")
		check(len(ch) == 0, wl, "values left in the channel")
		return t
	}
}

// ---------------------------------------------------------------- w4

func w4(n int64) time.Duration {
	var chs [4]chan int64
	for i := range chs {
		chs[i] = make(chan int64, 1024)
	}
	per := n / 4
	var wg sync.WaitGroup
	var sum uint64
	var bad int64
	t0 := time.Now()
	for p := 0; p < 4; p++ {
		ch := chs[p]
		goBody(&wg, func() {
			for k := int64(0); k < per; k++ {
				ch <- k
			}
		})
	}
	goBody(&wg, func() {
		var next [4]int64
		for i := int64(0); i < 4*per; i++ {
			var v int64
			var k int
			select {
			case v = <-chs[0]:
				k = 0
			case v = <-chs[1]:
				k = 1
			case v = <-chs[2]:
				k = 2
			case v = <-chs[3]:
				k = 3
			}
			if v != next[k] {
				bad++
			}
			next[k]++
			sum += uint64(v)
		}
	})
	wg.Wait()
	t := time.Since(t0)
	check(bad == 0, "w4", "values out of order")
	check(sum == 4*tri(per), "w4", "checksum")
	return t
}

// ---------------------------------------------------------------- w5

// w5 builds a ring of *ringN goroutines linked by unbuffered channels; the
// goroutine that receives the token at 0 records its index and signals
// done, so a token sent with value n stops at n % size after n hops.
func w5() {
	size := *ringN
	chs := make([]chan int64, size)
	for i := range chs {
		chs[i] = make(chan int64)
	}
	done := make(chan struct{})
	var started, last int64
	ready := make(chan struct{}, 1)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < size; i++ {
		in, out, idx := chs[i], chs[(i+1)%size], int64(i)
		goBody(&wg, func() {
			if atomic.AddInt64(&started, 1) == int64(size) {
				ready <- struct{}{}
			}
			// The ring is closed only while no token is in flight,
			// that is while every goroutine waits in this receive.
			for v := range in {
				if v == 0 {
					atomic.StoreInt64(&last, idx)
					done <- struct{}{}
				} else {
					out <- v - 1
				}
			}
		})
	}
	<-ready
	spawn := float64(time.Since(t0).Nanoseconds()) / float64(size)
	report("ring-spawn", "ns/body", []float64{spawn}, int64(size))

	measure("w5", "ns/hop", func(n int64) time.Duration {
		atomic.StoreInt64(&last, -1)
		t0 := time.Now()
		chs[0] <- n
		<-done
		t := time.Since(t0)
		check(atomic.LoadInt64(&last) == n%int64(size), "w5", "hop count")
		return t
	}, int64(size))

	for _, ch := range chs {
		close(ch)
	}
	wg.Wait()
}

// ------------------------------------------------- one-goroutine micro loops

// micro runs loop(n) in one goroutine, as bench/workloads.c runs it in one
// body; loop returns the number of unexpected results.
func micro(wl string, loop func(n int64) int64) {
	microFrom(wl, loop, 1024)
}

// microFrom is micro with calibration starting from n0 operations, for
// loops whose operations are slow.
func microFrom(wl string, loop func(n int64) int64, n0 int64) {
	measure(wl, "ns/op", func(n int64) time.Duration {
		var wg sync.WaitGroup
		var bad int64
		t0 := time.Now()
		goBody(&wg, func() { bad = loop(n) })
		wg.Wait()
		t := time.Since(t0)
		check(bad == 0, wl, "unexpected results")
		return t
	}, n0)
}

// sel runs the token round nch channels of capacity 1: a select over all of
// them (exactly one ready), then a send of the token to the next one. Go
// compiles a one-case select into a plain receive, as it is entitled to.
func sel(nch int) func(n int64) int64 {
	return func(n int64) int64 {
		var c [16]chan int64
		for i := 0; i < nch; i++ {
			c[i] = make(chan int64, 1)
		}
		c[0] <- 0
		pos, bad := 0, int64(0)
		for i := int64(0); i < n; i++ {
			var v int64
			var k int
			switch nch {
			case 1:
				select {
				case v = <-c[0]:
					k = 0
				}
			case 4:
				select {
				case v = <-c[0]:
					k = 0
				case v = <-c[1]:
					k = 1
				case v = <-c[2]:
					k = 2
				case v = <-c[3]:
					k = 3
				}
			default:
				select {
				case v = <-c[0]:
					k = 0
				case v = <-c[1]:
					k = 1
				case v = <-c[2]:
					k = 2
				case v = <-c[3]:
					k = 3
				case v = <-c[4]:
					k = 4
				case v = <-c[5]:
					k = 5
				case v = <-c[6]:
					k = 6
				case v = <-c[7]:
					k = 7
				case v = <-c[8]:
					k = 8
				case v = <-c[9]:
					k = 9
				case v = <-c[10]:
					k = 10
				case v = <-c[11]:
					k = 11
				case v = <-c[12]:
					k = 12
				case v = <-c[13]:
					k = 13
				case v = <-c[14]:
					k = 14
				case v = <-c[15]:
					k = 15
				}
			}
			if k != pos || v != i {
				bad++
			}
			pos = (k + 1) % nch
			c[pos] <- v + 1
		}
		if <-c[pos] != n {
			bad++
		}
		return bad
	}
}

// selGen is sel over the nch channels of a generated select statement
// (sel_gen.go), in the order they were made, as sel64 of bench/workloads.c.
func selGen(nch int, pick func([]chan int64) (int, int64)) func(n int64) int64 {
	return func(n int64) int64 {
		c := make([]chan int64, nch)
		for i := range c {
			c[i] = make(chan int64, 1)
		}
		return selRound(c, pick, n)
	}
}

// selRound passes the token round the channels c: pick waits for the one
// that holds it, then the token goes, incremented, to the next one. It
// returns the number of unexpected results.
func selRound(c []chan int64, pick func([]chan int64) (int, int64), n int64) int64 {
	nch := len(c)
	c[0] <- 0
	pos, bad := 0, int64(0)
	for i := int64(0); i < n; i++ {
		k, v := pick(c)
		if k != pos || v != i {
			bad++
		}
		pos = (k + 1) % nch
		c[pos] <- v + 1
	}
	if <-c[pos] != n {
		bad++
	}
	return bad
}

// selMany is sel over nch channels listed in the same fixed pseudo-random
// order of the channels as in workloads.c. With reflected set, the select
// is reflect.Select, which can take any number of cases up to 65536 but
// builds them at run time and costs more than a select statement; else it
// is the generated select statement of nch cases (sel_gen.go).
func selMany(nch int, reflected bool) func(n int64) int64 {
	return func(n int64) int64 {
		c := make([]chan int64, nch)
		for i := range c {
			c[i] = make(chan int64, 1)
		}
		x := uint32(2463534242)
		for i := nch - 1; i > 0; i-- {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			j := int(x % uint32(i+1))
			c[i], c[j] = c[j], c[i]
		}
		if !reflected {
			return selRound(c, select1000, n)
		}
		cases := make([]reflect.SelectCase, nch)
		for i := range cases {
			cases[i] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c[i])}
		}
		bad := int64(0)
		pick := func([]chan int64) (int, int64) {
			k, rv, ok := reflect.Select(cases)
			if !ok {
				bad++
			}
			return k, rv.Int()
		}
		return bad + selRound(c, pick, n)
	}
}

// ------------------------------------------------------------- fan-in

// fanin runs np producers that send 0 .. n-1 between them on one
// unbuffered channel (producer p the values congruent to p modulo np, in
// increasing order) and one consumer that receives all n, checking each
// producer's order and the sum, as bench/workloads.c does.
func fanin(wl string, np int) func(n int64) time.Duration {
	return func(n int64) time.Duration {
		ch := make(chan int64)
		var wg sync.WaitGroup
		var sum uint64
		var bad int64
		t0 := time.Now()
		for p := 0; p < np; p++ {
			first := int64(p)
			goBody(&wg, func() {
				for v := first; v < n; v += int64(np) {
					ch <- v
				}
			})
		}
		goBody(&wg, func() {
			next := make([]int64, np)
			for i := range next {
				next[i] = int64(i)
			}
			for i := int64(0); i < n; i++ {
				v := <-ch
				if v < 0 || v >= n {
					bad++
					continue
				}
				if v != next[v%int64(np)] {
					bad++
				}
				next[v%int64(np)] = v + int64(np)
				sum += uint64(v)
			}
		})
		wg.Wait()
		t := time.Since(t0)
		check(bad == 0, wl, "values out of order")
		check(sum == tri(n), wl, "checksum")
		return t
	}
}

// ---------------------------------------------------------- broadcast

// bcast: *bcastN goroutines block receiving from one channel; once all
// have counted themselves (and 20 ms more for the last ones to park), the
// channel is closed and a WaitGroup waited on that each goroutine leaves
// once its receive has returned. The result is the time from close to the
// end of Wait, per goroutine, for *reps runs after an unreported one.
func bcast() {
	n := *bcastN
	vals := make([]float64, *reps)
	for r := -1; r < *reps; r++ {
		gate := make(chan struct{})
		ready := make(chan struct{}, 1)
		var counted, bad int64
		var woke, all sync.WaitGroup
		woke.Add(n)
		for i := 0; i < n; i++ {
			goBody(&all, func() {
				if atomic.AddInt64(&counted, 1) == int64(n) {
					ready <- struct{}{}
				}
				if _, ok := <-gate; ok {
					atomic.AddInt64(&bad, 1)
				}
				woke.Done()
			})
		}
		<-ready
		time.Sleep(20 * time.Millisecond)
		t0 := time.Now()
		close(gate)
		woke.Wait()
		t := time.Since(t0)
		all.Wait()
		check(atomic.LoadInt64(&bad) == 0, "bcast", "a receive did not see the close")
		if r >= 0 {
			vals[r] = float64(t.Nanoseconds()) / float64(n)
		}
	}
	report("bcast", "ns/body", vals, int64(n))
}

func sendrecv(n int64) int64 {
	ch := make(chan int64, 1)
	var bad int64
	for i := int64(0); i < n; i++ {
		ch <- i
		if <-ch != i {
			bad++
		}
	}
	return bad
}

func tryPair(n int64) int64 {
	ch := make(chan int64, 1)
	var bad int64
	for i := int64(0); i < n; i++ {
		select {
		case ch <- i:
		default:
			bad++
		}
		select {
		case v := <-ch:
			if v != i {
				bad++
			}
		default:
			bad++
		}
	}
	return bad
}

func tryrecvEmpty(n int64) int64 {
	ch := make(chan int64, 1)
	var bad int64
	for i := int64(0); i < n; i++ {
		select {
		case <-ch:
			bad++
		default:
		}
	}
	return bad
}

func trysendFull(n int64) int64 {
	ch := make(chan int64, 1)
	ch <- 42
	var bad int64
	for i := int64(0); i < n; i++ {
		select {
		case ch <- i:
			bad++
		default:
		}
	}
	if <-ch != 42 {
		bad++
	}
	return bad
}

// sink keeps the channels made by makeChans reachable, so that the compiler
// cannot drop the allocation.
var sink atomic.Value

func makeChans(c int) func(n int64) int64 {
	return func(n int64) int64 {
		var ch chan int64
		for i := int64(0); i < n; i++ {
			ch = make(chan int64, c)
			if i&1023 == 0 {
				sink.Store(ch)
			}
		}
		sink.Store(ch)
		return 0
	}
}

// ---------------------------------------------------------------- idle

// cpuNs is the CPU time, in ns, of the process (who = RUSAGE_SELF) or, on
// Linux, of the calling thread (who = 1, RUSAGE_THREAD).
func cpuNs(who int) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		fmt.Fprintln(os.Stderr, "bench: getrusage:", err)
		os.Exit(1)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// idle: a goroutine blocked in a receive for *idleS seconds. idle-proc is
// the CPU the process used meanwhile, per second blocked; with -locked on
// Linux, idle-thread is the CPU of the blocked goroutine's own thread.
func idle() {
	tv := make([]float64, *reps)
	pv := make([]float64, *reps)
	threadCPU := *locked && runtime.GOOS == "linux"
	for r := 0; r < *reps; r++ {
		ch := make(chan int64)
		started := make(chan struct{}, 1)
		var got, tns int64
		var wg sync.WaitGroup
		goBody(&wg, func() {
			started <- struct{}{}
			var c0 int64
			if threadCPU {
				c0 = cpuNs(1)
			}
			got = <-ch
			if threadCPU {
				tns = cpuNs(1) - c0
			}
		})
		<-started
		p0 := cpuNs(syscall.RUSAGE_SELF)
		time.Sleep(time.Duration(*idleS * 1e9))
		p1 := cpuNs(syscall.RUSAGE_SELF)
		ch <- 4242
		wg.Wait()
		check(got == 4242, "idle", "received value")
		tv[r] = float64(tns) / *idleS
		pv[r] = float64(p1-p0) / *idleS
	}
	if threadCPU {
		report("idle-thread", "cpu-ns/s", tv, 1)
	}
	report("idle-proc", "cpu-ns/s", pv, 1)
}

// ---------------------------------------------------------------- spawn

const spawnBatch = 64

// spawn runs one body that starts bodies that only count themselves, in
// batches it waits for with a WaitGroup, as bench/workloads.c does.
func spawn(n int64) time.Duration {
	var ran int64
	var outer sync.WaitGroup
	t0 := time.Now()
	goBody(&outer, func() {
		var wg sync.WaitGroup
		for i := int64(0); i < n; i += spawnBatch {
			for k := i; k < n && k < i+spawnBatch; k++ {
				goBody(&wg, func() { atomic.AddInt64(&ran, 1) })
			}
			wg.Wait()
		}
	})
	outer.Wait()
	t := time.Since(t0)
	check(atomic.LoadInt64(&ran) == n, "spawn", "bodies run")
	return t
}

// ---------------------------------------------------------------- yield

// yield runs two bodies calling runtime.Gosched() n times each.
func yield(n int64) time.Duration {
	var wg sync.WaitGroup
	t0 := time.Now()
	for k := 0; k < 2; k++ {
		goBody(&wg, func() {
			for i := int64(0); i < n; i++ {
				runtime.Gosched()
			}
		})
	}
	wg.Wait()
	return time.Since(t0)
}

// ---------------------------------------------------------------- table

var table = []struct {
	name string
	fn   func()
}{
	{"w1", func() { measure("w1", "ns/rt", w1, 1024) }},
	{"w2c1024", func() { measure("w2c1024", "ns/msg", pc("w2c1024", 1024, 1), 1024) }},
	{"w2c1", func() { measure("w2c1", "ns/msg", pc("w2c1", 1, 1), 1024) }},
	{"w3", func() { measure("w3", "ns/msg", pc("w3", 1024, 4), 1024) }},
	{"w4", func() { measure("w4", "ns/msg", w4, 1024) }},
	{"w5", w5},
	{"spawn", func() { measure("spawn", "ns/body", spawn, 1024) }},
	{"yield", func() { measure("yield", "ns/yield", yield, 1024) }},
	{"sel1", func() { micro("sel1", sel(1)) }},
	{"sel4", func() { micro("sel4", sel(4)) }},
	{"sel16", func() { micro("sel16", sel(16)) }},
	{"sel64", func() { micro("sel64", selGen(64, select64)) }},
	// sel1000 is a select statement of 1000 cases; sel1000-reflect,
	// which the C programs do not have, is reflect.Select on the same.
	{"sel1000", func() {
		microFrom("sel1000", selMany(1000, false), 4)
		microFrom("sel1000-reflect", selMany(1000, true), 4)
	}},
	// reflect.Select takes at most 65536 cases, and a select statement
	// lists its cases in the source: Go has no select of 100,000 cases.
	{"sel100000", func() { fmt.Fprintln(os.Stderr, "go: sel100000: no select of that many cases in Go; skipped") }},
	{"sendrecv", func() { micro("sendrecv", sendrecv) }},
	{"try-pair", func() { micro("try-pair", tryPair) }},
	{"tryrecv-empty", func() { micro("tryrecv-empty", tryrecvEmpty) }},
	{"trysend-full", func() { micro("trysend-full", trysendFull) }},
	{"make", func() { micro("make", makeChans(0)) }},
	{"make1024", func() { micro("make1024", makeChans(1024)) }},
	{"fanin1000", func() { measure("fanin1000", "ns/msg", fanin("fanin1000", 1000), 4000) }},
	{"fanin64", func() { measure("fanin64", "ns/msg", fanin("fanin64", 64), 256) }},
	{"bcast", bcast},
	{"idle", idle},
}

func run(name string) bool {
	for _, w := range table {
		if w.name == name {
			w.fn()
			return true
		}
	}
	return false
}

func main() {
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [-locked] [-r reps] [-t seconds] [-n ring] [-s kib] [-i seconds] [-b bodies] [-l] [workload ... | all]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *reps < 1 || *target <= 0 || *ringN < 2 || *idleS <= 0 || *bcastN < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if *list {
		for _, w := range table {
			fmt.Println(w.name)
		}
		return
	}
	if *locked {
		impl = "go-locked"
		debug.SetMaxThreads(100000)
	}
	args := flag.Args()
	if len(args) == 0 || (len(args) == 1 && args[0] == "all") {
		for _, w := range table {
			w.fn()
		}
		return
	}
	for _, a := range args {
		if !run(a) {
			fmt.Fprintf(os.Stderr, "%s: unknown workload '%s' (-l lists them)\n", os.Args[0], a)
			os.Exit(2)
		}
	}
}

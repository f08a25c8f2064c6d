// Command parked is the Go side of bench/parked.c: it starts n goroutines
// (100,000 by default) that all block receiving from one channel, reads
// VmRSS and VmHWM from /proc/self/status and counts /proc/self/maps once
// all of them are parked, then closes the channel and waits for them.
// Run it with GOMAXPROCS=2 to match libchan's 2-worker scheduler:
//
//	cd bench/go && CGO_ENABLED=0 go build -o /tmp/go-parked ./parked
//	GOMAXPROCS=2 /tmp/go-parked [-n tasks]
//
// The output lines are those of bench_parked, with "go" as the name.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// statusKiB returns a field of /proc/self/status in KiB, or -1.
func statusKiB(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, field+":") {
			v := strings.Fields(line[len(field)+1:])
			if len(v) > 0 {
				n, err := strconv.ParseInt(v[0], 10, 64)
				if err == nil {
					return n
				}
			}
		}
	}
	return -1
}

func countMaps() int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return -1
	}
	return bytes.Count(b, []byte{'\n'})
}

func report(what, unit string, v float64) {
	fmt.Printf("go\t%s\t%s\t%.1f\n", what, unit, v)
}

func main() {
	n := flag.Int("n", 100000, "goroutines")
	flag.Parse()
	gate := make(chan struct{})
	ready := make(chan struct{}, 1)
	var parked int64
	var wg sync.WaitGroup
	rss0 := statusKiB("VmRSS")
	t0 := time.Now()
	wg.Add(*n)
	for i := 0; i < *n; i++ {
		go func() {
			defer wg.Done()
			if atomic.AddInt64(&parked, 1) == int64(*n) {
				ready <- struct{}{}
			}
			if _, ok := <-gate; ok {
				panic("gate: a value, want closed")
			}
		}()
	}
	<-ready
	t1 := time.Now()
	time.Sleep(20 * time.Millisecond) // the last one parks
	rss, hwm, maps := statusKiB("VmRSS"), statusKiB("VmHWM"), countMaps()
	report("parked-spawn", "ns/task", float64(t1.Sub(t0).Nanoseconds())/float64(*n))
	report("parked-rss", "bytes/task", float64(rss-rss0)*1024/float64(*n))
	report("parked-hwm", "KiB", float64(hwm))
	report("parked-maps", "mappings", float64(maps))
	t2 := time.Now()
	close(gate)
	wg.Wait()
	report("parked-free", "ns/task", float64(time.Since(t2).Nanoseconds())/float64(*n))
	report("parked-rss-after", "KiB", float64(statusKiB("VmRSS")))
}

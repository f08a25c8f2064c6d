// Command echo is the Go side of the echo workloads (bench/echo): a TCP
// echo server on the net package, one goroutine per connection; the
// driver runs it with GOMAXPROCS=2.
//
// It listens on 127.0.0.1 on a free port, prints "port N", copies what
// each connection sends back to it through a 4 KiB buffer of its own, and
// exits when its standard input reaches end of file (or after ten
// minutes, so that a lost driver cannot leave it behind).
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	time.AfterFunc(10*time.Minute, func() {
		fmt.Fprintln(os.Stderr, "echo: still running after 10 minutes")
		os.Exit(1)
	})
	for {
		c, err := ln.Accept()
		if err != nil {
			// Out of descriptors, most likely: wait for some to close.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go echo(c)
	}
}

// Command httpd is a minimal HTTP/1.1 responder on the net package (not
// net/http), one goroutine per connection, for load generators such as
// wrk: every request gets the same fixed response, and connections are
// kept alive.  It is the Go baseline for a libchan responder written the
// same way; it parses only as much HTTP as counting requests needs (each
// ends with an empty line; bodies are not supported).
//
//	httpd [-addr 127.0.0.1:0]
//
// It prints "port N" once listening, and exits when its standard input
// reaches end of file.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

var response = []byte("HTTP/1.1 200 OK\r\n" +
	"Content-Type: text/plain\r\n" +
	"Content-Length: 13\r\n" +
	"\r\n" +
	"Hello, world\n")

var end = []byte("\r\n\r\n")

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	out := make([]byte, 0, 16*len(response))
	// have: bytes of an unfinished request head kept from earlier reads,
	// at most len(end)-1 of them (enough to find an end that straddles
	// two reads).
	have := 0
	for {
		n, err := c.Read(buf[have:])
		if n > 0 {
			data := buf[:have+n]
			out = out[:0]
			for {
				i := bytes.Index(data, end)
				if i < 0 {
					break
				}
				out = append(out, response...)
				data = data[i+len(end):]
			}
			if len(out) > 0 {
				if _, werr := c.Write(out); werr != nil {
					return
				}
			}
			keep := len(data)
			if keep > len(end)-1 {
				keep = len(end) - 1
			}
			copy(buf, data[len(data)-keep:])
			have = keep
		}
		if err != nil {
			return
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpd:", err)
		os.Exit(1)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	time.AfterFunc(10*time.Minute, func() {
		fmt.Fprintln(os.Stderr, "httpd: still running after 10 minutes")
		os.Exit(1)
	})
	for {
		c, err := ln.Accept()
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}

// Command echo is the test server of nanoseg's container tests and of
// `make demo-containers`: a static binary imported as a one-file image
// into the runtime under test (e2e/containers_test.go,
// scripts/demo-containers.sh). It answers every TCP connection on its
// ports with "ok NAME\n" and, with -connect, connects to peers in a loop
// and prints each attempt on stdout ("ok" or the error), so that a
// container's traffic and what enforcement did to it show in its log.
//
//	echo -name web -listen 8080 -connect 198.18.217.11:9090 -every 1s
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	name := flag.String("name", "echo", "name in replies and log lines")
	listen := flag.String("listen", "", "TCP ports to answer on, comma-separated")
	connect := flag.String("connect", "", "host:port peers to connect to, comma-separated")
	every := flag.Duration("every", time.Second, "pause between rounds of -connect")
	timeout := flag.Duration("timeout", time.Second, "connect and read timeout")
	flag.Parse()
	for _, p := range split(*listen) {
		ln, err := net.Listen("tcp", ":"+p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "echo: listen %s: %v\n", p, err)
			os.Exit(1)
		}
		go serve(ln, *name)
	}
	peers := split(*connect)
	for len(peers) == 0 {
		time.Sleep(time.Hour) // serve (select{} with no listener is a deadlock to the runtime)
	}
	for {
		for _, p := range peers {
			fmt.Printf("%s %s -> %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), *name, p, talk(p, *timeout))
		}
		time.Sleep(*every)
	}
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func serve(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			fmt.Fprintf(c, "ok %s\n", name)
		}()
	}
}

// talk connects to peer and reads its reply: "ok PEERNAME" or the error.
func talk(peer string, timeout time.Duration) string {
	c, err := net.DialTimeout("tcp", peer, timeout)
	if err != nil {
		return "error: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(line)
}

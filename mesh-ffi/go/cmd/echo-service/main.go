// Command echo-service is a Go workload for the cross-language tests, built on the Go binding:
// tunnels to port 7000 are answered with "go <peer SPIFFE ID>: <what it received>" once the
// client half-closed; port 8080 is served by net/http, answering
// "go <peer SPIFFE ID>: <method> <path> <body>" with the peer in x-peer. Prints its HBONE
// port, then serves until its standard input closes.
//
// usage: echo-service CONFIG.yaml
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	mesh "example.invalid/mesh/mesh-ffi/go"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: echo-service CONFIG.yaml")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "echo-service:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	config, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, string(config))
	if err != nil {
		return err
	}
	defer m.Close()
	l, err := m.Listen(nil)
	if err != nil {
		return err
	}
	web := newChanListener(l.Addr())
	srv := &http.Server{
		ConnContext: mesh.ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			peer, _ := mesh.PeerIDFromContext(r.Context())
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("x-peer", peer)
			fmt.Fprintf(w, "go %s: %s %s %s", peer, r.Method, r.URL.Path, body)
		}),
	}
	go srv.Serve(web)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				web.Close()
				return
			}
			if c.(*mesh.Conn).TargetPort() == 8080 {
				select {
				case web.conns <- c:
				case <-web.done:
					c.Close()
				}
			} else {
				go answer(c.(*mesh.Conn))
			}
		}
	}()
	fmt.Println(l.Port())
	io.Copy(io.Discard, os.Stdin)
	_ = srv.Close()
	return l.Close()
}

func answer(c *mesh.Conn) {
	defer c.Close()
	got, _ := io.ReadAll(c)
	fmt.Fprintf(c, "go %s: %s", c.PeerID(), got)
}

// chanListener hands net/http the connections the accept loop routes to it.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

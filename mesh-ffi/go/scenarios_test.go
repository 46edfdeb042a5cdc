package mesh

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	if Version() == "" {
		t.Fatal("no version")
	}
}

func TestMTLSSuccess(t *testing.T) {
	c := dial(t, fx.orders, service+":9004")
	if c.PeerID() != inventory {
		t.Fatalf("peer %s", c.PeerID())
	}
	seen, err := io.ReadAll(c)
	if err != nil || string(seen) != orders {
		t.Fatalf("server saw %q (%v)", seen, err)
	}
}

func TestWrongSpiffeID(t *testing.T) {
	m := newCaller(t, orders, "spiffe://cluster.local/ns/shop/sa/impostor", fx.listener.Port())
	_, err := m.Dial(stepCtx(t), service+":9000")
	wantStatus(t, err, StatusTLS)
	if !strings.Contains(err.Error(), "impostor") {
		t.Fatalf("message does not name the expected identity: %v", err)
	}
}

func TestAuthorizationDeny(t *testing.T) {
	intruder := newCaller(t, "spiffe://cluster.local/ns/other/sa/intruder", inventory, fx.listener.Port())
	_, err := intruder.Dial(stepCtx(t), service+":9000")
	wantStatus(t, err, StatusDenied)
	// Allowed by the policy, refused by the host's callback.
	refused := newCaller(t, blocked, inventory, fx.listener.Port())
	_, err = refused.Dial(stepCtx(t), service+":9000")
	wantStatus(t, err, StatusDenied)
}

func TestHalfClose(t *testing.T) {
	c := dial(t, fx.orders, service+":9005")
	if _, err := c.Write(bytes.Repeat([]byte("x"), 100000)); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "got 100000 bytes" {
		t.Fatalf("reply %q (%v)", reply, err)
	}
}

func TestResetIsConnectionReset(t *testing.T) {
	c := dial(t, fx.orders, service+":9002")
	if _, err := c.Write(make([]byte, 65536)); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("want ECONNRESET, got %v", err)
	}
}

func TestLargeTransferWithChecksum(t *testing.T) {
	c := dial(t, fx.orders, service+":9000")
	const size = 16 << 20
	sent := sha256.New()
	go func() {
		src := io.TeeReader(io.LimitReader(rand.New(rand.NewSource(7)), size), sent)
		io.Copy(c, src)
		c.CloseWrite()
	}()
	got := sha256.New()
	n, err := io.Copy(got, c)
	if err != nil || n != size {
		t.Fatalf("echoed %d of %d bytes (%v)", n, size, err)
	}
	if !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		t.Fatal("checksums differ")
	}
}

func TestConcurrentTunnelsFromManyGoroutines(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), step)
				c, err := fx.orders.Dial(ctx, service+":9000")
				cancel()
				if err != nil {
					errs <- err
					return
				}
				c.SetDeadline(time.Now().Add(step))
				msg := []byte(fmt.Sprintf("goroutine %d tunnel %d", g, i))
				c.Write(msg)
				back := make([]byte, len(msg))
				_, err = io.ReadFull(c, back)
				c.Close()
				if err != nil || !bytes.Equal(back, msg) {
					errs <- fmt.Errorf("echo %q: %q (%v)", msg, back, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// bigBody is the size of the streamed response in TestHTTPServeAndTransport.
const bigBody = 8 << 20

func TestHTTPServeAndTransport(t *testing.T) {
	// A second workload (same identity and CA) serving HTTP with net/http over the listener.
	web, err := New(stepCtx(t), serverConfig(fx.dir, "1s"))
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	l, err := web.Listen(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		ConnContext: ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/big" {
				// 8 MiB written in pieces without a content-length: the response is
				// chunked, and the client reads it as a stream.
				piece := make([]byte, 64*1024)
				for sent := 0; sent < bigBody; sent += len(piece) {
					for i := range piece {
						piece[i] = byte((sent + i) % 251)
					}
					if _, err := w.Write(piece); err != nil {
						return
					}
				}
				return
			}
			peer, _ := PeerIDFromContext(r.Context())
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("x-peer", peer)
			fmt.Fprintf(w, "%s %s %s from %s", r.Method, r.URL.Path, body, r.RemoteAddr)
		}),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	caller := newCaller(t, orders, inventory, l.Port())
	client := &http.Client{Transport: caller.Transport(), Timeout: step}
	resp, err := client.Post("http://"+service+":8080/stock", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("x-peer") != orders ||
		!strings.HasPrefix(string(body), "POST /stock hello from 127.0.0.1:") {
		t.Fatalf("%d %v %q", resp.StatusCode, resp.Header, body)
	}
	// A large response body streams: read it in small pieces and check every byte.
	resp, err = client.Get("http://" + service + ":8080/big")
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContentLength != -1 {
		t.Fatalf("chunked response with length %d", resp.ContentLength)
	}
	total := 0
	piece := make([]byte, 10000)
	for {
		n, err := resp.Body.Read(piece)
		for i := 0; i < n; i++ {
			if piece[i] != byte((total+i)%251) {
				t.Fatalf("byte %d", total+i)
			}
		}
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	resp.Body.Close()
	if total != bigBody {
		t.Fatalf("read %d of %d bytes", total, bigBody)
	}
	// A body closed before its end, and one left to the finalizer, release their responses.
	resp, err = client.Get("http://" + service + ":8080/big")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := resp.Body.Read(piece); n == 0 || err != nil {
		t.Fatalf("first read: %d %v", n, err)
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(piece); err == nil {
		t.Fatal("read after close succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatal(err)
	}
}

func TestInvalidArguments(t *testing.T) {
	ctx := stepCtx(t)
	_, err := New(ctx, "identiti: {}")
	wantStatus(t, err, StatusConfig)
	if !strings.Contains(err.Error(), "identiti") {
		t.Fatalf("message does not name the field: %v", err)
	}
	_, err = New(ctx, "identity: \xff\xfe")
	wantStatus(t, err, StatusInvalidUTF8)
	_, err = New(ctx, "identity: {}\x00")
	wantStatus(t, err, StatusInvalidArgument)
	_, err = New(ctx, `{"identity": `)
	wantStatus(t, err, StatusConfig)
	_, err = fx.orders.Dial(ctx, "no-port")
	wantStatus(t, err, StatusInvalidArgument)
	_, err = fx.orders.Dial(ctx, "unknown.svc:80")
	wantUnknownService(t, err, "unknown.svc")
	_, err = (&http.Client{Transport: fx.orders.Transport()}).Get("http://unknown.svc:8080/")
	wantUnknownService(t, err, "unknown.svc")
	_, err = fx.orders.Dial(ctx, service+":7777")
	wantStatus(t, err, StatusNoEndpoint)
	if errors.Is(err, ErrUnknownService) || !strings.Contains(err.Error(), "not 7777") {
		t.Fatalf("undeclared port of a known service: %v", err)
	}
	_, err = (&http.Client{Transport: fx.orders.Transport()}).Get("https://" + service + ":8080/")
	wantStatus(t, err, StatusInvalidArgument)
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err = fx.orders.Dial(expired, service+":9000"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired context: %v", err)
	}
	closed, err := New(ctx, callerConfig(fx.dir, orders, inventory, fx.listener.Port()))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	closed.Close()
	if _, err = closed.Dial(ctx, service+":9000"); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed mesh: %v", err)
	}
}

func TestShutdownWithOpenTunnels(t *testing.T) {
	server, err := New(stepCtx(t), serverConfig(fx.dir, "300ms"))
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	l, err := server.Listen(nil)
	if err != nil {
		t.Fatal(err)
	}
	var handlers sync.WaitGroup
	drainErr := make(chan error, 1)
	accepted := make(chan struct{})
	go func() { serve(l, &handlers, drainErr); close(accepted) }()
	caller := newCaller(t, orders, inventory, l.Port())
	c := dial(t, caller, service+":9003")
	ready := make([]byte, 6)
	if _, err := io.ReadFull(c, ready); err != nil {
		t.Fatal(err)
	}
	cut, err := l.Shutdown(stepCtx(t))
	if err != nil || cut != 1 {
		t.Fatalf("shutdown cut %d (%v)", cut, err)
	}
	if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client after drain: %v", err)
	}
	<-accepted
	handlers.Wait()
	if err := <-drainErr; !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("server side after drain: %v", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept after shutdown: %v", err)
	}
	_, err = caller.Dial(stepCtx(t), service+":9000")
	wantStatus(t, err, StatusUnavailable)
}

func TestFinalizersReleaseForgottenHandles(t *testing.T) {
	before := live.Load()
	func() {
		m, err := New(stepCtx(t), callerConfig(fx.dir, orders, inventory, fx.listener.Port()))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			if _, err := m.Dial(stepCtx(t), service+":9000"); err != nil {
				t.Fatal(err)
			}
		}
		// Nothing is closed: the finalizers must release the mesh and the four tunnels.
	}()
	deadline := time.Now().Add(step)
	for live.Load() != before {
		if time.Now().After(deadline) {
			t.Fatalf("%d handles still live after GC (baseline %d)", live.Load(), before)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

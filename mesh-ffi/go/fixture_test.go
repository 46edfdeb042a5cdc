package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// One scenario list for every language (see tests/c/ for C, python/tests for Python): a
// serving workload and callers, all created through the C ABI, sharing a development CA.

const (
	service   = "inventory.shop.svc.cluster.local"
	inventory = "spiffe://cluster.local/ns/shop/sa/inventory"
	orders    = "spiffe://cluster.local/ns/shop/sa/orders"
	blocked   = "spiffe://cluster.local/ns/shop/sa/blocked"
	step      = 20 * time.Second
)

const policy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: shop-only, namespace: shop }
spec:
  selector: { matchLabels: { app: inventory } }
  action: ALLOW
  rules:
  - from: [{ source: { principals: [cluster.local/ns/shop/sa/orders, cluster.local/ns/shop/sa/blocked] } }]
`

var fx struct {
	dir       string
	server    *Mesh
	listener  *Listener
	orders    *Mesh
	handlers  sync.WaitGroup
	accepting sync.WaitGroup
}

func stepCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), step)
	t.Cleanup(cancel)
	return ctx
}

// serverConfig is the serving workload's YAML.
func serverConfig(dir, drain string) string {
	return fmt.Sprintf(`workload: { name: inventory, namespace: shop, labels: { app: inventory } }
identity: { spiffe_id: %s, dev_ca: { dir: %s } }
inbound: { listen: "127.0.0.1:0", drain_timeout: %s }
policies: [%s]
`, inventory, filepath.Join(dir, "ca"), drain, filepath.Join(dir, "policy.yaml"))
}

// callerConfig is a caller's JSON: identity id, expecting serverID behind the service.
func callerConfig(dir, id, serverID string, hbonePort uint16) string {
	return fmt.Sprintf(`{"identity": {"spiffe_id": %q, "dev_ca": {"dir": %q}},
 "services": [{"host": %q,
   "ports": [{"port": 9000}, {"port": 9002}, {"port": 9003}, {"port": 9004}, {"port": 9005},
             {"port": 8080, "protocol": "http"}],
   "identities": [%q],
   "endpoints": [{"address": "127.0.0.1:9000", "hbone_port": %d}]}]}`,
		id, filepath.Join(dir, "ca"), service, serverID, hbonePort)
}

func newCaller(t testing.TB, id, serverID string, port uint16) *Mesh {
	m, err := New(stepCtx(t), callerConfig(fx.dir, id, serverID, port))
	if err != nil {
		t.Fatalf("caller %s: %v", id, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// serve accepts until the listener closes, handling each tunnel by its target port.
func serve(l *Listener, handlers *sync.WaitGroup, drainErr chan<- error) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		handlers.Add(1)
		go func(c *Conn) {
			defer handlers.Done()
			defer c.Close()
			handle(c, drainErr)
		}(c.(*Conn))
	}
}

func handle(c *Conn, drainErr chan<- error) {
	switch c.TargetPort() {
	case 9000: // echo, then half-close
		io.Copy(c, c)
		c.CloseWrite()
	case 9002: // read one byte and close with the rest unread: a reset
		c.Read(make([]byte, 1))
	case 9003: // say ready, wait for the end, report how it ended
		c.Write([]byte("ready\n"))
		_, err := io.Copy(io.Discard, c)
		if drainErr != nil {
			drainErr <- err
		}
	case 9004:
		c.Write([]byte(c.PeerID()))
	case 9005:
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d bytes", n)
	}
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mesh-go-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	fx.dir = dir
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o600); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()
	fx.server, err = New(ctx, serverConfig(dir, "300ms"))
	if err != nil {
		panic(err)
	}
	fx.listener, err = fx.server.Listen(func(peer, addr string, port uint16) bool {
		return peer != blocked
	})
	if err != nil {
		panic(err)
	}
	fx.accepting.Add(1)
	go func() {
		defer fx.accepting.Done()
		serve(fx.listener, &fx.handlers, nil)
	}()
	fx.orders, err = New(ctx, callerConfig(dir, orders, inventory, fx.listener.Port()))
	if err != nil {
		panic(err)
	}
	code := m.Run()
	fx.listener.Close()
	fx.accepting.Wait()
	fx.handlers.Wait()
	fx.orders.Close()
	fx.server.Close()
	return code
}

func dial(t testing.TB, m *Mesh, target string) *Conn {
	c, err := m.Dial(stepCtx(t), target)
	if err != nil {
		t.Fatalf("dial %s: %v", target, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(step))
	return c.(*Conn)
}

func wantStatus(t testing.TB, err error, status Status) {
	t.Helper()
	if !errors.Is(err, status) {
		t.Fatalf("want %s, got %v", status, err)
	}
}

// wantUnknownService checks the typed "unknown service" error: its own status, still a
// no-endpoint failure for older checks, and a message naming the service and the fix.
func wantUnknownService(t testing.TB, err error, name string) {
	t.Helper()
	var e *Error
	if !errors.Is(err, ErrUnknownService) || !errors.Is(err, ErrNoEndpoint) || !errors.As(err, &e) {
		t.Fatalf("want ErrUnknownService, got %v", err)
	}
	if e.Status != StatusUnknownService || e.Status.String() != "MESH_ERR_UNKNOWN_SERVICE" ||
		!strings.Contains(e.Message, name) || !strings.Contains(e.Message, "services:") {
		t.Fatalf("unknown service error: %v", err)
	}
	if errors.Is(StatusNoEndpoint, ErrUnknownService) {
		t.Fatal("a plain no-endpoint status must not read as an unknown service")
	}
}

// freePort is a loopback port nothing listens on.
func freePort(t testing.TB) uint16 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

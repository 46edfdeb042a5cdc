package mesh

// #include "mesh.h"
import "C"

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
)

// Conn is an HBONE tunnel as a net.Conn (a Unix socket bridged to the tunnel by the library).
// Read reports a reset tunnel as ECONNRESET; CloseWrite half-closes (END_STREAM).
type Conn struct {
	*net.UnixConn
	mu         sync.Mutex
	tunnel     *C.mesh_tunnel
	peerID     string
	remote     Addr
	local      Addr
	targetPort uint16
}

// Addr is a mesh endpoint: the workload's SPIFFE ID and, when known, its TCP address.
type Addr struct {
	SpiffeID string
	// Address is "ip:port" for accepted connections (the client), or the dialed target.
	Address string
}

// Network is "mesh".
func (a Addr) Network() string { return "mesh" }

// String is the TCP address (what http.Request.RemoteAddr shows), or the SPIFFE ID.
func (a Addr) String() string {
	if a.Address != "" {
		return a.Address
	}
	return a.SpiffeID
}

// newConn wraps a tunnel handle: takes its socket and keeps the handle for the state.
func newConn(t *C.mesh_tunnel, local Addr, remoteAddr string) (*Conn, error) {
	live.Add(1)
	fd := C.mesh_tunnel_take_fd(t)
	if fd < 0 {
		C.mesh_tunnel_free(t)
		live.Add(-1)
		return nil, errors.New("mesh: tunnel has no socket")
	}
	f := os.NewFile(uintptr(fd), "mesh-tunnel")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		C.mesh_tunnel_free(t)
		live.Add(-1)
		return nil, fmt.Errorf("mesh: tunnel socket: %w", err)
	}
	peer := C.GoString(C.mesh_tunnel_peer_id(t))
	if addr := C.GoString(C.mesh_tunnel_peer_addr(t)); addr != "" {
		remoteAddr = addr
	}
	c := &Conn{
		UnixConn:   nc.(*net.UnixConn),
		tunnel:     t,
		peerID:     peer,
		remote:     Addr{SpiffeID: peer, Address: remoteAddr},
		local:      local,
		targetPort: uint16(C.mesh_tunnel_target_port(t)),
	}
	runtime.SetFinalizer(c, (*Conn).Close)
	return c, nil
}

// PeerID is the verified SPIFFE ID of the workload at the other end.
func (c *Conn) PeerID() string { return c.peerID }

// TargetPort is the port the tunnel was opened to.
func (c *Conn) TargetPort() uint16 { return c.targetPort }

// RemoteAddr is the peer (an Addr).
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is this workload (an Addr).
func (c *Conn) LocalAddr() net.Addr { return c.local }

// Read reads from the tunnel; the end of a reset tunnel is ECONNRESET, not io.EOF.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.UnixConn.Read(b)
	if err == io.EOF && c.wasReset() {
		return n, &net.OpError{Op: "read", Net: "mesh", Source: c.local, Addr: c.remote, Err: syscall.ECONNRESET}
	}
	return n, err
}

func (c *Conn) wasReset() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tunnel != nil && C.mesh_tunnel_get_state(c.tunnel) == C.MESH_TUNNEL_RESET
}

// Close closes the connection (ending the tunnel) and releases its handle.
func (c *Conn) Close() error {
	err := c.UnixConn.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tunnel != nil {
		C.mesh_tunnel_free(c.tunnel)
		c.tunnel = nil
		live.Add(-1)
		runtime.SetFinalizer(c, nil)
	}
	return err
}

// Dial opens a tunnel to target ("service:port" of a service the mesh knows). ctx bounds the
// dial (its deadline is passed to the library; cancelling abandons the attempt).
func (m *Mesh) Dial(ctx context.Context, target string) (net.Conn, error) {
	ctarget, err := cString("target", target)
	if err != nil {
		return nil, err
	}
	timeout, err := timeoutMs(ctx)
	if err != nil {
		free(ctarget)
		return nil, err
	}
	t, err := await(ctx, func() (*C.mesh_tunnel, error) {
		defer free(ctarget)
		var t *C.mesh_tunnel
		err := m.use(func(ptr *C.mesh_mesh) error {
			var cerr *C.mesh_error
			status := C.mesh_tunnel_connect(ptr, ctarget, timeout, &t, &cerr)
			return takeError(status, cerr)
		})
		return t, err
	}, func(t *C.mesh_tunnel) { C.mesh_tunnel_free(t) })
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "mesh", Addr: Addr{Address: target}, Err: err}
	}
	return newConn(t, Addr{SpiffeID: m.id}, target)
}

// DialContext has the signature of net.Dialer.DialContext (network is ignored), for
// http.Transport and gRPC dialers that want raw tunnels.
func (m *Mesh) DialContext(ctx context.Context, _ string, address string) (net.Conn, error) {
	return m.Dial(ctx, address)
}

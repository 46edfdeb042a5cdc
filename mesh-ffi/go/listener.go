package mesh

// #include "mesh.h"
// mesh_status mesh_go_server_start(const mesh_mesh *mesh, uintptr_t handle,
//                                  mesh_server **out, mesh_error **error);
import "C"

import (
	"context"
	"errors"
	"net"
	"runtime"
	"runtime/cgo"
	"strconv"
	"sync"
)

// Authorize is the host's own decision about an inbound tunnel the configured policies
// allowed: peerID is the client's verified SPIFFE ID, peerAddr its TCP address. Return false to
// refuse it (the client sees a denial). It runs on the library's threads: keep it fast.
type Authorize func(peerID, peerAddr string, targetPort uint16) bool

// Listener accepts inbound HBONE tunnels as net.Conns (*Conn, with the client's SPIFFE ID).
// Safe for concurrent use.
type Listener struct {
	mu       sync.RWMutex // held for reading by calls, for writing to free
	ptr      *C.mesh_server
	handle   cgo.Handle
	addr     Addr
	port     uint16
	closeErr error
	once     sync.Once
}

// Listen starts the workload's inbound listener as its config's `inbound:` section says, with
// its policies enforced; authorize (may be nil) is asked about each tunnel they allow.
func (m *Mesh) Listen(authorize Authorize) (*Listener, error) {
	var h cgo.Handle
	if authorize != nil {
		h = cgo.NewHandle(authorize)
	}
	var ptr *C.mesh_server
	err := m.use(func(mp *C.mesh_mesh) error {
		var cerr *C.mesh_error
		status := C.mesh_go_server_start(mp, C.uintptr_t(h), &ptr, &cerr)
		return takeError(status, cerr)
	})
	if err != nil {
		if h != 0 {
			h.Delete()
		}
		return nil, err
	}
	live.Add(1)
	port := uint16(C.mesh_server_port(ptr))
	l := &Listener{
		ptr:    ptr,
		handle: h,
		port:   port,
		addr:   Addr{SpiffeID: m.id, Address: net.JoinHostPort("", strconv.Itoa(int(port)))},
	}
	runtime.SetFinalizer(l, (*Listener).Close)
	return l, nil
}

//export goAuthorize
func goAuthorize(handle C.uintptr_t, peer, addr *C.char, port C.uint16_t) (allow C.int) {
	defer func() {
		if recover() != nil {
			allow = 0 // a panicking check denies; it must not unwind into the library
		}
	}()
	f := cgo.Handle(handle).Value().(Authorize)
	if f(C.GoString(peer), C.GoString(addr), uint16(port)) {
		return 1
	}
	return 0
}

// Port is the bound HBONE port.
func (l *Listener) Port() uint16 { return l.port }

// Addr is this workload with its HBONE port.
func (l *Listener) Addr() net.Addr { return l.addr }

// Accept waits for the next authorized tunnel. After Close it returns net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.ptr == nil {
		return nil, net.ErrClosed
	}
	var t *C.mesh_tunnel
	var cerr *C.mesh_error
	status := C.mesh_server_accept(l.ptr, 0, &t, &cerr)
	if err := takeError(status, cerr); err != nil {
		if errors.Is(err, StatusClosed) {
			return nil, net.ErrClosed
		}
		return nil, &net.OpError{Op: "accept", Net: "mesh", Addr: l.addr, Err: err}
	}
	return newConn(t, l.addr, "")
}

// Close stops accepting (blocked Accepts return net.ErrClosed) and starts the graceful drain:
// accepted connections may finish within the config's inbound.drain_timeout. It does not wait;
// see Shutdown.
func (l *Listener) Close() error {
	l.once.Do(func() {
		var cerr *C.mesh_error
		l.mu.RLock()
		if l.ptr != nil {
			l.closeErr = takeError(C.mesh_server_close(l.ptr, &cerr), cerr)
		}
		l.mu.RUnlock()
		l.release()
	})
	return l.closeErr
}

// Shutdown closes the listener and waits (bounded by ctx) until the drain finished; it
// returns how many connections the drain had to cut off.
func (l *Listener) Shutdown(ctx context.Context) (int, error) {
	timeout, err := timeoutMs(ctx)
	if err != nil {
		return 0, err
	}
	var cut C.uint32_t
	l.mu.RLock()
	if l.ptr == nil {
		l.mu.RUnlock()
		return 0, net.ErrClosed
	}
	var cerr *C.mesh_error
	err = takeError(C.mesh_server_shutdown(l.ptr, timeout, &cut, &cerr), cerr)
	l.mu.RUnlock()
	l.once.Do(l.release)
	return int(cut), err
}

// release frees the server once no call uses it (the drain, if started, goes on inside the
// library).
func (l *Listener) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ptr == nil {
		return
	}
	C.mesh_server_close(l.ptr, nil)
	C.mesh_server_free(l.ptr)
	l.ptr = nil
	if l.handle != 0 {
		l.handle.Delete()
	}
	live.Add(-1)
	runtime.SetFinalizer(l, nil)
}

type peerKey struct{}

// ConnContext stores an accepted Conn's peer identity in the request context; use it as
// http.Server.ConnContext, then read it with PeerIDFromContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if mc, ok := c.(*Conn); ok {
		return context.WithValue(ctx, peerKey{}, mc.PeerID())
	}
	return ctx
}

// PeerIDFromContext is the client's SPIFFE ID stored by ConnContext.
func PeerIDFromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(peerKey{}).(string)
	return id, ok
}

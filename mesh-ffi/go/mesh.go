// Package mesh is the Go binding of the service mesh's C ABI (libmesh_ffi): the same Rust data
// path as every other language, behind Go's own interfaces.
//
//   - Mesh.Dial / DialContext return a net.Conn carried by an mTLS HBONE tunnel;
//   - Mesh.Transport is an http.RoundTripper: http.Client{Transport: m.Transport()};
//   - Mesh.Listen returns a net.Listener for inbound tunnels, so http.Serve works; accepted
//     connections carry the client's SPIFFE ID (Conn.PeerID, PeerIDFromContext).
//
// Handles are released by Close and, as a safety net, by finalizers. Build: cgo needs
// libmesh_ffi (cargo build -p mesh-ffi) on the linker path, e.g.
// CGO_LDFLAGS=-L/path/to/target/debug and LD_LIBRARY_PATH for the shared library.
package mesh

// #include "mesh.h"
import "C"

import (
	"context"
	"errors"
	"runtime"
	"sync"
)

// ErrClosed is returned by calls on a closed Mesh.
var ErrClosed = errors.New("mesh: use of a closed Mesh")

// Mesh is one workload in the mesh, created from a configuration document. Safe for
// concurrent use.
type Mesh struct {
	mu  sync.RWMutex // held for reading during calls, for writing to free
	ptr *C.mesh_mesh
	id  string
}

// New starts a workload from config: the mesh's YAML or JSON document (identity, services,
// inbound, policies, ...), the same schema as the Rust API. ctx bounds the start-up.
func New(ctx context.Context, config string) (*Mesh, error) {
	timeout, err := timeoutMs(ctx)
	if err != nil {
		return nil, err
	}
	cconfig, err := cString("config", config)
	if err != nil {
		return nil, err
	}
	defer free(cconfig)
	var ptr *C.mesh_mesh
	var cerr *C.mesh_error
	status := C.mesh_mesh_new(cconfig, timeout, &ptr, &cerr)
	if err := takeError(status, cerr); err != nil {
		return nil, err
	}
	live.Add(1)
	m := &Mesh{ptr: ptr, id: C.GoString(C.mesh_mesh_spiffe_id(ptr))}
	runtime.SetFinalizer(m, (*Mesh).Close)
	return m, nil
}

// SpiffeID is this workload's SPIFFE ID.
func (m *Mesh) SpiffeID() string { return m.id }

// use runs f with the live handle, or fails with ErrClosed.
func (m *Mesh) use(f func(*C.mesh_mesh) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.ptr == nil {
		return ErrClosed
	}
	return f(m.ptr)
}

// Close releases the workload once calls in progress finish. Connections and listeners already
// open keep working until closed. Closing twice is a no-op.
func (m *Mesh) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ptr != nil {
		C.mesh_mesh_free(m.ptr)
		m.ptr = nil
		live.Add(-1)
		runtime.SetFinalizer(m, nil)
	}
	return nil
}

// outcome is a finished call's result.
type outcome[T any] struct {
	value T
	err   error
}

// await runs a blocking ABI call without tying the caller to it: when ctx ends first, the call
// keeps running on its goroutine and release disposes of its result.
func await[T any](ctx context.Context, call func() (T, error), release func(T)) (T, error) {
	done := make(chan outcome[T], 1)
	go func() {
		v, err := call()
		done <- outcome[T]{v, err}
	}()
	select {
	case o := <-done:
		return o.value, o.err
	case <-ctx.Done():
		go func() {
			if o := <-done; o.err == nil {
				release(o.value)
			}
		}()
		var zero T
		return zero, ctx.Err()
	}
}

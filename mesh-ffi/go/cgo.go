package mesh

// #cgo CFLAGS: -I${SRCDIR}/../include
// #cgo LDFLAGS: -lmesh_ffi
// #include <stdlib.h>
// #include "mesh.h"
// mesh_status mesh_go_server_start(const mesh_mesh *mesh, uintptr_t handle,
//                                  mesh_server **out, mesh_error **error);
import "C"

import (
	"context"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// live counts handles held by this package (meshes, tunnels, servers), for tests that check
// Close and the finalizers release everything.
var live atomic.Int64

// cString copies s for C; a NUL inside cannot be passed and is refused.
func cString(name, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, &Error{Status: StatusInvalidArgument, Message: name + " contains a NUL byte"}
	}
	return C.CString(s), nil
}

func free(p *C.char) { C.free(unsafe.Pointer(p)) }

// takeError turns a status and error object into a Go error (nil for MESH_OK), freeing it.
func takeError(status C.mesh_status, e *C.mesh_error) error {
	if Status(status) == StatusOK {
		return nil
	}
	message := Status(status).String()
	if e != nil {
		message = C.GoString(C.mesh_error_message(e))
		C.mesh_error_free(e)
	}
	return &Error{Status: Status(status), Message: message}
}

// timeoutMs turns a context deadline into the ABI's timeout argument (0: none), or an error if
// the deadline has passed.
func timeoutMs(ctx context.Context) (C.uint32_t, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	left := time.Until(deadline)
	if left <= 0 {
		return 0, context.DeadlineExceeded
	}
	ms := left.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	if ms > int64(^uint32(0)) {
		ms = int64(^uint32(0))
	}
	return C.uint32_t(ms), nil
}

// Version is the version of the loaded libmesh_ffi.
func Version() string { return C.GoString(C.mesh_version()) }

package mesh

import "fmt"

// Status is the library's stable numeric status code (mesh_status in mesh.h).
type Status uint32

// The status codes; numbers never change.
const (
	StatusOK              Status = 0
	StatusNullArgument    Status = 1
	StatusInvalidUTF8     Status = 2
	StatusInvalidArgument Status = 3
	StatusConfig          Status = 4
	StatusPanic           Status = 5
	StatusPoisoned        Status = 6
	StatusForked          Status = 7
	StatusTimeout         Status = 8
	StatusNoEndpoint      Status = 9
	StatusTLS             Status = 10
	StatusDenied          Status = 11
	StatusUnavailable     Status = 12
	StatusOverloaded      Status = 13
	StatusHTTP            Status = 14
	StatusIO              Status = 15
	StatusClosed          Status = 16
	StatusWrongThread     Status = 17
	// StatusUnknownService: the mesh does not know the service at all (not in services:, in
	// no discovery backend, named by no VirtualService). It also matches StatusNoEndpoint in
	// errors.Is, which is what tunnels to unknown services answered before it existed.
	StatusUnknownService Status = 18
)

// Error values to test with errors.Is, for the failures a caller usually handles apart.
var (
	// ErrUnknownService: the request or tunnel named a service the mesh does not know;
	// declare it under services: or register it with discovery, or fix the name.
	ErrUnknownService error = StatusUnknownService
	// ErrNoEndpoint: the service is known but no endpoint for the port can be reached (or, via
	// ErrUnknownService, the service is not known at all).
	ErrNoEndpoint error = StatusNoEndpoint
)

var statusNames = [...]string{
	"MESH_OK", "MESH_ERR_NULL_ARGUMENT", "MESH_ERR_INVALID_UTF8", "MESH_ERR_INVALID_ARGUMENT",
	"MESH_ERR_CONFIG", "MESH_ERR_PANIC", "MESH_ERR_POISONED", "MESH_ERR_FORKED",
	"MESH_ERR_TIMEOUT", "MESH_ERR_NO_ENDPOINT", "MESH_ERR_TLS", "MESH_ERR_DENIED",
	"MESH_ERR_UNAVAILABLE", "MESH_ERR_OVERLOADED", "MESH_ERR_HTTP", "MESH_ERR_IO",
	"MESH_ERR_CLOSED", "MESH_ERR_WRONG_THREAD", "MESH_ERR_UNKNOWN_SERVICE",
}

// String is the constant's name in mesh.h.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("mesh status %d", uint32(s))
}

// Error is a failed call: the status and the library's message (what was wrong, what to do).
// Compare with errors.Is(err, mesh.StatusDenied) or by type assertion.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return e.Status.String() + ": " + e.Message }

// Is matches another *Error or a Status with the same status; an unknown service also
// matches StatusNoEndpoint (it has no endpoint either).
func (e *Error) Is(target error) bool {
	var want Status
	switch t := target.(type) {
	case *Error:
		want = t.Status
	case Status:
		want = t
	default:
		return false
	}
	return want == e.Status || (want == StatusNoEndpoint && e.Status == StatusUnknownService)
}

// Timeout reports whether the call timed out (net.Error).
func (e *Error) Timeout() bool { return e.Status == StatusTimeout }

// Temporary reports whether retrying may help (net.Error; deprecated there, kept for callers).
func (e *Error) Temporary() bool {
	return e.Status == StatusTimeout || e.Status == StatusUnavailable || e.Status == StatusOverloaded
}

// Error makes a Status usable as an errors.Is target.
func (s Status) Error() string { return s.String() }

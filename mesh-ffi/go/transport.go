package mesh

// #include <stdint.h>
// #include <stdlib.h>
// #include "mesh.h"
import "C"

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Transport is an http.RoundTripper sending requests through the mesh's HTTP client (service
// discovery, balancing, retries, timeouts, circuit breaking, mTLS), so
// http.Client{Transport: m.Transport()} reaches "http://service:port/..." URLs. Request
// bodies are sent whole (so retries can replay them); response bodies are streamed from the
// library as they are read (mesh_request_start / mesh_response_read), never buffered whole.
func (m *Mesh) Transport() http.RoundTripper { return &transport{mesh: m} }

type transport struct{ mesh *Mesh }

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("mesh: reading the request body: %w", err)
		}
		body = b
	}
	url := req.URL.String()
	if req.URL.Scheme != "http" || req.URL.Host == "" {
		return nil, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(
			"%q: the mesh sends http://service:port/... URLs (it adds mTLS itself)", url)}
	}
	ctx := req.Context()
	timeout, err := timeoutMs(ctx)
	if err != nil {
		return nil, err
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	r, err := await(ctx, func() (result, error) {
		var out result
		cmethod, err := cString("method", method)
		if err != nil {
			return out, err
		}
		defer free(cmethod)
		curl, err := cString("url", url)
		if err != nil {
			return out, err
		}
		defer free(curl)
		var request *C.mesh_request
		var cerr *C.mesh_error
		if err := takeError(C.mesh_request_new(cmethod, curl, &request, &cerr), cerr); err != nil {
			return out, err
		}
		defer C.mesh_request_free(request)
		for name, values := range req.Header {
			for _, value := range values {
				if err := addHeader(request, name, value); err != nil {
					return out, err
				}
			}
		}
		if len(body) > 0 {
			cbody := C.CBytes(body)
			defer C.free(cbody)
			status := C.mesh_request_set_body(request, (*C.uint8_t)(cbody), C.size_t(len(body)), &cerr)
			if err := takeError(status, cerr); err != nil {
				return out, err
			}
		}
		var response *C.mesh_response
		err = t.mesh.use(func(mp *C.mesh_mesh) error {
			return takeError(C.mesh_request_start(request, mp, timeout, &response, &cerr), cerr)
		})
		if err != nil {
			return out, err
		}
		out.response = response
		out.status = int(C.mesh_response_status(response))
		out.headers = http.Header{}
		n := C.mesh_response_header_count(response)
		for i := C.size_t(0); i < n; i++ {
			name := C.GoString(C.mesh_response_header_name(response, i))
			out.headers.Add(name, C.GoString(C.mesh_response_header_value(response, i)))
		}
		return out, nil
	}, func(r result) { C.mesh_response_free(r.response) })
	if err != nil {
		return nil, err
	}
	length := int64(-1)
	if v := r.headers.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			length = n
		}
	}
	stream := &responseBody{ctx: ctx, response: r.response}
	live.Add(1)
	runtime.SetFinalizer(stream, (*responseBody).Close)
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", r.status, http.StatusText(r.status)),
		StatusCode:    r.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        r.headers,
		Body:          stream,
		ContentLength: length,
		Request:       req,
	}, nil
}

// readSlice bounds one blocking read of a response body, so a cancelled request context is
// noticed within this time even when no deadline was set.
const readSlice = 250 * time.Millisecond

// responseBody streams a response body out of the library (mesh_response_read): nothing is
// buffered beyond what the caller's Read asks for. Close (or the finalizer) frees it; a body
// closed before its end abandons the rest.
type responseBody struct {
	ctx      context.Context
	mu       sync.Mutex
	response *C.mesh_response
	eof      bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.response == nil {
		return 0, errors.New("mesh: read on a closed response body")
	}
	if b.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if err := b.ctx.Err(); err != nil {
			return 0, err
		}
		slice := C.uint32_t(readSlice.Milliseconds())
		if left, err := timeoutMs(b.ctx); err != nil {
			return 0, err
		} else if left != 0 && left < slice {
			slice = left
		}
		var n C.size_t
		var cerr *C.mesh_error
		// p is Go memory holding no Go pointers, passed for the call only: allowed by cgo.
		status := C.mesh_response_read(b.response, (*C.uint8_t)(unsafe.Pointer(&p[0])),
			C.size_t(len(p)), slice, &n, &cerr)
		err := takeError(status, cerr)
		if errors.Is(err, StatusTimeout) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			b.eof = true
			return 0, io.EOF
		}
		return int(n), nil
	}
}

func (b *responseBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.response != nil {
		C.mesh_response_free(b.response)
		b.response = nil
		live.Add(-1)
		runtime.SetFinalizer(b, nil)
	}
	return nil
}

// result is a response's head copied out of the library, and the response itself (its
// body is read from it).
type result struct {
	status   int
	headers  http.Header
	response *C.mesh_response
}

func addHeader(request *C.mesh_request, name, value string) error {
	if strings.EqualFold(name, "host") {
		return nil // the URL's authority is the Host
	}
	cname, err := cString("header name", name)
	if err != nil {
		return err
	}
	defer free(cname)
	cvalue, err := cString("header value", value)
	if err != nil {
		return err
	}
	defer free(cvalue)
	var cerr *C.mesh_error
	return takeError(C.mesh_request_add_header(request, cname, cvalue, &cerr), cerr)
}

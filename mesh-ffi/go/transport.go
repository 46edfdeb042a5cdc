package mesh

// #include <stdint.h>
// #include <stdlib.h>
// #include "mesh.h"
import "C"

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unsafe"
)

// Transport is an http.RoundTripper sending requests through the mesh's HTTP client (service
// discovery, balancing, retries, timeouts, circuit breaking, mTLS), so
// http.Client{Transport: m.Transport()} reaches "http://service:port/..." URLs. Bodies are
// buffered in memory both ways; stream large bodies over Dial instead.
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
			return takeError(C.mesh_request_send(request, mp, timeout, &response, &cerr), cerr)
		})
		if err != nil {
			return out, err
		}
		defer C.mesh_response_free(response)
		out.status = int(C.mesh_response_status(response))
		out.headers = http.Header{}
		n := C.mesh_response_header_count(response)
		for i := C.size_t(0); i < n; i++ {
			name := C.GoString(C.mesh_response_header_name(response, i))
			out.headers.Add(name, C.GoString(C.mesh_response_header_value(response, i)))
		}
		var data *C.uint8_t
		var length C.size_t
		if err := takeError(C.mesh_response_body(response, &data, &length, &cerr), cerr); err != nil {
			return out, err
		}
		if length > 0 {
			out.body = C.GoBytes(unsafe.Pointer(data), C.int(length))
		}
		return out, nil
	}, func(result) {})
	if err != nil {
		return nil, err
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", r.status, http.StatusText(r.status)),
		StatusCode:    r.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        r.headers,
		Body:          io.NopCloser(bytes.NewReader(r.body)),
		ContentLength: int64(len(r.body)),
		Request:       req,
	}, nil
}

// result is a response copied out of the library.
type result struct {
	status  int
	headers http.Header
	body    []byte
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

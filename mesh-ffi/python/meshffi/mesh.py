"""The Python face of the C ABI: workloads, tunnels as sockets, a listener, HTTP requests."""

import ctypes
import socket

from ._handle import Handle
from ._lib import AUTHORIZE, TUNNEL_RESET, lib
from .errors import MeshError, check, encode, timeout_ms

_p = ctypes.c_void_p


class TunnelSocket(socket.socket):
    """A standard socket carrying an HBONE tunnel, plus the peer's identity.

    `peer_identity` is the verified SPIFFE ID of the other end, `peer_address` the client's
    "ip:port" on accepted tunnels, `target_port` the port asked for. A Unix socket cannot carry
    a TCP reset: after recv() returned b"", `was_reset()` says whether the tunnel was reset.
    """

    def __init__(self, fd: int, tunnel: ctypes.c_void_p):
        super().__init__(fileno=fd)
        self.peer_identity = lib.mesh_tunnel_peer_id(tunnel).decode()
        self.peer_address = lib.mesh_tunnel_peer_addr(tunnel).decode()
        self.target_port = lib.mesh_tunnel_target_port(tunnel)
        self._tunnel = Handle(self, tunnel.value, lib.mesh_tunnel_free, "tunnel")

    def was_reset(self) -> bool:
        """Whether the tunnel ended with a reset (from either side)."""
        with self._tunnel as t:
            return lib.mesh_tunnel_get_state(t) == TUNNEL_RESET

    def close(self) -> None:
        super().close()
        self._tunnel.close()


def _tunnel_socket(tunnel: ctypes.c_void_p) -> TunnelSocket:
    fd = lib.mesh_tunnel_take_fd(tunnel)
    if fd < 0:
        lib.mesh_tunnel_free(tunnel)
        raise OSError("the tunnel has no socket")
    try:
        return TunnelSocket(fd, tunnel)
    except BaseException:
        socket.close(fd)
        lib.mesh_tunnel_free(tunnel)
        raise


class Response:
    """A complete HTTP response: `status`, `headers` (list of (name, value) in order), `body`."""

    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str):
        """The first value of header `name` (case-insensitive), or None."""
        name = name.lower()
        return next((v for n, v in self.headers if n == name), None)


class Mesh:
    """One workload in the mesh, created from its YAML or JSON configuration (the same schema
    as the Rust API). Thread-safe; a context manager; freed by close() or garbage collection."""

    def __init__(self, config: str, timeout: float = 30.0):
        ptr, error = _p(), _p()
        status = lib.mesh_mesh_new(encode("config", config), timeout_ms(timeout), ctypes.byref(ptr), ctypes.byref(error))
        check(status, error)
        self.spiffe_id = lib.mesh_mesh_spiffe_id(ptr).decode()
        self._handle = Handle(self, ptr.value, lib.mesh_mesh_free, "mesh")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Frees the workload once calls in progress finish. Open sockets keep working."""
        self._handle.close()

    def connect(self, target: str, timeout: float = None) -> TunnelSocket:
        """Opens a tunnel to `target` ("service:port") and returns it as a socket."""
        tunnel, error = _p(), _p()
        with self._handle as mesh:
            status = lib.mesh_tunnel_connect(mesh, encode("target", target), timeout_ms(timeout), ctypes.byref(tunnel), ctypes.byref(error))
        check(status, error)
        return _tunnel_socket(tunnel)

    def listen(self, authorize=None) -> "Listener":
        """Starts the inbound listener (the config's `inbound:` section, its policies enforced).
        `authorize(peer_id, peer_addr, target_port) -> bool` (optional) is asked about each
        tunnel the policies allow; it runs on the library's threads and must be quick."""
        return Listener(self, authorize)

    def request(self, method: str, url: str, headers=(), body: bytes = b"", timeout: float = None, max_response_bytes: int = None, stream: bool = False):
        """Sends an HTTP request through the mesh (discovery, balancing, retries, mTLS).
        `headers` is a mapping or (name, value) pairs; `body` is bytes, or an iterable of
        bytes chunks streamed to the destination as they come (then the request is not
        retried: a stream cannot be replayed). Returns a whole Response, or with
        `stream=True` a StreamingResponse whose body is read in chunks as it arrives."""
        request, error = _p(), _p()
        check(lib.mesh_request_new(encode("method", method), encode("url", url), ctypes.byref(request), ctypes.byref(error)), error)
        try:
            pairs = headers.items() if hasattr(headers, "items") else headers
            for name, value in pairs:
                check(lib.mesh_request_add_header(request, encode("header name", name), encode("header value", value), ctypes.byref(error)), error)
            chunks = None
            if isinstance(body, (bytes, bytearray, memoryview)):
                if body:
                    data = bytes(body)
                    check(lib.mesh_request_set_body(request, data, len(data), ctypes.byref(error)), error)
            elif body is not None:
                chunks = body
            if max_response_bytes is not None:
                check(lib.mesh_request_set_response_limit(request, max_response_bytes, ctypes.byref(error)), error)
            response = _p()
            if chunks is not None:
                response = self._upload(request, chunks, timeout)
            else:
                send = lib.mesh_request_start if stream else lib.mesh_request_send
                with self._handle as mesh:
                    status = send(request, mesh, timeout_ms(timeout), ctypes.byref(response), ctypes.byref(error))
                check(status, error)
        finally:
            lib.mesh_request_free(request)
        if stream or chunks is not None:
            streaming = StreamingResponse(response, timeout)
            if stream:
                return streaming
            with streaming:
                return Response(streaming.status, streaming.headers, streaming.read())
        try:
            data = ctypes.POINTER(ctypes.c_uint8)()
            length = ctypes.c_size_t()
            check(lib.mesh_response_body(response, ctypes.byref(data), ctypes.byref(length), ctypes.byref(error)), error)
            content = ctypes.string_at(data, length.value) if length.value else b""
            return Response(lib.mesh_response_status(response), _headers(response), content)
        finally:
            lib.mesh_response_free(response)

    def _upload(self, request, chunks, timeout) -> ctypes.c_void_p:
        """Streams `chunks` as the request body (mesh_upload_*); returns the response."""
        upload, response, error = _p(), _p(), _p()
        with self._handle as mesh:
            check(lib.mesh_upload_start(request, mesh, timeout_ms(timeout), ctypes.byref(upload), ctypes.byref(error)), error)
        try:
            for chunk in chunks:
                data = bytes(chunk)
                if data:
                    check(lib.mesh_upload_write(upload, data, len(data), timeout_ms(timeout), ctypes.byref(error)), error)
            check(lib.mesh_upload_finish(upload, timeout_ms(timeout), ctypes.byref(response), ctypes.byref(error)), error)
        finally:
            lib.mesh_upload_free(upload)
        return response


def _headers(response):
    count = lib.mesh_response_header_count(response)
    return [
        (lib.mesh_response_header_name(response, i).decode("latin-1"), lib.mesh_response_header_value(response, i).decode("latin-1"))
        for i in range(count)
    ]


class StreamingResponse:
    """An HTTP response whose body is read as it arrives: `status`, `headers` (list of
    (name, value) in order), `read(n)`, iteration over chunks, `close()`. A context manager;
    closing before the end abandons the rest of the body. Each read waits at most `timeout`
    seconds (None: no limit) for data."""

    CHUNK = 64 * 1024

    def __init__(self, response: ctypes.c_void_p, timeout: float = None):
        self.status = lib.mesh_response_status(response)
        self.headers = _headers(response)
        self._timeout = timeout_ms(timeout)
        self._buf = ctypes.create_string_buffer(self.CHUNK)
        self._handle = Handle(self, response.value, lib.mesh_response_free, "response")
        self._eof = False

    def header(self, name: str):
        """The first value of header `name` (case-insensitive), or None."""
        name = name.lower()
        return next((v for n, v in self.headers if n == name), None)

    def read1(self, size: int = CHUNK) -> bytes:
        """The next part of the body (at most `size` bytes, as soon as any arrive); b"" at
        the end."""
        if self._eof or size == 0:
            return b""
        size = min(size, self.CHUNK)
        got, error = ctypes.c_size_t(), _p()
        with self._handle as response:
            status = lib.mesh_response_read(response, self._buf, size, self._timeout, ctypes.byref(got), ctypes.byref(error))
        check(status, error)
        if got.value == 0:
            self._eof = True
            return b""
        return self._buf.raw[: got.value]

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left when negative); fewer only at the end."""
        parts, have = [], 0
        while size < 0 or have < size:
            part = self.read1(self.CHUNK if size < 0 else size - have)
            if not part:
                break
            parts.append(part)
            have += len(part)
        return b"".join(parts)

    def __iter__(self):
        while True:
            part = self.read1()
            if not part:
                return
            yield part

    @property
    def closed(self) -> bool:
        """Whether close() ran (reading the body to its end does not close it)."""
        return self._handle.closed

    def close(self) -> None:
        """Frees the response (an unread rest of the body is abandoned)."""
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Listener:
    """Accepts inbound tunnels: accept() returns (TunnelSocket, peer SPIFFE ID). A context
    manager; close() stops accepting, shutdown() also waits for the graceful drain."""

    def __init__(self, mesh: Mesh, authorize=None):
        self._callback = AUTHORIZE(_adapter(authorize)) if authorize else AUTHORIZE()
        server, error = _p(), _p()
        with mesh._handle as m:
            status = lib.mesh_server_start(m, self._callback, None, ctypes.byref(server), ctypes.byref(error))
        check(status, error)
        self.port = lib.mesh_server_port(server)
        self._handle = Handle(self, server.value, lib.mesh_server_free, "listener")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def accept(self, timeout: float = None):
        """Waits for the next authorized tunnel: (socket, peer SPIFFE ID). Raises MeshError
        with Status.CLOSED once closed, Status.TIMEOUT when nothing came in time."""
        tunnel, error = _p(), _p()
        with self._handle as server:
            status = lib.mesh_server_accept(server, timeout_ms(timeout), ctypes.byref(tunnel), ctypes.byref(error))
        check(status, error)
        sock = _tunnel_socket(tunnel)
        return sock, sock.peer_identity

    def close(self) -> None:
        """Stops accepting (blocked accept() calls raise Status.CLOSED); accepted sockets may
        finish within inbound.drain_timeout."""
        self._handle.close(before=lambda s: lib.mesh_server_close(s, None))

    def shutdown(self, timeout: float = None) -> int:
        """Closes and waits for the drain; returns how many tunnels it cut off."""
        cut, error = ctypes.c_uint32(), _p()
        with self._handle as server:
            status = lib.mesh_server_shutdown(server, timeout_ms(timeout), ctypes.byref(cut), ctypes.byref(error))
        check(status, error)
        self.close()
        return cut.value


def _adapter(authorize):
    def call(_user_data, peer, addr, port):
        try:
            return 1 if authorize(peer.decode(), addr.decode(), port) else 0
        except BaseException:  # noqa: BLE001 - an exception must deny, never unwind into C
            return 0

    return call

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

    def request(self, method: str, url: str, headers=(), body: bytes = b"", timeout: float = None, max_response_bytes: int = None) -> Response:
        """Sends an HTTP request through the mesh (discovery, balancing, retries, mTLS) and
        returns the whole response. `headers` is a mapping or (name, value) pairs."""
        request, error = _p(), _p()
        check(lib.mesh_request_new(encode("method", method), encode("url", url), ctypes.byref(request), ctypes.byref(error)), error)
        try:
            pairs = headers.items() if hasattr(headers, "items") else headers
            for name, value in pairs:
                check(lib.mesh_request_add_header(request, encode("header name", name), encode("header value", value), ctypes.byref(error)), error)
            if body:
                data = bytes(body)
                check(lib.mesh_request_set_body(request, data, len(data), ctypes.byref(error)), error)
            if max_response_bytes is not None:
                check(lib.mesh_request_set_response_limit(request, max_response_bytes, ctypes.byref(error)), error)
            response = _p()
            with self._handle as mesh:
                status = lib.mesh_request_send(request, mesh, timeout_ms(timeout), ctypes.byref(response), ctypes.byref(error))
            check(status, error)
        finally:
            lib.mesh_request_free(request)
        try:
            count = lib.mesh_response_header_count(response)
            pairs = [
                (lib.mesh_response_header_name(response, i).decode("latin-1"), lib.mesh_response_header_value(response, i).decode("latin-1"))
                for i in range(count)
            ]
            data = ctypes.POINTER(ctypes.c_uint8)()
            length = ctypes.c_size_t()
            check(lib.mesh_response_body(response, ctypes.byref(data), ctypes.byref(length), ctypes.byref(error)), error)
            content = ctypes.string_at(data, length.value) if length.value else b""
            return Response(lib.mesh_response_status(response), pairs, content)
        finally:
            lib.mesh_response_free(response)


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

"""An httpx transport sending requests through the mesh: httpx.Client(transport=MeshTransport(mesh))."""

import httpx

from ._lib import Status
from .errors import MeshError


class _Body(httpx.SyncByteStream):
    """A streamed response body: chunks are read from the library as httpx asks for them."""

    def __init__(self, response):
        self._response = response

    def __iter__(self):
        try:
            yield from self._response
        except MeshError as e:
            raise httpx.ReadError(str(e)) from e

    def close(self) -> None:
        self._response.close()


class MeshTransport(httpx.BaseTransport):
    """Sends each request with Mesh.request: the request body whole (so retries can replay
    it), the response body streamed (`client.stream(...)` reads it as it arrives). Timeouts
    come from the request's httpx timeout (the largest of its phases) when set."""

    def __init__(self, mesh):
        self._mesh = mesh

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        limits = [t for t in timeouts.values() if t]
        timeout = max(limits) if limits else None
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw if k.lower() != b"host"]
        try:
            response = self._mesh.request(request.method, str(request.url), headers=headers, body=request.read(), timeout=timeout, stream=True)
        except MeshError as e:
            if e.status == Status.TIMEOUT:
                raise httpx.TimeoutException(str(e), request=request) from e
            raise httpx.ConnectError(str(e), request=request) from e
        return httpx.Response(response.status, headers=response.headers, stream=_Body(response), request=request)

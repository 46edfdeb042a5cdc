"""An httpx transport sending requests through the mesh: httpx.Client(transport=MeshTransport(mesh))."""

import httpx

from .errors import MeshError
from ._lib import Status


class MeshTransport(httpx.BaseTransport):
    """Sends each request with Mesh.request (bodies buffered). Timeouts come from the request's
    httpx timeout (the largest of its phases) when set."""

    def __init__(self, mesh):
        self._mesh = mesh

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        limits = [t for t in timeouts.values() if t]
        timeout = max(limits) if limits else None
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw if k.lower() != b"host"]
        try:
            response = self._mesh.request(request.method, str(request.url), headers=headers, body=request.read(), timeout=timeout)
        except MeshError as e:
            if e.status == Status.TIMEOUT:
                raise httpx.TimeoutException(str(e), request=request) from e
            raise httpx.TransportError(str(e)) from e
        return httpx.Response(response.status, headers=response.headers, content=response.body, request=request)

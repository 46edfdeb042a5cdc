"""A `requests` transport adapter sending requests through the mesh:

    session = requests.Session()
    session.mount("http://", meshffi.MeshAdapter(mesh))
    session.get("http://inventory.shop.svc.cluster.local:8080/stock", timeout=5)

Responses are streamed (`stream=True` and `iter_content` read the body as it arrives) and
decoded by urllib3 as usual (gzip, deflate); cookies reach the session's jar. Request bodies
that are bytes or str are sent whole (the mesh client may retry them); file objects and
iterables are streamed and not retried.
"""

import http.client

import requests
import urllib3
from urllib3._collections import HTTPHeaderDict
from requests.adapters import BaseAdapter
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from ._lib import Status
from .errors import MeshError

#: Bytes read at a time from a file object sent as a request body.
_FILE_CHUNK = 64 * 1024


class _Body:
    """The file object urllib3 reads a streamed response from; library errors become the
    urllib3 exceptions requests translates (ChunkedEncodingError, ConnectionError)."""

    def __init__(self, response, url: str):
        self._response = response
        self._url = url

    @property
    def closed(self) -> bool:
        return self._response.closed

    def readable(self) -> bool:
        return True

    def read(self, amt=None) -> bytes:
        try:
            return self._response.read(-1 if amt is None else amt)
        except MeshError as e:
            if e.status == Status.TIMEOUT:
                raise urllib3.exceptions.ReadTimeoutError(None, self._url, str(e)) from e
            raise urllib3.exceptions.ProtocolError(f"the response body was cut off: {e}", e) from e

    def close(self) -> None:
        self._response.close()


class _Original:
    """What requests and urllib3 read from the http.client response they expect behind a
    urllib3 response: the headers as an HTTPMessage (for cookies), close() and isclosed()."""

    def __init__(self, body: _Body, headers, method: str):
        self.msg = http.client.HTTPMessage()
        for name, value in headers:
            self.msg[name] = value
        self._body = body
        self._method = method

    def close(self) -> None:
        self._body.close()

    def isclosed(self) -> bool:
        return self._body.closed


def _timeout(timeout):
    """requests' timeout (seconds, or (connect, read)) as one limit for the mesh call and each
    body read; None when any part is unlimited."""
    if isinstance(timeout, tuple):
        if any(t is None for t in timeout):
            return None
        return sum(timeout)
    return timeout


def _body(body):
    """requests' prepared body as what Mesh.request sends: bytes whole, a file or iterable as
    a stream of chunks."""
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if hasattr(body, "read"):
        return iter(lambda: _as_bytes(body.read(_FILE_CHUNK)), b"")
    return (_as_bytes(chunk) for chunk in body)


def _as_bytes(chunk) -> bytes:
    return chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)


class MeshAdapter(BaseAdapter):
    """Sends `requests` requests through a meshffi.Mesh (discovery, balancing, retries, mTLS).
    Mount it for "http://": the mesh adds TLS itself, so URLs name services with http://."""

    def __init__(self, mesh):
        super().__init__()
        self._mesh = mesh

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        """Sends a PreparedRequest and returns a requests.Response (`verify`, `cert` and
        `proxies` do not apply: the mesh's identity and policies do)."""
        limit = _timeout(timeout)
        headers = [(name, value) for name, value in request.headers.items() if name.lower() != "host"]
        try:
            response = self._mesh.request(request.method, request.url, headers=headers, body=_body(request.body), timeout=limit, stream=True)
        except MeshError as e:
            if e.status == Status.TIMEOUT:
                raise requests.exceptions.Timeout(str(e), request=request) from e
            if e.status == Status.INVALID_ARGUMENT:
                raise requests.exceptions.InvalidURL(str(e), request=request) from e
            raise requests.exceptions.ConnectionError(str(e), request=request) from e
        body = _Body(response, request.url)
        header_dict = HTTPHeaderDict()
        for name, value in response.headers:
            header_dict.add(name, value)
        raw = urllib3.HTTPResponse(
            body=body,
            headers=header_dict,
            status=response.status,
            reason=http.client.responses.get(response.status, ""),
            preload_content=False,
            decode_content=True,
            original_response=_Original(body, response.headers, request.method),
            request_method=request.method,
            request_url=request.url,
        )
        result = requests.Response()
        result.status_code = response.status
        result.headers = CaseInsensitiveDict(raw.headers)
        result.encoding = get_encoding_from_headers(result.headers)
        result.raw = raw
        result.reason = raw.reason
        result.url = request.url
        result.request = request
        result.connection = self
        extract_cookies_to_jar(result.cookies, request, raw)
        if not stream:
            result.content  # noqa: B018 - reads the whole body, as requests does unless streaming
        return result

    def close(self) -> None:
        """Nothing to release: the Mesh owns the connections (close the Mesh for that)."""

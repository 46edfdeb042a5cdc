"""The `requests` adapter against real meshes: the scenario fixture's server (tests/conftest.py),
whose port 8081 is the standard library's HTTP server over a mesh socket."""

import gzip
import hashlib
import io
import threading

import pytest

import meshffi
from conftest import INVENTORY, ORDERS, SERVICE, STEP, caller_config, pattern, server_config

requests = pytest.importorskip("requests")

URL = f"http://{SERVICE}:8081"


@pytest.fixture
def session(env):
    with requests.Session() as s:
        s.mount("http://", meshffi.MeshAdapter(env["orders"]))
        yield s


def test_get_post_and_headers(session):
    r = session.post(URL + "/items?x=1", data=b"hello", headers={"x-size": "1000", "x-sized": "1"}, timeout=STEP)
    assert r.status_code == 200 and r.ok and r.reason == "OK"
    assert r.headers["X-Peer"] == ORDERS, "case-insensitive headers, the caller's identity verified by the server"
    assert r.headers["x-body-bytes"] == "5"
    assert r.headers["x-body-sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert r.content == pattern(0, 1000) and r.url == URL + "/items?x=1"
    assert isinstance(session.get_adapter(URL), meshffi.MeshAdapter)
    # json= and str data are encoded as requests does.
    r = session.put(URL + "/", json={"a": "ü"}, timeout=STEP)
    assert r.headers["x-body-sha256"] == hashlib.sha256(b'{"a": "\\u00fc"}').hexdigest()


def test_streamed_response_and_upload(session):
    size = 6 * 1024 * 1024 + 11
    with session.get(URL + "/big", headers={"x-size": str(size)}, stream=True, timeout=STEP) as r:
        assert "content-length" not in r.headers
        total = 0
        for chunk in r.iter_content(chunk_size=50_000):
            assert chunk == pattern(total, len(chunk))
            total += len(chunk)
    assert total == size

    sent = hashlib.sha256()

    def generate():
        for i in range(64):
            data = bytes([i]) * 100_000
            sent.update(data)
            yield data

    r = session.put(URL + "/upload", data=generate(), timeout=STEP)
    assert r.headers["x-body-bytes"] == str(64 * 100_000)
    assert r.headers["x-body-sha256"] == sent.hexdigest()
    # A file object is streamed too, with its content-length.
    data = bytes(range(256)) * 4000
    r = session.post(URL + "/file", data=io.BytesIO(data), timeout=STEP)
    assert r.headers["x-body-sha256"] == hashlib.sha256(data).hexdigest()


def test_errors_are_requests_exceptions(session):
    with pytest.raises(requests.exceptions.ConnectionError) as e:
        session.get("http://unknown.svc:8080/", timeout=STEP)
    assert isinstance(e.value.__cause__, meshffi.UnknownServiceError)
    assert "unknown.svc" in str(e.value)
    with pytest.raises(requests.exceptions.ConnectionError) as e:
        session.get(f"http://{SERVICE}:7777/", timeout=STEP)
    assert type(e.value.__cause__) is meshffi.NoEndpointError


def test_gzip_bodies_are_decoded(env, session):
    """Content-Encoding is handled by urllib3 as with requests' own adapter: served by a
    mesh listener answering one gzip response."""
    payload = b"compressed " * 1000
    packed = gzip.compress(payload)
    with meshffi.Mesh(server_config(env["dir"])) as server_mesh, server_mesh.listen() as listener:
        def serve():
            sock, _ = listener.accept(timeout=STEP)
            with sock:
                sock.settimeout(STEP)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += sock.recv(65536)
                sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\nset-cookie: k=v; Path=/\r\n"
                             b"content-length: " + str(len(packed)).encode() + b"\r\nconnection: close\r\n\r\n" + packed)

        thread = threading.Thread(target=serve)
        thread.start()
        with meshffi.Mesh(caller_config(env["dir"], ORDERS, INVENTORY, listener.port)) as caller, requests.Session() as s:
            s.mount("http://", meshffi.MeshAdapter(caller))
            r = s.get(f"http://{SERVICE}:8080/", timeout=STEP)
            assert r.content == payload
            assert s.cookies.get("k") == "v", "Set-Cookie reaches the session's jar"
        thread.join(STEP)


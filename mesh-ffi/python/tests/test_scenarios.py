"""The FFI scenario list from Python (pytest), against real loopback meshes."""

import gc
import hashlib
import random
import socket
import threading
import time

import pytest

import meshffi
from meshffi import _handle
from conftest import BLOCKED, INVENTORY, ORDERS, SERVICE, STEP, Server, caller_config, pattern, recv_all, server_config


def connect(mesh, port):
    sock = mesh.connect(f"{SERVICE}:{port}", timeout=STEP)
    sock.settimeout(STEP)
    return sock


def test_version():
    assert meshffi.version()


def test_mtls_success(env):
    with connect(env["orders"], 9004) as sock:
        assert isinstance(sock, socket.socket)
        assert sock.peer_identity == INVENTORY
        assert recv_all(sock) == ORDERS.encode()


def test_wrong_spiffe_id(env):
    with meshffi.Mesh(caller_config(env["dir"], ORDERS, "spiffe://cluster.local/ns/shop/sa/impostor", env["server"].port)) as m:
        with pytest.raises(meshffi.MeshError) as e:
            m.connect(f"{SERVICE}:9000", timeout=STEP)
    assert e.value.status == meshffi.Status.TLS
    assert "impostor" in e.value.message


def test_authorization_deny(env):
    port = env["server"].port
    for spiffe_id in ("spiffe://cluster.local/ns/other/sa/intruder", BLOCKED):  # policy, then callback
        with meshffi.Mesh(caller_config(env["dir"], spiffe_id, INVENTORY, port)) as m:
            with pytest.raises(meshffi.MeshError) as e:
                m.connect(f"{SERVICE}:9000", timeout=STEP)
        assert e.value.status == meshffi.Status.DENIED, e.value


def test_half_close(env):
    with connect(env["orders"], 9005) as sock:
        sock.sendall(b"x" * 100000)
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"got 100000 bytes"
        assert not sock.was_reset()


def test_reset(env):
    with connect(env["orders"], 9002) as sock:
        sock.sendall(b"r" * 65536)
        try:
            assert recv_all(sock) == b""
        except ConnectionResetError:
            pass
        assert sock.was_reset()


def test_large_transfer_with_checksum(env):
    size = 16 << 20
    data = random.Random(7).randbytes(size)
    with connect(env["orders"], 9000) as sock:
        def write():
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=write)
        writer.start()
        echoed = recv_all(sock)
        writer.join(STEP)
    assert len(echoed) == size
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(data).digest()


def test_concurrent_tunnels_from_many_threads(env):
    errors = []

    def worker(n):
        try:
            for i in range(4):
                with connect(env["orders"], 9000) as sock:
                    message = f"thread {n} tunnel {i}".encode()
                    sock.sendall(message)
                    got = b""
                    while len(got) < len(message):
                        got += sock.recv(len(message) - len(got))
                    assert got == message
        except Exception as e:  # noqa: BLE001 - collected for the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(STEP)
    assert not errors, errors


def test_http_request_and_httpx_transport(env):
    response = env["orders"].request("POST", f"http://{SERVICE}:8080/stock", headers={"x-trace": "1"}, body=b"hello", timeout=STEP)
    assert response.status == 200
    assert response.header("x-peer") == ORDERS
    assert response.body == b"POST /stock hello"
    httpx = pytest.importorskip("httpx")
    with httpx.Client(transport=meshffi.MeshTransport(env["orders"]), timeout=STEP) as client:
        r = client.post(f"http://{SERVICE}:8080/items", content=b"x")
    assert r.status_code == 200 and r.text == "POST /items x"


def test_unknown_service_is_a_typed_error(env):
    for call in (
        lambda: env["orders"].connect("unknown.svc:80", timeout=STEP),
        lambda: env["orders"].request("GET", "http://unknown.svc:8080/", timeout=STEP),
    ):
        with pytest.raises(meshffi.UnknownServiceError) as e:
            call()
        assert isinstance(e.value, meshffi.NoEndpointError), "older NO_ENDPOINT handlers still catch it"
        assert e.value.status == meshffi.Status.UNKNOWN_SERVICE == 18
        assert "unknown.svc" in e.value.message and "services:" in e.value.message, e.value
        assert SERVICE in e.value.message, "the message lists the services the mesh knows"
    with pytest.raises(meshffi.NoEndpointError) as e:
        env["orders"].request("GET", f"http://{SERVICE}:7777/", timeout=STEP)
    assert type(e.value) is meshffi.NoEndpointError and e.value.status == meshffi.Status.NO_ENDPOINT
    assert "declares port(s)" in e.value.message, e.value


def test_streamed_bodies(env):
    """Response bodies read in chunks as they arrive, request bodies streamed from an iterable."""
    size = 8 * 1024 * 1024 + 3
    with env["orders"].request("GET", f"http://{SERVICE}:8081/big", headers={"x-size": str(size)}, timeout=STEP, stream=True) as response:
        assert isinstance(response, meshffi.StreamingResponse)
        assert response.status == 200 and response.header("x-peer") == ORDERS
        assert response.header("content-length") is None, "chunked: the size is not known up front"
        total = 0
        for chunk in response:
            assert chunk == pattern(total, len(chunk))
            total += len(chunk)
        assert total == size and response.read() == b""
    # Streamed upload: 16 MiB from a generator, never held whole.
    digest, sent = hashlib.sha256(), 0

    def chunks():
        nonlocal sent
        for i in range(256):
            data = bytes([i]) * 65536
            digest.update(data)
            sent += len(data)
            yield data

    response = env["orders"].request("PUT", f"http://{SERVICE}:8081/upload", headers={"x-size": "1000"}, body=chunks(), timeout=STEP)
    assert response.status == 200 and sent == 16 * 1024 * 1024
    assert response.header("x-body-bytes") == str(sent)
    assert response.header("x-body-sha256") == digest.hexdigest()
    assert response.body == pattern(0, 1000)
    # A response closed before its end; read(n) returns exactly n until the end.
    with env["orders"].request("GET", f"http://{SERVICE}:8081/", headers={"x-size": "300000", "x-sized": "1"}, timeout=STEP, stream=True) as response:
        assert response.header("content-length") == "300000"
        assert response.read(100001) == pattern(0, 65536) + pattern(65536, 100001 - 65536)
    with pytest.raises(meshffi.MeshError) as e:
        response.read1()
    assert e.value.status == meshffi.Status.CLOSED
    # httpx streams the response too.
    httpx = pytest.importorskip("httpx")
    with httpx.Client(transport=meshffi.MeshTransport(env["orders"]), timeout=STEP) as client:
        with client.stream("GET", f"http://{SERVICE}:8081/", headers={"x-size": "200000"}) as r:
            got = b"".join(r.iter_bytes())
        assert r.status_code == 200 and got == pattern(0, 65536) + pattern(65536, 65536) + pattern(131072, 65536) + pattern(196608, 3392)
        with pytest.raises(httpx.ConnectError) as e:
            client.get("http://unknown.svc:8080/")
        assert isinstance(e.value.__cause__, meshffi.UnknownServiceError)


def test_invalid_arguments(env):
    cases = [
        (lambda: meshffi.Mesh("identiti: {}"), meshffi.Status.CONFIG, "identiti"),
        (lambda: meshffi.Mesh(b"identity: \xff\xfe".decode("utf-8", "surrogateescape")), meshffi.Status.INVALID_UTF8, "UTF-8"),
        (lambda: meshffi.Mesh("identity: {}\0"), meshffi.Status.INVALID_ARGUMENT, "NUL"),
        (lambda: meshffi.Mesh('{"identity": '), meshffi.Status.CONFIG, None),
        (lambda: env["orders"].connect("no-port"), meshffi.Status.INVALID_ARGUMENT, "host:port"),
        (lambda: env["orders"].connect("unknown.svc:80"), meshffi.Status.UNKNOWN_SERVICE, "unknown.svc"),
        (lambda: env["orders"].connect(f"{SERVICE}:7777"), meshffi.Status.NO_ENDPOINT, "not 7777"),
        (lambda: env["orders"].request("GET", "https://x:1/"), meshffi.Status.INVALID_ARGUMENT, "http://"),
        (lambda: env["orders"].request("BAD METHOD", f"http://{SERVICE}:8080/"), meshffi.Status.INVALID_ARGUMENT, "method"),
        (lambda: env["orders"].request("GET", f"http://{SERVICE}:8080/", headers={"bad name": "v"}), meshffi.Status.INVALID_ARGUMENT, "header"),
    ]
    for call, status, needle in cases:
        with pytest.raises(meshffi.MeshError) as e:
            call()
        assert e.value.status == status, e.value
        assert needle is None or needle in e.value.message, e.value
    closed = meshffi.Mesh(caller_config(env["dir"], ORDERS, INVENTORY, env["server"].port))
    closed.close()
    closed.close()
    with pytest.raises(meshffi.MeshError) as e:
        closed.connect(f"{SERVICE}:9000")
    assert e.value.status == meshffi.Status.CLOSED


def test_shutdown_with_open_tunnels(env):
    with meshffi.Mesh(server_config(env["dir"]), timeout=STEP) as server_mesh:
        server = Server(server_mesh)
        with meshffi.Mesh(caller_config(env["dir"], ORDERS, INVENTORY, server.port)) as caller:
            with connect(caller, 9003) as sock:
                assert sock.recv(6) == b"ready\n"
                assert server.listener.shutdown(timeout=STEP) == 1
                try:
                    recv_all(sock)
                except ConnectionResetError:
                    pass
                assert sock.was_reset()
            server.join()
            assert server.drain_results == [True]
            with pytest.raises(meshffi.MeshError) as e:
                caller.connect(f"{SERVICE}:9000", timeout=STEP)
            assert e.value.status == meshffi.Status.UNAVAILABLE


def test_garbage_collection_releases_handles(env):
    before = _handle.live[0]

    def forget():
        m = meshffi.Mesh(caller_config(env["dir"], ORDERS, INVENTORY, env["server"].port))
        for _ in range(4):
            m.connect(f"{SERVICE}:9000", timeout=STEP)  # never closed

    forget()
    deadline = time.monotonic() + STEP
    while _handle.live[0] != before:
        assert time.monotonic() < deadline, f"{_handle.live[0]} handles live, baseline {before}"
        gc.collect()
        time.sleep(0.01)

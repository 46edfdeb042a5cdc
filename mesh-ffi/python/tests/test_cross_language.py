"""Python talks to a native Rust service and to a Go service (go/cmd/echo-service) through the
mesh (the Go client side: go/cross_test.go)."""

import json
import os
import pathlib
import socket
import subprocess

import pytest

import meshffi
from conftest import STEP, recv_all


@pytest.mark.skipif(not os.environ.get("MESH_FFI_RUST_ECHO"), reason="MESH_FFI_RUST_ECHO is not set (scripts/test-bindings.sh sets it)")
def test_python_client_to_rust_service(tmp_path: pathlib.Path):
    ca = tmp_path / "ca"
    # Create the CA once, before the service process reads it.
    meshffi.Mesh(f"identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/py-client, dev_ca: {{ dir: {ca} }} }}").close()
    config = tmp_path / "rust-svc.yaml"
    config.write_text(f"identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/rust-svc, dev_ca: {{ dir: {ca} }} }}\n"
                      "inbound: { listen: \"127.0.0.1:0\" }\n")
    service = subprocess.Popen([os.environ["MESH_FFI_RUST_ECHO"], str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        port = int(service.stdout.readline())
        client_config = json.dumps({
            "identity": {"spiffe_id": "spiffe://cluster.local/ns/shop/sa/py-client", "dev_ca": {"dir": str(ca)}},
            "services": [{"host": "rust.shop.svc.cluster.local", "ports": [{"port": 7000}],
                          "identities": ["spiffe://cluster.local/ns/shop/sa/rust-svc"],
                          "endpoints": [{"address": "127.0.0.1:7000", "hbone_port": port}]}],
        })
        with meshffi.Mesh(client_config) as mesh, mesh.connect("rust.shop.svc.cluster.local:7000", timeout=STEP) as sock:
            sock.settimeout(STEP)
            sock.sendall(b"hello from python")
            sock.shutdown(socket.SHUT_WR)
            assert recv_all(sock) == b"rust spiffe://cluster.local/ns/shop/sa/py-client: hello from python"
    finally:
        service.stdin.close()
        try:
            service.wait(STEP)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


@pytest.mark.skipif(not os.environ.get("MESH_FFI_GO_ECHO"), reason="MESH_FFI_GO_ECHO is not set (scripts/test-bindings.sh builds go/cmd/echo-service and sets it)")
def test_python_client_to_go_service(tmp_path: pathlib.Path):
    """The other direction of go/cross_test.go: a Python client, a Go server (the Go binding's
    Listener, raw tunnels and net/http), through the mesh."""
    requests = pytest.importorskip("requests")
    ca = tmp_path / "ca"
    client_id = "spiffe://cluster.local/ns/shop/sa/py-client"
    meshffi.Mesh(f"identity: {{ spiffe_id: {client_id}, dev_ca: {{ dir: {ca} }} }}").close()
    config = tmp_path / "go-svc.yaml"
    config.write_text(f"identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/go-svc, dev_ca: {{ dir: {ca} }} }}\n"
                      "inbound: { listen: \"127.0.0.1:0\" }\n")
    service = subprocess.Popen([os.environ["MESH_FFI_GO_ECHO"], str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        port = int(service.stdout.readline())
        client_config = json.dumps({
            "identity": {"spiffe_id": client_id, "dev_ca": {"dir": str(ca)}},
            "services": [{"host": "go.shop.svc.cluster.local", "ports": [{"port": 7000}, {"port": 8080, "protocol": "http"}],
                          "identities": ["spiffe://cluster.local/ns/shop/sa/go-svc"],
                          "endpoints": [{"address": "127.0.0.1:7000", "hbone_port": port}]}],
        })
        with meshffi.Mesh(client_config) as mesh:
            with mesh.connect("go.shop.svc.cluster.local:7000", timeout=STEP) as sock:
                assert sock.peer_identity == "spiffe://cluster.local/ns/shop/sa/go-svc"
                sock.settimeout(STEP)
                sock.sendall(b"hello from python")
                sock.shutdown(socket.SHUT_WR)
                assert recv_all(sock) == f"go {client_id}: hello from python".encode()
            with requests.Session() as session:
                session.mount("http://", meshffi.MeshAdapter(mesh))
                r = session.post("http://go.shop.svc.cluster.local:8080/orders", data=b"two apples", timeout=STEP)
            assert r.status_code == 200 and r.headers["x-peer"] == client_id
            assert r.text == f"go {client_id}: POST /orders two apples"
    finally:
        service.stdin.close()
        try:
            service.wait(STEP)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()

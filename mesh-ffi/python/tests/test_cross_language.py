"""Python talks to a native Rust service through the mesh (the Go side: go/cross_test.go)."""

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

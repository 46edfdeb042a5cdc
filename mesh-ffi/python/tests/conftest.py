"""The shared scenario fixture: a serving workload and a caller, both created through the C
ABI, sharing a development CA in a temporary directory (the list tests/c and go/ run too)."""

import json
import os
import pathlib
import socket
import sys
import threading

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import meshffi  # noqa: E402

SERVICE = "inventory.shop.svc.cluster.local"
INVENTORY = "spiffe://cluster.local/ns/shop/sa/inventory"
ORDERS = "spiffe://cluster.local/ns/shop/sa/orders"
BLOCKED = "spiffe://cluster.local/ns/shop/sa/blocked"
STEP = 20.0

POLICY = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: shop-only, namespace: shop }
spec:
  selector: { matchLabels: { app: inventory } }
  action: ALLOW
  rules:
  - from: [{ source: { principals: [cluster.local/ns/shop/sa/orders, cluster.local/ns/shop/sa/blocked] } }]
"""


def server_config(directory, drain="300ms"):
    return f"""workload: {{ name: inventory, namespace: shop, labels: {{ app: inventory }} }}
identity: {{ spiffe_id: {INVENTORY}, dev_ca: {{ dir: {directory}/ca }} }}
inbound: {{ listen: "127.0.0.1:0", drain_timeout: {drain} }}
policies: [{directory}/policy.yaml]
"""


def caller_config(directory, spiffe_id, server_id, port):
    return json.dumps({
        "identity": {"spiffe_id": spiffe_id, "dev_ca": {"dir": f"{directory}/ca"}},
        "services": [{
            "host": SERVICE,
            "ports": [{"port": p} for p in (9000, 9002, 9003, 9004, 9005)] + [{"port": 8080, "protocol": "http"}],
            "identities": [server_id],
            "endpoints": [{"address": "127.0.0.1:9000", "hbone_port": port}],
        }],
    })


def recv_all(sock):
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def handle(sock, drain_results):
    """One behaviour per target port (as in tests/c/app.c)."""
    with sock:
        sock.settimeout(STEP)
        port = sock.target_port
        if port == 9000:
            while data := sock.recv(65536):
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        elif port == 9002:
            sock.recv(1)
        elif port == 9003:
            sock.sendall(b"ready\n")
            recv_all(sock)
            drain_results.append(sock.was_reset())
        elif port == 9004:
            sock.sendall(sock.peer_identity.encode())
        elif port == 9005:
            total = len(recv_all(sock))
            sock.sendall(f"got {total} bytes".encode())
        elif port == 8080:
            request = b""
            while b"\r\n\r\n" not in request:
                request += sock.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += sock.recv(65536)
            method, path = head.split(b" ")[:2]
            text = method + b" " + path + b" " + body
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-peer: " + sock.peer_identity.encode()
                         + b"\r\ncontent-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text)


class Server:
    """A listener with an accept thread and a thread per tunnel."""

    def __init__(self, mesh, authorize=None):
        self.listener = mesh.listen(authorize)
        self.port = self.listener.port
        self.drain_results = []
        self.handlers = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                sock, _peer = self.listener.accept()
            except meshffi.MeshError as e:
                assert e.status == meshffi.Status.CLOSED, e
                return
            t = threading.Thread(target=handle, args=(sock, self.drain_results), daemon=True)
            t.start()
            self.handlers.append(t)

    def join(self):
        self.thread.join(STEP)
        for t in self.handlers:
            t.join(STEP)


@pytest.fixture(scope="session")
def env(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mesh")
    (directory / "policy.yaml").write_text(POLICY)
    server_mesh = meshffi.Mesh(server_config(directory), timeout=STEP)
    server = Server(server_mesh, authorize=lambda peer, addr, port: peer != BLOCKED)
    orders = meshffi.Mesh(caller_config(directory, ORDERS, INVENTORY, server.port), timeout=STEP)
    yield {"dir": directory, "server": server, "orders": orders, "server_mesh": server_mesh}
    server.listener.close()
    server.join()
    orders.close()
    server_mesh.close()

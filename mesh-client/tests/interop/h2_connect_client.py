#!/usr/bin/env python3
"""An independent HBONE client: Python's ssl + the `h2` package (no Rust involved).

Drives a mesh HBONE server through CONNECT / 200 / data / half-close and the 400 cases, and
prints one "OK <case>" line per passed check. Exits non-zero with a reason on any failure.

usage: h2_connect_client.py HOST HBONE_PORT TARGET_PORT CERT KEY BUNDLE
"""
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events

TIMEOUT = 10


def fail(msg):
    print(f"FAIL {msg}", flush=True)
    sys.exit(1)


class Client:
    def __init__(self, host, port, cert, key, bundle):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(bundle)
        # SPIFFE identities live in URI SANs; there is no DNS name to check, and no SNI is sent.
        ctx.check_hostname = False
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host, port), timeout=TIMEOUT)
        self.sock = ctx.wrap_socket(raw, server_hostname=None)
        if self.sock.selected_alpn_protocol() != "h2":
            fail(f"ALPN negotiated {self.sock.selected_alpn_protocol()!r}, expected h2")
        if self.sock.version() != "TLSv1.3":
            fail(f"TLS version {self.sock.version()}, expected TLSv1.3")
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def events(self):
        data = self.sock.recv(65536)
        if not data:
            fail("server closed the connection")
        events = self.conn.receive_data(data)
        self.flush()
        return events

    def request(self, headers, end_stream):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        self.flush()
        return sid

    def status(self, sid):
        while True:
            for ev in self.events():
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    return int(dict(ev.headers)[":status"])
                if isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    fail(f"stream {sid} reset with {ev.error_code}")

    def read_until_end(self, sid):
        body, ended = b"", False
        while not ended:
            for ev in self.events():
                if isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    body += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                    self.flush()
                if isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    ended = True
                if isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    fail(f"stream {sid} reset with {ev.error_code}")
        return body


def main():
    host, hbone_port, target_port, cert, key, bundle = sys.argv[1:7]
    c = Client(host, int(hbone_port), cert, key, bundle)

    # CONNECT with only :method and :authority (no :scheme, no :path), as ztunnel sends it.
    sid = c.request(
        [(":method", "CONNECT"), (":authority", f"{host}:{target_port}"),
         ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
        end_stream=False,
    )
    status = c.status(sid)
    if status != 200:
        fail(f"CONNECT answered {status}, expected 200")
    print("OK connect-200", flush=True)

    payload = b"hello from python h2 " * 1000
    c.conn.send_data(sid, payload, end_stream=False)
    c.flush()
    # Half-close: END_STREAM from us; the echo target sees EOF, echoes, then closes its side.
    c.conn.end_stream(sid)
    c.flush()
    echoed = c.read_until_end(sid)
    if echoed != payload:
        fail(f"echo mismatch: sent {len(payload)} bytes, got {len(echoed)}")
    print("OK data-and-half-close", flush=True)

    cases = [
        ("authority-ip-mismatch", [(":method", "CONNECT"), (":authority", f"127.0.0.2:{target_port}")], 400),
        ("authority-hostname", [(":method", "CONNECT"), (":authority", f"inventory.shop:{target_port}")], 400),
        ("not-connect", [(":method", "GET"), (":scheme", "https"), (":authority", f"{host}:{target_port}"),
                         (":path", "/")], 400),
        ("own-hbone-port", [(":method", "CONNECT"), (":authority", f"{host}:{hbone_port}")], 503),
    ]
    for name, headers, want in cases:
        got = c.status(c.request(headers, end_stream=True))
        if got != want:
            fail(f"{name}: answered {got}, expected {want}")
        print(f"OK {name}-{want}", flush=True)

    c.conn.close_connection()
    c.flush()
    c.sock.close()


if __name__ == "__main__":
    main()

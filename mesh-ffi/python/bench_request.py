"""Times GET requests through the Python binding against the server `bench_native DIR http`
runs; prints `python request_p50_us=..`. Run by scripts/bench.sh.

usage: python3 bench_request.py DIR PORT N
"""

import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import meshffi  # noqa: E402


def main():
    directory, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = json.dumps({
        "identity": {"spiffe_id": "spiffe://cluster.local/ns/bench/sa/py-client", "dev_ca": {"dir": f"{directory}/ca"}},
        "services": [{"host": "bench-http.svc", "ports": [{"port": 8080, "protocol": "http"}],
                      "identities": ["spiffe://cluster.local/ns/bench/sa/bench-http"],
                      "endpoints": [{"address": "127.0.0.1:8080", "hbone_port": port}]}],
    })
    samples = []
    with meshffi.Mesh(config) as mesh:
        for i in range(n + n // 10):
            started = time.perf_counter()
            response = mesh.request("GET", "http://bench-http.svc:8080/")
            assert response.status == 200 and len(response.body) == 64
            if i >= n // 10:
                samples.append((time.perf_counter() - started) * 1e6)
    print(f"python request_p50_us={statistics.median(samples):.1f}")


if __name__ == "__main__":
    main()

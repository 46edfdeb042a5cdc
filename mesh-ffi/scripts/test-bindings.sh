#!/usr/bin/env bash
# Builds libmesh_ffi and runs the Go (go test -race) and Python (pytest) binding tests against
# it. Needs: cargo, Go >= 1.19 with cgo (Debian golang-go), Python 3 with pytest (python3-pytest;
# python3-httpx and python3-requests for the httpx transport and requests adapter tests).
#
# Usage: mesh-ffi/scripts/test-bindings.sh [go|python]   (default: both)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here/.."
cargo build -p mesh-ffi --lib --example echo_service
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
lib="$target/debug"
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MESH_FFI_LIB="$lib/libmesh_ffi.so"
# The cross-language tests start a native Rust service, a Python server and a Go server.
export MESH_FFI_RUST_ECHO="$lib/examples/echo_service"
PYTHON=python3
if ! python3 -c 'import pytest' 2>/dev/null && [[ -x /usr/bin/python3 ]]; then
    PYTHON=/usr/bin/python3 # Debian's, with python3-pytest/-httpx/-requests; an earlier python3 may lack them
fi
export MESH_FFI_PYTHON="$PYTHON"

# The Go service the Python cross-language test talks to (built on the Go binding).
build_go_service() {
    (cd "$here/go" && CGO_ENABLED=1 CGO_LDFLAGS="-L$lib" go build -o "$lib/go-echo-service" ./cmd/echo-service)
    export MESH_FFI_GO_ECHO="$lib/go-echo-service"
}

run_go() {
    (cd "$here/go" && CGO_ENABLED=1 CGO_LDFLAGS="-L$lib" go test -race -count=1 ./...)
}

run_python() {
    build_go_service
    (cd "$here/python" && "$PYTHON" -m pytest -q tests)
}

case "${1:-all}" in
    go) run_go ;;
    python) run_python ;;
    all) run_go; run_python ;;
    *) echo "usage: $0 [go|python]" >&2; exit 2 ;;
esac

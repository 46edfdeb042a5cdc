#!/usr/bin/env bash
# The C ABI benchmarks, each beside its native-Rust baseline in the same run (release build):
#   1. tunnel throughput and 64-byte echo latency: C through the ABI (socketpair path) vs
#      Mesh::connect in Rust (goals: >= 0.7x throughput, <= +15 us p50);
#      plus the floor under any socket handed to a host thread (benches/c/handoff.c);
#   2. HTTP request latency: Go (http.RoundTripper) and Python (Mesh.request) through the ABI vs
#      a native Rust request, all against one native server.
# Rounds alternate native and FFI runs; the medians are compared.
#
# Usage: mesh-ffi/scripts/bench.sh [MIB=256] [PINGS=5000] [ROUNDS=3] [REQUESTS=2000]
set -euo pipefail

MIB="${1:-256}"
PINGS="${2:-5000}"
ROUNDS="${3:-3}"
REQUESTS="${4:-2000}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here/.."
cargo build --release -p mesh-ffi --lib --example bench_native
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
lib="$target/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -I"$here/include" "$here/benches/c/tunnel.c" \
    -L"$lib" -Wl,-rpath,"$lib" -lmesh_ffi -lpthread -o "$work/tunnel"
cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic "$here/benches/c/handoff.c" -lpthread -o "$work/handoff"

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== tunnels: $MIB MiB one way, $PINGS x 64-byte echo, $ROUNDS rounds"
: > "$work/native" ; : > "$work/ffi" ; : > "$work/floor"
for round in $(seq "$ROUNDS"); do
    "$work/handoff" "$PINGS" | tee -a "$work/floor"
    rm -rf "$work/ca"
    "$lib/examples/bench_native" "$work" tunnel "$MIB" "$PINGS" | tee -a "$work/native"
    rm -rf "$work/ca"
    "$work/tunnel" "$work" "$MIB" "$PINGS" | tee -a "$work/ffi"
done
for metric in throughput_mib_s echo64_p50_us echo64_p99_us; do
    n="$(field "$metric" < "$work/native" | median)"
    f="$(field "$metric" < "$work/ffi" | median)"
    awk -v m="$metric" -v n="$n" -v f="$f" 'BEGIN {
        printf "%-18s native %9.1f   ffi %9.1f   ratio %.2fx   diff %+.1f\n", m, n, f, f / n, f - n }'
done
# Both ends of the echo go through the ABI, so its extra latency is two bridges: each must
# wake a host thread blocked in read() and be woken by it, one socketpair round trip.
n="$(field echo64_p50_us < "$work/native" | median)"
f="$(field echo64_p50_us < "$work/ffi" | median)"
h="$(field socketpair_rtt_p50_us < "$work/floor" | median)"
awk -v n="$n" -v f="$f" -v h="$h" 'BEGIN {
    printf "echo64 extra per ABI end %.1f us; bare socketpair round trip between two threads %.1f us (%.2f of them)\n",
        (f - n) / 2, h, (f - n) / 2 / h }'

echo "== HTTP requests: $REQUESTS GETs each"
rm -rf "$work/ca"
coproc SERVER { "$lib/examples/bench_native" "$work" http "$REQUESTS"; }
native_line=""
port=""
while read -r line <&"${SERVER[0]}"; do
    case "$line" in
        native*) native_line="$line"; echo "$line" ;;
        port=*) port="${line#port=}"; break ;;
    esac
done
[[ -n "$port" ]] || { echo "the native HTTP server did not start" >&2; exit 1; }
PYTHON=python3
if ! python3 -c 'import ctypes' 2>/dev/null && [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; fi
MESH_FFI_LIB="$lib/libmesh_ffi.so" "$PYTHON" "$here/python/bench_request.py" "$work" "$port" "$REQUESTS" | tee "$work/python"
(cd "$here/go" && CGO_LDFLAGS="-L$lib" LD_LIBRARY_PATH="$lib" MESH_BENCH_DIR="$work" MESH_BENCH_PORT="$port" \
    go test -run '^$' -bench Request -benchtime "${REQUESTS}x" .) | tee "$work/go"
exec {SERVER[1]}>&-
wait "$SERVER_PID" || true
n="$(echo "$native_line" | field request_p50_us)"
p="$(field request_p50_us < "$work/python")"
g="$(sed -n 's/.* \([0-9.]*\) p50-us.*/\1/p' "$work/go")"
awk -v n="$n" -v p="$p" -v g="$g" 'BEGIN {
    printf "request_p50_us     native %9.1f   go %9.1f (%+.1f)   python %9.1f (%+.1f)\n", n, g, g - n, p, p - n }'

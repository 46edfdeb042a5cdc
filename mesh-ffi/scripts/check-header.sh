#!/usr/bin/env bash
# Regenerates include/mesh.h with the pinned cbindgen and fails if it differs from the committed
# header (CI). With --write, updates the committed header instead.
#
# Needs cbindgen 0.29.4: cargo install --locked cbindgen@0.29.4
set -euo pipefail

PINNED="0.29.4"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
header="$here/include/mesh.h"

have="$(cbindgen --version 2>/dev/null | awk '{print $2}')" || true
if [[ "$have" != "$PINNED" ]]; then
    echo "cbindgen $PINNED is required (found: ${have:-none}); install it with:" >&2
    echo "  cargo install --locked cbindgen@$PINNED" >&2
    exit 1
fi

generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT
(cd "$here" && cbindgen --quiet --config cbindgen.toml --crate mesh-ffi --output "$generated")

if [[ "${1:-}" == "--write" ]]; then
    cp "$generated" "$header"
    echo "wrote $header"
    exit 0
fi
if ! diff -u "$header" "$generated"; then
    echo "include/mesh.h is out of date: run mesh-ffi/scripts/check-header.sh --write and commit it" >&2
    exit 1
fi
echo "include/mesh.h is up to date"

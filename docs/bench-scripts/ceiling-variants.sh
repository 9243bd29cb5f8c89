#!/usr/bin/env bash
# The 1-worker ceiling gap, factor by factor (docs/BENCHMARKS.md, "Ceiling: what the gap was").
# Builds three variants of shared/tools/grpc-ceiling under $WORK (line-table debug info; the payload
# in a google.protobuf.Any; kairos's Cargo.lock versions of h2, hyper, prost), then runs them and
# `kairos-bench ceiling` alternately, two rounds. Usage: ceiling-variants.sh KAIROS_BENCH_BINARY
set -euo pipefail
bench="$1"; work="${WORK:-/tmp/ceiling-variants}"
tool="$(cd "$(dirname "$0")/../../../shared/tools/grpc-ceiling" && pwd)"
root="$(cd "$(dirname "$0")/../.." && pwd)"
for v in A B D; do rm -rf "$work/$v"; mkdir -p "$work/$v"; cp -r "$tool"/{Cargo.toml,build.rs,proto,src} "$work/$v/"; done
printf '\n[profile.lt]\ninherits = "release"\ndebug = "line-tables-only"\n' >> "$work/A/Cargo.toml"
(cd "$work/A" && cargo build --release -q && cargo build --profile lt -q)
cd "$work/B"
sed -i 's/^package ceiling;/package ceiling;\nimport "google\/protobuf\/any.proto";/; s/  bytes data = 2;/  google.protobuf.Any data = 2;/' proto/ceiling.proto
sed -i 's/^prost = "0.14"/prost = "0.14"\nprost-types = "0.14"/' Cargo.toml
sed -i 's/        data: data.to_vec(),/        data: Some(prost_types::Any { type_url: String::new(), value: data.to_vec() }),/' src/bin/client.rs
sed -i 's/                        data: data.clone(),/                        data: Some(prost_types::Any { type_url: String::new(), value: data.clone() }),/' src/bin/server.rs
cargo build --release -q
cd "$work/D" && cp "$work/A/Cargo.lock" .
for p in h2 hyper prost-build prost-types prost prost-derive; do
  cargo update -q -p "$p" --precise "$(grep -A1 "^name = \"$p\"$" "$root/Cargo.lock" | sed -n 's/version = "\(.*\)"/\1/p')"
done
cargo build --release -q
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()')
run() { # name dir threads
  "$2/server" "127.0.0.1:$port" "$3" 2>/dev/null & srv=$!
  sleep 0.5
  echo "$1 workers=$3 $("$2/client" --mode unary --conns 1 --conc 64 --secs 8 --warmup 2 --addr "http://127.0.0.1:$port" --threads "$3" | grep RESULT)"
  kill "$srv"; wait "$srv" 2>/dev/null || true
}
for round in 1 2; do
  uptime
  for t in 1 2; do
    run tool "$work/A/target/release" "$t"
    run tool+linetables "$work/A/target/lt" "$t"
    run tool+Any "$work/B/target/release" "$t"
    run tool+ourlock "$work/D/target/release" "$t"
  done
  "$bench" ceiling --threads 1,2 --duration 8
done
uptime

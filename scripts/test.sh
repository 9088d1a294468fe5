#!/usr/bin/env bash
# The one test command: formatting, lints, every test (unit, integration, property, doc, benches in
# test mode) and the documentation build. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (lib, integration, property tests; benches run once in test mode)"
cargo test --workspace --all-targets

step "cargo test --doc"
cargo test --workspace --doc

step "examples"
cargo run -q -p backfill-examples --example quickstart > /dev/null

step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "all checks passed"

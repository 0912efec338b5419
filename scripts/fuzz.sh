#!/usr/bin/env bash
# Fuzzes the protocol decoder, every request field, and project path validation with cargo-fuzz
# (libFuzzer).
# FUZZ_SECONDS sets the time per target (CI uses a short run; see docs/security.md for a long one).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
# cargo-fuzz passes unstable compiler flags; the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1
for target in decode project_path request_fields; do
  echo "fuzzing $target for ${seconds}s"
  # Work on a copy of the seed corpus so that a run leaves the repository unchanged.
  work="fuzz/target/corpus/$target"
  mkdir -p "$work"
  cp -n "fuzz/corpus/$target"/* "$work"/ 2>/dev/null || true
  cargo fuzz run --sanitizer none "$target" "$work" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 2>&1 | tail -n 5
done
